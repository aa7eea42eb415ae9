"""Music: the piece type that flows through the pipeline, reading MIDI, chords, the token
format, harmony rules, the music checks and statistics, and the arrangement."""
