"""TransformerClassifier, its config, the spec registry and the LR schedule."""

from __future__ import annotations

import math

import pytest
import torch

from glassworks.models import ClassifierOutput, TransformerClassifier, TransformerConfig
from glassworks.models.registry import build_from_spec
from glassworks.models.schedules import warmup_cosine
from glassworks.validation import ConfigError

VOCAB, CLASSES, PAD, CLS = 40, 3, 0, 2


def _model(**overrides: object) -> TransformerClassifier:
    torch.manual_seed(0)
    kwargs = {"d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64, "max_positions": 16}
    kwargs.update(overrides)
    return TransformerConfig(**kwargs).build(vocab_size=VOCAB, n_classes=CLASSES, pad_id=PAD)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded batch of lengths 8, 5, 3; every row starts with [CLS]."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, VOCAB, (3, 8), generator=g)  # (B, T)
    ids[:, 0] = CLS
    mask = torch.ones_like(ids)
    for row, length in enumerate([8, 5, 3]):
        ids[row, length:] = PAD
        mask[row, length:] = 0
    return ids, mask


def test_shapes_and_output_type() -> None:
    model = _model().eval()
    ids, mask = _batch()
    out = model(ids, mask)
    assert isinstance(out, ClassifierOutput)
    assert out.logits.shape == (3, CLASSES)
    assert out.attentions is None
    assert model.n_layers == 2 and model.n_heads == 4
    assert model.embed(ids).shape == (3, 8, 32)


def test_sdpa_and_explicit_paths_agree() -> None:
    model = _model().eval()
    ids, mask = _batch()
    with torch.no_grad():
        fast = model(ids, mask).logits
        explicit = model(ids, mask, output_attentions=True).logits
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_layers, training", [(1, False), (3, False), (2, True)])
def test_last_block_computes_cls_alone_with_the_same_logits_and_gradients(n_layers: int, training: bool) -> None:
    # training mode without dropout: the same gradients a training step takes
    model = _model(n_layers=n_layers, dropout=0.0).train(training)
    ids, mask = _batch()
    targets = torch.tensor([0, 2, 1])

    def grads(logits_of) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        model.zero_grad()
        embeds = model.embed(ids).detach().requires_grad_(True)  # (B, T, C)
        logits = logits_of(embeds)
        torch.nn.functional.cross_entropy(logits, targets).backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, embeds.grad

    rows: list[int] = []  # the last block's output rows per call
    hook = model.blocks[-1].register_forward_hook(lambda _m, _in, out: rows.append(out[0].shape[1]))
    fast_logits, fast_params, fast_embeds = grads(lambda e: model(attention_mask=mask, inputs_embeds=e).logits)
    ref_logits, ref_params, ref_embeds = grads(
        lambda e: model(attention_mask=mask, inputs_embeds=e, every_position=True).logits)
    model.train(not training)
    model(ids, mask)  # the other mode too
    hook.remove()
    assert rows == [1, ids.shape[1], 1]  # [CLS] alone, every position, [CLS] alone
    torch.testing.assert_close(fast_logits, ref_logits, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fast_embeds, ref_embeds, atol=1e-7, rtol=1e-4)
    assert fast_params.keys() == ref_params.keys()
    for name in ref_params:
        torch.testing.assert_close(fast_params[name], ref_params[name], atol=1e-7, rtol=1e-4, msg=name)
    with pytest.raises(ValueError, match="first_only"):
        model.blocks[-1].attn(model.embed(ids), mask.bool()[:, None, None, :], True, True)


def test_attentions_are_probabilities_over_real_keys() -> None:
    model = _model().eval()
    ids, mask = _batch()
    out = model(ids, mask, output_attentions=True)
    assert out.attentions is not None and len(out.attentions) == model.n_layers
    for layer in out.attentions:
        assert layer.shape == (3, model.n_heads, 8, 8)  # (B, H, T, T)
        torch.testing.assert_close(layer.sum(-1), torch.ones(3, model.n_heads, 8))
        padded_keys = (mask == 0)[:, None, None, :].expand_as(layer)
        assert torch.all(layer[padded_keys] == 0)
        assert torch.all(layer[~padded_keys] > 0)


def test_attentions_stay_in_autograd_graph() -> None:
    model = _model().eval()
    ids, mask = _batch()
    out = model(ids, mask, output_attentions=True)
    assert out.attentions is not None
    grads = torch.autograd.grad(out.logits[:, 1].sum(), out.attentions)
    assert all(g.shape == a.shape for g, a in zip(grads, out.attentions))
    assert all(g.abs().sum() > 0 for g in grads)


def test_padding_does_not_change_logits() -> None:
    model = _model().eval()
    ids, mask = _batch()
    with torch.no_grad():
        for row, length in enumerate([8, 5, 3]):
            alone = model(ids[row : row + 1, :length]).logits  # no padding at all
            padded = model(ids[row : row + 1], mask[row : row + 1]).logits
            more_pad = torch.nn.functional.pad(ids[row : row + 1], (0, 4), value=PAD)
            more_mask = torch.nn.functional.pad(mask[row : row + 1], (0, 4), value=0)
            extra = model(more_pad, more_mask, output_attentions=True).logits
            torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(alone, extra, atol=1e-5, rtol=1e-5)


def test_inputs_embeds_matches_input_ids_and_has_gradient() -> None:
    model = _model().eval()
    ids, mask = _batch()
    embeds = model.embed(ids).detach().requires_grad_(True)  # (B, T, C)
    from_embeds = model(attention_mask=mask, inputs_embeds=embeds).logits
    with torch.no_grad():
        from_ids = model(ids, mask).logits
    torch.testing.assert_close(from_embeds.detach(), from_ids)
    (grad,) = torch.autograd.grad(from_embeds[:, 0].sum(), embeds)
    assert grad.shape == embeds.shape and grad.abs().sum() > 0
    with pytest.raises(ValueError, match="exactly one"):
        model(ids, mask, inputs_embeds=embeds)


def test_attention_mask_defaults_to_all_tokens() -> None:
    model = _model().eval()
    ids, _ = _batch()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, model(ids, torch.ones_like(ids)).logits)


