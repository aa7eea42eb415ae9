"""One config object: the defaults, then a config file (lofi.toml), then a profile, then --set
overrides (a master preset sits between the file and the profile).

Every key is declared once, in settings.toml beside this module: its default, its allowed range
or choices, its role for the cache and what it does. The sections' dataclasses are built from
that table, so a bad value is reported as one line naming the key and the range before any
long work starts; `lofi config` writes lofi.toml from it, so a run without the file behaves as
one with it. It is long because every step from that table to a checked config is here (the
sections, the read-only views stages get, profiles and presets, precedence, the checks, the
file `lofi config` writes), in the one module that reads settings.toml.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import tomllib
from dataclasses import field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config value that is unknown, of the wrong type or out of range."""


# What a key is to the cache. PARAM: its value is part of the key of every stage that reads
# it. INPUT: a path whose bytes (never the path itself) go into the key. RUNTIME: where or how
# fast work runs (worker counts, threads, folders); it never changes an artifact's bytes.
PARAM, INPUT, RUNTIME = "param", "input", "runtime"
SPEC = tomllib.loads((Path(__file__).with_name("settings.toml")).read_text())


def default_of(key: str) -> Any:
    """The default of `section.key` as settings.toml gives it (for code that runs before a
    config is loaded: argparse's defaults, a path's fallback)."""
    section, _, name = key.partition(".")
    return copy.deepcopy(SPEC[section][name]["default"])


def _section_class(name: str):
    """A dataclass of one section's keys, each with its default and, in its metadata, its
    range, choices, role and help."""
    fields = []
    for key, spec in SPEC[name].items():
        default = spec["default"]
        meta = {"lo": spec.get("min"), "hi": spec.get("max"), "choices": tuple(spec.get("choices", ())) or None,
                "role": spec.get("role", PARAM), "help": spec["help"]}
        if isinstance(default, (list, dict)):
            factory = lambda d=default: copy.deepcopy(d)  # noqa: E731 (a default per instance)
            fields.append((key, type(default), field(default_factory=factory, metadata=meta)))
        else:
            fields.append((key, type(default), field(default=default, metadata=meta)))
    cls = dataclasses.make_dataclass(f"{name.capitalize()}Config", fields)
    cls.__module__ = __name__  # so that instances pickle (to worker processes) by reference
    return cls


SECTION_CLASSES = {name: _section_class(name) for name in SPEC}
RunConfig, IntakeConfig, ExtractConfig, EncodeConfig, TrainConfig, GenerateConfig, DrumsConfig, ArrangeConfig, \
    RenderConfig, MasterConfig, ExportConfig, ServeConfig = SECTION_CLASSES.values()


class _Sections:
    """What a Config does: its sections (settings.toml's, in order, each a dataclass of its keys)
    are made into fields below, with the profile's name last."""

    def section(self, name: str) -> dict:
        return dataclasses.asdict(getattr(self, name))

    def view(self, reads: tuple[str, ...], owner: str) -> "ParamView":
        """A read-only view of the keys named in `reads` (whole sections or section.key)."""
        values: dict[str, dict[str, Any]] = {}
        for item in reads:
            section, _, key = item.partition(".")
            if section not in SECTIONS:
                raise ConfigError(f"stage {owner} reads unknown config section {section!r}")
            entries = self.section(section)
            if key and key not in entries:
                raise ConfigError(f"stage {owner} reads unknown config key {item}")
            for k in ([key] if key else entries):
                values.setdefault(section, {})[k] = _frozen(entries[k])
        return ParamView({name: SectionView(keys, owner, name) for name, keys in values.items()}, owner)


Config = dataclasses.make_dataclass(
    "Config", [*((name, cls, field(default_factory=cls)) for name, cls in SECTION_CLASSES.items()),
               ("profile", str, field(default="default"))], bases=(_Sections,))
Config.__module__ = __name__  # so that it pickles by reference, like the sections


def _frozen(value):
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items()}
    return tuple(value) if isinstance(value, list) else value


def field_role(section: str, key: str) -> str:
    return SPEC[section][key].get("role", PARAM)


class _View:
    """Attribute access to a fixed mapping, read-only; a missing name raises `_missing(name)`."""
    __slots__ = ("_values", "_owner")

    def __init__(self, values: dict[str, Any], owner: str):
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_owner", owner)

    def __getattr__(self, name: str):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(self._missing(name)) from None

    def __setattr__(self, key, value):
        raise AttributeError(f"config is read-only inside stage {self._owner}")


class SectionView(_View):
    """One config section as a stage sees it: the keys it declared. It travels to worker
    processes and Ray tasks as it is (it pickles), so domain code reads settings by attribute
    whether it runs in the stage or in a worker."""
    __slots__ = ("_name",)

    def __init__(self, values: dict[str, Any], owner: str, name: str):
        super().__init__(dict(values), owner)
        object.__setattr__(self, "_name", name)

    def _missing(self, key: str) -> str:
        return (f"stage {self._owner} does not read {self._name}.{key}: add it to the stage's `reads` so that "
                "it is part of the stage's key")

    def __reduce__(self):
        return SectionView, (self._values, self._owner, self._name)


