"""Query results: :class:`Rows` (columns and rows) and :class:`Row`, read by column name or
index, as Python values or with typed getters."""

import decimal
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Union

from .errors import ColumnError
from .values import from_wit


@dataclass(frozen=True)
class Column:
    """A result column: its name and the database's type name for it."""

    name: str
    type_name: str


class Row:
    """One result row. ``row["balance"]``, ``row[0]`` or ``row.get("balance")`` give the
    Python value; ``row.get_int("balance")`` and the other getters also check its type."""

    def __init__(self, columns: List[Column], index: Dict[str, int], values: list):
        self.columns = columns
        self._index = index
        self._values = values

    def _position(self, column: Union[str, int]) -> int:
        if isinstance(column, int):
            if not -len(self.columns) <= column < len(self.columns):
                raise ColumnError(
                    f"no column {column}: the row has {len(self.columns)} columns"
                )
            return column
        try:
            return self._index[column]
        except KeyError:
            names = ", ".join(c.name for c in self.columns)
            raise ColumnError(f"no column `{column}` (columns: {names})") from None

    def __getitem__(self, column: Union[str, int]) -> Any:
        return from_wit(self._values[self._position(column)])

    def get(self, column: Union[str, int]) -> Any:
        """The column's value as a Python value (``None`` for SQL NULL)."""
        return self[column]

    def _typed(self, column: Union[str, int], kinds: tuple, what: str) -> Any:
        """The column's value if it is one of ``kinds`` (NULL is not), else ColumnError."""
        value = self[column]
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            raise ColumnError(
                f"column `{self.columns[self._position(column)].name}` is "
                f"{'NULL' if value is None else type(value).__name__}, not {what}"
            )
        return value

    def get_int(self, column: Union[str, int]) -> int:
        """The column as an ``int``; a whole ``Decimal`` (e.g. MySQL's SUM) counts too."""
        value = self[column]
        if isinstance(value, decimal.Decimal) and value == value.to_integral_value():
            return int(value)
        return self._typed(column, (int,), "an integer")

    def get_float(self, column: Union[str, int]) -> float:
        return float(self._typed(column, (int, float, decimal.Decimal), "a number"))

    def get_str(self, column: Union[str, int]) -> str:
        return self._typed(column, (str,), "text")

    def get_bool(self, column: Union[str, int]) -> bool:
        """The column as a ``bool``; 0 and 1 count too (MySQL and SQLite store booleans as
        integers)."""
        value = self[column]
        if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)
        return self._typed(column, (bool,), "a boolean")

    def get_decimal(self, column: Union[str, int]) -> decimal.Decimal:
        value = self._typed(column, (decimal.Decimal, int), "a decimal")
        return decimal.Decimal(value)

    def get_bytes(self, column: Union[str, int]) -> bytes:
        return self._typed(column, (bytes,), "bytes")

    def as_dict(self) -> Dict[str, Any]:
        """The row as ``{column name: value}``."""
        return {c.name: from_wit(v) for c, v in zip(self.columns, self._values)}

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row({self.as_dict()!r})"


class Rows:
    """The rows of one query, in order."""

    def __init__(self, row_set):
        self.columns: List[Column] = [Column(c.name, c.type_name) for c in row_set.columns]
        index: Dict[str, int] = {}
        for i, column in enumerate(self.columns):
            index.setdefault(column.name, i)
        self._rows = [Row(self.columns, index, values) for values in row_set.rows]

    def first(self) -> Optional[Row]:
        """The first row, or ``None`` when there are none."""
        return self._rows[0] if self._rows else None

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    def __getitem__(self, index: int) -> Row:
        return self._rows[index]

    def __repr__(self) -> str:
        return f"Rows({len(self._rows)} rows, columns {[c.name for c in self.columns]})"
