"""The decoder-only Transformer: causal, SDPA and explicit attention agree, spec round trip."""

from __future__ import annotations

import pytest
import torch

from glassworks.models.decoder import DecoderConfig, DecoderLM
from glassworks.models.registry import build_from_spec
from glassworks.validation import ConfigError


@pytest.fixture(scope="module")
def model() -> DecoderLM:
    torch.manual_seed(0)
    return DecoderConfig(d_model=32, n_heads=4, n_layers=2, d_ff=64, max_positions=16).build(20, 0).eval()


def test_future_tokens_do_not_change_earlier_logits(model):
    ids = torch.randint(5, 20, (1, 10))
    changed = ids.clone()
    changed[0, 6:] = torch.randint(5, 20, (4,))
    a, b = model(ids).logits, model(changed).logits  # (1, 10, V)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_explicit_attention_matches_sdpa_and_is_causal(model):
    ids = torch.randint(5, 20, (2, 9))
    plain = model(ids)
    explained = model(ids, output_attentions=True)
    torch.testing.assert_close(plain.logits, explained.logits, atol=1e-5, rtol=1e-5)
    assert plain.attentions is None
    assert len(explained.attentions) == 2
    for a in explained.attentions:
        assert a.shape == (2, 4, 9, 9)
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 4, 9))
        assert torch.all(a.triu(diagonal=1) == 0)


@pytest.mark.parametrize("smear_keys", [False, True])
def test_last_only_gives_the_last_columns_logits_and_gradients(smear_keys):
    torch.manual_seed(0)
    model = DecoderConfig(d_model=32, n_heads=4, n_layers=3, d_ff=64, max_positions=16,
                          smear_keys=smear_keys).build(20, 0).eval()
    ids = torch.randint(5, 20, (3, 9))
    rows: list[int] = []  # the last block's output rows per call
    hook = model.blocks[-1].register_forward_hook(lambda _m, _in, out: rows.append(out[0].shape[1]))

    def grads(last_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
        embeds = model.embed(ids).detach().requires_grad_(True)  # (B, T, C)
        logits = model(inputs_embeds=embeds, last_only=last_only).logits[:, -1]  # (B, V)
        logits.log_softmax(-1)[:, 7].sum().backward()
        return logits.detach(), embeds.grad

    (last, last_grad), (full, full_grad) = grads(True), grads(False)
    hook.remove()
    assert rows == [1, 9]  # the last position alone, then every position
    torch.testing.assert_close(last, full, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(last_grad, full_grad, atol=1e-7, rtol=1e-4)
    assert model(ids, last_only=True).logits.shape == (3, 1, 20)
    with_attentions = model(ids, output_attentions=True, last_only=True)  # attentions need every position
    assert with_attentions.logits.shape == (3, 1, 20) and len(with_attentions.attentions) == 3
    torch.testing.assert_close(with_attentions.logits[:, -1], full, atol=1e-5, rtol=1e-5)


def test_right_padding_leaves_real_tokens_alone(model):
    ids = torch.randint(5, 20, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 3])
    for attentions in (False, True):
        full = model(padded, mask, output_attentions=attentions).logits
        assert torch.isfinite(full).all()
        torch.testing.assert_close(full[:, :6], model(ids).logits, atol=1e-5, rtol=1e-5)


def test_inputs_embeds_equal_input_ids(model):
    ids = torch.randint(5, 20, (1, 7))
    torch.testing.assert_close(model(inputs_embeds=model.embed(ids)).logits, model(ids).logits)


def test_spec_round_trip_rebuilds_the_same_network(model):
    rebuilt = build_from_spec(model.spec)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    ids = torch.randint(5, 20, (1, 8))
    torch.testing.assert_close(rebuilt(ids).logits, model(ids).logits)
    assert rebuilt.head.weight.data_ptr() == rebuilt.tok_emb.weight.data_ptr()  # tied


def test_too_long_input_names_the_context(model):
    with pytest.raises(ValueError, match="max_positions=16"):
        model(torch.ones(1, 17, dtype=torch.long))


@pytest.mark.parametrize("kwargs, key", [
    ({"d_model": 30, "n_heads": 4}, "d_model"),
    ({"n_layers": 0}, "n_layers"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_config_names_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        DecoderConfig(**kwargs)
