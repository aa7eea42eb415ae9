"""One writer per outputs/ folder: an flock'd lock file that records its owner's pid.

The kernel drops an flock when its process dies, so a lock left by a killed run is stale by
construction and the next run takes it over."""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


class LockedError(RuntimeError):
    pass


class OutputsLock:
    def __init__(self, outputs: Path, wait_s: float = 0.0):
        self.path = Path(outputs) / ".lock"
        self.wait_s = wait_s
        self._fd: int | None = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise LockedError(
                        f"{self.path.parent}/ is in use by another lofi run (pid {owner}); "
                        f"wait for it to finish or pass --wait SECONDS") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
