"""Adversarial testing guided by token attributions: perturbation curves, a greedy word-substitution
attack, and the stability of explanations under prediction-preserving edits.

Every attribution method (plus a seeded random-order baseline, ``random_order``) gets:

* **deletion / insertion curves** (:mod:`.curves`) — p(originally predicted class) as the top-k
  attributed words are masked (deletion; a faithful method makes it fall fast) or as only the
  top-k are kept and the rest masked (insertion; it should rise fast), k = 0..K, and the **flip
  rate** at k (fraction of examples whose argmax changed under deletion);
* a **substitution attack** (:class:`~.attack.SubstitutionAttack`) that visits positions in the
  method's order and greedily swaps whole words for embedding-space neighbours (:mod:`.neighbours`) until the
  prediction flips or the edit budget is spent — a good attribution finds the decisive words
  first, so it needs fewer edits;
* **stability** (:mod:`.stability`) — mean Spearman correlation between the method's
  attributions of an input and of lightly perturbed copies whose prediction is unchanged.

One module per idea, in dependency order: ``orders`` (which positions matter, per method) ->
``curves``, ``neighbours`` -> ``attack`` -> ``stability`` -> ``plots``, ``render`` (the PNGs and
the adversarial page) -> ``runner`` (the stage). Nothing imports upwards, so there is no cycle.

Token conventions: position 0 is [CLS], never perturbed and never ranked. The unit of every test
is a word (``orders.units_of``: the token positions of one whitespace word, so a wordpiece
model's "##" pieces go with their word; special tokens belong to none). The special ids (the
mask used for deletion, the padding, the ids never offered as substitutes) come from the
tokenizer (``TextTokenizer.mask_id``, ``pad_id``, ``special_ids``) and are passed in explicitly.
All model evaluations go through :func:`~glassworks.explain.predict.predict_proba`, built as
whole batches first.

Layout of ``out_dir`` written by :class:`~.runner.RobustnessRunner` (the entry point logs it as
``robustness/``)::

    metrics.json                 {"<method>/<metric>": value, "seconds_per_example": value}; NaN -> null
    attacks.parquet              one row per (method, example) attack, columns ATTACK_COLUMNS
    adversarial_examples.html    successful attacks, original | perturbed, edits highlighted
    curves_deletion.png          mean deletion curve per method
    curves_insertion.png         mean insertion curve per method
    flip_rate.png                flip rate at k per method

The library never talks to MLflow: the caller logs ``RobustnessResult.metrics`` (prefixing
``robustness/``) and the folder.
"""

from glassworks.robustness.attack import (
    ATTACK_COLUMNS, AttackRecord, SubstitutionAttack, attack_summary, attack_table,
)  # fmt: skip
from glassworks.robustness.curves import FLIP_KS, Curves, perturbation_curves
from glassworks.robustness.neighbours import NeighbourIndex, TokenToId
from glassworks.robustness.orders import RANDOM_ORDER, Order, Unit, method_orders, random_order, text_of, units_of
from glassworks.robustness.runner import RobustnessResult, RobustnessRunner
from glassworks.robustness.stability import StabilityResult, explanation_stability

__all__ = [
    "ATTACK_COLUMNS", "AttackRecord", "Curves", "FLIP_KS", "NeighbourIndex", "RANDOM_ORDER", "RobustnessResult",
    "Order", "RobustnessRunner", "StabilityResult", "SubstitutionAttack", "TokenToId", "attack_summary", "attack_table",
    "explanation_stability", "method_orders", "perturbation_curves", "random_order", "text_of", "Unit", "units_of",
]  # fmt: skip
