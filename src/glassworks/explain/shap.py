"""SHAP token attributions computed on token ids with the real `shap` library.

The explained features of one example are its non-[CLS] token positions. Hiding a feature
replaces its id with [MASK]; [CLS] is always kept. shap sees only 2-D integer arrays of masked id
rows, which go through the model in large batches (nothing is re-tokenised). Several examples are
explained at once with their masked rows gathered into shared forward passes
(`concurrent_examples`, see `glassworks.explain.batcher`).
"""

from __future__ import annotations

import heapq
import logging
import time
import types
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import shap
from shap.utils import MaskedModel
from torch import nn

from glassworks.explain.batcher import RowBatcher
from glassworks.explain.predict import (
    max_tokens_setting,
    predict_logits,
    resolve_max_tokens,
    resolve_pad_id,
    softmax,
)
from glassworks.explain.shap_kernels import ALGORITHMS as _ALGORITHMS
from glassworks.explain.types import ExampleInput, ExampleSkipped, Explanation, skipped_explanation

log = logging.getLogger(__name__)

ShapAlgorithm = Literal["partition", "exact", "permutation"]
ShapOutput = Literal["probability", "logit"]
_OUTPUTS = ("probability", "logit")


def contiguous_partition_tree(n: int) -> np.ndarray:
    """Balanced binary hierarchy over n adjacent positions, as a scipy linkage matrix (n-1, 4).

    Each range is split at its midpoint, so only neighbouring tokens are ever grouped (the same
    idea as shap's Text masker, whose coalitions are contiguous spans). Row i creates cluster
    n + i from [left, right, height, n_leaves]; rows are ordered by height so the matrix is a
    valid, monotonic scipy linkage.
    """
    if n < 1:
        raise ValueError(f"contiguous_partition_tree: need at least one position, got {n}")
    # (left_ref, right_ref, height, count); refs < 0 point at earlier internal nodes as ~index.
    nodes: list[tuple[int, int, int, int]] = []

    def build(lo: int, hi: int) -> tuple[int, int, int]:
        """Return (ref, height, count) for positions [lo, hi)."""
        if hi - lo == 1:
            return lo, 0, 1
        mid = (lo + hi + 1) // 2  # left half takes the extra leaf on odd spans
        lref, lh, lc = build(lo, mid)
        rref, rh, rc = build(mid, hi)
        nodes.append((lref, rref, max(lh, rh) + 1, lc + rc))
        return ~(len(nodes) - 1), max(lh, rh) + 1, lc + rc

    build(0, n)
    # Children always have smaller height than parents, so a stable sort by height keeps
    # every child row before its parent, as scipy requires.
    order = sorted(range(len(nodes)), key=lambda i: nodes[i][2])
    new_index = {old: n + pos for pos, old in enumerate(order)}

    def resolve(ref: int) -> int:
        return ref if ref >= 0 else new_index[~ref]

    tree = np.zeros((len(nodes), 4), dtype=np.float64)  # (n-1, 4)
    for pos, old in enumerate(order):
        lref, rref, height, count = nodes[old]
        tree[pos] = (resolve(lref), resolve(rref), float(height), float(count))
    return tree


