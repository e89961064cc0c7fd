"""The one exception type for bad data: its message names the file (or split) and the row or
column, so a user can open the file and fix it without reading a traceback."""

from __future__ import annotations

from glassworks.validation import UserError


class DataError(UserError, ValueError):
    """Bad or unreadable data. ``origin`` is the file path (or hub split / synthetic split),
    ``row`` the 1-based data row, ``column`` the offending column, when known."""

    def __init__(
        self,
        message: str,
        *,
        origin: str | None = None,
        row: int | None = None,
        column: str | None = None,
        key: str | None = None,
    ) -> None:
        self.origin = origin
        self.row = row
        self.column = column
        self.key = key
        where = []
        if origin is not None:
            where.append(origin if key is None else f"{origin} ({key})")
        elif key is not None:
            where.append(key)
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
