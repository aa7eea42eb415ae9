import ast
import pickle
import tomllib

import pytest

from helpers import ROOT
from lofi_pipeline.core.config import SECTIONS, SPEC, Config, ConfigError, config_file_text, load_config


def test_lofi_toml_lists_every_key_at_its_default():
    assert (ROOT / "lofi.toml").read_text() == config_file_text(), "run `lofi config > lofi.toml`"
    listed = tomllib.loads((ROOT / "lofi.toml").read_text())
    defaults = Config()
    assert set(listed) == set(SECTIONS)  # every section, and no profile (quick is built in)
    for section in SECTIONS:
        assert set(listed[section]) == set(defaults.section(section)), section
        for key, value in listed[section].items():
            assert value == defaults.section(section)[key], f"{section}.{key}: lofi.toml {value!r}"
    assert load_config(None) == load_config(ROOT / "lofi.toml")  # no file is the same run


def test_profiles_apply_and_quick_is_built_in():
    cfg = load_config(None)
    assert cfg.profile == "default" and cfg.train.members == 3
    quick = load_config(None, "quick")
    assert quick.train.members == 2 and quick.generate.bars == 4 and quick.profile == "quick"
    assert quick.render.sample_rate == cfg.render.sample_rate
    assert load_config(ROOT / "lofi.toml", "quick") == quick


