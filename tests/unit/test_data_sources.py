"""Data sources and the shared validation: synthetic generator, local files, offline hub."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from glassworks.data import DataError, FilesSource, HubSource, SyntheticSource
from glassworks.data.synthetic import NEGATIONS, NEGATIVE, POSITIVE
from glassworks.validation import ConfigError

TINY = dict(n_train=60, n_validation=20, n_test=20)


def _rows(loaded, split):
    ds = loaded.splits[split]
    return list(zip(ds["text"], ds["label"], ds["rationale"]))


# ---- synthetic ---------------------------------------------------------------------------


def test_synthetic_is_deterministic_per_seed():
    a = SyntheticSource(**TINY, seed=1).load()
    b = SyntheticSource(**TINY, seed=1).load()
    c = SyntheticSource(**TINY, seed=2).load()
    for split in ("train", "validation", "test"):
        assert _rows(a, split) == _rows(b, split)
        assert _rows(a, split) != _rows(c, split)
    assert a.label_names == ["negative", "positive"]
    assert a.has_rationales and a.source_uri.startswith("synthetic://")


def test_synthetic_shape_balance_and_lengths():
    src = SyntheticSource(**TINY, min_words=10, max_words=14)
    loaded = src.load()
    assert {s: len(d) for s, d in loaded.splits.items()} == {
        "train": 60, "validation": 20, "test": 20}
    for split in loaded.splits:
        labels = loaded.splits[split]["label"]
        assert sorted(set(labels)) == [0, 1] and sum(labels) == len(labels) // 2
        for text, _, rat in _rows(loaded, split):
            assert 10 <= len(text.split()) <= 14 and len(rat) == len(text.split())
    all_texts = [t for s in loaded.splits.values() for t in s["text"]]
    assert len(all_texts) == len(set(all_texts)), "no text is repeated across splits"


def _label_from_evidence(words: list[str]) -> tuple[int | None, set[int]]:
    """Re-derive the label from the planted evidence, and the word positions that decide it."""
    votes, decisive = set(), set()
    for i, w in enumerate(words):
        if w in POSITIVE or w in NEGATIVE:
            polarity = 1 if w in POSITIVE else 0
            decisive.add(i)
            if i and words[i - 1] in NEGATIONS:
                polarity = 1 - polarity
                decisive.add(i - 1)
            votes.add(polarity)
    assert len(votes) == 1, f"evidence must agree: {words}"
    return votes.pop(), decisive


def test_rationale_marks_evidence_and_flipping_negation_and_negation_flips_label():
    loaded = SyntheticSource(n_train=200, n_validation=20, n_test=20, negation_prob=0.5,
                             distractor_prob=0.5).load()
    n_negated = n_distractor = 0
    for text, label, rat in _rows(loaded, "train"):
        words = text.split()
        derived, decisive = _label_from_evidence(words)
        assert derived == label
        assert {i for i, m in enumerate(rat) if m} == decisive
        flips = [i for i in decisive if words[i] in NEGATIONS]
        n_negated += bool(flips)
        # Negations elsewhere (distractors) negate nothing evaluative and are not marked.
        n_distractor += any(w in NEGATIONS and not rat[i] for i, w in enumerate(words))
    assert n_negated > 20 and n_distractor > 20


def test_label_noise_touches_train_labels_only():
    clean = SyntheticSource(n_train=400, n_validation=50, n_test=50, seed=3).load()
    noisy = SyntheticSource(n_train=400, n_validation=50, n_test=50, seed=3, label_noise=0.3).load()
    for split in ("validation", "test"):
        assert _rows(clean, split) == _rows(noisy, split)
    assert clean.splits["train"]["text"] == noisy.splits["train"]["text"]
    flipped = sum(a != b for a, b in zip(clean.splits["train"]["label"],
                                         noisy.splits["train"]["label"]))
    assert 0.2 * 400 < flipped < 0.4 * 400


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(n_train=0), "n_train"),
        (dict(n_test=1), "n_test"),
        (dict(min_words=20, max_words=12), "min_words"),
        (dict(max_words=4, min_words=2), "max_words"),
        (dict(negation_prob=1.5), "negation_prob"),
        (dict(label_noise=-0.1), "label_noise"),
        (dict(seed="x"), "seed"),
    ],
)
def test_synthetic_config_errors_name_the_field(kwargs, key):
    with pytest.raises(ConfigError) as err:
        SyntheticSource(**kwargs)
    assert err.value.key == key and key in str(err.value)


# ---- local files ---------------------------------------------------------------------------

TEXTS = [f"sample text number {i} here" for i in range(40)]


def _frame(labels) -> pd.DataFrame:
    return pd.DataFrame({"text": TEXTS[: len(labels)], "label": labels})


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".parquet"])
def test_files_string_labels_with_given_splits(tmp_path, ext):
    labels = ["pos", "neg", "meh"] * 4
    train = _write(_frame(labels), tmp_path / f"train{ext}")
    val = _write(_frame(["neg", "pos", "meh"]), tmp_path / f"val{ext}")
    test = _write(_frame(["meh", "pos"]), tmp_path / f"test{ext}")
    loaded = FilesSource(train=str(train), validation=str(val), test=str(test)).load()
    assert loaded.label_names == ["meh", "neg", "pos"]  # sorted
    assert loaded.splits["train"]["label"][:3] == [2, 1, 0]
    assert loaded.splits["validation"]["text"] == TEXTS[:3]
    assert len(loaded.splits["test"]) == 2 and not loaded.has_rationales
    assert loaded.splits["train"]["rationale"][0] == []
    assert loaded.source_uri == train.resolve().as_uri() and loaded.name == tmp_path.name


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".parquet"])
def test_files_int_labels_and_label_names(tmp_path, ext):
    train = _write(_frame([0, 1] * 20), tmp_path / f"data{ext}")
    loaded = FilesSource(train=str(train)).load()
    assert loaded.label_names == ["0", "1"]
    named = FilesSource(train=str(train), label_names=["bad", "good"]).load()
    assert named.label_names == ["bad", "good"]
    assert named.splits["train"]["label"] == loaded.splits["train"]["label"]


def test_integer_labels_are_the_classes_their_values_name(tmp_path, caplog):
    """Star ratings 1..5 are five classes named "1".."5" (there used to be a sixth, empty class
    "0"); labels 0..C-1 are their own classes as before."""
    def read(values: list[int], name: str):
        loaded = FilesSource(train=str(_write(_frame(values), tmp_path / name))).load()
        value_of = dict(zip(TEXTS, values))
        for split in ("train", "validation", "test"):  # every example keeps its own value
            rows = loaded.splits[split]
            assert [loaded.label_names[y] for y in rows["label"]] == [str(value_of[t]) for t in rows["text"]]
        return loaded

    with caplog.at_level("INFO", logger="glassworks.data.validation"):
        assert read([1, 2, 3, 4, 5] * 8, "ratings.csv").label_names == ["1", "2", "3", "4", "5"]
    assert "integer labels 1..5 are classes 0..4, named by their values" in caplog.text
    assert read([0, 2, 7] * 8, "gaps.csv").label_names == ["0", "2", "7"]
    plain = read([2, 0, 1] * 8, "plain.csv")
    assert plain.label_names == ["0", "1", "2"]
    assert plain.splits["train"]["label"][:3] == [2, 0, 1]


def test_files_string_labels_keep_given_label_order(tmp_path):
    train = _write(_frame(["pos", "neg"] * 10), tmp_path / "train.csv")
    loaded = FilesSource(train=str(train), label_names=["pos", "neg"]).load()
    assert loaded.label_names == ["pos", "neg"]
    # the file says pos, neg, pos, ...: with label_names=[pos, neg] every label follows the text's row
    labels = {text: label for split in loaded.splits.values() for text, label in zip(split["text"], split["label"])}
    expected = dict(zip(_frame(["pos", "neg"] * 10)["text"], [0, 1] * 10))
    assert labels == expected


def test_files_carved_splits_are_seeded_stratified_and_disjoint(tmp_path):
    train = _write(_frame(["a"] * 30 + ["b"] * 10), tmp_path / "train.jsonl")
    src = dict(train=str(train), val_fraction=0.2, test_fraction=0.1)
    one = FilesSource(**src, split_seed=0).load()
    again = FilesSource(**src, split_seed=0).load()
    other = FilesSource(**src, split_seed=1).load()
    for split in ("train", "validation", "test"):
        assert _rows(one, split) == _rows(again, split)
    assert _rows(one, "validation") != _rows(other, "validation")
    sizes = {s: len(d) for s, d in one.splits.items()}
    assert sizes == {"train": 28, "validation": 8, "test": 4}
    assert sorted(one.splits["validation"]["label"]) == [0] * 6 + [1] * 2  # stratified
    texts = [set(d["text"]) for d in one.splits.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])


def test_files_format_explicit_and_rationale_column(tmp_path):
    path = tmp_path / "data.txt"
    rows = [{"t": f"w{i} x y", "y": i % 2, "r": [1, 0, 0] if i % 2 else "0 1 0"} for i in range(20)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    loaded = FilesSource(train=str(path), format="jsonl", text_column="t", label_column="y",
                         rationale_column="r").load()
    assert loaded.has_rationales
    by_text = {text: rationale for split in loaded.splits.values()
               for text, rationale in zip(split["text"], split["rationale"])}
    assert sorted(by_text) == sorted(r["t"] for r in rows)  # every row, in some split
    for text, rationale in by_text.items():  # list and space-separated string columns alike
        i = int(text.split()[0][1:])
        assert rationale == ([1, 0, 0] if i % 2 else [0, 1, 0]), text


# ---- hub (offline: a DatasetDict saved to disk goes through the same code path) -------------


def _hub_dir(tmp_path: Path, with_validation: bool = True) -> Path:
    feats = Features({"sentence": Value("string"), "y": ClassLabel(names=["neg", "pos"])})
    def ds(n, offset):
        return Dataset.from_dict({"sentence": [f"hub text {offset + i}" for i in range(n)],
                                  "y": [i % 2 for i in range(n)]}, features=feats)
    splits = {"train": ds(30, 0), "test": ds(8, 100)}
    if with_validation:
        splits["validation"] = ds(6, 200)
    path = tmp_path / "hubdata"
    DatasetDict(splits).save_to_disk(str(path))
    return path


def test_hub_source_offline_with_classlabel(tmp_path):
    path = _hub_dir(tmp_path)
    loaded = HubSource(name=str(path), text_column="sentence", label_column="y").load()
    assert loaded.label_names == ["neg", "pos"]
    sizes = {s: len(d) for s, d in loaded.splits.items()}
    assert sizes == {"train": 30, "validation": 6, "test": 8}
    assert loaded.splits["test"]["text"][0] == "hub text 100"
    assert loaded.name == "hubdata" and loaded.source_uri.startswith("file://")


def test_hub_source_carves_missing_split_and_caps_examples(tmp_path):
    path = _hub_dir(tmp_path, with_validation=False)
    src = HubSource(name=str(path), text_column="sentence", label_column="y", max_examples=20)
    loaded = src.load()
    sizes = {s: len(d) for s, d in loaded.splits.items()}
    assert sizes["train"] + sizes["validation"] == 20 and sizes["validation"] >= 2
    assert sizes["test"] == 8
    assert _rows(loaded, "train") == _rows(src.load(), "train")


def test_hub_missing_column_and_split_are_named(tmp_path):
    path = _hub_dir(tmp_path)
    with pytest.raises(DataError, match=r"'text'.*available columns: 'sentence', 'y'"):
        HubSource(name=str(path), label_column="y").load()
    with pytest.raises(DataError, match=r"no split 'training'.*'train'"):
        HubSource(name=str(path), text_column="sentence", label_column="y",
                  train_split="training").load()


# ---- bad data: one DataError naming file and row/column -------------------------------------


def _csv(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


GOOD_ROWS = "".join(f"good text {i},{'ab'[i % 2]}\n" for i in range(10))


def test_missing_file_names_key_and_path(tmp_path):
    train = _csv(tmp_path / "train.csv", "text,label\n" + GOOD_ROWS)
    missing = tmp_path / "nope" / "val.csv"
    with pytest.raises(DataError) as err:
        FilesSource(train=str(train), validation=str(missing)).load()
    assert str(missing) in str(err.value) and "(validation)" in str(err.value)


def test_invalid_utf8_names_file_and_row(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"text,label\nfine text,a\nmore text,b\nbad \xff\xfe text,a\n")
    with pytest.raises(DataError) as err:
        FilesSource(train=str(path)).load()
    msg = str(err.value)
    assert str(path) in msg and "row 3" in msg and "UTF-8" in msg


def test_missing_column_lists_available(tmp_path):
    path = _csv(tmp_path / "train.csv", "body,label\n" + GOOD_ROWS)
    with pytest.raises(DataError) as err:
        FilesSource(train=str(path)).load()
    msg = str(err.value)
    assert str(path) in msg and "'text'" in msg and "'body', 'label'" in msg


@pytest.mark.parametrize(
    "bad_row, expect",
    [
        (",a", "empty or whitespace-only text in the train split"),
        ('"   ",a', "empty or whitespace-only text"),
        ("some text,", "missing (null) label"),
    ],
)
def test_bad_csv_rows_name_file_and_row(tmp_path, bad_row, expect):
    path = _csv(tmp_path / "train.csv", "text,label\n" + GOOD_ROWS + bad_row + "\n" + GOOD_ROWS)
    with pytest.raises(DataError) as err:
        FilesSource(train=str(path)).load()
    msg = str(err.value)
    assert str(path) in msg and "row 11" in msg and expect in msg


def test_label_outside_label_set_names_row_and_value(tmp_path):
    path = _csv(tmp_path / "train.csv", "text,label\n" + GOOD_ROWS + "odd one,c\n")
    with pytest.raises(DataError) as err:
        FilesSource(train=str(path), label_names=["a", "b"]).load()
    msg = str(err.value)
    assert str(path) in msg and "row 11" in msg and "'c'" in msg
    rows = "".join(f"t {i},{i % 2}\n" for i in range(9))
    ints = _csv(tmp_path / "ints.csv", "text,label\n" + rows + "t x,7\n")
    with pytest.raises(DataError, match=r"row 10.*label 7 is not in the label set"):
        FilesSource(train=str(ints), label_names=["a", "b"]).load()


def test_single_class_and_empty_splits(tmp_path):
    train = _csv(tmp_path / "train.csv", "text,label\n" + GOOD_ROWS)
    one_class = _csv(tmp_path / "val.csv", "text,label\nx y,a\nz w,a\n")
    with pytest.raises(DataError) as err:
        FilesSource(train=str(train), validation=str(one_class)).load()
    assert str(one_class) in str(err.value) and "single class ('a'" in str(err.value)
    empty = _csv(tmp_path / "test.csv", "text,label\n")
    with pytest.raises(DataError) as err:
        FilesSource(train=str(train), test=str(empty)).load()
    assert str(empty) in str(err.value) and "test split is empty" in str(err.value)


def test_jsonl_errors_name_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a b", "label": 0}\n{"text": "c", "label": 1}\n{oops}\n',
                    encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.jsonl.*row 3.*invalid JSON"):
        FilesSource(train=str(path)).load()
    path.write_text('{"text": "a b", "label": 0}\n{"text": "c", "label": null}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.jsonl.*row 2.*column 'label'.*null"):
        FilesSource(train=str(path)).load()
    path.write_text('{"text": "a b", "label": 0}\n{"text": "c", "label": "pos"}\n',
                    encoding="utf-8")
    with pytest.raises(DataError, match=r"row 2.*all strings or all integers"):
        FilesSource(train=str(path)).load()


def test_parquet_null_text_and_bad_rationale(tmp_path):
    frame = _frame([0, 1] * 5)
    frame.loc[4, "text"] = None
    path = _write(frame, tmp_path / "train.parquet")
    with pytest.raises(DataError, match=r"train\.parquet.*row 5.*column 'text'"):
        FilesSource(train=str(path)).load()
    frame = _frame([0, 1] * 5).assign(r=[[0, 0, 0, 0, 1]] * 9 + [[1, 0]])
    path = _write(frame, tmp_path / "rat.parquet")
    with pytest.raises(DataError, match=r"rat\.parquet.*row 10.*2 values but the text has 5"):
        FilesSource(train=str(path), rationale_column="r").load()


def test_unreadable_parquet_and_unknown_extension(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_bytes(b"definitely not parquet")
    with pytest.raises(DataError, match=r"train\.parquet.*cannot read Parquet"):
        FilesSource(train=str(path)).load()
    with pytest.raises(DataError, match=r"\.xlsx"):
        FilesSource(train=str(_csv(tmp_path / "train.xlsx", "x"))).load()


def test_csv_delimiter_is_read_from_the_header_line(tmp_path):
    """An Excel export where the decimal separator is a comma: ';'-separated, a BOM, CRLF line ends,
    texts holding commas. It reads as the comma file does; so does a '|' file, and a comma file
    whose texts hold semicolons stays comma-separated."""
    texts = [f"good, or bad {i}" if i % 2 else f"fine; really {i}" for i in range(12)]
    labels = ["pos", "neg"] * 6
    comma = tmp_path / "comma.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(comma, index=False)
    excel = tmp_path / "excel.csv"
    excel.write_bytes("text;label\r\n".encode("utf-8-sig")
                      + "".join(f'"{t}";{lab}\r\n' for t, lab in zip(texts, labels)).encode())
    piped = tmp_path / "piped.csv"
    piped.write_text("label|text\n" + "".join(f"{lab}|{t}\n" for t, lab in zip(texts, labels)))
    expected = FilesSource(train=str(comma)).load().splits["train"]
    assert expected["text"][:2] == ["fine; really 0", "good, or bad 1"]
    for path in (excel, piped):
        got = FilesSource(train=str(path)).load().splits["train"]
        assert got["text"] == expected["text"] and got["label"] == expected["label"], path.name
    # Given explicitly, it is used as given: the ';' file read with commas has no 'text' column.
    with pytest.raises(DataError, match="available columns: 'text;label'"):
        FilesSource(train=str(excel), delimiter=",").load()
    assert FilesSource(train=str(piped), delimiter="|").load().splits["train"]["text"] == expected["text"]


def test_csv_delimiter_guess_with_a_misnamed_column_lists_the_real_columns(tmp_path):
    path = _csv(tmp_path / "train.csv", "sentence;sentiment\n" + GOOD_ROWS.replace(",", ";"))
    with pytest.raises(DataError) as err:
        FilesSource(train=str(path)).load()
    assert "'sentence', 'sentiment'" in str(err.value) and "text_column=sentence" in str(err.value)
    loaded = FilesSource(train=str(path), text_column="sentence", label_column="sentiment").load()
    assert loaded.splits["train"]["text"][0] == "good text 0"


def test_delimiter_config(tmp_path):
    tsv = _csv(tmp_path / "train.txt", "text\tlabel\n" + GOOD_ROWS.replace(",", "\t"))
    for typed in ("\\t", "tab", "\t"):
        source = FilesSource(train=str(tsv), format="csv", delimiter=typed)
        assert source.delimiter == "\t" and source.load().splits["train"]["text"][0] == "good text 0"
    for bad in ("", ";;", '"', "\n"):
        with pytest.raises(ConfigError, match="delimiter"):
            FilesSource(train="x.csv", delimiter=bad)


def test_cp1252_file_fails_naming_the_encoding_and_reads_with_it(tmp_path):
    """Excel on Windows saves CSV as cp1252: UTF-8 fails at the first accent and says which key
    reads it; with data.source.encoding=cp1252 the texts are the file's."""
    path = tmp_path / "train.csv"
    path.write_bytes("text,label\n".encode() + "".join(f"café crème {i},{'ab'[i % 2]}\n" for i in range(10)).encode("cp1252"))
    with pytest.raises(DataError, match=r"row 1: not valid UTF-8.*data\.source\.encoding=cp1252"):
        FilesSource(train=str(path)).load()
    assert FilesSource(train=str(path), encoding="cp1252").load().splits["train"]["text"][0].startswith("café crème")
    with pytest.raises(ConfigError, match="encoding"):
        FilesSource(train=str(path), encoding="no-such-codec")


