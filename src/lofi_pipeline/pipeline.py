"""The stages in pipeline order."""
from __future__ import annotations

from .core.runner import Stage
from .stages.arrange import ArrangeStage
from .stages.drums import DrumsStage
from .stages.encode import EncodeStage
from .stages.export import ExportStage
from .stages.extract import ExtractStage
from .stages.generate import GenerateStage
from .stages.intake import IntakeStage
from .stages.master import MasterStage
from .stages.render import RenderStage
from .stages.stems import StemsStage
from .stages.train import TrainStage


def build_stages() -> list[Stage]:
    return [IntakeStage(), ExtractStage(), EncodeStage(), TrainStage(), GenerateStage(),
            DrumsStage(), ArrangeStage(), RenderStage(), MasterStage(), StemsStage(), ExportStage()]


STAGE_NAMES = [s.name for s in build_stages()]


def stages_through(name: str) -> list[str]:
    """The stages up to and including `name`: what a second run needs from a first to start after it."""
    return STAGE_NAMES[:STAGE_NAMES.index(name) + 1]
