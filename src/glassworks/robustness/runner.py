"""The robustness stage: curves, attacks and stability for every method, written to one folder."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from glassworks.explain.baseline import RandomExplainer
from glassworks.explain.predict import predict_proba
from glassworks.explain.types import ExampleInput, Explainer, Explanation
from glassworks.render.numbers import fmt
from glassworks.robustness.attack import AttackRecord, SubstitutionAttack, attack_summary, attack_table
from glassworks.robustness.curves import FLIP_KS, Curves, perturbation_curves
from glassworks.robustness.neighbours import TokenToId
from glassworks.robustness.orders import RANDOM_ORDER, explanations_by_id, method_orders
from glassworks.robustness.plots import curves_png, flip_rate_png
from glassworks.robustness.render import render_adversarial_html
from glassworks.robustness.stability import StabilityResult, explanation_stability
from glassworks.tracking.contract import (ADVERSARIAL_HTML, ATTACKS, CURVES_DELETION_PNG, CURVES_INSERTION_PNG,
                                          FLIP_RATE_PNG, N_SKIPPED, ROBUSTNESS_METRICS_JSON, file_name, flip_rate_key,
                                          metric_key)

log = logging.getLogger(__name__)


@dataclass
class RobustnessResult:
    metrics: dict[str, float]  # "<method>/<metric>" and "seconds_per_example"; may hold NaN
    attacks: pd.DataFrame  # the attacks.parquet table, columns ATTACK_COLUMNS
    out_dir: Path
    curves: dict[str, Curves] = field(default_factory=dict)
    records: dict[str, list[AttackRecord]] = field(default_factory=dict)
    stability: dict[str, StabilityResult] = field(default_factory=dict)


class RobustnessRunner:
    """Curves, attacks and stability for every attribution method, plus the random-order baseline.

    Methods are the keys of the `explanations` passed to :meth:`run`, plus ``random_order`` (a
    seeded permutation per example), which is always added so every number has a chance-level
    reference. Stability needs the explainer itself; methods without one (and ``random_order``)
    get NaN. `mask_id`, `pad_id` and `special_ids` are the tokenizer's (``TextTokenizer.mask_id``,
    ``pad_id``, ``special_ids``): the mask replaces deleted tokens, special ids are never substitutes.
    """

    def __init__(
        self,
        curve_k: int = 10,
        attack: SubstitutionAttack | None = None,
        n_stability: int = 3,
        seed: int = 0,
        *,
        mask_id: int,
        pad_id: int,
        special_ids: Sequence[int],
        batch_size: int = 512,
        stability_examples: int | None = None,
        max_html_examples: int = 200,
    ) -> None:
        if curve_k < 1:
            raise ValueError(f"RobustnessRunner: curve_k must be >= 1, got {curve_k}")
        if n_stability < 0:
            raise ValueError(f"RobustnessRunner: n_stability must be >= 0 (0 disables stability), got {n_stability}")
        if seed < 0:
            raise ValueError(f"RobustnessRunner: seed must be >= 0, got {seed}")
        if stability_examples is not None and stability_examples < 1:
            raise ValueError(f"RobustnessRunner: stability_examples must be >= 1 or None, got {stability_examples}")
        self.curve_k = int(curve_k)
        self.attack = attack if attack is not None else SubstitutionAttack(seed=seed)
        self.n_stability = int(n_stability)
        self.seed = int(seed)
        self.mask_id = int(mask_id)
        self.pad_id = int(pad_id)
        self.special_ids = tuple(int(i) for i in special_ids)
        self.batch_size = int(batch_size)
        self.stability_examples = stability_examples
        self.max_html_examples = int(max_html_examples)

    def metric_keys(self, methods: Sequence[str]) -> list[str]:
        """Every key :meth:`run` reports for these methods (``random_order`` included)."""
        names = [*methods, RANDOM_ORDER] if RANDOM_ORDER not in methods else list(methods)
        per = [flip_rate_key(k) for k in FLIP_KS if k <= self.curve_k]
        per += ["deletion_auc", "insertion_auc", "attack_success", "mean_edits", "mean_prob_drop",
                "model_calls_per_attack", "stability", N_SKIPPED]  # fmt: skip
        return [f"{m}/{p}" for m in names for p in per] + ["seconds_per_example"]

    def run(
        self,
        model: nn.Module,
        examples: Sequence[ExampleInput],
        explanations: Mapping[str, Sequence[Explanation]],
        explainers: Mapping[str, Explainer],
        id_to_token: Callable[[int], str],
        label_names: Sequence[str],
        out_dir: Path,
        token_to_id: TokenToId | None = None,
    ) -> RobustnessResult:
        """Run every test on `examples` for every method and write the artifacts into `out_dir`.

        `token_to_id` is only needed when the attack has a word list.
        """
        start = time.perf_counter()
        examples = list(examples)
        if not examples:
            raise ValueError("RobustnessRunner.run: no examples")
        ids = [e.example_id for e in examples]
        if len(set(ids)) != len(ids):
            raise ValueError(f"RobustnessRunner.run: duplicate example ids in {ids}")
        if RANDOM_ORDER in explanations:
            raise ValueError(f"RobustnessRunner.run: method name {RANDOM_ORDER!r} is reserved for the baseline")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        model.eval()

        base_probs = predict_proba(model, [e.ids for e in examples], pad_id=self.pad_id, batch_size=self.batch_size)  # (N, C)
        predicted = dict(zip(ids, base_probs.argmax(axis=1).tolist(), strict=True))  # example_id -> class
        for method, expls in explanations.items():
            explanations_by_id(examples, expls, method)  # fail fast, naming the method and example
            mismatched = [e.example_id for e in expls if e.example_id in predicted and e.target != predicted[e.example_id]
                          and np.all(np.isfinite(e.scores))]  # skipped examples explain no class
            if mismatched:
                log.warning("robustness: method %r explained another class than the prediction on examples %s", method, mismatched[:10])
        neighbours = self.attack.neighbour_index(model, self.special_ids, token_to_id)
        neighbours.prepare([t for e in examples for t in e.ids[1:]])

        methods: dict[str, Sequence[Explanation] | None] = {**explanations, RANDOM_ORDER: None}
        metrics: dict[str, float] = {}
        curves: dict[str, Curves] = {}
        records: dict[str, list[AttackRecord]] = {}
        stability: dict[str, StabilityResult] = {}
        stab_examples = examples[: self.stability_examples] if self.stability_examples else examples
        for method, expls in methods.items():
            t0 = time.perf_counter()
            orders = method_orders(examples, expls, method, self.seed)
            # Examples the method could not explain (a limit skipped them, or non-finite scores) get no order.
            metrics[metric_key(method, N_SKIPPED)] = float(sum(len(e.ids) > 1 for e in examples) - len(orders))
            curves[method] = c = perturbation_curves(
                model, examples, orders, base_probs, self.curve_k, method, mask_id=self.mask_id, pad_id=self.pad_id,
                batch_size=self.batch_size,
            )  # fmt: skip
            records[method] = self.attack.run(model, examples, orders, method, pad_id=self.pad_id,
                                              base_probs=base_probs, neighbours=neighbours)  # fmt: skip
            summary = attack_summary(records[method])
            for k in FLIP_KS:
                if k <= self.curve_k:
                    metrics[f"{method}/{flip_rate_key(k)}"] = c.flip_rate(k)
            metrics[f"{method}/deletion_auc"] = c.deletion_auc()
            metrics[f"{method}/insertion_auc"] = c.insertion_auc()
            metrics.update({f"{method}/{k}": float(v) for k, v in summary.items()})

            explainer = explainers.get(method)
            stab = math.nan
            if expls is not None and explainer is not None and self.n_stability > 0:
                n_stab = len(stab_examples)
                stability[method] = s = explanation_stability(
                    model, stab_examples, [e for e in expls if e.example_id in {x.example_id for x in stab_examples}],
                    explainer, neighbours, id_to_token, base_probs[:n_stab], self.n_stability, self.seed,
                    pad_id=self.pad_id, batch_size=self.batch_size,
                )  # fmt: skip
                stab = s.mean
                if s.n_rejected:
                    log.debug("stability %s: %d perturbations changed the prediction and were dropped", method, s.n_rejected)
            elif expls is not None and self.n_stability > 0 and method != RandomExplainer.name:  # no stability by design
                log.warning("robustness: no explainer named %r was given; its stability is NaN", method)
            metrics[f"{method}/stability"] = float(stab)
            log.info(
                "robustness %-16s deletion_auc %.3f  flip@1 %.2f  attack_success %.2f  edits %s  stability %s  %.1f s",
                method, metrics[f"{method}/deletion_auc"], metrics[f"{method}/{flip_rate_key(1)}"],
                summary["attack_success"],
                # mean_edits counts successful attacks only: NaN when none succeeded, not a number of edits
                fmt(summary["mean_edits"], 2) if math.isfinite(summary["mean_edits"]) else "– (no attack succeeded)",
                fmt(stab, 3) if math.isfinite(stab) else "–", time.perf_counter() - t0,
            )  # fmt: skip
        metrics["seconds_per_example"] = (time.perf_counter() - start) / len(examples)

        all_records = [r for rs in records.values() for r in rs]
        attacks = attack_table(all_records, id_to_token)
        attacks.to_parquet(out_dir / file_name(ATTACKS), index=False)
        (out_dir / file_name(ROBUSTNESS_METRICS_JSON)).write_text(
            json.dumps({k: (v if math.isfinite(v) else None) for k, v in metrics.items()}, indent=2, sort_keys=True)
        )
        curves_png({m: c.mean_deletion() for m, c in curves.items()}, out_dir / file_name(CURVES_DELETION_PNG),
                   "Deletion: top-k attributed words masked", baseline=RANDOM_ORDER)  # fmt: skip
        curves_png({m: c.mean_insertion() for m, c in curves.items()}, out_dir / file_name(CURVES_INSERTION_PNG),
                   "Insertion: only the top-k attributed words kept", baseline=RANDOM_ORDER)  # fmt: skip
        flip_rate_png({m: c.flip_rates() for m, c in curves.items()}, out_dir / file_name(FLIP_RATE_PNG), baseline=RANDOM_ORDER)
        page = render_adversarial_html(all_records, id_to_token, label_names, metrics, max_examples=self.max_html_examples)
        (out_dir / file_name(ADVERSARIAL_HTML)).write_text(page, encoding="utf-8")
        log.info("robustness: %d examples x %d methods, %.3f s/example",
                 len(examples), len(methods), metrics["seconds_per_example"])  # fmt: skip
        return RobustnessResult(metrics=metrics, attacks=attacks, out_dir=out_dir, curves=curves,
                                records=records, stability=stability)  # fmt: skip

