"""The CLI's longer commands, which drive the pipeline over many runs: `lofi evaluate` (every
archive end to end, one table) and `lofi base` / `lofi base-drums` (the shipped base models)."""
