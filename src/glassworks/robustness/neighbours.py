"""Substitution candidates: nearest neighbours of a token id in the model's input-embedding space,
optionally restricted to a word list.

A tokenizer with subwords would restrict ``allowed_ids`` to whole words (build them with
:func:`word_list_ids` or directly); the index itself only needs an embedding matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

TokenToId = Callable[[str], int | None] | Mapping[str, int]  # a tokenizer's token_to_id, or a vocab dict


class NeighbourIndex:
    """Nearest neighbours of token ids by cosine similarity of the model's input embeddings.

    Cosine rather than Euclidean distance because embedding norms track token frequency more than
    meaning. `special_ids` (the tokenizer's, e.g. ``TextTokenizer.special_ids``) and the query token
    itself are never returned; with `allowed_ids` only
    those ids are candidates (a word list). Results are cached per id.
    """

    def __init__(self, weight: torch.Tensor, n_candidates: int, special_ids: Sequence[int],
                 allowed_ids: Sequence[int] | None = None) -> None:  # fmt: skip
        if weight.dim() != 2:
            raise ValueError(f"NeighbourIndex: embedding weight must be (V, C), got shape {tuple(weight.shape)}")
        self.n_candidates = int(n_candidates)
        # Kept on the weight's device: one (U, C) x (C, V) matmul per batch of queries.
        self.unit = F.normalize(weight.detach().float(), dim=1)  # (V, C)
        vocab = self.unit.shape[0]
        allowed = torch.ones(vocab, dtype=torch.bool, device=self.unit.device)  # (V,)
        if allowed_ids is not None:
            allowed.zero_()
            ids = [i for i in allowed_ids if 0 <= int(i) < vocab]
            if ids:
                allowed[torch.as_tensor(ids, dtype=torch.long, device=allowed.device)] = True
        for s in special_ids:
            if 0 <= s < vocab:
                allowed[s] = False
        self.allowed = allowed
        self.n_allowed = int(allowed.sum())
        self._cache: dict[int, list[int]] = {}

    def prepare(self, token_ids: Sequence[int]) -> None:
        """Compute the neighbours of many ids at once (one matmul) so later look-ups are free."""
        todo = sorted({int(t) for t in token_ids} - self._cache.keys())
        if not todo or self.n_allowed == 0:
            for t in todo:
                self._cache[t] = []
            return
        for lo in range(0, len(todo), 1024):
            chunk = todo[lo : lo + 1024]
            q = torch.as_tensor(chunk, dtype=torch.long, device=self.unit.device)  # (U,)
            sims = self.unit[q] @ self.unit.T  # (U, V)
            sims = sims.masked_fill(~self.allowed[None, :], float("-inf"))
            sims[torch.arange(len(chunk), device=sims.device), q] = float("-inf")  # never the token itself
            k = min(self.n_candidates, self.n_allowed)
            values, top = sims.topk(k, dim=1)  # (U, k) most similar first
            values, top = values.cpu().numpy(), top.cpu().numpy()
            for t, vals, ids in zip(chunk, values, top, strict=True):
                self._cache[t] = [int(i) for i, v in zip(ids, vals, strict=True) if np.isfinite(v)]

    def __call__(self, token_id: int) -> list[int]:
        """Up to `n_candidates` ids, most similar first."""
        token_id = int(token_id)
        if token_id not in self._cache:
            self.prepare([token_id])
        return self._cache[token_id]


def word_list_ids(word_list: Sequence[str], token_to_id: TokenToId | None, special_ids: Sequence[int]) -> list[int]:
    """Sorted ids of the `word_list` entries in the vocabulary (special ids and unknown words left out)."""
    if token_to_id is None:
        raise ValueError("SubstitutionAttack: word_list is set but no token_to_id was given to map it to ids")
    lookup = token_to_id.get if isinstance(token_to_id, Mapping) else token_to_id
    ids, missing = [], []
    for word in word_list:
        i = lookup(word)
        if i is None or int(i) in special_ids:  # out of vocabulary maps to None or [UNK]
            missing.append(word)
        else:
            ids.append(int(i))
    if missing:
        log.warning("SubstitutionAttack: %d of %d word_list entries are not in the vocabulary (e.g. %r)",
                    len(missing), len(word_list), missing[:5])  # fmt: skip
    if not ids:
        raise ValueError(f"SubstitutionAttack: none of the {len(word_list)} word_list entries is in the vocabulary")
    return sorted(set(ids))