def test_json_array_file_reads_as_its_records(tmp_path):
    """pandas' to_json(orient="records") writes one array, not JSON Lines: both read the same."""
    frame = _frame(["pos", "neg"] * 6)
    lines = _write(frame, tmp_path / "lines.jsonl")
    array = tmp_path / "array.json"
    frame.to_json(array, orient="records", indent=1)
    expected = FilesSource(train=str(lines)).load().splits["train"]
    got = FilesSource(train=str(array)).load().splits["train"]
    assert got["text"] == expected["text"] and got["label"] == expected["label"]
    array.write_text(json.dumps([{"text": "a", "label": "x"}, ["not", "an", "object"]]))
    with pytest.raises(DataError, match=r"row 2: element 2 of the array is a JSON list, expected an object"):
        FilesSource(train=str(array)).load()
    array.write_text('[{"text": "a", "label": "x"},\n {"text": }]')
    with pytest.raises(DataError, match=r"invalid JSON at line 2, column 11: Expecting value"):
        FilesSource(train=str(array)).load()


def test_labels_with_surrounding_spaces_are_one_class_and_case_clashes_warned(tmp_path, caplog):
    """"negative " (a spreadsheet's trailing space) is the class "negative"; "Positive" beside
    "positive" stays a class of its own, with a warning naming both and their counts."""
    rows = "".join(f"text {i},{'negative ' if i % 4 == 0 else ' positive' if i % 4 == 1 else ['negative', 'positive'][i % 2]}\n"
                   for i in range(20))
    path = _csv(tmp_path / "train.csv", "text,label\n" + rows)
    with caplog.at_level("WARNING", logger="glassworks.data.validation"):
        loaded = FilesSource(train=str(path)).load()
    assert loaded.label_names == ["negative", "positive"]
    assert "10 labels had surrounding whitespace, removed (first: row 1, 'negative ')" in caplog.text
    path = _csv(tmp_path / "case.csv", "text,label\n" + GOOD_ROWS + "shouted,A\nshouted again,A\n")
    caplog.clear()
    with caplog.at_level("WARNING", logger="glassworks.data.validation"):
        loaded = FilesSource(train=str(path), val_fraction=0.2, test_fraction=0.2).load()
    assert loaded.label_names == ["A", "a", "b"]
    assert "differ only in case are separate classes: 'A' (2 rows) / 'a' (5 rows)" in caplog.text
    with pytest.raises(DataError, match=r"row 3, column 'label': missing label \(whitespace only\)"):
        FilesSource(train=str(_csv(tmp_path / "blank.csv", 'text,label\nt 1,a\nt 2,b\nt 3," "\n'))).load()


def test_files_config_errors():
    with pytest.raises(ConfigError, match="val_fraction"):
        FilesSource(train="x.csv", val_fraction=0.0)
    with pytest.raises(ConfigError, match="label_names"):
        FilesSource(train="x.csv", label_names=["a", "a"])
    with pytest.raises(ConfigError, match="format"):
        FilesSource(train="x.csv", format="xml")


def test_hub_unlabelled_split_is_clear(tmp_path):
    feats = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    train = Dataset.from_dict({"text": [f"t {i}" for i in range(10)], "label": [0, 1] * 5},
                              features=feats)
    test = Dataset.from_dict({"text": ["u 1", "u 2"], "label": [-1, -1]}, features=feats)
    path = tmp_path / "glue_like"
    DatasetDict({"train": train, "test": test}).save_to_disk(str(path))
    with pytest.raises(DataError, match=r"split 'test'.*row 1.*label -1.*unlabelled split"):
        HubSource(name=str(path)).load()
    # A hub that cannot be reached, or answers that the dataset is missing: tests/integration/test_hub_offline.py
