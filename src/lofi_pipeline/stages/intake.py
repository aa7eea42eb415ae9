"""intake: open the archive (a zip or a folder) safely and keep its MIDI files."""
from __future__ import annotations

from pathlib import Path

from ..core.config import default_of
from ..core.errors import StageError
from ..core.hashing import path_digest
from ..core.runner import Stage, StageContext
from ..music.archive import Limits, MiB, read_archive
from . import catalog


def archive_path(params, root: Path) -> Path:
    return root / (params.run.archive or default_of("run.archive"))  # "": an older lofi.toml's default


class IntakeStage(Stage):
    name = "intake"
    gives = (catalog.SOURCE_MIDI, catalog.SOURCE_FILES)
    reads = ("intake", "run.archive")
    help = "open the archive safely and keep its MIDI files"

    def external_inputs(self, params, root):
        return {"archive": path_digest(archive_path(params, root))}

    def check(self, params, root):
        path = archive_path(params, root)
        if not path.exists():
            hint = ("run `make dataset` to build it" if not params.run.archive
                    else "check the path given to --archive / ARCHIVE=")
            raise StageError(f"{path}: archive not found; {hint}")

    def run(self, ctx: StageContext) -> dict:
        p = ctx.params.intake
        limits = Limits(int(p.max_entry_mib * MiB), int(p.max_total_mib * MiB), p.max_entries,
                        p.max_ratio, int(p.max_read_mib * MiB))
        result = read_archive(archive_path(ctx.params, ctx.root), limits)
        blobs = sorted(result.files, key=lambda b: b.name)[:p.max_files or None]
        for name, reason in result.skipped:
            ctx.log(f"skipped {name!r}: {reason}")
        kept = catalog.write_intake(ctx.out_dir, blobs, result.skipped, result.duplicates)
        ctx.log(f"kept {len(kept)} MIDI files, skipped {len(result.skipped)}, {len(result.duplicates)} duplicates")
        return {"files_kept": len(kept), "files_skipped": len(result.skipped),
                "files_duplicate": len(result.duplicates),
                "bytes_inflated": result.inflated_bytes, "bytes_read": result.read_bytes,
                "skipped_by_reason": result.skip_counts()}
