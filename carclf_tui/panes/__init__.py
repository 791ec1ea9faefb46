"""The dashboard's panes, one a tab, in tab order; each draws its part of the run state and owns its keys."""

from .base import Pane
from .config import ConfigPane
from .confusion import ConfusionPane
from .log import LogPane
from .prefilter import PrefilterPane
from .stages import StagesPane
from .training import TrainingPane

PANES: tuple[type[Pane], ...] = (StagesPane, TrainingPane, ConfusionPane, PrefilterPane, LogPane, ConfigPane)

__all__ = ["PANES", "ConfigPane", "ConfusionPane", "LogPane", "Pane", "PrefilterPane", "StagesPane",
           "TrainingPane"]
