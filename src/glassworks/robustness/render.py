"""The adversarial page: the successful attacks, original | perturbed, edits marked.

Rendered by the ``adversarial.html`` template of :mod:`glassworks.render` (autoescaped, the one
CSS and CSP of ``base.html``): token strings are arbitrary user text and reach the page only as
data. This module only decides what is shown.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from glassworks.render import fmt, render_page
from glassworks.render.tokens import EMPTY_TOKEN
from glassworks.robustness.attack import AttackRecord
from glassworks.tracking.contract import EXPLAIN_INDEX, REPORT_HTML, ROBUSTNESS_DIR, flip_rate_key, link

SUMMARY_COLUMNS = (
    ("attack_success", "attack success \u2191"),
    ("mean_edits", "mean edits (successes) \u2193"),
    ("mean_prob_drop", "mean p drop \u2191"),
    ("model_calls_per_attack", "model calls / attack"),
    ("deletion_auc", "deletion AUC \u2193"),
    ("insertion_auc", "insertion AUC \u2191"),
    (flip_rate_key(1), "flip rate @1 \u2191"),
    ("stability", "stability \u2191"),
)


def _label(label_names: Sequence[str], index: int) -> str:
    return f"{label_names[index]} ({index})" if 0 <= index < len(label_names) else str(index)


def _shown(ids: Sequence[int], id_to_token: Callable[[int], str]) -> list[str]:
    """Every token of a row as shown ([CLS] included, the template skips position 0)."""
    return [token if (token := str(id_to_token(int(i)))) != "" else EMPTY_TOKEN for i in ids]


def _attack(r: AttackRecord, id_to_token: Callable[[int], str], label_names: Sequence[str]) -> dict:
    changes = ", ".join(
        f"#{p}: {id_to_token(int(r.original_ids[p]))} \u2192 {id_to_token(int(r.perturbed_ids[p]))}" for p in r.edited_positions
    )
    target = _label(label_names, r.target)
    meta = (
        f"{target} \u2192 {_label(label_names, r.prediction_after)} \u00b7 "
        f"p({target}) {fmt(r.prob_before)} \u2192 {fmt(r.prob_after)} \u00b7 "
        f"{r.n_edits} edit(s), {r.n_model_calls} model call(s) \u00b7 {changes}"
    )
    return {"method": r.method, "example_id": r.example_id, "meta": meta, "edited": set(r.edited_positions),
            "original": _shown(r.original_ids, id_to_token), "perturbed": _shown(r.perturbed_ids, id_to_token)}


def render_adversarial_html(
    records: Sequence[AttackRecord],
    id_to_token: Callable[[int], str],
    label_names: Sequence[str],
    metrics: Mapping[str, float],
    max_examples: int = 200,
    title: str = "Adversarial examples",
) -> str:
    """The page: a per-method summary table, then every successful attack (fewest edits first,
    at most `max_examples`), original and perturbed tokens side by side with the edits marked."""
    methods = list(dict.fromkeys(r.method for r in records))
    wins = sorted((r for r in records if r.success), key=lambda r: (methods.index(r.method), r.n_edits, r.example_id))
    counts = Counter(r.method for r in wins)
    summary = [(m, [metrics.get(f"{m}/{key}", math.nan) for key, _ in SUMMARY_COLUMNS]) for m in methods]
    return render_page(
        "adversarial.html", title=title, columns=SUMMARY_COLUMNS, summary=summary, n_wins=len(wins),
        n_records=len(records), counts=", ".join(f"{m}: {counts.get(m, 0)}" for m in methods),
        attacks=[_attack(r, id_to_token, label_names) for r in wins[: max(0, int(max_examples))]],
        links=[("run report", link(REPORT_HTML, ROBUSTNESS_DIR)), ("explanations", link(EXPLAIN_INDEX, ROBUSTNESS_DIR))],
    )
