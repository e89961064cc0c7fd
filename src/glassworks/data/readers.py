"""Reading local CSV / TSV / JSONL / Parquet files into plain columns with 1-based data row
numbers, turning every read failure into a :class:`DataError` that names the file (and row)."""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glassworks.data.errors import DataError

logger = logging.getLogger(__name__)

FORMATS: dict[str, tuple[str, ...]] = {
    "csv": (".csv", ".tsv"),
    "jsonl": (".jsonl", ".ndjson", ".json"),
    "parquet": (".parquet", ".pq"),
}

_INT_RE = re.compile(r"^[+-]?\d+$")


@dataclass
class Table:
    """Columns of one file; ``rows[i]`` is the 1-based data row (JSONL: line) of example i."""

    origin: str
    columns: list[str]
    data: dict[str, list[Any]]
    rows: list[int]


def infer_format(path: Path, explicit: str | None, key: str) -> str:
    if explicit is not None:
        return explicit
    suffix = path.suffix.lower()
    for fmt, suffixes in FORMATS.items():
        if suffix in suffixes:
            return fmt
    known = ", ".join(s for suffixes in FORMATS.values() for s in suffixes)
    raise DataError(
        f"cannot tell the format from the extension {suffix!r} (known: {known}); "
        f"give data.source.format={'|'.join(FORMATS)}",
        key=key, origin=str(path),
    )


