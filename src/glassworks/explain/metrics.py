"""Scores for token attributions: faithfulness (ERASER, AOPC), plausibility, cross-method agreement.

Faithfulness follows DeYoung et al. 2020 (ERASER): *comprehensiveness* is how much the target
probability drops when the top-k tokens are masked, *sufficiency* how much it drops when only the
top-k tokens are kept. Both are averaged over k-bins (the "AOPC" form ERASER reports). ``aopc`` is
Samek et al.'s most-relevant-first deletion curve over the first K tokens.

Every perturbed input of a call is built first and then scored with ONE batched
:func:`~glassworks.explain.predict.predict_proba` call, because per-example forwards dominate the
cost on small models. Masking = replacing the id with [MASK]; [CLS] (position 0) is never masked
and never ranked.

Examples whose scores contain NaN/inf are skipped (and counted in a warning): a method that fails
on some inputs should not poison the mean of the ones it explained.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
from torch import nn

from glassworks.explain.predict import predict_proba
from glassworks.explain.types import ExampleInput, Explanation
from glassworks.tracking.contract import EXPLAIN_BASELINE, at_key

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)
AOPC_MAX_K = 10


def bin_key(fraction: float) -> str:
    """Suffix of a per-bin metric: 0.01 -> "1", 0.025 -> "2.5" (percent of the tokens)."""
    return f"{fraction * 100:g}"


def ranking(scores: np.ndarray) -> np.ndarray:
    """Token positions 1..T-1 ordered most important first (signed score, descending).

    A stable sort keeps ties in position order so that the result is deterministic.
    """
    body = np.asarray(scores, dtype=np.float64)[1:]  # (T-1,) [CLS] is never ranked
    return np.argsort(-body, kind="stable") + 1


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of `scores` for the 0/1 flags `truth` (both (n,)): the area under the
    step-wise precision-recall curve, sum over thresholds of (R_k - R_k-1) * P_k, thresholds at
    the distinct scores, so tied scores enter together. The same value as sklearn's
    ``average_precision_score`` (to the last bits of a float sum), which costs ~2 ms a call in
    argument checks: 560 calls per default explain stage.

    Raises ValueError without a positive flag (the precision-recall curve has no recall axis) or
    with a non-finite score, where sklearn raises or warns."""
    truth = np.asarray(truth, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if truth.shape != scores.shape or truth.ndim != 1:
        raise ValueError(f"average_precision: truth {truth.shape} and scores {scores.shape} must be equal 1-d shapes")
    if not np.all(np.isfinite(scores)):
        raise ValueError("average_precision: the scores contain NaN or infinity")
    if not truth.any():
        raise ValueError("average_precision: no positive flag in truth")
    order = np.argsort(scores, kind="mergesort")[::-1]  # descending; ties grouped below
    ordered = scores[order]
    last = np.r_[np.flatnonzero(np.diff(ordered)), ordered.size - 1]  # last index of each distinct score
    hits = np.cumsum(truth[order])[last]  # true positives at each threshold
    precision = hits / (last + 1)
    recall = hits / hits[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _pair(
    examples: Sequence[ExampleInput], explanations: Sequence[Explanation], where: str
) -> list[tuple[ExampleInput, Explanation]]:
    by_id = {e.example_id: e for e in examples}
    pairs = []
    for expl in explanations:
        ex = by_id.get(expl.example_id)
        if ex is None:
            raise ValueError(
                f"{where}: explanation of method {expl.method!r} names example_id {expl.example_id}, "
                "which is not among the examples"
            )
        if len(expl.scores) != len(ex.ids):
            raise ValueError(
                f"{where}: method {expl.method!r}, example_id {ex.example_id}: scores have length "
                f"{len(expl.scores)} but the example has {len(ex.ids)} tokens"
            )
        pairs.append((ex, expl))
    return pairs


def _finite(pairs: list[tuple[ExampleInput, Explanation]], where: str) -> list[tuple[ExampleInput, Explanation]]:
    kept = [(ex, expl) for ex, expl in pairs if np.all(np.isfinite(np.asarray(expl.scores, dtype=np.float64)))]
    n_skipped = sum("skipped" in expl.extras for _, expl in pairs)  # a method's limit: warned about by the runner
    if len(kept) + n_skipped < len(pairs):
        method = pairs[0][1].method
        log.warning(
            "%s: method %r has non-finite scores on %d of %d examples; they are skipped",
            where, method, len(pairs) - len(kept) - n_skipped, len(pairs),
        )  # fmt: skip
    return kept


def _mask(ids: list[int], positions: np.ndarray | Sequence[int], mask_id: int) -> tuple[int, ...]:
    row = list(ids)
    for p in positions:
        row[int(p)] = mask_id
    return tuple(row)


def faithfulness(
    model: nn.Module,
    examples: Sequence[ExampleInput],
    explanations: Sequence[Explanation],
    mask_id: int,
    pad_id: int,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    batch_size: int = 512,
) -> dict[str, float]:
    """ERASER comprehensiveness / sufficiency (mean over bins, and per bin) and MoRF AOPC.

    Keys: ``comprehensiveness``, ``sufficiency``, ``comprehensiveness_at_<pct>``,
    ``sufficiency_at_<pct>`` (pct = fraction * 100, e.g. ``_at_1``, ``_at_5``: MLflow-safe, see
    :func:`glassworks.tracking.contract.at_key`) and ``aopc``.
    Values are NaN when no explanation has finite scores.
    """
    fractions = [float(f) for f in fractions]
    if not fractions or any(not 0.0 < f <= 1.0 for f in fractions):
        raise ValueError(f"faithfulness: fractions must be in (0, 1], got {fractions}")
    keys = ["comprehensiveness", "sufficiency", "aopc"]
    keys += [at_key("comprehensiveness", bin_key(f)) for f in fractions] + [at_key("sufficiency", bin_key(f)) for f in fractions]
    pairs = _finite(_pair(examples, explanations, "faithfulness"), "faithfulness")
    pairs = [(ex, expl) for ex, expl in pairs if len(ex.ids) > 1]  # nothing to mask without tokens
    if not pairs:
        return {k: math.nan for k in keys}

    # Rows are deduplicated: the comprehensiveness row for k equals the AOPC row for the same k.
    row_index: dict[tuple[int, ...], int] = {}

    def add(row: tuple[int, ...]) -> int:
        return row_index.setdefault(row, len(row_index))

    plans = []  # per example: (target, full-row index, [(comp, suff) per fraction], [aopc rows])
    for ex, expl in pairs:
        n_tokens = len(ex.ids) - 1
        order = ranking(expl.scores)  # (n_tokens,)
        full = add(tuple(ex.ids))
        bins = []
        for f in fractions:
            k = bin_tokens(f, n_tokens)
            comp = add(_mask(ex.ids, order[:k], mask_id))
            suff = add(_mask(ex.ids, order[k:], mask_id))
            bins.append((comp, suff))
        aopc_rows = [add(_mask(ex.ids, order[:k], mask_id)) for k in range(1, min(AOPC_MAX_K, n_tokens) + 1)]
        plans.append((expl.target, full, bins, aopc_rows))

    probs = predict_proba(model, [list(r) for r in row_index], pad_id=pad_id, batch_size=batch_size)  # (R, C)

    comp = np.zeros((len(plans), len(fractions)))
    suff = np.zeros((len(plans), len(fractions)))
    aopc = np.zeros(len(plans))
    for i, (target, full, bins, aopc_rows) in enumerate(plans):
        p_full = probs[full, target]
        for j, (c, s) in enumerate(bins):
            comp[i, j] = p_full - probs[c, target]
            suff[i, j] = p_full - probs[s, target]
        aopc[i] = float(np.mean([p_full - probs[r, target] for r in aopc_rows]))

    out = {
        "comprehensiveness": float(comp.mean()),
        "sufficiency": float(suff.mean()),
        "aopc": float(aopc.mean()),
    }
    for j, f in enumerate(fractions):
        out[at_key("comprehensiveness", bin_key(f))] = float(comp[:, j].mean())
        out[at_key("sufficiency", bin_key(f))] = float(suff[:, j].mean())
    return out


def plausibility(explanations: Sequence[Explanation], examples: Sequence[ExampleInput]) -> dict[str, float]:
    """Agreement of the scores with human/ground-truth token rationales.

    ``rationale_auprc``: mean per-example average precision of the scores against the rationale.
    ``rationale_f1``: F1 of the top-k tokens with k = number of rationale tokens (precision and
    recall coincide at that k). Examples without a rationale, or with an all-zero one, are skipped;
    returns ``{}`` when no example has a usable rationale, NaN values when none of those has
    finite scores.
    """
    pairs = _pair(examples, explanations, "plausibility")
    usable = [(ex, expl) for ex, expl in pairs if ex.rationale is not None and sum(ex.rationale[1:]) > 0]
    if not usable:
        return {}
    for ex, _ in usable:
        if len(ex.rationale) != len(ex.ids):
            raise ValueError(
                f"plausibility: example_id {ex.example_id}: rationale has length {len(ex.rationale)} "
                f"but the example has {len(ex.ids)} tokens"
            )
    usable = _finite(usable, "plausibility")
    if not usable:
        return {"rationale_auprc": math.nan, "rationale_f1": math.nan}
    auprc, f1 = [], []
    for ex, expl in usable:
        truth = np.asarray(ex.rationale[1:], dtype=np.int64)  # (T-1,) [CLS] carries no rationale
        scores = np.asarray(expl.scores, dtype=np.float64)[1:]
        auprc.append(average_precision(truth, scores))
        k = int(truth.sum())
        top = ranking(expl.scores)[:k] - 1
        f1.append(float(truth[top].sum()) / k)
    return {"rationale_auprc": float(np.mean(auprc)), "rationale_f1": float(np.mean(f1))}


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-d array, tied values sharing their mean rank (what
    ``scipy.stats.rankdata`` calls "average", and what Spearman's rho correlates)."""
    values = np.asarray(values)
    order = np.argsort(values, kind="mergesort")  # (n,)
    ordered = values[order]
    first = np.concatenate(([True], ordered[1:] != ordered[:-1]))  # (n,): a new value starts here
    group = np.cumsum(first) - 1  # (n,): which run of equal values each sorted position is in
    starts = np.flatnonzero(np.concatenate((first, [True])))  # (groups + 1,): run boundaries
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts[:-1] + starts[1:] + 1) / 2.0)[group]  # mean of 1-based positions
    return ranks


def ranks_correlation(ranks_a: np.ndarray, ranks_b: np.ndarray) -> float:
    """Spearman's rho from two :func:`average_ranks` vectors (Pearson's r of the ranks), equal to
    ``scipy.stats.spearmanr(a, b).statistic`` to the last bits; NaN when either is constant. The
    scipy call costs ~0.5 ms of checks per pair: rank_agreement made 840 of them a default run."""
    da = ranks_a - ranks_a.mean()
    db = ranks_b - ranks_b.mean()
    denominator = math.sqrt(float(da @ da) * float(db @ db))
    if denominator == 0.0:
        return math.nan
    return max(-1.0, min(1.0, float(da @ db) / denominator))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equally long 1-d arrays (NaN when either is constant)."""
    return ranks_correlation(average_ranks(a), average_ranks(b))


def rank_agreement(explanations_by_method: Mapping[str, Sequence[Explanation]]) -> dict[str, float]:
    """Mean per-example Spearman correlation between every pair of methods.

    Keys ``"<a>_vs_<b>"`` with a < b. Only examples explained by both methods count; an example
    where either ranking is constant or non-finite has no correlation and is left out. NaN when no
    example is left.
    """
    out: dict[str, float] = {}
    methods = sorted(explanations_by_method)
    by_id = {m: {e.example_id: e for e in explanations_by_method[m]} for m in methods}
    ranks: dict[tuple[str, int], np.ndarray | None] = {}  # each ranking once, not once per pair

    def ranks_of(method: str, example_id: int) -> np.ndarray | None:
        key = (method, example_id)
        if key not in ranks:
            scores = np.asarray(by_id[method][example_id].scores, dtype=np.float64)[1:]
            usable = len(scores) >= 2 and bool(np.all(np.isfinite(scores))) and np.ptp(scores) != 0
            ranks[key] = average_ranks(scores) if usable else None
        return ranks[key]

    for a, b in itertools.combinations(methods, 2):
        rhos = []
        for example_id in sorted(by_id[a].keys() & by_id[b].keys()):
            la, lb = len(by_id[a][example_id].scores), len(by_id[b][example_id].scores)
            if la != lb:
                raise ValueError(
                    f"rank_agreement: example_id {example_id}: methods {a!r} and {b!r} have scores "
                    f"of different lengths ({la - 1} vs {lb - 1})"
                )
            ra, rb = ranks_of(a, example_id), ranks_of(b, example_id)
            if ra is None or rb is None:
                continue
            rho = ranks_correlation(ra, rb)
            if np.isfinite(rho):
                rhos.append(rho)
        out[f"{a}{PAIR_SEPARATOR}{b}"] = float(np.mean(rhos)) if rhos else math.nan
    return out


PAIR_SEPARATOR = "_vs_"  # rank_agreement's keys: "<a>_vs_<b>"


def agreement_matrix(pairs: Mapping[str, float]) -> tuple[list[str], list[list[float | None]]]:
    """:func:`rank_agreement`'s ``"<a>_vs_<b>"`` values as a symmetric (M, M) matrix over the
    methods (sorted, the baseline last): 1 on the diagonal, None where a pair was not measured."""
    split = {}
    for key, value in pairs.items():
        a, sep, b = key.partition(PAIR_SEPARATOR)
        if not sep or not a or not b:
            raise ValueError(f"agreement_matrix: key {key!r} is not '<a>{PAIR_SEPARATOR}<b>'")
        split[(a, b)] = float(value)
    methods = sorted({m for pair in split for m in pair}, key=lambda m: (m == EXPLAIN_BASELINE, m))
    matrix: list[list[float | None]] = []
    for a in methods:
        matrix.append([1.0 if a == b else split.get((a, b), split.get((b, a))) for b in methods])
    return methods, matrix


def bin_tokens(fraction: float, n_tokens: int) -> int:
    """Tokens a bin of `fraction` masks in a text of `n_tokens` (the rule :func:`faithfulness` uses)."""
    return min(n_tokens, max(1, round(fraction * n_tokens)))


def bins_note(fractions: Sequence[float], lengths: Sequence[int]) -> str | None:
    """Why per-bin columns can be equal: the bins that mask the same number of tokens at the
    explained texts' median length; None when every bin differs there."""
    if not lengths or not fractions:
        return None
    n = int(np.median(np.asarray(lengths))) - 1  # without [CLS]
    if n < 1:
        return None
    sizes = [(bin_key(f), bin_tokens(f, n)) for f in fractions]
    groups: dict[int, list[str]] = {}
    for key, k in sizes:
        groups.setdefault(k, []).append(f"{key}%")
    same = [(k, names) for k, names in groups.items() if len(names) > 1]
    if not same:
        return None
    parts = "; ".join(f"{', '.join(names)} all mask {k} token{'s' if k != 1 else ''}" for k, names in same)
    return (f"A bin of p% masks max(1, round(p/100 · n)) of a text's n tokens. At the median length of the "
            f"explained texts (n = {n}) {parts}, so those columns are (nearly) equal.")
