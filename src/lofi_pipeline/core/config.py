"""One config object: the defaults here, then a config file (lofi.toml), then a profile, then
--set overrides (a master preset sits between the file and the profile).

The defaults here are the real ones: lofi.toml lists the same values (a test compares them key
by key), so a run without the file behaves as one with it. Every field declares its allowed
range in its metadata, so a bad value is reported as one line naming the key and the range
before any long work starts. The module is long because it lists every key with its range.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config value that is unknown, of the wrong type or out of range."""


# What a key is to the cache. PARAM: its value is part of the key of every stage that reads
# it. INPUT: a path whose bytes (never the path itself) go into the key. RUNTIME: where or how
# fast work runs (worker counts, threads, folders); it never changes an artifact's bytes.
PARAM, INPUT, RUNTIME = "param", "input", "runtime"


def opt(default, lo=None, hi=None, choices=None, role=PARAM):
    meta = {"lo": lo, "hi": hi, "choices": choices, "role": role}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    seed: int = opt(1234, 0, 2**31 - 1)
    name: str = opt("Late Night Study")
    archive: str = opt("", role=INPUT)
    outputs: str = opt("outputs", role=RUNTIME)
    executor: str = opt("local", choices=("local", "ray"), role=RUNTIME)
    ray_address: str = opt("", role=RUNTIME)


@dataclass
class IntakeConfig:
    max_entry_mib: float = opt(32.0, 0.001, 1024)
    max_total_mib: float = opt(512.0, 0.001, 65536)
    max_entries: int = opt(50000, 1, 10**7)
    max_files: int = opt(0, 0, 10**7)
    max_ratio: float = opt(100.0, 1.0, 100000.0)
    max_read_mib: float = opt(1024.0, 0.001, 1048576)


@dataclass
class ExtractConfig:
    onset_tolerance_ms: float = opt(60.0, 0.0, 500.0)
    min_tempo_bpm: float = opt(20.0, 1.0, 1000.0)
    max_tempo_bpm: float = opt(400.0, 1.0, 10000.0)
    min_notes: int = opt(4, 1, 10**6)
    workers: int = opt(2, 1, 64, role=RUNTIME)
    max_beats: int = opt(4000, 8, 10**6)


@dataclass
class EncodeConfig:
    window: int = opt(32, 4, 1024)
    stride: int = opt(1, 1, 1024)
    dev_share: float = opt(0.1, 0.01, 0.45)
    test_share: float = opt(0.15, 0.01, 0.45)
    velocity_bins: int = opt(4, 1, 32)
    checks_quantile: float = opt(0.025, 0.0, 0.5)


@dataclass
class TrainConfig:
    members: int = opt(3, 1, 16)
    epochs: int = opt(12, 1, 1000)
    patience: int = opt(2, 1, 100)
    batch_size: int = opt(256, 1, 65536)
    learning_rate: float = opt(0.003, 1e-6, 1.0)
    embed_dim: int = opt(64, 2, 4096)
    conv_filters: int = opt(96, 1, 4096)
    kernel_sizes: list = opt([3, 5, 7])
    lstm_units: list = opt([96, 80, 112])
    attention_heads: int = opt(2, 1, 64)
    dropout: float = opt(0.2, 0.0, 0.9)
    ngram_order: int = opt(3, 2, 5)
    # Threads per member are part of the key: float sums split over another number of threads
    # round differently (the quick profile's weights differ between 1 and 2 threads).
    threads: int = opt(2, 1, 256)
    member_gpus: float = opt(0.0, 0.0, 16.0)


@dataclass
class GenerateConfig:
    tracks: int = opt(4, 1, 10000)
    batch_tracks: int = opt(16, 1, 1024)
    bars: int = opt(52, 1, 10000)
    events: int = opt(0, 0, 10**6)
    temperature: float = opt(1.0, 0.01, 10.0)
    top_k: int = opt(30, 0, 100000)
    top_p: float = opt(0.95, 0.01, 1.0)
    combine: str = opt("mean", choices=("mean", "product", "weighted"))
    weights: list = opt([])
    repetition_penalty: float = opt(1.0, 1.0, 10.0)
    repetition_window: int = opt(16, 0, 1024)
    fields: dict = opt({"pitch": {"temperature": 0.75}})
    primer: str = opt("dev", role=INPUT)
    primer_events: int = opt(8, 0, 1024)
    redraws: int = opt(3, 0, 20)


@dataclass
class ArrangeConfig:
    tempo_min_bpm: int = opt(70, 40, 200)
    tempo_max_bpm: int = opt(90, 40, 200)
    key: str = opt("auto")
    swing: float = opt(0.58, 0.5, 0.75)
    humanize_ms: float = opt(8.0, 0.0, 60.0)
    velocity_jitter: int = opt(6, 0, 40)
    extensions: bool = opt(True)
    keys_program: int = opt(4, 0, 127)
    lead_program: int = opt(11, 0, 127)
    bass_program: int = opt(33, 0, 127)
    drum_kit: int = opt(32, 0, 127)
    intro_bars: int = opt(2, 0, 64)
    outro_bars: int = opt(2, 0, 64)
    workers: int = opt(2, 1, 64, role=RUNTIME)


@dataclass
class RenderConfig:
    soundfont: str = opt("soundfonts/default.sf2", role=INPUT)
    midi: str = opt("", role=INPUT)
    sample_rate: int = opt(44100, 8000, 192000)
    gain: float = opt(0.4, 0.01, 10.0)
    workers: int = opt(2, 1, 64, role=RUNTIME)