def _read_text(path: Path, key: str, header_lines: int, encoding: str) -> str:
    """Decode the whole file (a UTF-8 byte order mark dropped), reporting the line/data row of
    the first byte `encoding` cannot decode."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read file: {e.strerror or e}", key=key, origin=str(path)) from e
    utf8 = codecs.lookup(encoding).name == "utf-8"
    if utf8 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        row = line - header_lines
        # Excel on Windows saves "CSV" in the machine's code page (cp1252 in Western Europe and
        # the Americas), where every byte decodes: the likeliest other encoding to name.
        hint = "; if the file is in another encoding, name it: data.source.encoding=cp1252 (Excel on Windows)" if utf8 else ""
        raise DataError(
            f"not valid {'UTF-8' if utf8 else encoding}: byte {raw[e.start:e.start + 1]!r} at line {line} "
            f"(data row {row}, byte offset {e.start}): {e.reason}{hint}",
            key=key, origin=str(path), row=row if row >= 1 else None,
        ) from e


# What a spreadsheet may separate a CSV file's fields with: Excel writes ';' where the decimal
# separator is a comma (most of Europe), and '|' and tabs are common exports too.
DELIMITERS = (",", "\t", ";", "|")


def csv_delimiter(header: str, suffix: str, columns: list[str]) -> str:
    """The delimiter of a CSV file whose first line is `header`: a tab for ``.tsv``; otherwise the
    first of DELIMITERS whose header names every one of `columns`, or, when none does (a column
    is misnamed, and the error will list the header's names), the one that splits the header
    into the most fields (a comma on a tie)."""
    if suffix == ".tsv":
        return "\t"
    fields = {d: next(csv.reader([header], delimiter=d), []) for d in DELIMITERS}
    for d in DELIMITERS:
        if all(c in fields[d] for c in columns):
            return d
    return max(DELIMITERS, key=lambda d: len(fields[d]))  # max keeps the first on a tie


def _read_csv(path: Path, key: str, columns: list[str], label_column: str, delimiter: str | None,
              encoding: str) -> Table:
    import pandas as pd

    text = _read_text(path, key, header_lines=1, encoding=encoding)
    sep = delimiter
    if sep is None:
        sep = csv_delimiter(text.split("\n", 1)[0].rstrip("\r"), path.suffix.lower(), columns)
        if sep != ("\t" if path.suffix.lower() == ".tsv" else ","):
            logger.info("%s: reading fields separated by %r (its header line; "
                        "data.source.delimiter sets it)", path, sep)
    try:
        # dtype=str: a text column of digits must stay text; only empty cells count as missing
        # (so a review that reads "NA" or "null" is kept as text).
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[""]
        )
    except pd.errors.EmptyDataError as e:
        raise DataError("file is empty (no header, no rows)", key=key, origin=str(path)) from e
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(f"cannot parse CSV: {e}", key=key, origin=str(path)) from e
    available = [str(c) for c in frame.columns]
    data = {c: frame[c].tolist() for c in columns if c in available}
    labels = data.get(label_column)
    if labels is not None:
        # CSV has no types: labels written as integers are integers, as pandas would read them.
        present = [v for v in labels if isinstance(v, str)]
        if present and all(_INT_RE.match(v.strip()) for v in present):
            data[label_column] = [int(v) if isinstance(v, str) else v for v in labels]
    return Table(str(path), available, data, list(range(1, len(frame) + 1)))


def _read_jsonl(path: Path, key: str, columns: list[str], encoding: str) -> Table:
    """JSON Lines (one object a line, rows are line numbers), or for a file whose first character
    is '[' one JSON array of objects (what ``DataFrame.to_json(orient="records")`` writes; rows
    are 1-based element numbers)."""
    text = _read_text(path, key, header_lines=0, encoding=encoding)
    if text.lstrip().startswith("["):
        return _read_json_array(path, key, columns, text)
    records: list[dict[str, Any]] = []
    rows: list[int] = []
    # split("\n"), not splitlines(): JSON strings may legally hold U+2028 and friends.
    for line_no, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"invalid JSON on line {line_no}: {e.msg} (char {e.pos})",
                key=key, origin=str(path), row=line_no,
            ) from e
        _require_object(record, f"line {line_no}", path, key, line_no)
        records.append(record)
        rows.append(line_no)
    return _records_table(path, columns, records, rows)


def _read_json_array(path: Path, key: str, columns: list[str], text: str) -> Table:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}",
                        key=key, origin=str(path)) from e
    for i, record in enumerate(records, start=1):
        _require_object(record, f"element {i} of the array", path, key, i)
    return _records_table(path, columns, records, list(range(1, len(records) + 1)))


def _require_object(record: Any, where: str, path: Path, key: str, row: int) -> None:
    if not isinstance(record, dict):
        raise DataError(f"{where} is a JSON {type(record).__name__}, expected an object",
                        key=key, origin=str(path), row=row)


def _records_table(path: Path, columns: list[str], records: list[dict[str, Any]], rows: list[int]) -> Table:
    available: dict[str, None] = {}
    for record in records:
        available.update(dict.fromkeys(record))
    data = {c: [r.get(c) for r in records] for c in columns if c in available}
    return Table(str(path), list(available), data, rows)


def _read_parquet(path: Path, key: str, columns: list[str]) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DataError(f"cannot read Parquet file: {e}", key=key, origin=str(path)) from e
    available = list(table.column_names)
    data = {c: table.column(c).to_pylist() for c in columns if c in available}
    return Table(str(path), available, data, list(range(1, table.num_rows + 1)))


def read_table(
    path: str | Path, *, key: str, fmt: str | None, columns: list[str], label_column: str,
    delimiter: str | None = None, encoding: str = "utf-8",
) -> Table:
    """Read ``columns`` (those present) of the file configured under ``key``; a CSV file's fields
    separated by `delimiter`, or when None by the one its header line shows (:func:`csv_delimiter`);
    CSV and JSON text decoded from `encoding`."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError("file not found", key=key, origin=str(p))
    if p.is_dir():
        raise DataError("expected a file, found a directory", key=key, origin=str(p))
    fmt = infer_format(p, fmt, key)
    logger.debug("reading %s as %s", p, fmt)
    if fmt == "csv":
        return _read_csv(p, key, columns, label_column, delimiter, encoding)
    if fmt == "jsonl":
        return _read_jsonl(p, key, columns, encoding)
    return _read_parquet(p, key, columns)
