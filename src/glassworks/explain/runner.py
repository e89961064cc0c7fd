"""Runs every explainer on the selected examples, scores them, and writes the explain artifacts.

Layout of ``out_dir`` (the entry point logs it to MLflow as ``explanations/``)::

    attributions.parquet        one row per example x token x method
    metrics.json                {"<method>/<metric>": value, "agreement/<a>_vs_<b>": value}; NaN -> null;
                                "<method>/n_skipped": examples the method's limit skipped (NaN scores)
    index.html                  metrics table, figures, links to the example pages
    examples/example_<id>.html  tokens coloured by every method, side by side
    attention/example_<id>.png  every layer's and head's attention, first `n_heatmaps` examples
    attention_tensors.npz       example_<id> -> (L, H, T, T) float32, same examples
    global_importance.png       mean |score| per token string (SHAP when present)
    metrics.png                 faithfulness / plausibility per method vs the random baseline

The library never talks to MLflow: the caller logs ``ExplainResult.metrics`` (prefixing
``explain/``) and the folder.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from glassworks.explain.metrics import DEFAULT_FRACTIONS, bins_note, faithfulness, plausibility, rank_agreement
from glassworks.explain.plots import attention_heatmaps_png, global_importance_png, metric_comparison_png
from glassworks.explain.predict import predict_proba
from glassworks.explain.render import IndexRow, render_example_html, render_index_html
from glassworks.explain.types import ExampleInput, Explainer, Explanation
from glassworks.explain.word_units import word_indices, word_plausibility
from glassworks.tracking.contract import (ATTENTION_HEATMAPS_DIR, ATTENTION_TENSORS, ATTRIBUTIONS, EXPLAIN_BASELINE,
                                          EXPLAIN_EXAMPLES_DIR, EXPLAIN_INDEX, EXPLAIN_METRICS_JSON,
                                          EXPLAIN_METRICS_PNG, EXPLANATIONS_DIR, GLOBAL_IMPORTANCE_PNG,
                                          N_SKIPPED, REPORT_HTML, explain_example_page, file_name, link,
                                          relative_to)

log = logging.getLogger(__name__)

# Progress lines only for a method still running after this long: a method done in a blink prints
# its one summary line (scores, s/example), not three progress lines before it.
PROGRESS_AFTER_S = 1.0

TABLE_COLUMNS = (
    "example_id", "method", "position", "token", "token_id", "score", "base_value", "model_output",
    "target", "label", "prediction", "rationale", "word_index",
)  # fmt: skip


@dataclass
class ExplainResult:
    metrics: dict[str, float]  # "<method>/<metric>" and "agreement/<a>_vs_<b>"; may hold NaN
    table: pd.DataFrame  # the attributions.parquet table, columns TABLE_COLUMNS
    out_dir: Path
    explanations: dict[str, list[Explanation]] = field(default_factory=dict)  # method -> per example
    skipped: dict[str, list[int]] = field(default_factory=dict)  # method -> example ids its limit skipped

    @property
    def n_examples(self) -> int:
        """Texts explained."""
        return int(self.table["example_id"].nunique()) if len(self.table) else 0


def example_page(example_id: int) -> str:
    """Path of an example's page relative to the output folder."""
    return relative_to(explain_example_page(example_id), EXPLANATIONS_DIR)


