"""TextDataModule: batches, padding, truncation and duplicate counts, digest, pickling."""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
import pytest
import torch

from glassworks.data import FilesSource, SyntheticSource, TextDataModule, TokenizerConfig
from glassworks.data.datamodule import data_digest
from glassworks.validation import ConfigError

TINY = dict(n_train=64, n_validation=16, n_test=16)


def _dm(source=None, **kwargs) -> TextDataModule:
    args = dict(tokenizer=TokenizerConfig(), max_length=32, batch_size=8)
    args.update(kwargs)
    return TextDataModule(source or SyntheticSource(**TINY), **args)


@pytest.fixture(scope="module")
def dm() -> TextDataModule:
    module = _dm()
    module.prepare()
    return module


def test_batches_are_dynamically_padded(dm):
    batch = next(iter(dm.val_dataloader()))
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert ids.dtype == mask.dtype == labels.dtype == torch.long
    assert ids.shape == mask.shape and ids.shape[0] == 8 and labels.shape == (8,)
    lengths = mask.sum(1)
    assert ids.shape[1] == lengths.max() <= 32  # padded to the longest in the batch
    assert (ids[:, 0] == dm.tokenizer.cls_id).all()
    assert (ids[mask == 0] == dm.tokenizer.pad_id).all() and (ids[mask == 1] != 0).all()
    assert mask[:, 0].all() and (mask[:, :-1] >= mask[:, 1:]).all()  # right padding
    first = dm.splits["validation"][0]
    assert labels[0] == first["label"]
    assert ids[0, : lengths[0]].tolist() == dm.tokenizer.encode(first["text"], 32).ids
    assert dm.token_ids("validation")[0] == ids[0, : lengths[0]].tolist()


def test_attributes_and_stats(dm):
    assert dm.label_names == ["negative", "positive"] and dm.n_classes == 2
    assert dm.vocab_size == dm.tokenizer.vocab_size and dm.has_rationales
    assert dm.name == "synthetic-sentiment" and dm.source_uri.startswith("synthetic://")
    stats = dm.stats
    assert stats["sizes"] == {"train": 64, "validation": 16, "test": 16}
    assert stats["class_counts"]["train"] == {"negative": 32, "positive": 32}
    assert stats["n_truncated"] == 0 and stats["n_duplicates_across_splits"] == 0
    assert len(dm.digest) == 64 and int(dm.digest, 16) >= 0
    frame = dm.split_frame("test")
    assert list(frame.columns) == ["text", "label", "rationale"] and len(frame) == 16
    assert len(frame["rationale"][0]) == len(frame["text"][0].split())


def test_train_loader_shuffles_with_seeded_generator(dm):
    def first_labels_and_ids(module):
        return [b["input_ids"][:, 1].tolist() for b in module.train_dataloader()]

    again = _dm()
    again.prepare()
    other = _dm(seed=1)
    other.prepare()
    order = first_labels_and_ids(dm)
    assert order == first_labels_and_ids(again)
    assert order != first_labels_and_ids(other)
    n = sum(len(b["labels"]) for b in dm.train_dataloader())
    assert n == 64
    val = [b["labels"].tolist() for b in dm.val_dataloader()]
    assert sum(val, []) == dm.splits["validation"]["label"]  # eval loaders keep file order


def test_truncated_texts_are_counted():
    module = _dm(max_length=6)
    module.prepare()
    texts = [t for s in module.splits.values() for t in s["text"]]
    lengths = [len(module.tokenizer.encode(t).ids) for t in texts]
    assert module.stats["n_truncated"] == sum(n > 6 for n in lengths) > 0
    assert max(len(ids) for ids in module.token_ids("train")) == 6


def _csv(path: Path, texts: list[str], labels: list[str]) -> str:
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return str(path)


def test_duplicates_across_splits_are_counted(tmp_path, caplog):
    train = [f"train sentence {i}" for i in range(10)]
    labels = ["a", "b"] * 5
    src = FilesSource(
        train=_csv(tmp_path / "train.csv", train, labels),
        validation=_csv(tmp_path / "val.csv", ["Train  sentence 0", "fresh one"], ["a", "b"]),
        test=_csv(tmp_path / "test.csv", ["fresh one", "train sentence 3", "new"], ["b", "b", "a"]),
    )
    module = _dm(src)
    with caplog.at_level("WARNING"):
        module.prepare()
    assert module.stats["n_duplicates_across_splits"] == 3
    assert module.stats["n_duplicates_per_split"] == {"validation": 1, "test": 2}
    assert "also appear in an earlier split" in caplog.text


def test_digest_is_stable_and_tracks_the_data(tmp_path):
    texts = [f"text {i}" for i in range(6)]
    files = dict(
        train=_csv(tmp_path / "train.csv", texts, ["x", "y"] * 3),
        validation=_csv(tmp_path / "val.csv", ["v 1", "v 2"], ["x", "y"]),
        test=_csv(tmp_path / "test.csv", ["t 1", "t 2"], ["y", "x"]),
    )
    a, b = _dm(FilesSource(**files)), _dm(FilesSource(**files))
    a.prepare()
    b.prepare()
    # Pinned value: the digest must not depend on the process (no hash()) or the run.
    assert a.digest == b.digest == data_digest(a.splits, a.label_names) == (
        "1be7840709e03c05e8c76e4b112a1dcc42361a7a91e4a65767bdba9c8487eb5e"
    )
    files["test"] = _csv(tmp_path / "test2.csv", ["t 1", "t 2"], ["x", "y"])
    c = _dm(FilesSource(**files))
    c.prepare()
    assert c.digest != a.digest


def test_picklable_after_prepare_and_prepare_is_idempotent(dm):
    calls = []
    source = SyntheticSource(**TINY)

    class Counting:
        def load(self):
            calls.append(1)
            return source.load()

    module = _dm(Counting())
    module.setup("fit")
    module.prepare()
    assert len(calls) == 1
    clone = pickle.loads(pickle.dumps(dm))
    assert clone.digest == dm.digest and clone.stats == dm.stats
    batch, original = next(iter(clone.val_dataloader())), next(iter(dm.val_dataloader()))
    assert all(torch.equal(batch[k], original[k]) for k in batch)


def test_use_before_prepare_and_bad_args():
    module = _dm()
    with pytest.raises(RuntimeError, match="prepare"):
        _ = module.tokenizer
    pickle.dumps(module)
    with pytest.raises(ConfigError, match="max_length"):
        _dm(max_length=1)
    with pytest.raises(ConfigError, match="batch_size"):
        _dm(batch_size=0)
    with pytest.raises(ConfigError, match="tokenizer"):
        _dm(tokenizer={"kind": "bpe"})
