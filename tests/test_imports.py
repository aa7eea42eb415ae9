"""The import graph has layers: core at the bottom; music and audio on it; the models on music;
the stages (and their catalog) on all of those; the corpora the base models learn from on music;
the report on the stages; the longer commands (`lofi evaluate`, `lofi base`) on all of those;
the CLI and the pipeline list at the top level, and the web app beside them. Nothing imports
upward, a stage imports no other stage, and only the CLI and the pipeline list import stages."""
import ast
import re
from pathlib import Path

import lofi_pipeline
from lofi_pipeline.pipeline import build_stages

PACKAGE_DIR = Path(lofi_pipeline.__file__).parent
MAY_IMPORT = {
    "core": {"core"},
    "music": {"core", "music"},
    "audio": {"core", "audio"},
    "model": {"core", "music", "model"},
    "corpora": {"core", "music", "corpora"},
    "stages": {"core", "music", "audio", "model", "stages"},
    "reporting": {"core", "music", "audio", "model", "stages", "reporting"},
    "commands": {"core", "music", "audio", "model", "corpora", "stages", "reporting", "commands"},
    # the web app: on the stages' catalog and the report's drawings, never a stage itself
    "web": {"core", "audio", "stages", "reporting", "web", "app"},
}
TOP_LEVEL = {"__init__", "__main__", "cli", "pipeline"}  # the rest of the package is in its folders
STAGE_IMPORTERS = {"cli", "pipeline"}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name below it ('stages.render', 'cli')."""
    found = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
        found[".".join(parts)] = path
    return found


def layer(module: str) -> str:
    """A module's layer: its folder, or "app" for the package's top-level modules."""
    return module.split(".")[0] if "." in module else "app"


def package_imports(module: str) -> set[str]:
    """Package modules (dotted below the package) that `module` imports, function-level ones included."""
    path = modules()[module]
    base = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[:len(base) - (node.level - 1)]
                stem = ".".join([*anchor, *(node.module.split(".") if node.module else [])])
            elif (node.module or "").startswith("lofi_pipeline"):
                stem = node.module.removeprefix("lofi_pipeline").lstrip(".")
            else:
                continue
            names = [f"{stem}.{a.name}" if stem else a.name for a in node.names]
            found |= {n for n in names if n in modules()} or {stem}
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("lofi_pipeline.") for a in node.names if a.name.startswith("lofi_pipeline.")}
    return {m for m in found if m}


def stage_modules() -> set[str]:
    return {type(s).__module__.removeprefix("lofi_pipeline.") for s in build_stages()}


def test_every_module_sits_in_a_layer_and_imports_nothing_above_it():
    assert {layer(m) for m in modules()} == {*MAY_IMPORT, "app"}
    assert {m for m in modules() if layer(m) == "app"} == TOP_LEVEL
    for module in modules():
        if layer(module) == "app":
            continue
        upward = {m for m in package_imports(module) if layer(m) not in MAY_IMPORT[layer(module)]}
        assert not upward, f"{module} ({layer(module)}) imports {sorted(upward)}"


def test_a_stage_imports_no_other_stage_and_only_the_cli_and_the_pipeline_list_import_stages():
    stages = stage_modules()
    assert stages == {f"stages.{s.name}" for s in build_stages()}
    for module in modules():
        imported = package_imports(module) & stages
        if module in stages:
            assert not imported, f"{module} imports another stage: {sorted(imported)}"
            assert {"core.runner", "stages.catalog"} <= package_imports(module), module
        elif module not in STAGE_IMPORTERS:
            assert not imported, f"{module} imports stages {sorted(imported)}"


def test_only_the_catalog_opens_another_stages_files():
    """Stages, the report and `lofi evaluate` read artifacts through the catalog's readers."""
    for module, path in modules().items():
        if module == "stages.catalog":
            continue
        source = path.read_text()
        for name in ("pieces.json", "tracks.json", "takes.json", "vocab.json", "data.npz", "profile.json",
                     "members.json", "metrics.json", "exports.json", "renders.json", "masters.json", "split.json"):
            assert f'"{name}"' not in source, f"{module} names {name}: read it through stages/catalog.py"


def says_why_it_is_long(docstring: str) -> bool:
    """A sentence that says the module is long, and why ("It is long because ..."), not the word
    "long" anywhere ("before any long work starts")."""
    return re.search(r"\b(is|are) long\b", " ".join(docstring.split()), re.IGNORECASE) is not None


def test_long_modules_say_why_they_are_long():
    for module, path in modules().items():
        lines = path.read_text().count("\n")
        if lines > 300:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert says_why_it_is_long(doc), f"{module} has {lines} lines and no sentence on why in its docstring"
    assert not says_why_it_is_long("Checked before any long work starts.")
    assert says_why_it_is_long("It is long\nbecause every contract is here.")
