"""The bottom layer: config, cache keys, atomic files, the outputs lock, executors and the runner.
Nothing here knows about music, models or audio."""
