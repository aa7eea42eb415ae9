"""The pipeline's stages, one short module each, and the catalog of what they write
(catalog.py). A stage wires the music, model and audio code together; only the CLI and the
pipeline list import stages."""
