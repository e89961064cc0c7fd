"""mlflow.models.evaluate(model_type="classifier") against what the report builds itself:
python bench/bench_evaluate.py [--n-test 400]

A tiny classifier is logged as the run's LoggedModel into a throwaway sqlite store (the pipeline's
own path); on the same test split (the default data's size, 400 texts) this one process measures
side by side:

1. ours: the report's path: load the run's model without unpickling, predict, count the confusion
   matrix and draw its PNG (``glassworks.report.figures``);
2. ``evaluate`` on those predictions (``predictions=`` column, no model): what it computes alone;
3. ``evaluate`` with the model itself, loaded with ``mlflow.pyfunc.load_model`` and wrapped to
   return one label per text (evaluate's classifier wants a single prediction column; our pyfunc
   returns one probability column per class).

and prints the seconds, the ratio to ours, and which metrics and artifacts evaluate produced (no
ROC/PR curves without a ``predict_proba`` it can reach: it only finds one on sklearn, xgboost and
catboost models).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from bench.results import emit  # noqa: E402
from glassworks.data.synthetic import generate_split  # noqa: E402
from glassworks.data.tokenizer import TextTokenizer, TokenizerConfig  # noqa: E402
from glassworks.models.transformer import TransformerConfig  # noqa: E402
from glassworks.report.figures import confusion_matrix, confusion_png  # noqa: E402
from glassworks.tracking.logged_model import logged_model_uri, run_model_id  # noqa: E402
from glassworks.tracking.pyfunc import load_run_model, log_pyfunc_model  # noqa: E402
from glassworks.tracking.tracker import MLflowTracker  # noqa: E402

LABELS = ["negative", "positive"]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-test", type=int, default=400)
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"

    shape = dict(min_words=6, max_words=12, negation_prob=0.3, two_evidence_prob=0.15,
                 distractor_prob=0.1)  # conf/data/synthetic.yaml
    train = generate_split(400, seed=0, split="train", **shape)
    test = generate_split(args.n_test, seed=1, split="test", **shape)
    tokenizer = TextTokenizer.train([e.text for e in train], TokenizerConfig())
    torch.manual_seed(0)
    model = TransformerConfig(d_model=32, n_heads=2, n_layers=2, d_ff=64, dropout=0.0,
                              max_positions=64).build(tokenizer.vocab_size, len(LABELS), tokenizer.pad_id).eval()
    tracker = MLflowTracker(tracking_uri=uri, store_dir=str(tmp), system_metrics=False)
    run_id = tracker.start("bench-evaluate", {})
    log_pyfunc_model(tracker, model, tokenizer, LABELS, 64, [e.text for e in test[:3]])
    texts, y_true = [e.text for e in test], np.array([e.label for e in test])

    def ours():
        loaded = load_run_model(run_id, uri)
        y_pred = loaded.predict_proba(texts).argmax(axis=1)  # (N,)
        matrix = confusion_matrix(y_true, y_pred, len(LABELS))
        return y_pred, matrix, confusion_png(matrix, LABELS)

    t_ours, (y_pred, matrix, png) = timed(ours)

    mlflow.set_tracking_uri(uri)  # evaluate logs through the fluent API only
    frame = pd.DataFrame({"text": texts, "label": y_true, "prediction": y_pred})

    def static():
        with mlflow.start_run(experiment_id=tracker.experiment_id, run_name="evaluate-static"):
            return mlflow.models.evaluate(data=frame[["label", "prediction"]], targets="label", predictions="prediction",
                                          model_type="classifier", evaluator_config={"log_model_explainability": False})

    model_id = run_model_id(tracker.client, run_id)

    def with_model():
        pyfunc = mlflow.pyfunc.load_model(logged_model_uri(model_id))

        def labels(df: pd.DataFrame) -> np.ndarray:
            return pyfunc.predict(df[["text"]]).to_numpy().argmax(axis=1)

        with mlflow.start_run(experiment_id=tracker.experiment_id, run_name="evaluate-model"):
            return mlflow.models.evaluate(labels, data=frame[["text", "label"]], targets="label",
                                          model_type="classifier", evaluator_config={"log_model_explainability": False})

    t_first, _ = timed(static)  # the first call also imports evaluate's modules (what a pipeline process pays)
    t_static, result = timed(static)
    t_model, result_model = timed(with_model)
    tracker.end("FINISHED")
    same = np.array_equal(pd.Series(y_pred).to_numpy(), frame["prediction"].to_numpy())

    print(f"test split: {len(texts)} texts, {len(LABELS)} classes")
    print(f"ours (load without unpickling, predict, confusion matrix + PNG): {t_ours:7.2f} s")
    print(f"evaluate(predictions=...), first call in the process          : {t_first:7.2f} s  x{t_first / t_ours:.1f}")
    print(f"evaluate(predictions=...)                                     : {t_static:7.2f} s  x{t_static / t_ours:.1f}")
    print(f"evaluate(model=pyfunc.load_model(models:/<id>))              : {t_model:7.2f} s  x{t_model / t_ours:.1f}")
    print(f"evaluate's metrics: {sorted(result.metrics)}")
    print(f"evaluate's artifacts: {sorted(result.artifacts)}")
    print(f"  with the model: {sorted(result_model.artifacts)}")
    print(f"same predictions: {same}; accuracy ours {np.trace(matrix) / matrix.sum():.4f} "
          f"evaluate {result.metrics['accuracy_score']:.4f}; our confusion PNG {len(png)} bytes")
    emit("evaluate", {"evaluate_first_call_over_ours": t_first / t_ours, "evaluate_over_ours": t_static / t_ours,
                      "evaluate_with_model_over_ours": t_model / t_ours},
         {"ours_s": t_ours, "evaluate_first_call_s": t_first, "evaluate_s": t_static, "evaluate_with_model_s": t_model,
          "n_test": len(texts), "same_predictions": bool(same),
          "accuracy_ours": float(np.trace(matrix) / matrix.sum()),
          "accuracy_evaluate": float(result.metrics["accuracy_score"])})


if __name__ == "__main__":
    main()