class ParamView(_View):
    """What a stage may know of the config: exactly the keys it declared, read-only.
    Reading anything else raises, so a setting cannot change output without changing the key."""
    __slots__ = ()

    def _missing(self, name: str) -> str:
        return f"stage {self._owner} reads nothing from config section [{name}]: add it to the stage's `reads`"

    def items(self):
        """(section.key, value) for every key in the view."""
        for name, view in self._values.items():
            for k, v in view._values.items():
                yield f"{name}.{k}", v

    def hashed(self) -> dict[str, Any]:
        """The keys whose values belong in the stage's cache key (role PARAM)."""
        return {k: v for k, v in self.items() if field_role(*k.split(".", 1)) == PARAM}


# Master presets set a group of effect levels at once; explicit keys still win over them.
MASTER_PRESETS = {
    "clean": {"lowpass_hz": 16000.0, "crackle_per_second": 0.0, "hiss_db": -120.0,
              "wow_cents": 0.0, "flutter_cents": 0.0, "bitcrush_bits": 0.0, "reverb_wet": 0.12},
    "lofi": {},
    "dusty": {"lowpass_hz": 4200.0, "crackle_per_second": 14.0, "crackle_db": -26.0,
              "hiss_db": -42.0, "wow_cents": 14.0, "flutter_cents": 4.0, "bitcrush_bits": 10.0,
              "resample_hz": 22050.0},
}



def keys_set_with(key: str) -> set[str]:
    """`key` and the keys whose values a change of it also changes (a master preset sets some
    of master's keys)."""
    if key == "master.preset":
        return {key} | {f"master.{k}" for preset in MASTER_PRESETS.values() for k in preset}
    return {key}


# Built-in profiles; a config file may add its own as [profile.NAME] tables.
PROFILES = {
    "quick": {  # a tiny smoke run for tests and trying things: well under a minute end to end
        "intake": {"max_files": 24}, "encode": {"window": 12},
        "train": {"init": "scratch", "members": 2, "max_steps": 20, "check_every": 10, "batch_size": 64,
                  "embed_dim": 16, "conv_filters": 16, "kernel_sizes": [3, 5], "lstm_units": [16, 24],
                  "rate_matching_tracks": 4},
        "generate": {"tracks": 2, "bars": 4}, "drums": {"finetune_steps": 10}},
    "base": {  # pre-training the base ensemble (`lofi base`): from scratch, with a budget to match the corpus
        "train": {"init": "scratch", "max_steps": 2000, "check_every": 400, "patience": 2, "batch_size": 256,
                  "dev_check_windows": 0}},
}

# Keys that moved: a config file that still names the old place is told where they went.
MOVED = {"generate.checks_quantile": "encode.checks_quantile",
         "arrange.intro_bars": "generate.form (its intro section)",
         "arrange.outro_bars": "generate.form (its outro section)",
         "train.epochs": "train.max_steps (training is budgeted in optimiser steps, checked every train.check_every)"}

SECTIONS = list(SPEC)
assert SECTIONS == [f.name for f in dataclasses.fields(Config) if f.name != "profile"]


def _check_value(key: str, f: dataclasses.Field, value: Any) -> Any:
    if isinstance(f.default, str) and f.metadata.get("lo") is not None:  # a named option, or a number in range
        named = f.metadata.get("choices") or (f.default,)
        if value in named:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not f.metadata["lo"] <= value <= \
                f.metadata["hi"]:
            options = " or ".join(f'"{n}"' for n in named)
            raise ConfigError(f"config key {key}: expected {options} or a number in [{f.metadata['lo']}, "
                              f"{f.metadata['hi']}], got {value!r}")
        return float(value)
    expected = type(f.default) if f.default is not dataclasses.MISSING else type(f.default_factory())
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"config key {key}: expected {expected.__name__}, got {value!r}")
    lo, hi, choices = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"config key {key}: {value!r} is not one of {', '.join(choices)}")
    if lo is not None and not lo <= value <= hi:
        raise ConfigError(f"config key {key}: {value!r} is out of range [{lo}, {hi}]")
    return value


