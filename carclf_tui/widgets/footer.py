"""The key footer: Textual's, built again only when the keys it shows change."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Footer


class KeysFooter(Footer):
    """Textual's footer recomposes, a new widget for every key, each time the screen's bindings may
    have changed: focus moving, a tab opening, a runner starting. The first frame did it nine times
    for two different sets of keys, and its key widgets were over half of the widgets styled there.
    This one keeps its keys while what they show is the same."""

    _keys_shown: tuple[tuple[Binding, str, bool, str], ...] | None = None

    def _keys(self) -> tuple[tuple[Binding, str, bool, str], ...] | None:
        """What :meth:`Footer.compose` draws from: each shown binding, its key as displayed, whether
        it is enabled and its tooltip; None before the screen's bindings are ready."""
        if not self._bindings_ready:
            return None
        return tuple((binding, self.app.get_key_display(binding), enabled, tooltip)
                     for _, binding, enabled, tooltip in self.screen.active_bindings.values() if binding.show)

    async def recompose(self) -> None:
        if not self.is_attached or self._pruning:  # a screen left: nothing to compare with (nor to compose)
            return
        keys = self._keys()
        if keys == self._keys_shown:
            return
        self._keys_shown = keys
        await super().recompose()