def test_a_file_may_add_profiles_and_a_moved_key_says_where_it_went(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text("[train]\nmax_steps = 5\n[profile.tiny]\ntrain.members = 1\n")
    tiny = load_config(mine, "tiny")
    assert (tiny.train.max_steps, tiny.train.members) == (5, 1)
    with pytest.raises(ConfigError, match=r"config key generate\.checks_quantile is now encode\.checks_quantile"):
        load_config(None, overrides=["generate.checks_quantile=0.1"])
    with pytest.raises(ConfigError, match=r"config key train\.epochs is now train\.max_steps"):
        load_config(None, overrides=["train.epochs=12"])


def test_overrides_are_parsed_as_toml_values():
    cfg = load_config(ROOT / "lofi.toml", None, ["generate.temperature=0.7", "train.kernel_sizes=[3]",
                                                 "run.name=Rainy Days", "arrange.extensions=false"])
    assert cfg.generate.temperature == 0.7 and cfg.train.kernel_sizes == [3]
    assert cfg.run.name == "Rainy Days" and cfg.arrange.extensions is False


def test_master_preset_sets_levels_but_explicit_keys_win():
    dusty = load_config(ROOT / "lofi.toml", None, ["master.preset=dusty"])
    assert dusty.master.crackle_per_second == 14.0
    mixed = load_config(ROOT / "lofi.toml", None, ["master.preset=dusty", "master.crackle_per_second=1"])
    assert mixed.master.crackle_per_second == 1.0
    assert load_config(ROOT / "lofi.toml", None, ["master.preset=clean"]).master.crackle_per_second == 0


@pytest.mark.parametrize("override, message", [
    ("generate.temperature=-1", r"generate\.temperature: expected \"auto\" or a number in \[0\.01, 10\.0\], got -1"),
    ("generate.variation=often", r"generate\.variation: expected \"loop\" or \"data\" or a number in \[0\.0, 1\.0\]"),
    ("generate.top_p=1.5", r"generate\.top_p: expected \"auto\" or a number in \[0\.01, 1\.0\], got 1\.5"),
    ("arrange.tempo_min_bpm=0", r"arrange\.tempo_min_bpm: 0 is out of range \[40, 200\]"),
    ("train.max_steps=many", r"train\.max_steps: expected int, got 'many'"),
    ("train.epoch=3", r"unknown config key train\.epoch"),
    ("nosuch.key=3", r"unknown config section \[nosuch\]"),
    ("master.preset=loud", r"master\.preset: 'loud' is not one of clean, lofi, dusty"),
    ("arrange.tempo_min_bpm=120", r"must not exceed arrange\.tempo_max_bpm"),
    ("generate.combine=weighted", r"generate\.weights: combine='weighted' needs 3 weights"),
])
def test_bad_values_name_the_key_and_the_range(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(ROOT / "lofi.toml", None, [override])
    assert "\n" not in str(err.value)


def test_unknown_profile_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_config(ROOT / "lofi.toml", "huge")
    with pytest.raises(ConfigError, match="config file .*nope.toml not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nmax_steps = 'x'\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*train\.max_steps"):
        load_config(bad)


def test_a_stage_sees_only_the_keys_it_reads_and_cannot_change_them():
    cfg = load_config(ROOT / "lofi.toml")
    view = cfg.view(("generate", "run.seed"), "generate")
    assert view.generate.temperature == cfg.generate.temperature and view.run.seed == cfg.run.seed
    with pytest.raises(AttributeError, match=r"stage generate does not read run\.name: add it"):
        view.run.name
    with pytest.raises(AttributeError, match=r"reads nothing from config section \[master\]"):
        view.master
    with pytest.raises(AttributeError, match="read-only"):
        view.generate.temperature = 2.0
    assert isinstance(view.generate.weights, tuple)  # lists are frozen too
    assert "run.seed" in view.hashed() and "train.threads" in cfg.view(("train",), "t").hashed()
    assert "run.executor" not in cfg.view(("run",), "r").hashed()  # where work runs never changes its bytes
    travelled = pickle.loads(pickle.dumps(view.generate))  # a section goes to worker processes as it is
    assert travelled.temperature == cfg.generate.temperature
    with pytest.raises(AttributeError, match=r"does not read generate\.nope"):
        travelled.nope


def test_every_stage_reads_only_keys_that_exist():
    from lofi_pipeline.pipeline import build_stages
    cfg = load_config(ROOT / "lofi.toml")
    for stage in build_stages():
        cfg.view(stage.reads, stage.name)  # raises ConfigError on an unknown section or key


def restated_defaults(source: str, where: str) -> list[str]:
    """Where `source` restates a settings.toml default: a parameter named as a setting that
    defaults to its value, a constant named as a setting (in capitals) that holds it, a lookup
    `.get("setting", its value)`, or a string equal to a path- or name-like default."""
    defaults: dict[str, list] = {}
    for keys in SPEC.values():
        for key, spec in keys.items():
            defaults.setdefault(key, []).append(spec["default"])
    wordy = {d for ds in defaults.values() for d in ds if isinstance(d, str) and ("/" in d or " " in d)}

    def same(name: str, node) -> bool:
        return (isinstance(node, ast.Constant) and node.value is not None and not isinstance(node.value, bool)
                and any(node.value == d and type(node.value) is type(d) or
                        isinstance(d, float) and isinstance(node.value, int) and node.value == d
                        for d in defaults.get(name, [])))

    found = []
    tree = ast.parse(source)
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args.posonlyargs + node.args.args
            pairs = [*zip(args[len(args) - len(node.args.defaults):], node.args.defaults),
                     *zip(node.args.kwonlyargs, node.args.kw_defaults)]
            found += [f"{where}:{d.lineno} parameter {a.arg} = {d.value!r}" for a, d in pairs if same(a.arg, d)]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [f"{where}:{node.lineno} constant {t.id} = {node.value.value!r}" for t in targets
                      if isinstance(t, ast.Name) and t.id.isupper() and same(t.id.lower(), node.value)]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)):
            key, value = node.args  # a zero is how any manifest's count reads when it is missing: not a setting's
            if same(key.value, value) and value.value:
                found.append(f"{where}:{node.lineno} lookup .get({key.value!r}, {value.value!r})")
        if (isinstance(node, ast.Constant) and id(node) not in docstrings and isinstance(node.value, str)
                and node.value in wordy):
            found.append(f"{where}:{node.lineno} the string {node.value!r}")
    return found


def test_no_default_is_restated_outside_settings_toml():
    """settings.toml is the one source of every default: domain code takes values, not defaults."""
    found = [hit for path in sorted((ROOT / "src").rglob("*.py"))
             for hit in restated_defaults(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "defaults restated outside settings.toml (take the value from the config):\n" + "\n".join(found)
    # the check itself finds what it is for
    assert restated_defaults("def render(midi, sample_rate=44100, gain=0.4): ...", "x.py") == [
        "x.py:1 parameter sample_rate = 44100", "x.py:1 parameter gain = 0.4"]
    assert restated_defaults("BITRATE_KBPS = 192\nARCHIVE = 'dataset/default.zip'", "x.py") == [
        "x.py:1 constant BITRATE_KBPS = 192", "x.py:2 constant ARCHIVE = 'dataset/default.zip'",
        "x.py:2 the string 'dataset/default.zip'"]
    assert restated_defaults("budget.get('adapt', 'all')", "x.py") == ["x.py:1 lookup .get('adapt', 'all')"]
    assert restated_defaults("def f(sample_rate, workers=1):\n    '''dataset/default.zip'''", "x.py") == []