class ExplainRunner:
    """Explain, score and render a fixed list of examples with several attribution methods.

    A random baseline (``RandomExplainer``, ``random_order``) is added when no explainer has its name, so every
    metric has a chance-level reference. Explainers are called on chunks of `chunk_size` examples
    so progress can be logged; each explainer still batches inside a chunk.
    """

    def __init__(
        self,
        explainers: Sequence[Explainer],
        mask_id: int,
        pad_id: int,
        n_heatmaps: int = 3,
        fractions: Sequence[float] = DEFAULT_FRACTIONS,
        chunk_size: int = 16,
        batch_size: int = 512,
        random_seed: int = 0,
    ) -> None:
        if n_heatmaps < 0:
            raise ValueError(f"ExplainRunner: n_heatmaps must be >= 0, got {n_heatmaps}")
        if chunk_size < 1:
            raise ValueError(f"ExplainRunner: chunk_size must be >= 1, got {chunk_size}")
        names = [e.name for e in explainers]
        if duplicates := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"ExplainRunner: explainer names must be unique, got {duplicates} more than once")
        self.explainers = list(explainers)
        if EXPLAIN_BASELINE not in names:
            from glassworks.explain.baseline import RandomExplainer

            self.explainers.append(RandomExplainer(seed=random_seed, pad_id=pad_id))
        self.mask_id = mask_id
        self.pad_id = pad_id
        self.n_heatmaps = n_heatmaps
        self.fractions = tuple(fractions)
        self.chunk_size = chunk_size
        self.batch_size = batch_size

    # ------------------------------------------------------------------ explaining
    def _explain(
        self, explainer: Explainer, model: nn.Module, examples: list[ExampleInput]
    ) -> tuple[list[Explanation], float]:
        out: list[Explanation] = []
        start = time.perf_counter()
        for lo in range(0, len(examples), self.chunk_size):
            chunk = examples[lo : lo + self.chunk_size]
            got = explainer.explain(model, chunk)
            if len(got) != len(chunk) or [e.example_id for e in got] != [x.example_id for x in chunk]:
                raise ValueError(
                    f"explainer {explainer.name!r} returned explanations for example ids "
                    f"{[e.example_id for e in got]}, expected {[x.example_id for x in chunk]}"
                )
            for expl, ex in zip(got, chunk, strict=True):
                expl.scores = np.asarray(expl.scores, dtype=np.float64).reshape(-1)
                if len(expl.scores) != len(ex.ids):
                    raise ValueError(
                        f"explainer {explainer.name!r}, example_id {ex.example_id}: "
                        f"{len(expl.scores)} scores for {len(ex.ids)} tokens"
                    )
            out.extend(got)
            elapsed = time.perf_counter() - start
            if len(out) < len(examples) and elapsed >= PROGRESS_AFTER_S:  # the summary line ends a method
                log.info("explain %-16s %4d/%d examples  %.1f s", explainer.name, len(out), len(examples), elapsed)
        wall = time.perf_counter() - start
        skipped = [e for e in out if "skipped" in e.extras]
        if skipped:  # once per method: the reason of the first, the ids of all
            log.warning("explain %s: skipped %d of %d examples (ids %s): %s", explainer.name, len(skipped),
                        len(out), [e.example_id for e in skipped][:10], skipped[0].extras["skipped"])
        n_bad = sum(not np.all(np.isfinite(e.scores)) for e in out) - len(skipped)
        if n_bad:
            log.warning("explain %s: %d of %d explanations have non-finite scores", explainer.name, n_bad, len(out))
        return out, wall

    def _attentions(self, model: nn.Module, example: ExampleInput) -> np.ndarray | None:
        """(L, H, T, T) attention probabilities of one unpadded example, or None if the model has none."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                ids = torch.tensor([example.ids], dtype=torch.long, device=device)  # (1, T)
                output = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True)
        finally:
            model.train(was_training)
        if output.attentions is None:
            return None
        return torch.stack([a[0] for a in output.attentions]).float().cpu().numpy()  # (L, H, T, T)

    # ------------------------------------------------------------------ the stage
    def run(
        self,
        model: nn.Module,
        examples: Sequence[ExampleInput],
        label_names: Sequence[str],
        out_dir: Path,
        context: Mapping[str, Any] | None = None,
    ) -> ExplainResult:
        """Explain `examples`, score every method, write all artifacts into `out_dir`.

        `context` (run id, model, data, seed, ...) is shown on the HTML pages only.
        """
        examples = list(examples)
        if not examples:
            raise ValueError("ExplainRunner.run: no examples to explain")
        ids = [e.example_id for e in examples]
        if len(set(ids)) != len(ids):
            raise ValueError(f"ExplainRunner.run: duplicate example ids in {ids}")
        context = dict(context or {})
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        model.eval()

        probs = predict_proba(model, [e.ids for e in examples], self.pad_id, self.batch_size)  # (N, C)
        predictions = probs.argmax(axis=1)  # (N,)
        wrong = int(np.sum(predictions != np.array([e.label for e in examples])))
        # Counts, not an accuracy: the classifier's sample takes misclassified test examples on
        # purpose (explain.selection), so their accuracy (0.78 in a default run) sat next to
        # test/acc 0.98 and read like a bug.
        log.info("explain: %d examples (%d predicted right, %d wrong), %d methods",
                 len(examples), len(examples) - wrong, wrong, len(self.explainers))

        by_method: dict[str, list[Explanation]] = {}
        metrics: dict[str, float] = {}
        per_method: dict[str, dict[str, float]] = {}
        skipped: dict[str, list[int]] = {}
        for explainer in self.explainers:
            explanations, wall = self._explain(explainer, model, examples)
            by_method[explainer.name] = explanations
            scores = faithfulness(
                model, examples, explanations, mask_id=self.mask_id, pad_id=self.pad_id,
                fractions=self.fractions, batch_size=self.batch_size,
            )  # fmt: skip
            scores.update(plausibility(explanations, examples))
            scores.update(word_plausibility(explanations, examples))
            scores["seconds_per_example"] = wall / len(examples)
            skipped[explainer.name] = [e.example_id for e in explanations if "skipped" in e.extras]
            scores[N_SKIPPED] = float(len(skipped[explainer.name]))
            per_method[explainer.name] = scores
            metrics.update({f"{explainer.name}/{k}": float(v) for k, v in scores.items()})
            log.info(
                "explain %-16s comprehensiveness %.3f  sufficiency %.3f  %.3f s/example",
                explainer.name, scores["comprehensiveness"], scores["sufficiency"], scores["seconds_per_example"],
            )  # fmt: skip
        metrics.update({f"agreement/{k}": float(v) for k, v in rank_agreement(by_method).items()})

        table = self._table(examples, by_method, predictions)
        table.to_parquet(out_dir / file_name(ATTRIBUTIONS), index=False)
        (out_dir / file_name(EXPLAIN_METRICS_JSON)).write_text(
            json.dumps({k: (v if math.isfinite(v) else None) for k, v in metrics.items()}, indent=2, sort_keys=True)
        )

        for explainer in self.explainers:  # how each number was produced (SHAP: algorithm, budget)
            describe = getattr(explainer, "describe", None)
            if callable(describe):
                context[f"{explainer.name} settings"] = describe()
        if any(skipped.values()):  # the index says so above its metrics table
            context["skipped (method limits)"] = "; ".join(
                f"{m}: {len(ids)} of {len(examples)} examples" for m, ids in skipped.items() if ids)
        heatmaps = self._write_attention(model, examples[: self.n_heatmaps], out_dir)
        global_importance_png(table, out_dir / file_name(GLOBAL_IMPORTANCE_PNG))
        metric_comparison_png(per_method, out_dir / file_name(EXPLAIN_METRICS_PNG))
        self._write_pages(examples, by_method, label_names, probs, predictions, metrics, heatmaps, context, out_dir)
        log.debug("explain: artifacts written to %s", out_dir)
        return ExplainResult(metrics=metrics, table=table, out_dir=out_dir, explanations=by_method, skipped=skipped)

    def _table(
        self, examples: list[ExampleInput], by_method: dict[str, list[Explanation]], predictions: np.ndarray
    ) -> pd.DataFrame:
        columns: dict[str, list] = {c: [] for c in TABLE_COLUMNS}
        for method, explanations in by_method.items():
            for ex, expl, pred in zip(examples, explanations, predictions, strict=True):
                t = len(ex.ids)
                columns["example_id"] += [ex.example_id] * t
                columns["method"] += [method] * t
                columns["position"] += list(range(t))
                columns["token"] += list(ex.tokens)
                columns["token_id"] += list(ex.ids)
                columns["score"] += expl.scores.tolist()
                columns["base_value"] += [math.nan if expl.base_value is None else float(expl.base_value)] * t
                columns["model_output"] += [float(expl.model_output)] * t
                columns["target"] += [expl.target] * t
                columns["label"] += [ex.label] * t
                columns["prediction"] += [int(pred)] * t
                columns["rationale"] += list(ex.rationale) if ex.rationale is not None else [None] * t
                columns["word_index"] += word_indices(ex.word_ids or [], t)
        return pd.DataFrame(
            {
                "example_id": np.asarray(columns["example_id"], dtype=np.int64),
                "method": pd.Series(columns["method"], dtype=str),
                "position": np.asarray(columns["position"], dtype=np.int32),
                "token": pd.Series(columns["token"], dtype=str),
                "token_id": np.asarray(columns["token_id"], dtype=np.int64),
                "score": np.asarray(columns["score"], dtype=np.float64),
                "base_value": np.asarray(columns["base_value"], dtype=np.float64),
                "model_output": np.asarray(columns["model_output"], dtype=np.float64),
                "target": np.asarray(columns["target"], dtype=np.int64),
                "label": np.asarray(columns["label"], dtype=np.int64),
                "prediction": np.asarray(columns["prediction"], dtype=np.int64),
                "rationale": pd.array(columns["rationale"], dtype="Int8"),  # <NA> without rationales
                "word_index": pd.array(columns["word_index"], dtype="Int32"),  # <NA> for specials
            }
        )

    def _write_attention(self, model: nn.Module, examples: list[ExampleInput], out_dir: Path) -> list[str]:
        tensors: dict[str, np.ndarray] = {}
        pngs: list[str] = []
        for ex in examples:
            att = self._attentions(model, ex)
            if att is None:
                log.warning("explain: the model returned no attentions; no heatmaps")
                break
            tensors[f"example_{ex.example_id}"] = att
            rel = f"{relative_to(ATTENTION_HEATMAPS_DIR, EXPLANATIONS_DIR)}/example_{ex.example_id}.png"
            attention_heatmaps_png(att, ex.tokens, out_dir / rel)
            pngs.append(rel)
        np.savez_compressed(out_dir / file_name(ATTENTION_TENSORS), **tensors)
        return pngs

    def _write_pages(
        self,
        examples: list[ExampleInput],
        by_method: dict[str, list[Explanation]],
        label_names: Sequence[str],
        probs: np.ndarray,
        predictions: np.ndarray,
        metrics: dict[str, float],
        heatmaps: list[str],
        context: dict[str, Any],
        out_dir: Path,
    ) -> None:
        (out_dir / relative_to(EXPLAIN_EXAMPLES_DIR, EXPLANATIONS_DIR)).mkdir(exist_ok=True)
        rows = []
        for i, ex in enumerate(examples):
            pred = int(predictions[i])
            page = render_example_html(
                ex, {m: expls[i] for m, expls in by_method.items()}, label_names, pred, probs[i], context,
                links=[("← all explanations", link(EXPLAIN_INDEX, EXPLAIN_EXAMPLES_DIR)),
                       ("run report", link(REPORT_HTML, EXPLAIN_EXAMPLES_DIR))],
            )
            (out_dir / example_page(ex.example_id)).write_text(page, encoding="utf-8")
            rows.append(
                IndexRow(
                    example_id=ex.example_id, href=example_page(ex.example_id), text=ex.text,
                    label=_name(label_names, ex.label), prediction=_name(label_names, pred),
                    probability=float(probs[i, pred]), correct=pred == ex.label,
                )
            )  # fmt: skip
        index = render_index_html(
            rows, metrics, context,
            images=[(name, (out_dir / name).read_bytes())
                    for name in (file_name(EXPLAIN_METRICS_PNG), file_name(GLOBAL_IMPORTANCE_PNG), *heatmaps)],
            links=[("run report", link(REPORT_HTML, EXPLANATIONS_DIR))],
            bins_note=bins_note(self.fractions, [len(ex.ids) for ex in examples]),
        )
        (out_dir / file_name(EXPLAIN_INDEX)).write_text(index, encoding="utf-8")


def _name(label_names: Sequence[str], index: int) -> str:
    return label_names[index] if 0 <= index < len(label_names) else str(index)
