"""Hugging Face encoders: config validation, the model's own tokenizer, the wrapper's typed
outputs, options and weight files. A tiny random BERT written to a temp folder (no download)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from transformers.utils import logging as transformers_logging

from glassworks.data.pretrained_tokenizer import (
    PretrainedTokenizer,
    PretrainedTokenizerConfig,
    load_tokenizer,
)
from glassworks.explain.attention import RawAttentionExplainer, RolloutExplainer
from glassworks.explain.gradient import input_x_gradient
from glassworks.models.hf_encoder import HFEncoderClassifier, HFEncoderConfig
from glassworks.models.hf_loading import report_load
from glassworks.models.registry import build_from_spec
from glassworks.testing.hf import tiny_bert_dir
from glassworks.tracking.pyfunc import load_model_dir, save_model_files
from glassworks.validation import ConfigError

TEXTS = ["the movie was not good", "a truly wonderful film", "we never saw the trailer",
         "acting was dreadful, plot boring", "loved it"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory.mktemp("bert") / "tiny", TEXTS)


@pytest.fixture(scope="module")
def config(bert_dir) -> HFEncoderConfig:
    return HFEncoderConfig(pretrained=str(bert_dir))


@pytest.fixture(scope="module")
def tok(config) -> PretrainedTokenizer:
    return config.tokenizer().build()


@pytest.fixture(scope="module")
def net(config, tok) -> HFEncoderClassifier:
    torch.manual_seed(0)
    return config.build(tok.vocab_size, n_classes=3, pad_id=tok.pad_id).eval()


# ---- validation: one ConfigError naming the key, before anything is built -----------------

def test_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"pretrained: .*no such folder"):
        HFEncoderConfig(pretrained=str(tmp_path / "nope"))


def test_folder_without_weights_or_tokenizer(bert_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(bert_dir / "config.json", broken / "config.json")
    with pytest.raises(ConfigError, match=r"no weights \(model.safetensors\), no tokenizer"):
        HFEncoderConfig(pretrained=str(broken))


def test_unreachable_hub_id(monkeypatch):
    # huggingface_hub reads HF_HUB_OFFLINE once, at import (torchmetrics imported it long before
    # this test): set its constant too, or the hub is tried with retries (~25 s) before failing.
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="neither a local folder nor a reachable Hugging Face hub id"):
        HFEncoderConfig(pretrained="no-such-org/no-such-model-xyz")


def test_freeze_layers_over_depth(bert_dir):
    with pytest.raises(ConfigError, match=r"freeze_layers: 3 exceeds the model's 2 layers"):
        HFEncoderConfig(pretrained=str(bert_dir), freeze_layers=3)


def test_not_a_sequence_classifier(bert_dir, tmp_path):
    other = tmp_path / "vit"
    shutil.copytree(bert_dir, other)
    (other / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ConfigError, match="model type 'vit' has no sequence-classification head"):
        HFEncoderConfig(pretrained=str(other))


def test_missing_package(tmp_path):
    with pytest.raises(ConfigError, match="package 'no_such_weights_pkg' is not installed"):
        HFEncoderConfig(pretrained="package:no_such_weights_pkg")


def test_max_positions_from_the_model(config):
    assert config.max_positions == 64


# ---- the model's own tokenizer -------------------------------------------------------------

def test_tokenizer_specials_come_from_the_tokenizer(tok):
    hf = tok.hf
    assert (tok.pad_id, tok.cls_id, tok.mask_id) == (hf.pad_token_id, hf.cls_token_id, hf.mask_token_id)
    enc = tok.encode("the movie was not good")
    assert enc.ids[0] == hf.cls_token_id and enc.ids[-1] == hf.sep_token_id
    assert enc.word_ids[0] is None and enc.word_ids[-1] is None
    assert enc.word_ids[1:-1] == [0, 1, 2, 3, 4]


def test_wordpieces_map_to_whitespace_words(tok):
    enc = tok.encode("movies boring, loved")
    assert enc.tokens[1:3] == ["movie", "##s"]
    # "boring," is one whitespace word: the comma belongs to it (the rationale's unit).
    assert enc.word_ids[1:-1] == [0, 0, 1, 1, 2]


def test_truncation_keeps_cls_and_sep(tok):
    enc = tok.encode("the movie was not good", max_length=4)
    assert enc.ids[0] == tok.cls_id and enc.ids[-1] == tok.hf.sep_token_id and len(enc.ids) == 4
    ids, full = tok.encode_ids(["the movie was not good"], max_length=4)
    assert ids[0] == enc.ids and full == [7]


def test_tokenizer_save_load_round_trip(tok, tmp_path):
    tok.save(tmp_path / "t")
    again = load_tokenizer(tmp_path / "t")
    assert isinstance(again, PretrainedTokenizer)
    assert again.encode("loved it").ids == tok.encode("loved it").ids
    assert again.mask_id == tok.mask_id


def test_mask_token_replacement(bert_dir):
    t = PretrainedTokenizerConfig(pretrained=str(bert_dir), mask_token="[UNK]").build()
    assert t.mask_id == t.unk_id


# ---- the wrapper ---------------------------------------------------------------------------

def _batch(tok, texts):
    encoded = [tok.encode(t).ids for t in texts]
    width = max(map(len, encoded))
    ids = torch.tensor([e + [tok.pad_id] * (width - len(e)) for e in encoded])  # (B, T)
    return ids, (ids != tok.pad_id).long()


def test_typed_outputs_and_eager_attentions(net, tok):
    ids, mask = _batch(tok, TEXTS[:3])
    with torch.no_grad():
        plain = net(ids, mask)
        out = net(ids, mask, output_attentions=True)
    assert plain.logits.shape == (3, 3) and plain.attentions is None
    assert len(out.attentions) == 2 and out.attentions[0].shape == (3, 2, ids.shape[1], ids.shape[1])
    torch.testing.assert_close(out.logits, plain.logits, atol=1e-5, rtol=1e-5)
    # Padded keys get no attention; every row sums to 1.
    torch.testing.assert_close(out.attentions[-1].sum(-1), torch.ones(3, 2, ids.shape[1]))
    assert int((mask[1] == 0).sum()) > 0
    assert float(out.attentions[0][1, :, :, mask[1] == 0].abs().sum()) < 1e-6
    # After explaining, training attention is the fast one again.
    assert net.net.config._attn_implementation == "sdpa"


def test_inputs_embeds_matches_ids(net, tok):
    ids, mask = _batch(tok, TEXTS[:2])
    with torch.no_grad():
        a = net(ids, mask).logits
        b = net(inputs_embeds=net.embed(ids), attention_mask=mask).logits
    torch.testing.assert_close(a, b)


def test_explainers_run_on_the_wrapper(net, tok):
    ids = tok.encode("the movie was not good").ids
    scores = input_x_gradient(net, ids, target=0)
    assert scores.shape == (len(ids),) and np.isfinite(scores).all()
    from glassworks.explain.types import ExampleInput

    example = ExampleInput(0, "the movie was not good", 0, ids, tok.encode("x").tokens, None)
    for explainer in (RawAttentionExplainer(), RolloutExplainer()):
        (e,) = explainer.explain(net, [example])
        assert e.scores.shape == (len(ids),)


def test_freeze_options_and_parameter_groups(bert_dir, tok):
    cfg = HFEncoderConfig(pretrained=str(bert_dir), freeze_embeddings=True, freeze_layers=1,
                          classifier_dropout=0.3)
    m = cfg.build(tok.vocab_size, 2, tok.pad_id)
    frozen = {n for n, p in m.net.named_parameters() if not p.requires_grad}
    assert any(n.startswith("bert.embeddings.") for n in frozen)
    assert any(n.startswith("bert.encoder.layer.0.") for n in frozen)
    assert not any(n.startswith("bert.encoder.layer.1.") for n in frozen)
    assert m.net.config.classifier_dropout == 0.3
    decay, no_decay = m.parameter_groups()
    assert no_decay["weight_decay"] == 0.0 and "weight_decay" not in decay
    n_trainable = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert n_trainable == m.parameter_counts()["trainable"] > 0
    assert m.parameter_counts()["frozen"] > 0
    names = {id(p): n for n, p in m.net.named_parameters()}
    assert all(names[id(p)].endswith(("bias", "LayerNorm.weight")) for p in no_decay["params"])


def test_gradient_checkpointing_trains(bert_dir, tok):
    m = HFEncoderConfig(pretrained=str(bert_dir), gradient_checkpointing=True, freeze_embeddings=True
                        ).build(tok.vocab_size, 2, tok.pad_id).train()
    ids, mask = _batch(tok, TEXTS[:2])
    m(ids, mask).logits.sum().backward()
    assert m.net.classifier.weight.grad is not None
    assert m.net.bert.encoder.layer[0].attention.self.query.weight.grad is not None


def test_spec_and_weight_files_round_trip(net, tok, tmp_path):
    rebuilt = build_from_spec(json.loads(json.dumps(net.spec)))  # plain JSON, no pretrained folder
    assert isinstance(rebuilt, HFEncoderClassifier)
    save_model_files(net, tok, ["a", "b", "c"], 32, tmp_path / "files")
    assert (tmp_path / "files" / "hf" / "model.safetensors").is_file()
    assert not (tmp_path / "files" / "weights.pt").exists()
    loaded = load_model_dir(tmp_path / "files")
    probs = loaded.predict_proba(TEXTS)
    ids, mask = _batch(tok, TEXTS)
    with torch.no_grad():
        want = net(ids, mask).logits.softmax(-1).numpy()
    np.testing.assert_allclose(probs, want, atol=1e-5)


# ---- word-level view -----------------------------------------------------------------------

def test_shap_on_hf_word_level_local_accuracy(net, tok):
    from glassworks.explain.shap import ShapExplainer
    from glassworks.explain.types import ExampleInput
    from glassworks.explain.word_units import local_accuracy_gap, word_plausibility, word_scores

    text = "movies boring, loved"
    enc = tok.encode(text)
    example = ExampleInput(7, text, 0, enc.ids, enc.tokens, [0, 0, 0, 1, 1, 0, 0], word_ids=enc.word_ids)
    (e,) = ShapExplainer(max_evals=64, batch_size=64).explain(net, [example])
    assert e.scores[-1] == pytest.approx(0.0, abs=1e-9)  # [SEP] is never hidden
    words = word_scores(e.scores, enc.word_ids)  # movies, boring, loved
    assert words.shape == (3,)
    assert words[0] == pytest.approx(e.scores[1] + e.scores[2])
    assert local_accuracy_gap(e, example) <= 1e-6
    metrics = word_plausibility([e], [example])
    assert set(metrics) == {"word_rationale_auprc", "word_rationale_f1"}


def test_word_units_sum_and_rationale():
    from glassworks.explain.word_units import word_positions, word_rationale, word_scores

    word_ids = [None, 0, 0, 1, 2, 2, 2, None]
    assert word_positions(word_ids) == [[1, 2], [3], [4, 5, 6]]
    np.testing.assert_allclose(word_scores(np.arange(8.0), word_ids), [3.0, 3.0, 15.0])
    assert word_rationale([0, 1, 1, 0, 0, 0, 1, 0], word_ids).tolist() == [1, 0, 1]


def test_built_model_starts_in_train_mode(config, tok):
    m = config.build(tok.vocab_size, 2, tok.pad_id)
    assert all(module.training for module in m.modules())


def test_substitution_candidates_are_whole_words(net, tok):
    from glassworks.robustness import SubstitutionAttack

    allowed = set(net.substitute_ids)
    vocab = tok.backend.get_vocab()
    assert not any(vocab[t] in allowed for t in ("##s", "##ing", "[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]"))
    assert vocab["movie"] in allowed
    index = SubstitutionAttack(n_candidates=5).neighbour_index(net, sorted(tok.special_ids))
    candidates = index(vocab["movie"])
    assert candidates and set(candidates) <= allowed - {vocab["movie"]}


# ---- word-level robustness and pages: wordpieces go with their word ------------------------

def _movies_example(tok):
    from glassworks.explain.types import ExampleInput

    text = "movies boring, loved"  # [CLS] movie ##s boring , loved [SEP]
    enc = tok.encode(text)
    assert enc.tokens == ["[CLS]", "movie", "##s", "boring", ",", "loved", "[SEP]"]
    return ExampleInput(3, text, 1, enc.ids, enc.tokens, [0, 0, 0, 1, 1, 0, 0], word_ids=enc.word_ids)


def _explanation(example, scores):
    from glassworks.explain.types import Explanation

    return Explanation("shap", example.example_id, 0, np.asarray(scores, dtype=np.float64), 0.1, 0.7, None, 0.0)


def test_robustness_orders_and_curves_act_on_whole_words(net, tok):
    from glassworks.explain.predict import predict_proba
    from glassworks.robustness import RANDOM_ORDER, method_orders, perturbation_curves, units_of

    ex = _movies_example(tok)
    assert units_of(ex) == [(1, 2), (3, 4), (5,)]  # [CLS] and [SEP] belong to no word
    # Word scores are the sums of their pieces: movies 0.6, "boring," 0.3, loved 0.2.
    expl = _explanation(ex, [0.0, 0.1, 0.5, 0.3, 0.0, 0.2, 0.0])
    assert method_orders([ex], [expl], "shap", 0)[3] == [(1, 2), (3, 4), (5,)]
    expl = _explanation(ex, [0.0, 0.05, 0.05, 0.0, 0.3, 0.2, 0.0])  # boring, 0.3 > loved 0.2 > movies 0.1
    assert method_orders([ex], [expl], "shap", 0)[3] == [(3, 4), (5,), (1, 2)]
    assert sorted(method_orders([ex], None, RANDOM_ORDER, 0)[3]) == [(1, 2), (3, 4), (5,)]

    order = {3: [(1, 2), (3, 4), (5,)]}
    base = predict_proba(net, [ex.ids], pad_id=tok.pad_id)  # (1, C)
    curves = perturbation_curves(net, [ex], order, base, k_max=2, mask_id=tok.mask_id, pad_id=tok.pad_id)
    target = int(base[0].argmax())
    m = tok.mask_id
    cls, sep = ex.ids[0], ex.ids[-1]
    want = predict_proba(net, [[cls, m, m, *ex.ids[3:]],  # k=1 deleted: both pieces of "movies"
                               [cls, *ex.ids[1:3], m, m, m, sep],  # k=1 kept: only "movies"
                               [cls, m, m, m, m, ex.ids[5], sep]], pad_id=tok.pad_id)  # k=2 deleted
    np.testing.assert_allclose([curves.deletion[0, 1], curves.insertion[0, 1], curves.deletion[0, 2]],
                               want[:, target], atol=1e-6)


def test_attack_swaps_whole_words_only(net, tok):
    from glassworks.robustness import SubstitutionAttack

    ex = _movies_example(tok)
    attack = SubstitutionAttack(max_edits=3, n_candidates=5)
    (record,) = attack.run(net, [ex], {3: [(1, 2), (3, 4), (5,)]}, "shap", pad_id=tok.pad_id,
                           special_ids=sorted(tok.special_ids))
    assert record.n_model_calls == 1  # only "loved" (one token) was tried: the other words have pieces
    assert set(record.edited_positions) <= {5}
    assert record.perturbed_ids[:5] == ex.ids[:5] and record.perturbed_ids[-1] == ex.ids[-1]
    assert record.perturbed_ids[5] == ex.ids[5] or record.perturbed_ids[5] in set(net.substitute_ids)


def test_pages_and_global_importance_show_words(net, tok):
    import pandas as pd

    from glassworks.explain.plots import global_importance
    from glassworks.explain.render import render_example_html
    from glassworks.explain.word_units import word_view

    ex = _movies_example(tok)
    scores = [0.0, 0.1, 0.5, 0.3, 0.0, 0.2, 0.0]
    view = word_view(ex, np.asarray(scores))
    assert view.tokens == ["[CLS]", "movies", "boring,", "loved"]
    np.testing.assert_allclose(view.scores, [0.0, 0.6, 0.3, 0.2])
    assert view.rationale == [0, 0, 1, 0]
    page = render_example_html(ex, {"shap": _explanation(ex, scores)}, ["a", "b", "c"], 0, [0.7, 0.2, 0.1])
    assert ">movies<" in page and "##s" not in page and "movies (0.6" in page

    table = pd.DataFrame({
        "example_id": [3] * 7 + [4] * 3, "method": ["shap"] * 10, "position": [*range(7), 0, 1, 2],
        "token": [*ex.tokens, "[CLS]", "loved", "[SEP]"], "score": [*scores, 0.0, -0.4, 0.0],
        "word_index": pd.array([None, 0, 0, 1, 1, 2, None, None, 0, None], dtype="Int32"),
    })
    stats, method, unit = global_importance(table)
    assert (method, unit) == ("shap", "words")
    assert list(stats.index) == ["movies", "loved", "boring,"]  # a tie on mean: more occurrences first
    assert stats.loc["loved", "count"] == 2 and stats.loc["loved", "mean"] == pytest.approx(0.3)


# ---- trainer=gpu's bf16-mixed: training in bf16, attentions and explanations in fp32 --------

def test_bf16_autocast_trains_in_bf16_but_explains_in_fp32(net, tok):
    ids, mask = _batch(tok, TEXTS)
    with torch.no_grad():
        ref = net(ids, mask, output_attentions=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # what precision=bf16-mixed runs under
            fast = net(ids, mask).logits
            out = net(ids, mask, output_attentions=True)
            embedded = net(inputs_embeds=net.embed(ids).bfloat16(), attention_mask=mask,
                           output_attentions=True)
    assert fast.dtype == torch.bfloat16  # the training path really is autocast
    assert out.logits.dtype == torch.float32 and all(a.dtype == torch.float32 for a in out.attentions)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.attentions[-1], ref.attentions[-1], atol=1e-5, rtol=0)
    assert embedded.logits.dtype == torch.float32
    # The rollout of an autocast caller is the fp32 one.
    from glassworks.explain.types import ExampleInput

    enc = tok.encode(TEXTS[0])
    example = ExampleInput(0, TEXTS[0], 0, enc.ids, enc.tokens, None, word_ids=enc.word_ids)
    (plain,) = RolloutExplainer().explain(net, [example])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (mixed,) = RolloutExplainer().explain(net, [example])
    np.testing.assert_allclose(mixed.scores, plain.scores, atol=1e-6)


def test_bf16_mixed_lightning_steps_keep_fp32_weights(config, tok):
    import functools

    import pytorch_lightning as pl

    from glassworks.models.lightning import TextClassifier

    torch.manual_seed(0)
    net = config.build(tok.vocab_size, 2, tok.pad_id)
    module = TextClassifier(model_spec=net.spec, optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
                            label_names=["a", "b"], mask_id=tok.mask_id, net=net)
    ids, mask = _batch(tok, TEXTS)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 0, 0, 1])}
    before = net.net.classifier.weight.detach().clone()
    trainer = pl.Trainer(accelerator="cpu", devices=1, precision="bf16-mixed", max_steps=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([batch, batch], batch_size=None))
    assert all(p.dtype == torch.float32 for p in net.parameters())  # fp32 master weights: saved as fp32
    assert not torch.equal(net.net.classifier.weight, before)


# ---- what loading says: one line of ours instead of transformers' bars and LOAD REPORT --------

def test_loading_says_the_head_is_new_without_transformers_report(bert_dir, tok, capfd, caplog):
    caplog.set_level(logging.INFO, logger="glassworks.models")
    # The folder's checkpoint has a 2-class head: 3 classes replace it.
    net = HFEncoderConfig(pretrained=str(bert_dir)).build(tok.vocab_size, n_classes=3, pad_id=tok.pad_id)
    net.save_weights(bert_dir.parent / "saved")
    console = "".join(capfd.readouterr())
    assert "LOAD REPORT" not in console and "Loading weights" not in console and "Writing model" not in console
    assert "not sharded" not in console  # transformers warns so when its logger level is raised
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "glassworks.models"]
    assert said == [(logging.INFO, f"model.pretrained={bert_dir}: the classification head (classifier.bias, "
                                   "classifier.weight) is new: it starts at random and this run trains it")]
    assert transformers_logging.is_progress_bar_enabled()  # restored for downloads elsewhere


def test_a_body_weight_missing_from_the_checkpoint_is_a_warning(bert_dir, tok, tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(bert_dir, broken)
    state = load_file(str(broken / "model.safetensors"))
    gone = next(k for k in state if "layer.1.attention.self.query.weight" in k)
    del state[gone]
    save_file(state, str(broken / "model.safetensors"), metadata={"format": "pt"})
    caplog.set_level(logging.INFO, logger="glassworks.models")
    HFEncoderConfig(pretrained=str(broken)).build(tok.vocab_size, n_classes=2, pad_id=tok.pad_id)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "glassworks.models"]
    assert warnings == [f"model.pretrained={broken}: 1 weights of the pretrained model are not in its "
                        f"checkpoint and start at random: {gone}"]


def test_report_load_sorts_head_body_and_unused_weights(caplog):
    from transformers import BertConfig, BertForSequenceClassification

    net = BertForSequenceClassification(BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1,
                                                   num_attention_heads=2, intermediate_size=8))
    info = {"missing_keys": ["classifier.weight", "bert.pooler.dense.bias"], "mismatched_keys": [],
            "unexpected_keys": ["cls.predictions.bias"]}
    caplog.set_level(logging.INFO, logger="glassworks.models")
    report_load(net, info, "x", new_head=True)
    assert [(r.levelname, r.getMessage().split(":")[1].strip()) for r in caplog.records] == [
        ("INFO", "the classification head (classifier.weight) is new"),
        ("WARNING", "1 weights of the pretrained model are not in its checkpoint and start at random"),
        ("INFO", "1 checkpoint weights this model does not use (e.g. a pretraining head)")]
    caplog.clear()
    report_load(net, info, "x", new_head=False)  # a causal LM has no new head: every missing weight warns
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
