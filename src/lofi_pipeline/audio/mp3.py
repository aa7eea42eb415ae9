"""MP3 files: encoding with pedalboard's built-in LAME, and ID3 tags with mutagen."""
from __future__ import annotations

import tempfile
from pathlib import Path

from mutagen.id3 import COMM, ID3, TALB, TBPM, TCON, TIT2, TKEY, TPE1, TRCK, ID3NoHeaderError
from pedalboard.io import AudioFile

from .audio_io import read_wav


def write_mp3(wav: Path | bytes, mp3: Path, bitrate_kbps: int) -> float:
    """Encode a WAV file (or its bytes) with pedalboard's built-in LAME (its default would be
    320 kbps); returns seconds."""
    audio, sr = read_wav(wav)
    with open(mp3, "wb") as fh, AudioFile(fh, "w", sr, audio.shape[0], format="mp3",
                                          quality=bitrate_kbps) as f:
        f.write(audio)
    return audio.shape[1] / sr


def tagged_mp3_bytes(wav: bytes, bitrate_kbps: int, tags: dict) -> bytes:
    """A master's WAV bytes as a tagged MP3's bytes (LAME and mutagen work on files: a private
    temporary one)."""
    with tempfile.TemporaryDirectory(prefix="lofi-export-") as tmp:
        mp3 = Path(tmp) / "track.mp3"
        write_mp3(wav, mp3, bitrate_kbps)
        tag_mp3(mp3, **tags)
        return mp3.read_bytes()


def tag_mp3(path: Path, title: str, artist: str, album: str, track: int, total: int, comment: str,
            tempo_bpm: float | None = None, key: str | None = None) -> None:
    """ID3v2.4 tags; TBPM is whole beats per minute and TKEY the key as ID3 spells it ("Dbm",
    "F#"), each written when known, for DJ software and music libraries to sort by."""
    try:
        tags = ID3(path)
    except ID3NoHeaderError:
        tags = ID3()
    tags.add(TIT2(encoding=3, text=title))
    tags.add(TPE1(encoding=3, text=artist))
    tags.add(TALB(encoding=3, text=album))
    tags.add(TRCK(encoding=3, text=f"{track}/{total}"))
    tags.add(TCON(encoding=3, text="Lo-fi"))
    tags.add(COMM(encoding=3, lang="eng", desc="lofi_pipeline", text=comment))
    if tempo_bpm:
        tags.add(TBPM(encoding=3, text=str(round(tempo_bpm))))
    if key:
        tags.add(TKEY(encoding=3, text=key))
    tags.save(path)
