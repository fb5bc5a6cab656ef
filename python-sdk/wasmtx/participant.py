"""Participants: handles on the open transactions of the running global transaction, and
their SQL dialects."""

import enum
from typing import Any, List

from componentize_py_types import Err
from wit_world.imports import sql, types

from . import errors, values
from .rows import Rows


class Dialect(enum.Enum):
    """A participant's SQL dialect; placeholders are the dialect's own."""

    POSTGRES = "postgres"
    MYSQL = "mysql"
    SQLITE = "sqlite"

    def placeholder(self, n: int) -> str:
        """The ``n``-th placeholder (from 1): ``$n`` for PostgreSQL, ``?`` otherwise."""
        return f"${n}" if self is Dialect.POSTGRES else "?"

    def placeholders(self, count: int) -> str:
        """The first ``count`` placeholders, comma-separated: ``$1, $2`` or ``?, ?``."""
        return ", ".join(self.placeholder(n) for n in range(1, count + 1))

    def quote_ident(self, ident: str) -> str:
        """``ident`` quoted as an identifier (``"user"``, or `` `user` `` for MySQL)."""
        quote = "`" if self is Dialect.MYSQL else '"'
        return quote + ident.replace(quote, quote + quote) + quote

    def __str__(self) -> str:
        return self.value


_DIALECTS = {
    types.Dialect.POSTGRES: Dialect.POSTGRES,
    types.Dialect.MYSQL: Dialect.MYSQL,
    types.Dialect.SQLITE: Dialect.SQLITE,
}


class Participant:
    """One participant's open transaction. The host owns the transaction: a script only
    sends statements; it never commits or rolls back."""

    def __init__(self, handle: "sql.Participant"):
        self._handle = handle
        self.name: str = handle.name()
        self.dialect: Dialect = _DIALECTS[handle.dialect()]

    @classmethod
    def named(cls, name: str) -> "Participant":
        """The participant with this name; raises :class:`NoSuchParticipant`."""
        try:
            return cls(sql.Participant.named(name))
        except Err as e:
            raise errors.from_wit(e.value) from None

    def execute(self, statement: str, *params: Any) -> int:
        """Runs one statement and returns the number of rows it affected."""
        try:
            return self._handle.execute(statement, _params(params))
        except Err as e:
            raise errors.from_wit(e.value) from None

    def query(self, statement: str, *params: Any) -> Rows:
        """Runs one statement and returns its rows."""
        try:
            return Rows(self._handle.query(statement, _params(params)))
        except Err as e:
            raise errors.from_wit(e.value) from None

    def __repr__(self) -> str:
        return f"Participant({self.name!r}, {self.dialect})"


def participants() -> List[Participant]:
    """All participants of the running transaction, in configuration order."""
    return [Participant(handle) for handle in sql.participants()]


def _params(params: tuple) -> list:
    return [values.to_wit(value, i) for i, value in enumerate(params, start=1)]
