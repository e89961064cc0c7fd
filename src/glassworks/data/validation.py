"""Shared validation of loaded data: every source (synthetic, files, hub) hands its raw splits to
:func:`build_loaded_data`, so all of them reject bad data with the same, precise messages
(file, 1-based row, column) before any MLflow run exists."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from datasets import Dataset, DatasetDict, Features, List, Value

from glassworks.data.errors import DataError
from glassworks.data.words import words

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "validation", "test")

FEATURES = Features(
    {"text": Value("string"), "label": Value("int64"), "rationale": List(Value("int8"))}
)


@dataclass
class LoadedData:
    """Validated splits: ``splits`` has "train", "validation", "test" with columns ``text``,
    ``label`` (0..C-1) and ``rationale`` (0/1 per whitespace word; [] without rationales)."""

    splits: DatasetDict
    label_names: list[str]
    name: str
    source_uri: str
    has_rationales: bool

    @property
    def n_classes(self) -> int:
        return len(self.label_names)


@dataclass
class RawSplit:
    """One split as read from its origin, before any checks. ``rows`` are the 1-based rows of
    the origin (data rows of a file) so errors point at what the user can open."""

    texts: list[Any]
    labels: list[Any]
    origin: str
    rows: list[int] | None = None
    rationales: list[Any] | None = None
    text_column: str = "text"
    label_column: str = "label"
    rationale_column: str | None = None

    def __post_init__(self) -> None:
        assert len(self.texts) == len(self.labels), "texts and labels must align"
        assert self.rows is None or len(self.rows) == len(self.texts)
        assert self.rationales is None or len(self.rationales) == len(self.texts)

    def row(self, i: int) -> int:
        return self.rows[i] if self.rows is not None else i + 1


# Column names a text or label column commonly has, for the suggestion in a missing-column error.
_COLUMN_HINTS = {
    "text column": ("text", "sentence", "review", "content", "comment", "body", "document", "tweet", "question"),
    "label column": ("label", "sentiment", "class", "category", "target", "rating", "polarity"),
}


def require_columns(available: Sequence[str], wanted: dict[str, str | None], origin: str) -> None:
    """Raise naming the column, the file, the columns that do exist and the override that fixes it.

    ``wanted`` maps a role ("text column") to the configured column name (None = not wanted);
    the role's key under ``data.source`` is its name with "_" ("text_column").
    """
    for role, column in wanted.items():
        if column is not None and column not in available:
            listing = ", ".join(repr(c) for c in available) or "none"
            hint = _suggest_column(role, available, [c for c in wanted.values() if c is not None])
            fix = f"; give data.source.{role.replace(' ', '_')}={hint}" if hint else ""
            raise DataError(
                f"missing {role} {column!r}; available columns: {listing}{fix}",
                origin=origin,
                column=column,
            )


def _suggest_column(role: str, available: Sequence[str], taken: Sequence[str]) -> str | None:
    """The available column most likely meant for `role`: one named like it, else the only free one."""
    free = [str(c) for c in available if c not in taken]
    for hint in _COLUMN_HINTS.get(role, ()):
        for column in free:
            if hint in column.lower():
                return column
    return free[0] if len(free) == 1 else None


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return math.isnan(float(value))
    # pandas.NA / NaT have no common base class; their truth value raises or is NA.
    return type(value).__name__ in ("NAType", "NaTType")


def _label_kind(value: Any) -> str | None:
    """"str", "int", or None for an unusable label value."""
    if isinstance(value, str):
        return "str"
    if isinstance(value, (bool, np.bool_)):
        return None  # a bool label is almost always a bug upstream; refuse rather than guess
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        x = float(value)
        return "int" if math.isfinite(x) and x.is_integer() else None
    return None


def _parse_rationale(value: Any) -> list[int] | None:
    """0/1 list from a list/array or from a string ("[0, 1]" or "0 1"); None when unparsable."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return None
        else:
            value = text.replace(",", " ").split()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return None
    out: list[int] = []
    for v in value:
        if isinstance(v, str) and v.strip() in ("0", "1"):
            out.append(int(v.strip()))
        elif isinstance(v, (bool, np.bool_, numbers.Integral)) and int(v) in (0, 1):
            out.append(int(v))
        else:
            return None
    return out


def _value_list(values: list[int]) -> str:
    """[1, 2, 3, 4, 5] -> "1..5"; [0, 2, 7] -> "0, 2, 7"."""
    if values == list(range(values[0], values[0] + len(values))):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(map(str, values))


