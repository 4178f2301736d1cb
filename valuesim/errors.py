"""User errors: a bad file, flag, setting or model, or an unreachable LM. The CLI prints these as one line and
exits 1; any other exception is a bug and keeps its traceback."""

from __future__ import annotations


class ValueSimError(ValueError):
    """Something the user can fix; the message says what and where (file, row, field or flag)."""


class NotFoundError(ValueSimError, FileNotFoundError):
    """A file or folder the user named (or the default benchmark) does not exist."""


class UnknownKeyError(ValueSimError, KeyError):
    """An unknown name or code (a question code, a person id); reads as a sentence, not as KeyError's repr."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ProgramLoadError(ValueSimError):
    """A saved program that is missing, corrupt or built for another program."""
