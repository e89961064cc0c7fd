"""What the model really sees during a real shap run, for partition, permutation and exact: a
model wrapper records every id row and attention mask that reaches ``forward``. Hidden positions
hold the mask id, never the pad id; [CLS] is never hidden; nothing is padded or masked out by the
attention mask; and the rows are coalitions of the example's own ids."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from glassworks.explain.shap import ShapExplainer
from glassworks.explain.types import ExampleInput

from tests.unit.tiny_explain_model import CLS, MASK, PAD, VOCAB, tiny_model

# An ordinary id that the test uses as mask id: a masker that hard-codes [MASK] (3) fails too.
OTHER_MASK_ID = 7


class RecordingModel(nn.Module):
    """The tiny model behind a forward that keeps what it was given (B, T) per call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.pad_id = inner.pad_id
        self.ids: list[torch.Tensor] = []
        self.attention_masks: list[torch.Tensor] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        self.ids.append(input_ids.detach().cpu().clone())  # (B, T)
        self.attention_masks.append(attention_mask.detach().cpu().clone())  # (B, T)
        return self.inner(input_ids, attention_mask)

    def rows(self) -> np.ndarray:
        return torch.cat(self.ids).numpy()  # (N, T)


def _example(n_tokens: int, mask_id: int) -> ExampleInput:
    rng = np.random.default_rng(11)
    ordinary = [i for i in range(MASK + 1, VOCAB) if i != mask_id]
    ids = [CLS] + [int(i) for i in rng.choice(ordinary, n_tokens - 1)]
    return ExampleInput(0, " ".join(map(str, ids[1:])), 0, ids, [str(i) for i in ids], None)


@pytest.fixture(scope="module")
def inner() -> nn.Module:
    return tiny_model()


@pytest.mark.parametrize(("algorithm", "mask_id"), [("partition", MASK), ("permutation", MASK), ("exact", MASK),
                                                    ("partition", OTHER_MASK_ID)])  # fmt: skip
def test_hidden_positions_hold_the_mask_id_never_pad(inner, algorithm, mask_id):
    ex = _example(9 if algorithm == "exact" else 14, mask_id)
    model = RecordingModel(inner)
    explainer = ShapExplainer(algorithm=algorithm, max_evals=200, mask_id=mask_id, pad_id=PAD)
    (result,) = explainer.explain(model, [ex])

    rows = model.rows()  # (N, T)
    ids = np.asarray(ex.ids)  # (T,)
    assert rows.shape[1] == len(ids) and len(rows) == result.extras["n_evals"]
    assert (rows[:, 0] == CLS).all(), "[CLS] is never hidden"
    kept = rows == ids[None, :]
    hidden = rows == mask_id
    assert (kept | hidden).all(), f"rows hold ids other than the example's and {mask_id}: {rows[~(kept | hidden)][:5]}"
    assert not (rows == PAD).any(), "a hidden position holds the pad id"
    assert torch.cat(model.attention_masks).bool().all(), "a position was masked out of attention"
    assert hidden[:, 1:].all(axis=1).any(), "the all-hidden row (the base value) was evaluated"
    assert kept.all(axis=1).any(), "the full input was evaluated"
    assert 0 < hidden[:, 1:].mean() < 1
    if algorithm == "exact":
        coalitions = {tuple(np.where(keep, ids[1:], mask_id)) for keep in itertools.product([1, 0], repeat=len(ids) - 1)}
        assert {tuple(r[1:]) for r in rows} == coalitions  # every coalition, with nothing else
    # What was explained is this model's output on these rows (SHAP's local accuracy).
    assert result.scores.sum() + result.base_value == pytest.approx(result.model_output, abs=1e-4)
