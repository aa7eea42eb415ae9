"""File names in the style sample libraries use, so a DAW user sees tempo and key at a glance:
`late-night-study-01_82bpm_Dbm_bass.wav`. No spaces; the title as a lower-case slug, the tempo
as a whole number of BPM, then the key (left out when unknown), then the part (left out for
the whole track). `parse_name` reads one back."""
from __future__ import annotations

import re

from .playlist import slug

_NAME = re.compile(r"^(?P<title>[a-z0-9-]+)_(?P<tempo_bpm>\d+)bpm(?:_(?P<key>[A-G][b#]?m?))?"
                   r"(?:_(?P<part>[a-z0-9-]+))?\.(?P<ext>[a-z0-9]+)$")


def sample_name(title: str, tempo_bpm: float, key: str | None, part: str | None, ext: str) -> str:
    """`title_82bpm_Dbm_part.ext`; a key that is not a plain key name is left out."""
    fields = [slug(title), f"{round(tempo_bpm)}bpm"]
    if key and re.fullmatch(r"[A-G][b#]?m?", key):
        fields.append(key)
    if part:
        fields.append(slug(part))
    return "_".join(fields) + f".{ext}"


def parse_name(name: str) -> dict | None:
    """{title, tempo_bpm, key, part, ext} of a name `sample_name` wrote, or None."""
    match = _NAME.match(name)
    if not match:
        return None
    found = match.groupdict()
    return {**found, "tempo_bpm": int(found["tempo_bpm"])}
