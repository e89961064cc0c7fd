"""TextTokenizer: specials, [CLS], truncation, word ids back to whitespace words, save/load."""

from __future__ import annotations

import pickle
import re

import pytest

from glassworks.data import TextTokenizer, TokenizerConfig, token_rationale
from glassworks.data.words import word_spans, words
from glassworks.validation import ConfigError

TEXTS = [
    "The movie was not great, and the plot felt long.",
    "A wonderful film! Truly wonderful.",
    "the acting was dull and boring",
    "Unbelievably charming: never dull",
]


@pytest.fixture(scope="module", params=["wordlevel", "bpe"])
def tok(request) -> TextTokenizer:
    return TextTokenizer.train(TEXTS, TokenizerConfig(kind=request.param, vocab_size=120))


def test_specials_have_fixed_ids(tok):
    assert [tok.pad_id, tok.unk_id, tok.cls_id, tok.mask_id] == [0, 1, 2, 3]
    assert tok.special_ids == (tok.pad_id, tok.unk_id, tok.cls_id, tok.mask_id)  # what robustness never substitutes
    assert [tok.id_to_token(i) for i in range(4)] == ["[PAD]", "[UNK]", "[CLS]", "[MASK]"]
    assert tok.token_to_id("[MASK]") == 3 and tok.token_to_id("zzzz-not-a-token") == 1
    assert tok.vocab_size <= 120


def test_encoding_starts_with_cls_and_maps_tokens_to_words(tok):
    text = "The movie was NOT great, really."
    enc = tok.encode(text)
    assert enc.ids[0] == tok.cls_id and enc.tokens[0] == "[CLS]"
    assert enc.offsets[0] == (0, 0) and enc.word_ids[0] is None
    assert len(enc.ids) == len(enc.tokens) == len(enc.offsets) == len(enc.word_ids)
    words = text.split()
    for (start, end), w in zip(enc.offsets[1:], enc.word_ids[1:]):
        # Every token's span lies inside the whitespace word it is mapped to.
        assert text[start:end] in words[w]
    # "great," is one whitespace word even though the pre-tokenizer splits off the comma.
    comma = enc.tokens.index(",")
    assert enc.word_ids[comma] == 4 and enc.word_ids[comma - 1] == 4
    assert set(w for w in enc.word_ids if w is not None) == set(range(len(words)))


def test_word_ids_survive_unicode_and_odd_spacing(tok):
    text = "  İstanbul\u2003café—naïve\tgreat  "
    enc = tok.encode(text)
    words = text.split()
    assert max(w for w in enc.word_ids if w is not None) == len(words) - 1
    for (start, end), w in zip(enc.offsets[1:], enc.word_ids[1:]):
        assert text[start:end] in words[w]


def test_truncation_counts_cls(tok):
    enc = tok.encode(TEXTS[0], max_length=4)
    assert len(enc.ids) == 4 and enc.ids[0] == tok.cls_id
    assert tok.encode(TEXTS[0], max_length=1).ids == [tok.cls_id]
    full = tok.encode(TEXTS[0])
    assert enc.ids == full.ids[:4] and enc.word_ids == full.word_ids[:4]
    ids, n_full = tok.encode_ids(TEXTS, max_length=5)
    assert all(len(i) <= 5 for i in ids) and n_full[0] == len(full.ids)
    with pytest.raises(ValueError, match="max_length"):
        tok.encode("x", max_length=0)


def test_batch_matches_single(tok):
    assert tok.encode_batch(TEXTS, max_length=8) == [tok.encode(t, max_length=8) for t in TEXTS]


def test_save_load_roundtrip_and_pickle(tok, tmp_path):
    tok.save(tmp_path / "tk")
    assert (tmp_path / "tk" / "tokenizer.json").exists()
    assert (tmp_path / "tk" / "tokenizer_meta.json").exists()
    loaded = TextTokenizer.load(tmp_path / "tk")
    probe = TEXTS + ["completely unseen words, here!"]
    assert loaded.encode_batch(probe, 6) == tok.encode_batch(probe, 6)
    assert loaded.config == tok.config and loaded.vocab_size == tok.vocab_size
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode_batch(probe) == tok.encode_batch(probe)


def test_decode_and_lowercase(tok):
    enc = tok.encode("the ACTING was dull")
    assert "[CLS]" not in tok.decode(enc.ids)
    assert tok.decode(enc.ids).replace(" ", "") == "theactingwasdull"
    assert tok.decode(enc.ids, skip_special_tokens=False).startswith("[CLS]")


def test_wordlevel_unknown_and_case_sensitive():
    cased = TextTokenizer.train(TEXTS, TokenizerConfig(lowercase=False))
    assert cased.encode("The").ids[1] != cased.encode("the").ids[1]
    assert cased.encode("qwerty").ids == [2, 1]


def test_token_rationale_projects_words_onto_tokens(tok):
    text = "the movie was not great, sadly"
    enc = tok.encode(text)
    word_rat = [0, 0, 0, 1, 1, 0]
    rat = token_rationale(word_rat, enc.word_ids)
    assert len(rat) == len(enc.ids) and rat[0] == 0
    assert rat == [0 if w is None else word_rat[w] for w in enc.word_ids]
    assert token_rationale([], enc.word_ids) == []
    with pytest.raises(IndexError):
        token_rationale([1], enc.word_ids)


@pytest.mark.parametrize(
    "kwargs, key",
    [(dict(kind="sentencepiece"), "kind"), (dict(vocab_size=3), "vocab_size"),
     (dict(min_frequency=0), "min_frequency"), (dict(lowercase="yes"), "lowercase")],
)
def test_config_errors(kwargs, key):
    with pytest.raises(ConfigError) as err:
        TokenizerConfig(**kwargs)
    assert err.value.key == key


def test_cjk_characters_are_tokens_and_words_of_their_own(tok):
    """Chinese and Japanese are written without spaces: each of their characters is a token and
    a word (data/words.py), so a sentence is not one unknown token; other text is as before."""
    texts = ["这部电影很无聊。", "这部电影很好看！", "日本語のテキスト and English, too"]
    cjk = TextTokenizer.train(texts * 2, TokenizerConfig(kind=tok.config.kind, vocab_size=120))
    enc = cjk.encode("这部电影很无聊。")
    assert enc.tokens[1:] == list("这部电影很无聊。") and enc.word_ids[1:] == list(range(8))
    assert cjk.unk_id not in cjk.encode("电影很好看").ids
    mixed = cjk.encode("日本語 and English, too")
    assert mixed.tokens[1:4] == ["日", "本", "語"] and mixed.word_ids[1:] == [0, 1, 2, 3, 4, 4, 5]


@pytest.mark.parametrize("text", [TEXTS[0], "  tabs\tand\nnewlines  ", "naïve café — “quoted” 🙂 x²", "한국어 문장입니다", ""])
def test_words_are_whitespace_words_without_cjk(text):
    assert words(text) == text.split() and word_spans(text) == [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def test_words_split_cjk_characters():
    assert words("我喜欢这部电影, really") == ["我", "喜", "欢", "这", "部", "电", "影", ",", "really"]
    assert words("カタカナとひらがな𠀀") == list("カタカナとひらがな𠀀")  # kana and a supplementary-plane ideograph
