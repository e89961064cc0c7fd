"""LM data with ground truth: evidence points at the right tokens, batches carry the right
targets and masks, the vocabulary round-trips, bad corpora fail with the file named."""

from __future__ import annotations

import pytest

from glassworks.data.errors import DataError
from glassworks.data.lm_datamodule import IGNORE_INDEX, LMDataModule
from glassworks.data.lm_tasks import AgreementTask, CopyTask, LMExample, RecallTask, TextFilesSource
from glassworks.data.lm_vocab import LM_SPECIAL_TOKENS, WordVocab
from glassworks.validation import ConfigError


def _tokens(example: LMExample) -> list[str]:
    return ["[BOS]", *example.prompt, *example.answer]


def test_recall_evidence_is_the_query_the_matching_key_and_its_value():
    for e in RecallTask(n_train=50, n_validation=1, n_test=1).load().splits["train"]:
        key_pos, value_pos, query_pos = e.evidence[0]
        tokens = _tokens(e)
        assert tokens[query_pos] == tokens[key_pos] == e.prompt[-1]
        assert tokens[value_pos] == e.answer[0]
        assert tokens[query_pos - 1] == RecallTask.QUERY
        keys = e.prompt[0:-2:2]
        assert len(set(keys)) == len(keys)  # the match is unique


def test_copy_evidence_is_the_previous_occurrence_and_the_token_after_it():
    for e in CopyTask(n_train=50, n_validation=1, n_test=1).load().splits["train"]:
        tokens = _tokens(e)
        for i, positions in enumerate(e.evidence):
            current = len(e.prompt) + i  # the token before answer token i
            earlier = [p for p in positions if p != current]
            assert tokens[earlier[0]] == tokens[current]  # previous occurrence
            assert tokens[earlier[1]] == e.answer[i]  # the token after it is copied


def test_agreement_evidence_is_the_subject_and_the_foil_is_the_other_verb():
    examples = AgreementTask(n_train=200, n_validation=1, n_test=1).load().splits["train"]
    for e in examples:
        assert e.evidence == [[2]]
        subject = e.prompt[1]
        assert e.answer == [("are" if subject.endswith("s") else "is")]
        assert e.foils == [("is" if e.answer == ["are"] else "are")]
    mismatched = sum(e.prompt[1].endswith("s") != e.prompt[4].endswith("s") for e in examples)
    assert 0.35 < mismatched / len(examples) < 0.65  # the attractor carries no information


def test_tasks_are_seeded_per_split():
    a = RecallTask(n_train=5, n_validation=3, n_test=3, seed=4).load()
    b = RecallTask(n_train=9, n_validation=3, n_test=3, seed=4).load()
    assert a.splits["test"] == b.splits["test"]
    assert a.splits["test"] != RecallTask(n_train=5, n_validation=3, n_test=3, seed=5).load().splits["test"]


def test_bad_task_config_names_the_key():
    with pytest.raises(ConfigError, match="n_keys"):
        RecallTask(n_keys=3, max_pairs=4)
    with pytest.raises(ConfigError, match="min_length"):
        CopyTask(min_length=2, n_repeat=2, n_answer=2)


def test_batches_predict_the_answer_and_eos_and_mark_the_context():
    dm = LMDataModule(RecallTask(n_train=8, n_validation=2, n_test=2), batch_size=4, max_length=32)
    dm.prepare()
    batch = next(iter(dm.val_dataloader()))
    e = dm.examples("validation")[0]
    ids, targets = batch["input_ids"][0], batch["targets"][0]
    n_prompt = 1 + len(e.prompt)
    assert ids[: n_prompt + 2].tolist() == [*dm.vocab.encode_words(e.prompt),
                                            dm.vocab.token_to_id(e.answer[0]), dm.vocab.eos_id]
    # loss on the answer and the closing [EOS] only
    assert targets[n_prompt - 1].item() == dm.vocab.token_to_id(e.answer[0])
    assert targets[n_prompt].item() == dm.vocab.eos_id
    assert (targets != IGNORE_INDEX).sum().item() == 2
    assert batch["answer_mask"][0].nonzero().flatten().tolist() == [n_prompt - 1, n_prompt]
    assert batch["context_mask"][0].nonzero().flatten().tolist() == list(range(1, n_prompt))


def test_a_row_longer_than_max_length_names_split_and_row():
    with pytest.raises(DataError, match=r"train.*row 1.*max_length=5"):
        LMDataModule(RecallTask(n_train=2, n_validation=1, n_test=1), batch_size=2, max_length=5).prepare()


def test_vocab_round_trip_and_specials(tmp_path):
    vocab = WordVocab.from_symbols(["b", "a", "b"])
    assert vocab.tokens == [*LM_SPECIAL_TOKENS, "b", "a"]
    assert vocab.mask_id == 3 and vocab.bos_id == 2 and vocab.eos_id == 4
    vocab.save(tmp_path)
    again = WordVocab.load(tmp_path)
    assert again.tokens == vocab.tokens
    assert again.encode("a zzz") == [2, 6, 1]
    assert again.decode([2, 6, 5, 4]) == "a b"


def test_text_files_blocks_and_loss_on_every_token(tmp_path):
    (tmp_path / "a.txt").write_text(" ".join(f"w{i % 7}" for i in range(200)), encoding="utf-8")
    dm = LMDataModule(TextFilesSource(train=str(tmp_path / "*.txt"), block_words=10), batch_size=4, max_length=12)
    dm.prepare()
    assert sum(len(dm.examples(s)) for s in ("train", "validation", "test")) == 20
    batch = next(iter(dm.train_dataloader()))
    n = batch["attention_mask"][0].sum().item()
    assert (batch["targets"][0, : n - 1] != IGNORE_INDEX).all()  # every next token, no [EOS]
    assert not dm.has_evidence


def test_empty_corpus_is_one_clear_error(tmp_path):
    (tmp_path / "empty.txt").write_text("   \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.txt.*corpus is empty"):
        TextFilesSource(train=str(tmp_path / "empty.txt")).load()
    with pytest.raises(DataError, match="no file matches"):
        TextFilesSource(train=str(tmp_path / "*.md")).load()