def _stripped_labels(rs: RawSplit, split: str) -> RawSplit:
    """`rs` with its string labels' surrounding whitespace removed: "positive " written by a
    spreadsheet is the class "positive", not a second one. A label of spaces alone is missing."""
    labels = [label.strip() for label in rs.labels]
    changed = [i for i, (a, b) in enumerate(zip(rs.labels, labels)) if a != b]
    if not changed:
        return rs
    for i in changed:
        if not labels[i]:
            raise DataError(f"missing label (whitespace only) in the {split} split",
                            origin=rs.origin, row=rs.row(i), column=rs.label_column)
    logger.warning("%s: %d labels had surrounding whitespace, removed (first: row %d, %r)",
                   rs.origin, len(changed), rs.row(changed[0]), rs.labels[changed[0]])
    return dataclasses.replace(rs, labels=labels)


def _warn_labels_differing_in_case(raw: dict[str, RawSplit]) -> None:
    """Warn about string labels that differ only in case ("Positive" and "positive"): they are
    separate classes, which is almost never meant; the file, or label_names, decides."""
    counts = Counter(label for rs in raw.values() for label in rs.labels)
    spellings: dict[str, list[str]] = {}
    for label in sorted(counts):
        spellings.setdefault(label.casefold(), []).append(label)
    clashes = [group for group in spellings.values() if len(group) > 1]
    if clashes:
        logger.warning(
            "labels that differ only in case are separate classes: %s; if each group is one class, "
            "write it one way in the data",
            "; ".join(" / ".join(f"{label!r} ({counts[label]} rows)" for label in group) for group in clashes))


def _carve_counts(n: int, fractions: list[float]) -> list[int]:
    """Per-class sizes of the carved splits: every carved split gets at least one example of the
    class when the class is big enough for that, and train always keeps at least one."""
    counts = [int(round(n * f)) for f in fractions]
    if n >= len(fractions) + 1:
        counts = [max(1, c) for c in counts]
    while sum(counts) > max(n - 1, 0) and any(counts):
        i = int(np.argmax(counts))
        counts[i] -= 1
    return counts


