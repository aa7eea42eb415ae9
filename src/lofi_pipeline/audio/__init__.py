"""Audio: FluidSynth rendering, the mastering chain, loudness, WAV and MP3 files, playlists."""
