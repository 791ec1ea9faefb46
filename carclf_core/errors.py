"""One root for every refusal carclf makes: ``CarclfError(message, hint)``.

A ``CarclfError`` is an expected failure with words for the user: it names the file or config key it
is about and, where there is one, what to do (``hint``). Anything else that escapes a stage is a bug
or an environment failure (disk full, out of memory) and is reported with its type. So the CLI and the
stage runner need one ``isinstance`` to tell the two apart, and nobody re-wraps errors to keep their
text.
"""

from __future__ import annotations


class CarclfError(Exception):
    """An expected failure whose message is meant for the user.

    Args:
        message: what is wrong, naming the file or config key.
        hint: what to do about it; appended to ``str(error)`` after "; ".
    """

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class ConfigError(CarclfError):
    """A configuration problem, always naming the key path (``train.patience``) or file it is about."""

    def __init__(self, key: str, message: str, hint: str = ""):
        super().__init__(f"{key}: {message}", hint)
        self.key = key


class DatasetError(CarclfError):
    """The data cannot be used as asked (missing folder, no usable image, a class too small)."""


class ModelError(CarclfError):
    """A model cannot be built or loaded; the message names the config key (``train.weights``)."""


class RunError(CarclfError):
    """A run folder is missing, locked, damaged or not a carclf run."""


class StageError(CarclfError):
    """A stage cannot run: a missing input, a result that would be wrong, a stop it had to make."""