class TokenIdMasker(shap.maskers.Masker):
    """shap masker over the token ids of ONE example's non-[CLS] positions.

    Only the documented masker protocol is used (callable `shape` and `clustering`, `__call__(mask,
    *row)`, `mask_shapes`), no delta masking or `invariants`, so shap's MaskedModel takes its
    generic full-mask path, which every shap version since 0.36 supports.

    The row shap passes in is `x` (M,) = ids[1:]; `masker(mask, x)` returns a (1, M) array
    with hidden positions set to `mask_id`. `shape` and `clustering` are callables of the row
    because every example has its own length. `clustering` is None for exact/permutation so
    shap computes plain Shapley values there (with a tree, shap's Exact computes Owen values).
    """

    # Every call returns a new array, so shap need not deep-copy each masked row it is given.
    immutable_outputs = True

    def __init__(self, mask_id: int, hierarchical: bool, keep_ids: frozenset[int] = frozenset()) -> None:
        self.mask_id = int(mask_id)
        # Special tokens ([SEP] of a pretrained encoder) are never hidden: their SHAP value is 0.
        self.keep_ids = np.asarray(sorted(keep_ids), dtype=np.int64)
        self.shape = self._row_shape
        self.clustering = self._row_clustering if hierarchical else None
        # shap masks the same row once per coalition: its always-kept positions are computed once.
        self._row: np.ndarray | None = None
        self._always_kept: np.ndarray | None = None

    def _kept_specials(self, x) -> np.ndarray:
        """(M,) True where the row holds a special id (a cache: only speed depends on it)."""
        if x is not self._row:
            self._row, self._always_kept = x, np.isin(x, self.keep_ids)
        return self._always_kept

    def __call__(self, mask, x):
        return self.masked_rows(mask, x).reshape(1, -1)  # (1, M)

    def masked_rows(self, masks, x) -> np.ndarray:
        """The rows of many masks at once: masks (N, M) -> (N, M) ids, hidden positions -> mask_id.

        A mask is True where the token is kept; one (M,) mask or a bare bool ("all", as shap
        passes it) gives one (M,) row. Both broadcast against the (M,) always-kept specials.
        """
        keep = np.logical_or(masks, self._kept_specials(x))  # (N, M) or (M,)
        return np.where(keep, x, self.mask_id)

    def _row_shape(self, x) -> tuple[int, int]:
        return 1, len(x)

    def _row_clustering(self, x) -> np.ndarray:
        return contiguous_partition_tree(len(x))  # (M-1, 4)

    def mask_shapes(self, x) -> list[tuple[int]]:
        return [(len(x),)]


class _HeapQueue:
    """``queue.PriorityQueue``'s ordering (the same heapq push and pop) without its lock and
    condition variables: Partition's queue never leaves the function that made it."""

    def __init__(self) -> None:
        self.queue: list[Any] = []

    def put(self, item: Any) -> None:
        heapq.heappush(self.queue, item)

    def get(self) -> Any:
        return heapq.heappop(self.queue)

    def empty(self) -> bool:
        return not self.queue