def build_loaded_data(
    raw: dict[str, RawSplit],
    *,
    name: str,
    source_uri: str,
    label_names: list[str] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_seed: int = 0,
    has_rationales: bool = False,
) -> LoadedData:
    """Check every row, map labels to 0..C-1, carve missing validation/test splits from train
    (seeded, stratified), and check every final split; raise :class:`DataError` on bad data."""
    assert "train" in raw, "a train split is required"
    assert set(raw) <= set(SPLITS), f"unknown split names {set(raw) - set(SPLITS)}"

    for split, rs in raw.items():
        if not rs.texts:
            raise DataError(f"the {split} split is empty (no data rows)", origin=rs.origin)
        for i, text in enumerate(rs.texts):
            if _is_null(text) or (isinstance(text, str) and not text.strip()):
                raise DataError(
                    f"empty or whitespace-only text in the {split} split",
                    origin=rs.origin, row=rs.row(i), column=rs.text_column,
                )
            if not isinstance(text, str):
                raise DataError(
                    f"text must be a string, got {type(text).__name__} {text!r} "
                    f"(in the {split} split)",
                    origin=rs.origin, row=rs.row(i), column=rs.text_column,
                )

    # Labels: one kind (strings or integers) across all splits.
    first_kind: tuple[str, str, int] | None = None  # (kind, origin, row)
    for split, rs in raw.items():
        for i, label in enumerate(rs.labels):
            if _is_null(label):
                raise DataError(
                    f"missing (null) label in the {split} split",
                    origin=rs.origin, row=rs.row(i), column=rs.label_column,
                )
            kind = _label_kind(label)
            if kind is None:
                raise DataError(
                    f"label {label!r} ({type(label).__name__}) is neither a string nor an integer",
                    origin=rs.origin, row=rs.row(i), column=rs.label_column,
                )
            if first_kind is None:
                first_kind = (kind, rs.origin, rs.row(i))
            elif kind != first_kind[0]:
                raise DataError(
                    f"label {label!r} is a{'n integer' if kind == 'int' else ' string'} but "
                    f"{first_kind[1]} row {first_kind[2]} has a"
                    f"{'n integer' if first_kind[0] == 'int' else ' string'} label; "
                    "labels must be all strings or all integers",
                    origin=rs.origin, row=rs.row(i), column=rs.label_column,
                )
    assert first_kind is not None
    kind = first_kind[0]

    index: dict[Any, int] = {}  # label -> class, unless an integer label is its own class
    if kind == "str":
        raw = {split: _stripped_labels(rs, split) for split, rs in raw.items()}
        _warn_labels_differing_in_case(raw)
        names = list(label_names) if label_names is not None else sorted(
            {label for rs in raw.values() for label in rs.labels}
        )
        index = {n: i for i, n in enumerate(names)}
    else:
        if label_names is not None:
            names = list(label_names)
        else:
            for split, rs in raw.items():
                for i, label in enumerate(rs.labels):
                    if int(label) < 0:
                        raise DataError(
                            f"negative label {label!r}: integer labels must not be negative "
                            "(a -1 usually marks an unlabelled split, e.g. GLUE test)",
                            origin=rs.origin, row=rs.row(i), column=rs.label_column,
                        )
            values = sorted({int(label) for rs in raw.values() for label in rs.labels})
            names = [str(v) for v in values]
            if values != list(range(len(values))):
                # Star ratings 1..5 are five classes, not six with an empty class 0.
                logger.info("integer labels %s are classes 0..%d, named by their values",
                            _value_list(values), len(values) - 1)
                index = {v: i for i, v in enumerate(values)}

    mapped: dict[str, list[int]] = {}
    for split, rs in raw.items():
        ints: list[int] = []
        for i, label in enumerate(rs.labels):
            if kind == "str" or index:
                value = index.get(label if kind == "str" else int(label))
            else:
                value = int(label) if 0 <= int(label) < len(names) else None
            if value is None:
                allowed = names if kind == "str" else f"0..{len(names) - 1} ({names})"
                hint = (
                    "; a negative label usually marks an unlabelled split (e.g. GLUE test): "
                    "use a labelled split instead"
                    if kind == "int" and int(label) < 0 else ""
                )
                raise DataError(
                    f"label {label!r} is not in the label set {allowed}{hint}",
                    origin=rs.origin, row=rs.row(i), column=rs.label_column,
                )
            ints.append(value)
        mapped[split] = ints

    rationales: dict[str, list[list[int]]] = {}
    for split, rs in raw.items():
        if not has_rationales:
            rationales[split] = [[] for _ in rs.texts]
            continue
        assert rs.rationales is not None, "has_rationales needs rationales on every split"
        parsed: list[list[int]] = []
        for i, (text, value) in enumerate(zip(rs.texts, rs.rationales)):
            r = None if _is_null(value) else _parse_rationale(value)
            if r is None:
                raise DataError(
                    f"rationale {value!r} is not a list of 0/1 values",
                    origin=rs.origin, row=rs.row(i), column=rs.rationale_column,
                )
            n_words = len(words(text))
            if len(r) != n_words:
                raise DataError(
                    f"rationale has {len(r)} values but the text has {n_words} words "
                    "(separated by spaces; each CJK character is one)",
                    origin=rs.origin, row=rs.row(i), column=rs.rationale_column,
                )
            parsed.append(r)
        rationales[split] = parsed

    # Final splits as (origin, rows, texts, labels, rationales).
    final: dict[str, tuple[str, list[int], list[str], list[int], list[list[int]]]] = {}
    for split, rs in raw.items():
        final[split] = (
            rs.origin, [rs.row(i) for i in range(len(rs.texts))], list(rs.texts),
            mapped[split], rationales[split],
        )

    missing = [s for s in SPLITS if s not in raw]
    if missing:
        origin, rows, texts, labels, rats = final["train"]
        fractions = [{"validation": val_fraction, "test": test_fraction}[s] for s in missing]
        rng = np.random.default_rng(split_seed)
        chosen: dict[str, list[int]] = {s: [] for s in missing}
        for c in range(len(names)):
            members = [i for i, y in enumerate(labels) if y == c]
            perm = rng.permutation(len(members))
            start = 0
            for s, k in zip(missing, _carve_counts(len(members), fractions)):
                chosen[s].extend(members[j] for j in perm[start:start + k])
                start += k
        taken = {i for idx in chosen.values() for i in idx}
        # Keep file order inside every split so row numbers read naturally.
        keep = [i for i in range(len(texts)) if i not in taken]

        def pick(idx: list[int], where: str) -> tuple:
            idx = sorted(idx)
            return (where, [rows[i] for i in idx], [texts[i] for i in idx],
                    [labels[i] for i in idx], [rats[i] for i in idx])

        for s in missing:
            final[s] = pick(chosen[s], f"{origin} ({s} split carved from train)")
        final["train"] = pick(keep, origin)

    for split in SPLITS:
        origin, rows, texts, labels, _ = final[split]
        if not texts:
            raise DataError(
                f"the {split} split is empty (too few rows to carve it from train?)",
                origin=origin,
            )
        classes = set(labels)
        if len(classes) < 2:
            only = names[next(iter(classes))]
            raise DataError(
                f"the {split} split has a single class ({only!r}, {len(texts)} rows); "
                "every split needs at least two classes",
                origin=origin, column=raw["train"].label_column,
            )
    unseen = [names[c] for c in range(len(names)) if c not in set(final["train"][3])]
    if unseen:
        logger.warning("classes with no training example: %s", unseen)

    splits = DatasetDict(
        {
            split: Dataset.from_dict(
                {"text": final[split][2], "label": final[split][3], "rationale": final[split][4]},
                features=FEATURES,
            )
            for split in SPLITS
        }
    )
    counts = {s: dict(Counter(names[y] for y in final[s][3])) for s in SPLITS}
    logger.info("loaded %s: %s", name, counts)
    return LoadedData(
        splits=splits, label_names=names, name=name, source_uri=source_uri,
        has_rationales=has_rationales,
    )
