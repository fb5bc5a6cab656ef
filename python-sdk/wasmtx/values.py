"""SQL values between Python and the WIT ``value`` variant.

Parameters: ``None``, ``bool``, ``int`` (64-bit), ``float``, ``str``, ``bytes`` /
``bytearray``, ``decimal.Decimal``, ``datetime.date``, ``datetime.time``, a naive
``datetime.datetime``, an aware one or :class:`Timestamp` (a timestamptz), ``uuid.UUID``,
and :class:`Json` (any JSON-serializable object, sent as a JSON document).

Results come back as the same Python types; a timestamptz as an aware ``datetime`` in UTC,
a JSON document parsed.
"""

import datetime
import decimal
import json
import uuid
from typing import Any

from wit_world.imports import types

from .errors import BadParameter

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_INT64 = range(-(2**63), 2**63)


class Json:
    """A JSON document parameter: ``Json({"a": 1})`` is sent as the text ``{"a": 1}``."""

    def __init__(self, document: Any):
        self.document = document

    def __repr__(self) -> str:
        return f"Json({self.document!r})"


class Timestamp:
    """A point in time as UTC microseconds since the Unix epoch (timestamptz)."""

    def __init__(self, micros: int):
        self.micros = micros

    @classmethod
    def from_datetime(cls, moment: datetime.datetime) -> "Timestamp":
        """An aware ``datetime`` as a timestamp."""
        return cls((moment - _EPOCH) // datetime.timedelta(microseconds=1))

    def to_datetime(self) -> datetime.datetime:
        return _EPOCH + datetime.timedelta(microseconds=self.micros)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timestamp) and other.micros == self.micros

    def __repr__(self) -> str:
        return f"Timestamp({self.micros})"


def _wit_date(d: datetime.date) -> "types.Date":
    return types.Date(year=d.year, month=d.month, day=d.day)


def _wit_time(t: datetime.time) -> "types.Time":
    return types.Time(
        hour=t.hour, minute=t.minute, second=t.second, nanosecond=t.microsecond * 1000
    )


def to_wit(value: Any, position: int = 0) -> "types.Value":
    """The WIT value for one parameter (``position`` counts from 1, for the message)."""
    if value is None:
        return types.Value_Null()
    if isinstance(value, bool):
        return types.Value_Boolean(value)
    if isinstance(value, int):
        if value not in _INT64:
            raise BadParameter(f"parameter {position}: {value} does not fit in 64 bits")
        return types.Value_Int64(value)
    if isinstance(value, float):
        return types.Value_Float64(value)
    if isinstance(value, str):
        return types.Value_Text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return types.Value_Bytes(bytes(value))
    if isinstance(value, decimal.Decimal):
        return types.Value_Decimal(str(value))
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            return types.Value_Timestamp(Timestamp.from_datetime(value).micros)
        return types.Value_Datetime(
            types.Datetime(date=_wit_date(value.date()), time=_wit_time(value.time()))
        )
    if isinstance(value, datetime.date):
        return types.Value_Date(_wit_date(value))
    if isinstance(value, datetime.time):
        return types.Value_Time(_wit_time(value))
    if isinstance(value, Timestamp):
        return types.Value_Timestamp(value.micros)
    if isinstance(value, uuid.UUID):
        return types.Value_Uuid(str(value))
    if isinstance(value, Json):
        return types.Value_Json(json.dumps(value.document))
    raise BadParameter(
        f"parameter {position}: a {type(value).__name__} has no SQL type "
        "(wrap documents in wasmtx.Json)"
    )


def from_wit(value: "types.Value") -> Any:
    """The Python value for a WIT value from a result row."""
    if isinstance(value, types.Value_Null):
        return None
    if isinstance(
        value,
        (types.Value_Boolean, types.Value_Int64, types.Value_Float64, types.Value_Text),
    ):
        return value.value
    if isinstance(value, types.Value_Bytes):
        return bytes(value.value)
    if isinstance(value, types.Value_Decimal):
        return decimal.Decimal(value.value)
    if isinstance(value, types.Value_Date):
        d = value.value
        return datetime.date(d.year, d.month, d.day)
    if isinstance(value, types.Value_Time):
        return _time(value.value)
    if isinstance(value, types.Value_Datetime):
        d = value.value.date
        return datetime.datetime.combine(datetime.date(d.year, d.month, d.day), _time(value.value.time))
    if isinstance(value, types.Value_Timestamp):
        return Timestamp(value.value).to_datetime()
    if isinstance(value, types.Value_Uuid):
        return uuid.UUID(value.value)
    if isinstance(value, types.Value_Json):
        return json.loads(value.value)
    raise TypeError(f"unknown WIT value {value!r}")


def _time(t: "types.Time") -> datetime.time:
    return datetime.time(t.hour, t.minute, t.second, t.nanosecond // 1000)