class _NumpyFastMax:
    """numpy, except that ``max(a)`` is ``a.max()``: the same reduction without ``np.max``'s
    Python dispatch (~2 us a call; Partition calls it four times a node)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def max(a: Any) -> Any:
        return a.max()


def _with_globals(fn: Callable, **replaced: Any) -> Callable:
    """``fn``'s own code object run with some of its module's globals replaced."""
    return types.FunctionType(fn.__code__, {**fn.__globals__, **replaced}, fn.__name__, fn.__defaults__,
                              fn.__closure__)


class RowsAtOnceMaskedModel(MaskedModel):
    """shap's MaskedModel, building the masked rows of a ``TokenIdMasker`` in one numpy call.

    shap's ``_full_masking_call`` calls the masker once per mask, in a Python loop that also
    tracks which background rows vary: ~15 us a row, 2.5 ms of an example's 9 at 16 tokens with
    a free model. Our masker has one output row per mask, no background and no ``invariants``,
    so with the identity link what that loop returns is exactly the model's outputs as float64
    (the mean of one row is that row). Here the rows come from ``masker.masked_rows`` and go
    to the model in the same ``batch_size`` chunks: the same model calls and the same values
    (tests/unit/test_shap_dense_masks.py). Any other masker or link takes shap's own loop.
    """

    def _full_masking_call(self, masks, zero_index=None, batch_size=None):
        if not (self._variants is None and self.link is shap.links.identity and len(self.args) == 1
                and callable(getattr(self.masker, "masked_rows", None)) and len(masks) > 0):
            return super()._full_masking_call(masks, zero_index=zero_index, batch_size=batch_size)
        rows = self.masker.masked_rows(masks, self.args[0])  # (N, M)
        step = batch_size or len(rows)
        outputs = [np.asarray(self.model(rows[start:start + step])) for start in range(0, len(rows), step)]
        return np.concatenate(outputs).astype(np.float64)  # (N, C) or (N,)


def _rows_at_once(explain_row: Callable, **replaced: Any) -> Callable:
    """An explainer's own ``explain_row`` code, building its masked rows through
    ``RowsAtOnceMaskedModel`` (and with any other ``replaced`` names of its module)."""
    return _with_globals(explain_row, MaskedModel=RowsAtOnceMaskedModel, **replaced)


def dense_coalition_masks(clustering: np.ndarray) -> np.ndarray:
    """shap's ``make_masks`` as a dense bool array (2M-1, M), built with numpy, nothing compiled.

    Row i < M holds feature i alone, row M + j the union of linkage row j's two children: the
    same rows as ``make_masks(clustering).toarray()``. Children come before their parents in a
    scipy linkage, so one pass in row order fills them.
    """
    clustering = np.asarray(clustering)  # (M-1, 4): left, right, height, size
    m = clustering.shape[0] + 1
    children = clustering[:, :2].astype(np.int64)  # (M-1, 2)
    if (children >= m + np.arange(m - 1)[:, None]).any():
        raise ValueError("shap clustering: a linkage row refers to a cluster made after it")
    masks = np.zeros((2 * m - 1, m), dtype=bool)  # (2M-1, M)
    masks[np.arange(m), np.arange(m)] = True
    for j, (left, right) in enumerate(children):
        np.logical_or(masks[left], masks[right], out=masks[m + j])
    return masks


def _uncompiled(kernel: Any) -> Callable:
    """A numba kernel's own Python code (``py_func``), recursing into itself, never compiled.

    shap's kernels are ``@njit`` without a disk cache, so their first call compiles them in every
    process: ~5 s on 2 cores for Partition's, most of a default explain stage. The ones our
    Partition path calls do O(M) work an example, which in Python is far less than that.
    """
    fn = getattr(kernel, "py_func", kernel)  # a shap without numba: already plain Python
    own = _with_globals(fn)
    own.__globals__[fn.__name__] = own  # its own namespace: recursive calls come here, not to numba
    return own


class Exact(shap.explainers.Exact):
    """shap's Exact, its masked rows built at once."""

    explain_row = _rows_at_once(shap.explainers.Exact.explain_row)


class Permutation(shap.explainers.Permutation):
    """shap's Permutation, its masked rows built at once."""

    explain_row = _rows_at_once(shap.explainers.Permutation.explain_row)


class DenseMaskPartition(shap.explainers.Partition):
    """shap's Partition explainer with its coalition masks held as a dense bool array.

    Partition rebuilds ``_mask_matrix`` (one row per node of the hierarchy, (2M-1, M)) for every
    example whose clustering is a function of the row, as ours is, and stores it as a scipy CSR
    matrix. Expanding a node then does ``m10[:] += self._mask_matrix[lind, :]``: on CSR each row
    slice and each add builds a sparse matrix, ~0.2 ms a node, which at 16 tokens cost as much as
    the model itself. Dense rows make the same add a numpy OR of booleans: the same masks, the
    same model calls, the same values (tests/unit/test_shap_dense_masks.py), shap's algorithm
    untouched. (2M-1) x M booleans are 0.5 MB at 512 tokens.

    ``owen`` (the tree walk) is shap's own code, run with two of its module's names replaced: its
    ``queue.PriorityQueue`` by the same heap without locks (a put and a get took ~7 us each under
    a lock, 4 puts and a get a node) and ``np.max`` by ``ndarray.max``. The same nodes are expanded
    in the same order, with the same values: 8.5% less time at 25 tokens (10 examples, 0.783 s ->
    0.716 s, interleaved), values array-equal. ``explain_row`` is shap's own too, with its masked
    rows built at once (``RowsAtOnceMaskedModel``), its masks built dense by numpy
    (``dense_coalition_masks``) and its ``lower_credit`` run as Python: nothing of Partition is
    compiled by numba, so no process pays the ~5 s compilation of its kernels.
    """

    owen = _with_globals(shap.explainers.Partition.owen, queue=types.SimpleNamespace(PriorityQueue=_HeapQueue),
                         np=_NumpyFastMax())
    explain_row = _rows_at_once(shap.explainers.Partition.explain_row, make_masks=dense_coalition_masks,
                                lower_credit=_uncompiled(shap.explainers._partition.lower_credit))

    @property
    def _mask_matrix(self) -> np.ndarray:
        return self._dense_mask_matrix

    @_mask_matrix.setter
    def _mask_matrix(self, value) -> None:
        self._dense_mask_matrix = value.toarray() if hasattr(value, "toarray") else np.asarray(value, dtype=bool)


