"""The web app's long-lived worker: one process that runs `lofi ARGS` jobs one after another
in itself, through the CLI's own `main` (the same runner, cache, lock and messages), so
Python, TensorFlow and the models that the stages keep loaded between calls (generate's
sampling session, keyed by what it is built from) outlive a job. A tweak or a radio track then
pays for its stages only.

Protocol: a job is one JSON line on stdin, {"args": [...]}; the job's output (stdout and
stderr) comes on stdout, then `lofi-worker: exit N`. Before each job the worker compares its
package's source files with those it started with; changed code answers `lofi-worker:
restart` and exits, and the server starts a fresh worker for the job. SIGTERM stops the job
(the CLI turns it into a prompt stop of its workers); between jobs it ends the worker.

    python -m lofi_pipeline.web.worker
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..core.hashing import file_digest

DONE, RESTART = "lofi-worker: exit", "lofi-worker: restart"
PACKAGE = Path(__file__).resolve().parents[1]


def code_digest() -> dict:
    """The package's Python sources by path and digest (what a restart tells apart)."""
    return {str(p.relative_to(PACKAGE)): file_digest(p) for p in sorted(PACKAGE.rglob("*.py"))}


def serve_jobs() -> int:
    from ..cli import main
    started = code_digest()
    for line in sys.stdin:
        if not line.strip():
            continue
        if code_digest() != started:
            print(RESTART, flush=True)
            return 0
        try:
            code = main(json.loads(line)["args"])
        except SystemExit as exc:  # argparse's own exit on bad options
            code = exc.code if isinstance(exc.code, int) else 2
        except KeyboardInterrupt:
            code = 130
        sys.stderr.flush()
        print(f"{DONE} {code}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(serve_jobs())
    except KeyboardInterrupt:  # SIGTERM between jobs
        sys.exit(143)
