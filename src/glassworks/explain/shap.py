"""SHAP token attributions computed on token ids with the real `shap` library.

The explained features of one example are its non-[CLS] token positions. Hiding a feature
replaces its id with [MASK]; [CLS] is always kept. shap sees only 2-D integer arrays of masked id
rows, which go through the model in large batches (nothing is re-tokenised). Several examples are
explained at once with their masked rows gathered into shared forward passes
(`concurrent_examples`, see `glassworks.explain.batcher`).
"""

from __future__ import annotations

import functools
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


def _per_tree(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn(clustering, *settings)` remembered by the clustering's bytes and the (hashable) settings
    (read-only when an array): every example of one length has the same tree, so its masks,
    counts and planned rows are built once."""
    cache: dict[tuple, Any] = {}

    @functools.wraps(fn)
    def cached(clustering: np.ndarray, *settings: Any) -> Any:
        clustering = np.asarray(clustering)
        key = (clustering.shape, clustering.dtype.str, clustering.tobytes(), settings)
        if key not in cache:
            if len(cache) >= 512:  # lengths seen in one process: bounded all the same
                cache.clear()
            result = fn(clustering, *settings)
            if isinstance(result, np.ndarray):
                result.flags.writeable = False
            cache[key] = result
        return cache[key]

    return cached


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


@functools.lru_cache(maxsize=512)
def _shared_tree(n: int) -> np.ndarray:
    """`contiguous_partition_tree(n)`, built once a length and read-only (shap only reads it)."""
    tree = contiguous_partition_tree(n)
    tree.flags.writeable = False
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
        return _shared_tree(len(x))  # (M-1, 4)

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


class _NumpyOwnRng:
    """numpy, except that ``random`` is one explainer's own ``RandomState`` and ``max(a)`` is
    ``a.max()`` (the same reduction without ``np.max``'s Python dispatch, ~2 us a call; Partition
    calls it four times a node).

    shap's Partition breaks priority ties with ``np.random.randn()`` and Permutation shuffles with
    ``np.random.shuffle``: run with this as their ``np``, they draw the same stream from a
    ``RandomState(seed)`` as from the global one after ``np.random.seed(seed)``, and numpy's global
    RNG is never touched. So examples explained together need not save and restore it at every
    model call (``RowBatcher(isolate_rng=False)``; ~60 us a save and as much a restore).
    """

    def __init__(self, rng: np.random.RandomState) -> None:
        self.random = rng

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def max(a: Any) -> Any:
        return a.max()


def _with_globals(fn: Callable, **replaced: Any) -> Callable:
    """``fn``'s own code object run with some of its module's globals replaced."""
    own = types.FunctionType(fn.__code__, {**fn.__globals__, **replaced}, fn.__name__, fn.__defaults__,
                             fn.__closure__)
    own.__kwdefaults__ = fn.__kwdefaults__
    return own


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
        model = self.model
        if isinstance(getattr(model, "inner_model", None), _BatchedIdModel):
            # shap's Model wrapper only copies what ours returns (np.array) after asking whether it
            # is a torch tensor (two safe_isinstance calls): ~4 us of each of an example's ~6 calls.
            model = model.inner_model
        outputs = [np.asarray(model(rows[start:start + step])) for start in range(0, len(rows), step)]
        out = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
        return out.astype(np.float64, copy=False)  # (N, C) or (N,), a new array either way


def _rows_at_once(explain_row: Callable, **replaced: Any) -> Callable:
    """An explainer's own ``explain_row`` code, building its masked rows through
    ``RowsAtOnceMaskedModel`` (and with any other ``replaced`` names of its module)."""
    return _with_globals(explain_row, MaskedModel=RowsAtOnceMaskedModel, **replaced)


@_per_tree
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


@_per_tree
def _credit_plan(clustering: np.ndarray) -> list[tuple[int, int, int, int, int, int]]:
    """[(node, left, right, left size, right size, size)] from the root down, for ``lower_credit``."""
    m = clustering.shape[0] + 1
    plan = []
    for j in range(m - 2, -1, -1):  # a linkage row comes after its children's: the root first
        left, right, group = int(clustering[j, 0]), int(clustering[j, 1]), int(clustering[j, 3])
        lsize = int(clustering[left - m, 3]) if left >= m else 1
        rsize = int(clustering[right - m, 3]) if right >= m else 1
        if lsize + rsize != group:
            raise ValueError(f"shap clustering: row {j} holds {group} leaves but its children {lsize} + {rsize}")
        plan.append((m + j, left, right, lsize, rsize, group))
    return plan


def lower_credit(i: int, value: float, m: int, values: np.ndarray, clustering: np.ndarray) -> None:
    """shap's ``lower_credit`` from the root: each internal node's value is pushed down to its two
    children in proportion to their sizes, recursively; the same float operations in the same
    order per node, as a loop (shap's is a numba kernel that compiles for ~5 s in every process,
    and its Python recursion costs ~0.14 ms an example at 16 tokens, this ~0.02)."""
    if i != 2 * m - 2:
        raise ValueError(f"lower_credit: starts at the root {2 * m - 2}, got node {i}")
    values[i] += value
    if m < 2:
        return
    for node, left, right, lsize, rsize, group in _credit_plan(clustering):
        values[left] += values[node] * lsize / group
        values[right] += values[node] * rsize / group


class _RowValues:
    """One row's values from a shap explainer, the way every explainer here is called; the
    explainer's random draws come from its own ``rng``, a ``RandomState(seed)``."""

    seed: int = 0

    @functools.cached_property
    def rng(self) -> np.random.RandomState:
        """Made on first use (Permutation's shuffles, shap's own Partition walk): a RandomState takes
        ~170 us to seed, as long as a 16-token example's whole walk, whose tie-breaks come from
        ``_TieBreaks`` instead."""
        return np.random.RandomState(self.seed)

    def row_values(self, row: np.ndarray, max_evals: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """row (M,) -> SHAP values (M,) or (M, C) and base values () or (C,), as float64."""
        result = self(row[None, :], max_evals=max_evals, batch_size=batch_size, silent=True)
        return np.asarray(result.values[0], dtype=np.float64), np.asarray(result.base_values[0], dtype=np.float64)


class Exact(_RowValues, shap.explainers.Exact):
    """shap's Exact, its masked rows built at once (it draws no random numbers)."""

    explain_row = _rows_at_once(shap.explainers.Exact.explain_row)

    def __init__(self, model: Any, masker: Any, seed: int = 0) -> None:
        super().__init__(model, masker)
        self.seed = int(seed)


class Permutation(_RowValues, shap.explainers.Permutation):
    """shap's Permutation, its masked rows built at once, shuffling with its own ``RandomState(seed)``.

    shap's constructor seeds numpy's global RNG with `seed`: that state is given back afterwards.
    """

    def __init__(self, model: Any, masker: Any, seed: int = 0) -> None:
        state = np.random.get_state()
        try:
            super().__init__(model, masker, seed=seed)
        finally:
            np.random.set_state(state)
        self.seed = int(seed)
        self.explain_row = types.MethodType(
            _rows_at_once(shap.explainers.Permutation.explain_row, np=_NumpyOwnRng(self.rng)), self)


@_per_tree
def _descent(clustering: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every node of a linkage (2M-1 of them): whether shap's walk descends into it (an internal
    node whose distance is not negative) and its two children ((-1, -1) for a leaf)."""
    clustering = np.asarray(clustering)  # (M-1, 4)
    m = clustering.shape[0] + 1
    descends = np.zeros(2 * m - 1, dtype=bool)  # (2M-1,)
    descends[m:] = clustering[:, 2] >= 0 if clustering.shape[1] >= 3 else True
    children = np.full((2 * m - 1, 2), -1, dtype=np.int64)  # (2M-1, 2)
    children[m:] = clustering[:, :2]
    return descends, children


def _grow(context: np.ndarray, node: np.ndarray, masks: np.ndarray,
          children: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand E internal nodes as shap's walk does: (rows (2E, M), each node's m10 and m01 pair in
    turn; the four children's contexts (4E, M) and nodes (4E,), node by node in shap's queueing
    order: left and right in the node's context, then left in m01's and right in m10's)."""
    e, m = context.shape
    left, right = children[node].T  # (E,) each
    # Interleaved by slice assignment into arrays made once (np.stack costs ~8 us a call here).
    rows = np.empty((2 * e, m), dtype=bool)  # (2E, M)
    m10, m01 = rows[0::2], rows[1::2]  # (E, M) views: each child added
    np.bitwise_or(context, masks[left], out=m10)
    np.bitwise_or(context, masks[right], out=m01)
    kid_context = np.empty((4 * e, m), dtype=bool)  # (4E, M)
    kid_context[0::4] = kid_context[1::4] = context
    kid_context[2::4], kid_context[3::4] = m01, m10
    kid_node = np.empty(4 * e, dtype=children.dtype)  # (4E,)
    kid_node[0::4] = kid_node[2::4] = left
    kid_node[1::4] = kid_node[3::4] = right
    return rows, kid_context, kid_node


@_per_tree
def partition_rows_ahead(clustering: np.ndarray, max_evals: int, batch_size: int) -> np.ndarray:
    """The coalitions (R, M) Partition asks the model for whatever its outputs are: the empty one
    (its base value), then every level of the tree that its walk expands whole.

    The walk's first batch is the root; while a level's nodes fit one batch and the budget, the
    batch is that whole level and the next queue holds just their children, so which rows it asks
    for does not depend on the model's outputs until the first level the budget cuts. Evaluated
    in one call ahead of the walk (``_BatchedIdModel.remember``), they make one forward of what
    were one per level: at 16 tokens the whole tree (170 rows), at 64 the first four levels.
    `max_evals` is the explainer's (the walk's is 2 less). Planned once a tree and budget
    (``_per_tree``): ~0.1 ms an example at 16 tokens.
    """
    descends, children = _descent(clustering)  # (2M-1,), (2M-1, 2)
    masks = dense_coalition_masks(clustering)  # (2M-1, M)
    m = masks.shape[1]
    budget = max_evals - 2
    planned = [np.zeros((1, m), dtype=bool)]
    context, node = np.zeros((1, m), dtype=bool), np.array([2 * m - 2])
    evals = 0
    while len(node):
        internal = descends[node]
        context, node = context[internal], node[internal]  # leaves ask for nothing
        last_before = 2 * (len(node) - 1)  # rows in the batch before its last internal node
        if not len(node) or last_before >= batch_size or evals + last_before >= budget:
            break
        rows, context, node = _grow(context, node, masks, children)
        planned.append(rows)
        evals += len(rows)
    return np.concatenate(planned)  # (R, M)


class _TieBreaks:
    """The stream of ``randn()`` draws of a ``RandomState(seed)``, drawn once a process.

    Partition's walk draws four a node it expands, in order, from an RNG seeded anew for every
    example: the k-th draw of an example is always the k-th of this stream. (``randn(n)`` draws the
    same numbers as n calls of ``randn()``; seeding a RandomState takes ~170 us, as long as a
    16-token example's whole walk.)"""

    _streams: dict[int, tuple[np.random.RandomState, np.ndarray]] = {}

    @classmethod
    def take(cls, seed: int, start: int, n: int) -> np.ndarray:
        rng, drawn = cls._streams.get(seed) or (np.random.RandomState(seed), np.empty(0))
        if len(drawn) < start + n:
            drawn = np.concatenate([drawn, rng.randn(max(start + n - len(drawn), 1024))])
        cls._streams[seed] = rng, drawn
        return drawn[start:start + n]


def shap_walk(rng: np.random.RandomState) -> Callable:
    """shap's own ``Partition.owen``, its ``queue.PriorityQueue`` replaced by the same heap without
    locks and its ``np`` by ``_NumpyOwnRng(rng)``."""
    return _with_globals(shap.explainers.Partition.owen, queue=types.SimpleNamespace(PriorityQueue=_HeapQueue),
                         np=_NumpyOwnRng(rng))


class DenseMaskPartition(_RowValues, shap.explainers.Partition):
    """shap's Partition explainer with its coalition masks held as a dense bool array.

    Partition rebuilds ``_mask_matrix`` (one row per node of the hierarchy, (2M-1, M)) for every
    example whose clustering is a function of the row, as ours is, and stores it as a scipy CSR
    matrix. Expanding a node then does ``m10[:] += self._mask_matrix[lind, :]``: on CSR each row
    slice and each add builds a sparse matrix, ~0.2 ms a node, which at 16 tokens cost as much as
    the model itself. Dense rows make the same add a numpy OR of booleans: the same masks, the
    same model calls, the same values (tests/unit/test_shap_dense_masks.py), shap's algorithm
    untouched. (2M-1) x M booleans are 0.5 MB at 512 tokens.

    The tree walk (``owen``) takes shap's batches of nodes one sort at a time in numpy instead of
    one heap operation a node in Python: the same model calls, the same values bit for bit, its
    tie-breaks drawn from the stream of ``RandomState(seed)`` (never numpy's global RNG), ~5 ms
    less an example at 16 tokens. ``explain_row`` is shap's own, with its masked rows built at once
    (``RowsAtOnceMaskedModel``), its masks built dense by numpy (``dense_coalition_masks``) and
    its ``lower_credit`` a loop: nothing of Partition is compiled by numba, so no process pays the
    ~5 s compilation of its kernels. ``row_values`` calls ``explain_row`` without
    ``Explainer.__call__``'s packing. tests/unit/test_shap_dense_masks.py holds each of these
    against ``shap.explainers.Partition``.
    """

    def __init__(self, model: Any, masker: Any, seed: int = 0) -> None:
        super().__init__(model, masker)
        self.seed = int(seed)

    def shap_owen(self, *args: Any) -> Any:
        """shap's own walk (``shap_walk``), tie-breaks drawn from this explainer's RNG."""
        return shap_walk(self.rng)(self, *args)

    def owen(self, fm, f00, f11, max_evals, output_indexes, fixed_context, batch_size, silent):
        """shap's tree walk, a batch of nodes at a time in numpy: the same model calls with the
        same rows in the same order, and the same values bit for bit.

        shap keeps the nodes to expand in a priority queue (priority ``-max|f_high - f_low| *
        weight``, ties broken by a ``randn()`` drawn as the node is queued) and repeats: pop nodes
        in priority order while the batch has fewer than ``batch_size`` rows and the evaluations
        stay under ``max_evals`` (a leaf popped adds its credit, an internal node two rows), run
        the batch through the model, queue four children a node; once the budget is spent, every
        node left adds its credit in priority order. Between two model calls nothing is queued, so
        a batch is a prefix of the queue sorted by (priority, tie-break): here each batch is one
        ``lexsort``, its rows and children built with array operations, the tie-breaks taken from
        the seed's stream in shap's order (``_TieBreaks``). A Python loop of ~30 us a node becomes
        ~20 numpy calls a batch: 5 ms -> 0.3 ms an example at 16 tokens. shap's own code
        (``shap_owen``) runs for a fixed context or a batch size that is not a number.
        """
        if fixed_context is not None or not isinstance(batch_size, int | np.integer):
            return self.shap_owen(fm, f00, f11, max_evals, output_indexes, fixed_context, batch_size, silent)
        base_value = f00
        if output_indexes is not None:
            f00, f11 = f00[output_indexes], f11[output_indexes]
        m = len(fm)
        masks = self._mask_matrix  # (2M-1, M) bool
        descends, children = _descent(self._clustering)  # (2M-1,), (2M-1, 2)
        # The queue, K nodes: coalition kept so far (K, M), outputs without and with the node
        # (K, ...), node (K,), weight (K,), priority (K,), tie-break (K,).
        context = np.zeros((1, m), dtype=bool)
        low, high = np.asarray(f00)[None], np.asarray(f11)[None]
        node = np.array([len(self.dvalues) - 1])
        weight, priority, tie = np.ones(1), np.zeros(1), np.zeros(1)
        eval_count = draws = 0

        def credit(rows: slice | np.ndarray) -> None:  # dvalues[node] += (high - low) * weight, in order
            delta = (high[rows] - low[rows]) * weight[rows].reshape((-1,) + (1,) * (low.ndim - 1))
            np.add.at(self.dvalues, node[rows], delta)

        while len(node):
            order = np.lexsort((tie, priority))  # the order shap's heap pops them
            context, low, high, node, weight, priority, tie = (
                a[order] for a in (context, low, high, node, weight, priority, tie))
            if eval_count >= max_evals:  # budget spent: every node left keeps its credit
                credit(slice(None))
                break
            internal = descends[node]  # (K,)
            before = 2 * (np.cumsum(internal) - internal)  # rows in the batch before each pop
            fits = (before < batch_size) & (eval_count + before < max_evals)
            n_pop = len(node) if fits.all() else int(np.argmin(fits))
            popped_leaf = np.flatnonzero(~internal[:n_pop])
            if len(popped_leaf):
                credit(popped_leaf)
            grown = np.flatnonzero(internal[:n_pop])  # (E,) expanded, in pop order
            if len(grown):
                rows, kid_context, kid_node = _grow(context[grown], node[grown], masks, children)
                fout = fm(rows)
                if output_indexes is not None:
                    fout = fout[:, output_indexes]
                eval_count += len(rows)
                f10, f01 = fout[0::2], fout[1::2]  # (E, ...)
                lo, hi, w = low[grown], high[grown], weight[grown] / 2
                # Four children a node, queued in shap's order, a tie-break drawn for each.
                kids_low = np.empty((len(grown), 4) + lo.shape[1:], dtype=np.result_type(lo, fout))  # (E, 4, ...)
                kids_high = np.empty_like(kids_low)
                kids_low[:, 0] = kids_low[:, 1] = lo
                kids_low[:, 2], kids_low[:, 3] = f01, f10
                kids_high[:, 0], kids_high[:, 1] = f10, f01
                kids_high[:, 2] = kids_high[:, 3] = hi
                spread = np.abs(kids_high - kids_low).reshape(len(grown), 4, -1).max(axis=2)  # (E, 4)
                n_kids = 4 * len(grown)
                kid_tie = _TieBreaks.take(self.seed, draws, n_kids)
                draws += n_kids
                rest = slice(n_pop, None)
                context = np.concatenate([context[rest], kid_context])
                low = np.concatenate([low[rest], kids_low.reshape((n_kids,) + low.shape[1:])])
                high = np.concatenate([high[rest], kids_high.reshape((n_kids,) + high.shape[1:])])
                node = np.concatenate([node[rest], kid_node])
                weight = np.concatenate([weight[rest], np.repeat(w, 4)])
                priority = np.concatenate([priority[rest], (-spread * w[:, None]).ravel()])
                tie = np.concatenate([tie[rest], kid_tie])
            else:
                context, low, high, node, weight, priority, tie = (
                    a[n_pop:] for a in (context, low, high, node, weight, priority, tie))
        self.last_eval_count = eval_count
        return output_indexes, base_value

    explain_row = _rows_at_once(shap.explainers.Partition.explain_row, make_masks=dense_coalition_masks,
                                lower_credit=lower_credit)

    def row_values(self, row: np.ndarray, max_evals: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """shap's ``explain_row`` of one row, without ``Explainer.__call__`` around it: that call
        packs the row into an ``Explanation`` (slicer objects, ``pack_values``), ~0.7 ms an example,
        a third of a 16-token example's Python. Its values and base values are ``explain_row``'s,
        called with ``Partition.__call__``'s defaults."""
        out = self.explain_row(row, max_evals=max_evals, main_effects=False, error_bounds=False,
                               batch_size=batch_size, outputs=None, silent=True, fixed_context=None)
        return np.asarray(out["values"], dtype=np.float64), np.asarray(out["expected_values"], dtype=np.float64)

    @property
    def _mask_matrix(self) -> np.ndarray:
        return self._dense_mask_matrix

    @_mask_matrix.setter
    def _mask_matrix(self, value) -> None:
        self._dense_mask_matrix = value.toarray() if hasattr(value, "toarray") else np.asarray(value, dtype=bool)


# evaluate(ids) -> logits: full id rows (N, T) with [CLS] -> (N, C) raw logits.
Evaluate = Callable[[np.ndarray], np.ndarray]


def partition_first_rows(masker: TokenIdMasker, row: np.ndarray, max_evals: int, batch_size: int) -> np.ndarray:
    """row (M,) -> (1 + R, M): the full row, then the masked rows Partition's walk will ask for
    (``partition_rows_ahead``): what an example sends in its first call."""
    ahead = partition_rows_ahead(masker.clustering(row), max_evals, batch_size)  # (R, M)
    return np.concatenate([row[None, :], masker.masked_rows(ahead, row)])


def _row_keys(rows: np.ndarray) -> np.ndarray:
    """(N, M) int64 rows -> (N,) opaque keys that compare equal exactly when the rows do."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    return rows.view(np.dtype((np.void, rows.shape[1] * 8))).ravel()


class RowMemory:
    """Outputs of rows evaluated ahead, found again by the rows themselves: a call's rows are
    looked up with one sorted search (not a dictionary lookup a row) and only the others are
    evaluated (see ``partition_rows_ahead``)."""

    def __init__(self) -> None:
        self._keys: np.ndarray | None = None  # (R,) sorted keys of the remembered rows
        self._outputs: np.ndarray | None = None  # (R, ...) their outputs, in that order

    def remember(self, rows: np.ndarray, outputs: np.ndarray) -> None:
        keys = _row_keys(rows)
        order = np.argsort(keys, kind="stable")
        self._keys, self._outputs = keys[order], np.asarray(outputs)[order]

    def outputs(self, rows: np.ndarray, evaluate: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """outputs (N, ...) of rows (N, M): remembered ones from memory, `evaluate(the rest)`."""
        if self._keys is None:
            return evaluate(rows)
        query = _row_keys(rows)
        at = np.minimum(np.searchsorted(self._keys, query), len(self._keys) - 1)  # (N,)
        hit = self._keys[at] == query  # (N,)
        if not hit.any():
            return evaluate(rows)
        out = self._outputs[at]  # (N, ...): right where hit
        if not hit.all():
            out[~hit] = evaluate(rows[~hit])
        return out


class _BatchedIdModel:
    """The function shap calls: masked id rows (N, M) -> outputs (N, C), counting evaluations;
    rows evaluated ahead with ``remember`` are not evaluated again (``RowMemory``)."""

    def __init__(self, evaluate: Evaluate, cls_id: int, output: ShapOutput) -> None:
        self.evaluate = evaluate
        self.cls_id = cls_id
        self.output = output
        self.n_evals = 0
        self.memory = RowMemory()

    def remember(self, rows: np.ndarray) -> np.ndarray:
        """logits (N, C) of rows (N, M), in one call; later calls of these rows reuse their
        explained outputs (the softmax taken once here, not once a call: it is row by row)."""
        logits = self.logits(rows)  # (N, C)
        self.memory.remember(rows, self.explained(logits))
        return logits

    def explained(self, logits: np.ndarray) -> np.ndarray:
        """What shap explains of logits (N, C): themselves or their probabilities."""
        return logits if self.output == "logit" else softmax(logits)

    def logits(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)  # (N, M)
        cls = np.full((rows.shape[0], 1), self.cls_id, dtype=np.int64)
        ids = np.concatenate([cls, rows], axis=1)  # (N, T)
        self.n_evals += ids.shape[0]
        return self.evaluate(ids)  # (N, C)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return self.memory.outputs(np.asarray(rows, dtype=np.int64), lambda rest: self.explained(self.logits(rest)))


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
        explainer_cls = {"partition": DenseMaskPartition, "exact": Exact, "permutation": Permutation}[self.algorithm]
        return explainer_cls(fn, masker, seed=self.seed)

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
        # Our shap explainers draw from their own RandomState: no global RNG to keep apart per task.
        batcher = RowBatcher(self._direct(model, pad_id, max_tokens), pad_id=pad_id, batch_size=self.batch_size,
                             max_tokens=max_tokens, isolate_rng=False)
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
        n_features = len(ids) - 1
        first = ids[None, 1:]  # the full input, and for Partition the rows its walk will ask for: one call
        if self.algorithm == "partition" and n_features:
            first = partition_first_rows(masker, ids[1:], self.max_evals, self.batch_size)  # (1 + R, M)
        full_logits = fn.remember(first)[0]  # (C,) logits on the full input
        probs = softmax(full_logits[None, :])[0]  # (C,)
        full = probs if self.output == "probability" else full_logits  # explained output
        target = int(np.argmax(probs))
        n_classes = full.shape[0]

        if n_features == 0:
            # Only [CLS]: nothing to attribute, every output is the base value.
            class_scores = np.zeros((1, n_classes))  # (T, C)
            base_values = full.copy()  # (C,)
        else:
            # Each explainer draws from its own RandomState(seed): results don't depend on the
            # order examples are explained in, and numpy's global RNG is left alone.
            values, base_values = self._shap_explainer(fn, masker).row_values(
                ids[1:], self._max_evals_for(n_features), self.batch_size)  # (M, C), (C,)
            base_values = base_values.reshape(-1)  # (C,)
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
