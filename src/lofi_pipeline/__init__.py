"""lofi_pipeline: a zip of MIDI files in, a playlist of lo-fi tracks out."""

__version__ = "0.1.0"