# evaluate(ids) -> logits: full id rows (N, T) with [CLS] -> (N, C) raw logits.
Evaluate = Callable[[np.ndarray], np.ndarray]


class _BatchedIdModel:
    """The function shap calls: masked id rows (N, M) -> outputs (N, C), counting evaluations."""

    def __init__(self, evaluate: Evaluate, cls_id: int, output: ShapOutput) -> None:
        self.evaluate = evaluate
        self.cls_id = cls_id
        self.output = output
        self.n_evals = 0

    def logits(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)  # (N, M)
        cls = np.full((rows.shape[0], 1), self.cls_id, dtype=np.int64)
        ids = np.concatenate([cls, rows], axis=1)  # (N, T)
        self.n_evals += ids.shape[0]
        return self.evaluate(ids)  # (N, C)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        logits = self.logits(rows)  # (N, C)
        return logits if self.output == "logit" else softmax(logits)


class ShapExplainer:
    """SHAP values of every token for the model's predicted class.

    `output="probability"` explains softmax probabilities (local accuracy: sum(scores) +
    base_value == model_output); `output="logit"` explains raw logits, in which case the sum
    matches extras["explained_output"] (the target logit) and model_output stays the probability.
    """

    name = "shap"

    def __init__(
        self,
        algorithm: ShapAlgorithm = "partition",
        max_evals: int = 500,
        batch_size: int = 512,
        seed: int = 0,
        output: ShapOutput = "probability",
        exact_max_tokens: int = 12,
        mask_id: int | None = None,
        pad_id: int | None = None,
        concurrent_examples: int = 16,
        max_batch_tokens: int | str | None = "auto",
    ) -> None:
        if algorithm not in _ALGORITHMS:
            raise ValueError(f"explain.shap.algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
        if output not in _OUTPUTS:
            raise ValueError(f"explain.shap.output must be one of {_OUTPUTS}, got {output!r}")
        if max_evals < 3:
            raise ValueError(f"explain.shap.max_evals must be >= 3, got {max_evals}")
        if batch_size < 1:
            raise ValueError(f"explain.shap.batch_size must be >= 1, got {batch_size}")
        if not 1 <= exact_max_tokens <= 20:
            # 2**20 masked rows per example is already ~a million forwards.
            raise ValueError(f"explain.shap.exact_max_tokens must be in [1, 20], got {exact_max_tokens}")
        if concurrent_examples < 1:
            raise ValueError(f"explain.shap.concurrent_examples must be >= 1, got {concurrent_examples}")
        self.algorithm = algorithm
        self.max_evals = int(max_evals)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.output = output
        self.exact_max_tokens = int(exact_max_tokens)
        self.mask_id = mask_id  # None: the model's own (a pretrained tokenizer's [MASK]), else 3
        self.pad_id = pad_id
        self.concurrent_examples = int(concurrent_examples)
        # Padded tokens one forward may take besides batch_size rows ("auto": a CPU cap by model width).
        self.max_batch_tokens = max_tokens_setting(max_batch_tokens, "explain.shap.max_batch_tokens")
        self.last_batch_stats = None  # RowBatcher.stats of the most recent cross-example explain
        self.last_n_evals = 0  # model rows evaluated for the most recent example

    def describe(self) -> str:
        """Which SHAP produced the numbers, and with what budget (shown on the explanations index)."""
        budget = (f"all 2^n coalitions (n ≤ {self.exact_max_tokens} tokens)" if self.algorithm == "exact"
                  else f"max_evals={self.max_evals} model evaluations per example")
        return (f"shap.explainers.{self.algorithm.capitalize()} (algorithm={self.algorithm}), {budget}, "
                f"explains the {self.output} of the predicted class, hidden tokens → [MASK]")

    def _masker(self, model: nn.Module) -> TokenIdMasker:
        """Hidden tokens become the model's own [MASK] (a pretrained tokenizer's) unless
        ``mask_id`` is set (else 3); the model's special ids are never hidden."""
        mask_id = self.mask_id if self.mask_id is not None else int(getattr(model, "mask_id", 3))
        keep_ids = frozenset(getattr(model, "special_ids", ()))
        return TokenIdMasker(mask_id, hierarchical=self.algorithm == "partition", keep_ids=keep_ids)

    def _shap_explainer(self, fn: _BatchedIdModel, masker: TokenIdMasker):
        if self.algorithm == "partition":
            return DenseMaskPartition(fn, masker)
        if self.algorithm == "exact":
            return Exact(fn, masker)
        return Permutation(fn, masker, seed=self.seed)

    def _check_length(self, example: ExampleInput, n_features: int) -> None:
        """A limit hit by one example skips that example (counted by the runner), never the run."""
        if self.algorithm == "exact" and n_features > self.exact_max_tokens:
            raise ExampleSkipped(
                f"explain.shap.exact_max_tokens={self.exact_max_tokens} but example {example.example_id} has "
                f"{n_features} tokens besides [CLS] (exact SHAP needs 2**{n_features} evaluations); "
                "use algorithm=partition or raise explain.shap.exact_max_tokens"
            )
        if self.algorithm == "permutation" and self.max_evals < 2 * n_features + 1:
            raise ExampleSkipped(
                f"explain.shap.max_evals={self.max_evals} is too low for permutation SHAP on example "
                f"{example.example_id} with {n_features} tokens: needs >= {2 * n_features + 1}"
            )

    def _max_evals_for(self, n_features: int) -> int:
        if self.algorithm == "exact":
            return 2**n_features
        return self.max_evals

    def explain(self, model: nn.Module, examples: list[ExampleInput]) -> list[Explanation]:
        """Explain every example; `concurrent_examples` > 1 batches their model calls together.

        With cross-example batching, up to `concurrent_examples` shap explainers run at once
        (cooperative greenlets, see `glassworks.explain.batcher`) and their masked rows go through
        the model in shared forward passes; the values equal those of explaining each example
        alone (up to float rounding of differently shaped batches).
        """
        self.last_batch_stats = None
        skipped: dict[int, Explanation] = {}
        for index, example in enumerate(examples):  # a method's limit skips an example, never fails the stage
            try:
                self._check_length(example, len(example.ids) - 1)
            except ExampleSkipped as skip:
                skipped[index] = skipped_explanation(self.name, example, str(skip))
        todo = [example for index, example in enumerate(examples) if index not in skipped]
        pad_id = resolve_pad_id(model, self.pad_id)
        masker = self._masker(model)
        max_tokens = resolve_max_tokens(model, self.max_batch_tokens)  # once, not per forward
        if not todo:
            explained: list[Explanation] = []
        elif self.concurrent_examples == 1 or len(todo) <= 1:
            evaluate = self._direct(model, pad_id, max_tokens)
            explained = [self._explain_one(evaluate, example, masker) for example in todo]
        else:
            explained = self._explain_batched(model, pad_id, todo, masker, max_tokens)
        remaining = iter(explained)
        return [skipped[index] if index in skipped else next(remaining) for index in range(len(examples))]

    def _direct(self, model: nn.Module, pad_id: int, max_tokens: int | None) -> Evaluate:
        return lambda ids: predict_logits(model, ids, pad_id, self.batch_size, max_tokens)  # (N, T) -> (N, C)

    def _explain_batched(self, model: nn.Module, pad_id: int, examples: list[ExampleInput],
                         masker: TokenIdMasker, max_tokens: int | None) -> list[Explanation]:
        batcher = RowBatcher(self._direct(model, pad_id, max_tokens), pad_id=pad_id, batch_size=self.batch_size,
                             max_tokens=max_tokens)
        explanations = batcher.map(lambda example, submit: self._explain_one(submit, example, masker), examples,
                                   self.concurrent_examples)
        for expl in explanations:  # an example's own wall time includes waiting for the others: the shared time
            expl.seconds = batcher.stats.seconds / len(examples)
        self.last_batch_stats = batcher.stats
        self.last_n_evals = int(explanations[-1].extras["n_evals"])
        log.debug("shap cross-example batching: %d examples, %d rows in %d forwards",
                  len(examples), batcher.stats.rows, batcher.stats.forward_calls)
        return explanations

    def _explain_one(self, evaluate: Evaluate, example: ExampleInput, masker: TokenIdMasker) -> Explanation:
        start = time.perf_counter()
        ids = np.asarray(example.ids, dtype=np.int64)  # (T,)
        cls_id = int(ids[0])
        fn = _BatchedIdModel(evaluate, cls_id, self.output)
        full_logits = fn.logits(ids[None, 1:])[0]  # (C,) logits on the full input
        probs = softmax(full_logits[None, :])[0]  # (C,)
        full = probs if self.output == "probability" else full_logits  # explained output
        target = int(np.argmax(probs))
        n_classes = full.shape[0]
        n_features = len(ids) - 1

        if n_features == 0:
            # Only [CLS]: nothing to attribute, every output is the base value.
            class_scores = np.zeros((1, n_classes))  # (T, C)
            base_values = full.copy()  # (C,)
        else:
            # Partition breaks priority ties with numpy's global RNG and Permutation shuffles with it
            # (and reseeds it in its constructor): seed it per example, so results don't depend on
            # batch order, and give the caller back the state it had.
            rng_state = np.random.get_state()
            try:
                explainer = self._shap_explainer(fn, masker)
                np.random.seed(self.seed)
                result = explainer(
                    ids[None, 1:],
                    max_evals=self._max_evals_for(n_features),
                    batch_size=self.batch_size,
                    silent=True,
                )
            finally:
                np.random.set_state(rng_state)
            values = np.asarray(result.values[0], dtype=np.float64)  # (M, C)
            base_values = np.asarray(result.base_values[0], dtype=np.float64).reshape(-1)  # (C,)
            class_scores = np.concatenate([np.zeros((1, n_classes)), values], axis=0)  # (T, C)

        self.last_n_evals = fn.n_evals
        scores = class_scores[:, target].copy()  # (T,)
        seconds = time.perf_counter() - start
        log.debug("shap(%s) example %d: %d evals, %.3fs", self.algorithm, example.example_id, fn.n_evals, seconds)
        return Explanation(
            method=self.name,
            example_id=example.example_id,
            target=target,
            scores=scores,
            base_value=float(base_values[target]),
            model_output=float(probs[target]),
            class_scores=class_scores,
            seconds=seconds,
            extras={
                "n_evals": fn.n_evals,
                "algorithm": self.algorithm,
                "output": self.output,
                "explained_output": float(full[target]),
                "base_values": base_values,
            },
        )