@dataclass
class MasterConfig:
    preset: str = opt("lofi", choices=("clean", "lofi", "dusty"))
    highpass_hz: float = opt(40.0, 0.0, 2000.0)
    lowpass_hz: float = opt(5500.0, 500.0, 22000.0)
    low_shelf_db: float = opt(2.0, -24.0, 24.0)
    high_shelf_db: float = opt(-3.0, -24.0, 24.0)
    compressor_threshold_db: float = opt(-18.0, -60.0, 0.0)
    compressor_ratio: float = opt(2.5, 1.0, 20.0)
    reverb_room_size: float = opt(0.35, 0.0, 1.0)
    reverb_wet: float = opt(0.18, 0.0, 1.0)
    bitcrush_bits: float = opt(0.0, 0.0, 32.0)
    resample_hz: float = opt(0.0, 0.0, 192000.0)
    crackle_per_second: float = opt(6.0, 0.0, 1000.0)
    crackle_db: float = opt(-30.0, -120.0, 0.0)
    hiss_db: float = opt(-48.0, -120.0, 0.0)
    wow_cents: float = opt(8.0, 0.0, 100.0)
    flutter_cents: float = opt(2.0, 0.0, 50.0)
    target_lufs: float = opt(-14.0, -40.0, -5.0)
    true_peak_db: float = opt(-1.0, -20.0, 0.0)
    workers: int = opt(2, 1, 64, role=RUNTIME)


@dataclass
class ExportConfig:
    bitrate_kbps: int = opt(192, 32, 320)
    artist: str = opt("lofi_pipeline")
    playlist_dir: str = opt("", role=RUNTIME)
    workers: int = opt(2, 1, 64, role=RUNTIME)


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    arrange: ArrangeConfig = field(default_factory=ArrangeConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    master: MasterConfig = field(default_factory=MasterConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    profile: str = "default"

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


def _frozen(value):
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items()}
    return tuple(value) if isinstance(value, list) else value


def field_role(section: str, key: str) -> str:
    f = {f.name: f for f in dataclasses.fields(globals()[SECTION_CLASSES[section]])}[key]
    return f.metadata.get("role", PARAM)


class SectionView:
    """One config section as a stage sees it: the keys it declared, read-only. It travels to
    worker processes and Ray tasks as it is (it pickles), so domain code reads settings by
    attribute whether it runs in the stage or in a worker."""
    __slots__ = ("_values", "_owner", "_name")

    def __init__(self, values: dict[str, Any], owner: str, name: str):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_name", name)

    def __getattr__(self, key: str):
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"stage {self._owner} does not read {self._name}.{key}: add it to the stage's "
                                 "`reads` so that it is part of the stage's key") from None

    def __setattr__(self, key, value):
        raise AttributeError(f"config is read-only inside stage {self._owner}")

    def __reduce__(self):
        return SectionView, (self._values, self._owner, self._name)


class ParamView:
    """What a stage may know of the config: exactly the keys it declared, read-only.
    Reading anything else raises, so a setting cannot change output without changing the key."""
    __slots__ = ("_sections", "_owner")

    def __init__(self, sections: dict[str, SectionView], owner: str):
        object.__setattr__(self, "_sections", sections)
        object.__setattr__(self, "_owner", owner)

    def __getattr__(self, name: str) -> SectionView:
        try:
            return self._sections[name]
        except KeyError:
            raise AttributeError(f"stage {self._owner} reads nothing from config section [{name}]: add it to "
                                 "the stage's `reads`") from None

    def __setattr__(self, key, value):
        raise AttributeError(f"config is read-only inside stage {self._owner}")

    def items(self):
        """(section.key, value) for every key in the view."""
        for name, view in self._sections.items():
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

# Built-in profiles; a config file may add its own as [profile.NAME] tables.
PROFILES = {
    "quick": {  # a tiny smoke run for tests and trying things: well under a minute end to end
        "intake": {"max_files": 24}, "encode": {"window": 12},
        "train": {"members": 2, "epochs": 2, "embed_dim": 16, "conv_filters": 16, "kernel_sizes": [3, 5],
                  "lstm_units": [16, 24]},
        "generate": {"tracks": 2, "bars": 4}, "arrange": {"intro_bars": 1, "outro_bars": 1}},
}

# Keys that moved: a config file that still names the old place is told where they went.
MOVED = {"generate.checks_quantile": "encode.checks_quantile"}

SECTIONS = [f.name for f in dataclasses.fields(Config) if f.name != "profile"]
SECTION_CLASSES = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "profile"}


def _check_value(key: str, f: dataclasses.Field, value: Any) -> Any:
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
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. train.epochs=5")
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
    if any((not isinstance(w, (int, float))) or w < 0 for w in g.weights):
        raise ConfigError("config key generate.weights: weights must be numbers >= 0")
    if cfg.run.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("config key run.executor: 'ray' needs Ray, which is not installed: "
                          "pip install -e '.[ray]' (on every node of the cluster)")
    if cfg.master.lowpass_hz >= cfg.render.sample_rate / 2:
        raise ConfigError(f"config key master.lowpass_hz: {cfg.master.lowpass_hz} must be below "
                          f"half the sample rate ({cfg.render.sample_rate / 2:g})")