def _apply(cfg: Config, values: dict, origin: str) -> None:
    for section, entries in values.items():
        if section not in SECTIONS:
            raise ConfigError(f"{origin}: unknown config section [{section}] "
                              f"(known: {', '.join(SECTIONS)})")
        if not isinstance(entries, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table of keys")
        target = getattr(cfg, section)
        fields = {f.name: f for f in dataclasses.fields(target)}
        for key, value in entries.items():
            if key not in fields:
                moved = MOVED.get(f"{section}.{key}")
                raise ConfigError(f"{origin}: config key {section}.{key} is now {moved}" if moved else
                                  f"{origin}: unknown config key {section}.{key} (known: {', '.join(fields)})")
            try:
                setattr(target, key, _check_value(f"{section}.{key}", fields[key], value))
            except ConfigError as exc:
                raise ConfigError(f"{origin}: {exc}") from None


def parse_override(text: str) -> tuple[str, str, Any]:
    """Parse `section.key=value`; the value is read as TOML, falling back to a bare string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. train.max_steps=300")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value


def load_config(path: str | Path | None = None, profile: str | None = None,
                overrides: list[str] = ()) -> Config:
    """The config: the defaults, then the file at `path` (None: no file), the profile and the
    overrides. A file that is named and missing is an error."""
    cfg = Config()
    data: dict = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    profiles = {**PROFILES, **data.pop("profile", {})}
    chosen = profile or data.get("run", {}).pop("profile", None) or "default"
    data.get("run", {}).pop("profile", None)
    if chosen != "default" and chosen not in profiles:
        raise ConfigError(f"unknown profile {chosen!r} (known: default, {', '.join(profiles)})")
    origin = str(path) if path is not None else "defaults"
    _apply(cfg, data, origin)
    _apply(cfg, profiles.get(chosen, {}), f"{origin} [profile.{chosen}]")
    # The preset overrides the file's [master] values; a profile or --set overrides the preset.
    explicit_master = set(profiles.get(chosen, {}).get("master", {}))
    parsed = [parse_override(o) for o in overrides]
    explicit_master |= {k for s, k, _ in parsed if s == "master"}
    for section, key, value in parsed:
        _apply(cfg, {section: {key: value}}, "--set")
    for key, value in MASTER_PRESETS[cfg.master.preset].items():
        if key not in explicit_master:
            setattr(cfg.master, key, value)
    cfg.profile = chosen
    _check_consistency(cfg)
    return cfg


def _check_consistency(cfg: Config) -> None:
    a = cfg.arrange
    if a.tempo_min_bpm > a.tempo_max_bpm:
        raise ConfigError(f"config keys arrange.tempo_min_bpm ({a.tempo_min_bpm}) must not exceed "
                          f"arrange.tempo_max_bpm ({a.tempo_max_bpm})")
    t = cfg.train
    for key in ("kernel_sizes", "lstm_units"):
        values = getattr(t, key)
        if not values or not all(isinstance(v, int) and v > 0 for v in values):
            raise ConfigError(f"config key train.{key}: expected a list of positive integers, "
                              f"got {values!r}")
    g = cfg.generate
    if g.combine == "weighted" and len(g.weights) != t.members:
        raise ConfigError(f"config key generate.weights: combine='weighted' needs "
                          f"{t.members} weights (one per member), got {len(g.weights)}")
    known = {"temperature": (0.01, 10.0), "top_k": (0, 100000), "top_p": (0.01, 1.0)}
    for name, settings in g.fields.items():  # generate checks the names against the token format
        if not isinstance(settings, dict):
            raise ConfigError(f"config key generate.fields.{name}: expected a table of settings, "
                              "e.g. generate.fields.pitch = {{temperature = 1.1}}")
        for key, value in settings.items():
            lo, hi = known.get(key, (None, None))
            if lo is None or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise ConfigError(f"config key generate.fields.{name}.{key}: {value!r} is not a known "
                                  f"setting in range ({', '.join(f'{k} {a}..{b}' for k, (a, b) in known.items())})")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in g.retakes):
        raise ConfigError(f"config key generate.retakes: expected track numbers (1, 2, ...), got {g.retakes!r}")
    if any((not isinstance(w, (int, float))) or w < 0 for w in g.weights):
        raise ConfigError("config key generate.weights: weights must be numbers >= 0")
    if cfg.run.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("config key run.executor: 'ray' needs Ray, which is not installed: "
                          "pip install -e '.[ray]' (on every node of the cluster)")
    if cfg.master.lowpass_hz >= cfg.render.sample_rate / 2:
        raise ConfigError(f"config key master.lowpass_hz: {cfg.master.lowpass_hz} must be below "
                          f"half the sample rate ({cfg.render.sample_rate / 2:g})")


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }" if value else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


CONFIG_HEADER = """\
# lofi_pipeline configuration: every key at its default, with what it does. Change a value here,
# or for one run with `--set section.key=value`. A profile (`--profile NAME`) overrides some
# keys: `quick` is built in; add your own as [profile.NAME] tables of section.key = value lines.
# Relative paths are taken from this file's folder. `lofi config > lofi.toml` writes it afresh.
"""


def config_file_text() -> str:
    """lofi.toml as shipped: every key at its default, each with its help as a comment."""
    lines = [CONFIG_HEADER]
    for section, keys in SPEC.items():
        lines.append(f"[{section}]")
        for key, spec in keys.items():
            setting = f"{key} = {_toml_value(spec['default'])}"
            lines.append(f"{setting:<28} # {spec['help']}")
        lines.append("")
    return "\n".join(lines)
