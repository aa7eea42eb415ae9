"""The stages in pipeline order."""
from __future__ import annotations

from .arrange import ArrangeStage
from .encode import EncodeStage
from .export import ExportStage
from .extract import ExtractStage
from .generate import GenerateStage
from .intake import IntakeStage
from .master import MasterStage
from .render import RenderStage
from .runner import Stage
from .train import TrainStage


def build_stages() -> list[Stage]:
    return [IntakeStage(), ExtractStage(), EncodeStage(), TrainStage(), GenerateStage(),
            ArrangeStage(), RenderStage(), MasterStage(), ExportStage()]


STAGE_NAMES = [s.name for s in build_stages()]
