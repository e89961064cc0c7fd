"""Hugging Face causal LMs behind our interface, on a tiny random GPT-2 saved in the test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glassworks.explain.generation import GenerationExplainer, GenerationShap
from glassworks.explain.generation_target import GenerationStep, step_outputs
from glassworks.models.hf_causal import HFCausalConfig, HFCausalLM
from glassworks.models.registry import build_from_spec
from glassworks.validation import ConfigError

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=40, n_positions=24, n_embd=32, n_layer=2, n_head=2)
    path = tmp_path_factory.mktemp("tiny-gpt2")
    transformers.GPT2LMHeadModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model(folder) -> HFCausalLM:
    return HFCausalConfig(pretrained=str(folder)).build(vocab_size=40, pad_id=0).eval()


def test_typed_outputs_with_causal_attentions(model):
    ids = torch.randint(5, 40, (2, 7))
    out = model(ids, output_attentions=True)
    assert out.logits.shape == (2, 7, 40)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 2, 7, 7)
    assert torch.all(out.attentions[0].triu(diagonal=1) == 0)
    torch.testing.assert_close(model(inputs_embeds=model.embed(ids)).logits, out.logits)
    assert model.max_positions == 24
    last = model(ids, last_only=True).logits  # GPT-2 projects only the last position (logits_to_keep)
    assert last.shape == (2, 1, 40) and model._keeps_logits
    torch.testing.assert_close(last, out.logits[:, -1:], atol=1e-5, rtol=1e-5)


def test_spec_and_state_dict_rebuild_without_the_folder(model):
    rebuilt = build_from_spec(model.spec)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    ids = torch.randint(5, 40, (1, 6))
    torch.testing.assert_close(rebuilt(ids).logits, model(ids).logits)


def test_every_generation_method_runs_and_shap_is_additive(model):
    step = GenerationStep(0, 0, [2, 7, 8, 9, 10, 11], token_id=12)
    attributions = GenerationExplainer(shap_config=GenerationShap(max_evals=100)).explain(model, [step])
    assert {a.method for a in attributions} == {"shap", "attention", "rollout", "grad_attention",
                                                "input_x_gradient", "random_order"}
    shap_row = next(a for a in attributions if a.method == "shap")
    full = step_outputs(model, np.asarray([step.prefix_ids]), step)[0]
    assert abs(shap_row.scores.sum() + shap_row.base_value - full) <= 1e-6


def test_vocabulary_mismatch_and_missing_folder_fail_clearly(folder, tmp_path):
    with pytest.raises(ValueError, match="vocabulary mismatch: the data has 30 tokens"):
        HFCausalConfig(pretrained=str(folder)).build(vocab_size=30, pad_id=0)
    with pytest.raises(ConfigError, match="pretrained"):
        HFCausalConfig(pretrained=str(tmp_path / "nowhere"))


def test_too_long_input_names_the_context(model):
    with pytest.raises(ValueError, match="max_positions=24"):
        model(torch.ones(1, 25, dtype=torch.long))
