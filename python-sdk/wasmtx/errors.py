"""The SDK's exceptions: the host's WIT ``error`` cases, failures of reading a row, and
:class:`Abort` for a script's own reason to roll back.

Every one is an :class:`Error`; a script decorated with :func:`wasmtx.run` that lets an
``Error`` escape votes abort with its text. Any other exception is a bug: it traps, and the
host's error carries the traceback.
"""

from typing import Optional


class Error(Exception):
    """Any wasmtx failure; ``str(e)`` is one readable line."""


class Abort(Error):
    """Raised by a script to abort the global transaction with this reason."""


class Forbidden(Error):
    """Refused by the host's statement policy; never sent to the database."""

    def __str__(self) -> str:
        return f"forbidden: {self.args[0]}"


class DatabaseError(Error):
    """The database failed the statement. This dooms the global transaction: the host
    rolls it back even if the script then returns."""

    def __init__(self, message: str, code: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        if self.code is not None:
            return f"database error [{self.code}]: {self.message}"
        return f"database error: {self.message}"


class LimitExceeded(Error):
    """A limit was reached: statements, rows, bytes or time."""

    def __str__(self) -> str:
        return f"limit exceeded: {self.args[0]}"


class BadParameter(Error):
    """A parameter this participant cannot take, or a Python value with no SQL type."""

    def __str__(self) -> str:
        return f"bad parameter: {self.args[0]}"


class NoSuchParticipant(Error):
    """No participant has this name."""

    def __str__(self) -> str:
        return str(self.args[0])


class ColumnError(Error):
    """A row has no such column, or its value is not of the type asked for."""


def from_wit(err) -> Error:
    """The exception for a WIT ``error`` value."""
    from wit_world.imports import types

    if isinstance(err, types.Error_Forbidden):
        return Forbidden(err.value)
    if isinstance(err, types.Error_Database):
        return DatabaseError(err.value.message, err.value.code)
    if isinstance(err, types.Error_LimitExceeded):
        return LimitExceeded(err.value)
    if isinstance(err, types.Error_BadParameter):
        return BadParameter(err.value)
    if isinstance(err, types.Error_NoSuchParticipant):
        return NoSuchParticipant(err.value)
    return Error(repr(err))
