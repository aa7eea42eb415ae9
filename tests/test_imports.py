"""The import graph: a stage imports the runner, shared modules and its direct upstream's
reader, nothing sideways; shared modules import no stage."""
import ast
from pathlib import Path

import lofi_pipeline
from lofi_pipeline.pipeline import build_stages

PACKAGE_DIR = Path(lofi_pipeline.__file__).parent
# Entry points may import anything: they put the stages together.
ENTRY_POINTS = {"__init__", "__main__", "cli", "pipeline", "report", "dataset"}


def package_imports(module: str) -> set[str]:
    """Package modules named by `module`'s imports, function-level ones included."""
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lofi_pipeline."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lofi_pipeline.")}
    return found


def test_stages_import_the_runner_shared_modules_and_their_direct_upstream_only():
    stages = {type(s).__module__.rsplit(".", 1)[1]: s for s in build_stages()}
    by_name = {s.name: module for module, s in stages.items()}
    for module, stage in stages.items():
        upstream = {by_name[u] for u in stage.requires}
        sideways = (package_imports(module) & set(stages)) - upstream
        assert not sideways, f"{module}.py imports other stages: {sorted(sideways)}"
        assert "runner" in package_imports(module)


def test_shared_modules_import_no_stage_and_no_entry_point():
    stages = {type(s).__module__.rsplit(".", 1)[1] for s in build_stages()}
    shared = {p.stem for p in PACKAGE_DIR.glob("*.py")} - stages - ENTRY_POINTS
    assert {"runner", "audio_io", "midi_io", "hashing", "errors", "token_format", "parallel", "performance",
            "chords"} <= shared
    for module in shared:
        bad = package_imports(module) & (stages | ENTRY_POINTS)
        assert not bad, f"shared module {module}.py imports {sorted(bad)}"
