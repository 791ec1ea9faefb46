"""Messages of the dashboard: from its workers (posted from threads with ``post_message``) and from
its panes to the screen."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from carclf_core.runstate import RunState


class StateUpdated(Message):
    """The follower folded new events: here is the whole new state (never mutated afterwards).

    Only the newest state matters, so a queued one is replaced instead of piling up (the
    coalescing that keeps a fast event stream from flooding the UI).
    """

    def __init__(self, state: RunState) -> None:
        super().__init__()
        self.state = state

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StateUpdated)


class ThresholdApplied(Message):
    """``prefilter.reapply`` finished for a threshold chosen in the prefilter panel."""

    def __init__(self, result: dict[str, Any], written: bool) -> None:
        super().__init__()
        self.result = result
        self.written = written


class ThresholdFailed(Message):
    """``prefilter.reapply`` could not run (no stored scores yet, module missing, ...)."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class RunRequested(Message):
    """The stages pane asks for ``stages`` to run (``r``, ``a``); the screen, which owns the runner,
    starts them."""

    def __init__(self, stages: tuple[str, ...]) -> None:
        super().__init__()
        self.stages = stages