def test_too_long_sequence_names_max_positions() -> None:
    model = _model(max_positions=8)
    with pytest.raises(ValueError, match="max_positions"):
        model(torch.full((1, 9), CLS))


def test_dropout_only_in_training() -> None:
    model = _model(dropout=0.5)
    ids, mask = _batch()
    model.train()
    torch.manual_seed(0)
    a = model(ids, mask).logits
    b = model(ids, mask).logits
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(model(ids, mask).logits, model(ids, mask).logits)


def test_init_zeroes_pad_embedding_and_biases() -> None:
    model = _model()
    assert torch.all(model.tok_emb.weight[PAD] == 0)
    assert torch.all(model.head.bias == 0)
    assert 0.01 < model.tok_emb.weight[4:].std().item() < 0.03


def test_spec_round_trip_is_plain_and_identical() -> None:
    model = _model().eval()
    spec = model.spec
    assert spec["class"] == "TransformerClassifier"
    assert spec["config"]["d_model"] == 32
    assert (spec["vocab_size"], spec["n_classes"], spec["pad_id"]) == (VOCAB, CLASSES, PAD)
    # Plain containers: survive a weights_only round trip through torch.save.
    import io

    buffer = io.BytesIO()
    torch.save({"spec": spec, "state_dict": model.state_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    spec = loaded["spec"]
    for rebuilt in (TransformerClassifier.from_spec(spec), build_from_spec(spec)):
        assert isinstance(rebuilt, TransformerClassifier)
        rebuilt.load_state_dict(loaded["state_dict"])
        rebuilt.eval()
        ids, mask = _batch()
        with torch.no_grad():
            torch.testing.assert_close(rebuilt(ids, mask).logits, model(ids, mask).logits)


def test_registry_rejects_unknown_class() -> None:
    with pytest.raises(ValueError, match="NoSuchNet"):
        build_from_spec({"class": "NoSuchNet"})
    with pytest.raises(ValueError, match="class"):
        build_from_spec({"config": {}})


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"d_model": 30, "n_heads": 4}, "d_model"),
        ({"d_model": -8}, "d_model"),
        ({"n_heads": 0}, "n_heads"),
        ({"n_layers": -1}, "n_layers"),
        ({"d_ff": 0}, "d_ff"),
        ({"max_positions": 0}, "max_positions"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"d_model": "abc"}, "d_model"),
        ({"dropout": "high"}, "dropout"),
    ],
)
def test_config_errors_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key) as info:
        TransformerConfig(**kwargs)
    assert info.value.key == key


def test_divisibility_message_names_both_keys() -> None:
    with pytest.raises(ConfigError, match=r"d_model.*n_heads"):
        TransformerConfig(d_model=30, n_heads=4)


def test_build_rejects_bad_data_sizes() -> None:
    with pytest.raises(ValueError, match="pad_id"):
        TransformerConfig().build(vocab_size=10, n_classes=2, pad_id=10)
    with pytest.raises(ValueError, match="n_classes"):
        TransformerConfig().build(vocab_size=10, n_classes=0, pad_id=0)


def _lr_curve(total: int, **kwargs: float) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total_steps=total, **kwargs)
    lrs = []
    for _ in range(total + 2):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_warmup_cosine_values() -> None:
    lrs = _lr_curve(100, warmup_ratio=0.1, min_lr_ratio=0.1)
    assert lrs[0] == 0.0
    assert lrs[5] == pytest.approx(0.5)
    assert lrs[10] == pytest.approx(1.0)  # end of warmup: peak
    assert lrs[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[100] == pytest.approx(0.1)  # end: min_lr_ratio
    assert lrs[101] == pytest.approx(0.1)  # held after the end
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay


def test_warmup_cosine_without_warmup_starts_at_peak() -> None:
    lrs = _lr_curve(10, warmup_ratio=0.0)
    assert lrs[0] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"total_steps": 0}, "total_steps"),
        ({"total_steps": 10.5}, "total_steps"),
        ({"total_steps": 10, "warmup_ratio": 1.0}, "warmup_ratio"),
        ({"total_steps": 10, "warmup_ratio": -0.1}, "warmup_ratio"),
        ({"total_steps": 10, "min_lr_ratio": 1.5}, "min_lr_ratio"),
    ],
)
def test_warmup_cosine_validates_args(kwargs: dict, name: str) -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=name):
        warmup_cosine(opt, **kwargs)
