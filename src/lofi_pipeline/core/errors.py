"""Errors that stop a stage. Each message is one line saying what went wrong and where."""
from __future__ import annotations


class StageError(RuntimeError):
    """A stage cannot go on; the message is one line saying what and where."""
