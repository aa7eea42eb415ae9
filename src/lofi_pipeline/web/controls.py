"""What the page may change: the keys that settings.toml marks with `page` (a slider's
[low, high, step], a list of options, or true for the key's choices), served with their
defaults and help, and checked by the config itself (one message, the CLI's)."""
from __future__ import annotations

import json

from ..core.config import SPEC, ConfigError, load_config


def controls() -> list[dict]:
    """The page's controls in settings.toml's order."""
    out = []
    for section, keys in SPEC.items():
        for key, spec in keys.items():
            page = spec.get("page")
            if page is None:
                continue
            kind = "slider" if isinstance(page, list) and all(isinstance(x, (int, float)) for x in page) else "list"
            options = (page if isinstance(page, list) else list(spec.get("choices", ()))) if kind == "list" else None
            out.append({"key": f"{section}.{key}", "kind": kind, "default": spec["default"], "help": spec["help"],
                        "range": page if kind == "slider" else None, "options": options})
    return out


KEYS = {c["key"] for c in controls()}


def checked(tweaks: dict) -> dict:
    """`tweaks` as the config reads them; ConfigError (one line naming the key) if one is not
    a page control or its value is out of range."""
    unknown = sorted(set(tweaks) - KEYS)
    if unknown:
        raise ConfigError(f"{unknown[0]} cannot be changed here (the page's keys: {', '.join(sorted(KEYS))})")
    overrides = [f"{k}={json.dumps(v)}" for k, v in tweaks.items()]
    cfg = load_config(None, None, overrides)
    return {k: getattr(getattr(cfg, k.split(".")[0]), k.split(".")[1]) for k in tweaks}
