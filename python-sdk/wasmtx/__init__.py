"""wasmtx: the Python SDK for writing wasmtx transaction scripts.

A script is the *prepare* logic of one global transaction, built with componentize-py into
a WebAssembly component of the WIT world ``wasmtx:script/script@0.1.0``. The host opens a
transaction on every participant database, calls the script once, and then commits
everywhere if it returned, or rolls back everywhere if it aborted (raised :class:`Abort` or
another :class:`Error`), raised any other exception (a trap, its traceback in the error),
or a statement failed in a database. A script never commits or rolls back itself.

Example (``app.py``)::

    import wasmtx

    @wasmtx.run
    def main(request: dict) -> dict:
        a = wasmtx.Participant.named("a")
        sql = f"UPDATE t SET x = {a.dialect.placeholder(1)} WHERE id = {a.dialect.placeholder(2)}"
        changed = a.execute(sql, 5, request["id"])
        for row in a.query("SELECT x FROM t"):
            wasmtx.debug(f"x = {row.get_int('x')}")
        if changed != 1:
            raise wasmtx.Abort(f"expected one row, changed {changed}")
        return {"changed": changed}

Build it (componentize-py pinned in ``python-sdk/requirements.txt``)::

    componentize-py -d wit -w script componentize -p python-sdk -p DIR app -o script.wasm

or let ``wasmtx run DIR`` do it.
"""

from .errors import (
    Abort,
    BadParameter,
    ColumnError,
    DatabaseError,
    Error,
    Forbidden,
    LimitExceeded,
    NoSuchParticipant,
)
from .log import debug, error, info, log, trace, warn
from .participant import Dialect, Participant, participants
from .rows import Column, Row, Rows
from .run import run, run_text
from .values import Json, Timestamp

__all__ = [
    "Abort",
    "BadParameter",
    "Column",
    "ColumnError",
    "DatabaseError",
    "Dialect",
    "Error",
    "Forbidden",
    "Json",
    "LimitExceeded",
    "NoSuchParticipant",
    "Participant",
    "Row",
    "Rows",
    "Timestamp",
    "debug",
    "error",
    "info",
    "log",
    "participants",
    "run",
    "run_text",
    "trace",
    "warn",
]
