"""Explain stage: python -m pipeline.explain run_id=<id> [explain.methods=[shap,rollout] ...]

Loads the model and tokenizer from the run's ``model/`` artifact and the data from the run's
logged config, explains a seeded stratified sample of the test split with every configured
method, scores the explanations, and logs metrics ``explain/<method>/<metric>`` and the folder
``explanations/`` into the same run. ``pipeline.run`` calls :func:`explain` right after training
through exactly this path (the model is read back from MLflow, not taken from memory).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from glassworks.data.rationale import token_rationale
from glassworks.explain.runner import ExplainResult, ExplainRunner
from glassworks.explain.selection import select_examples
from glassworks.explain.types import ExampleInput
from glassworks.tracking.pyfunc import LoadedModel, load_run_model
from glassworks.scratch import scratch_dir, scratch_session
from pipeline.stage import build, build_job, clean_errors, finished_run, print_run_location, require_artifact

log = logging.getLogger("glassworks.explain")


def load_run_data(tracker: Any, datamodule: Any = None) -> Any:
    """The run's DataModule: the one in memory, or rebuilt from the run's logged config."""
    if datamodule is not None:
        return datamodule
    config_dir = tracker.download("config/config.yaml")
    run_cfg = OmegaConf.load(config_dir)
    datamodule = build(run_cfg.data, "data")
    datamodule.prepare()
    logged = tracker.client.get_run(tracker.run_id).data.tags.get("glassworks.data.digest")
    if logged and logged != datamodule.digest:
        log.warning("data digest %s differs from the run's %s: the data changed since training",
                    datamodule.digest, logged)
    return datamodule


def examples_for(loaded: LoadedModel, datamodule: Any, n: int, seed: int) -> list[ExampleInput]:
    test = datamodule.split_frame("test")
    texts = test["text"].tolist()
    predictions = loaded.predict_proba(texts).argmax(axis=1)  # (N,)
    rows = select_examples(test, predictions, n=min(n, len(test)), seed=seed)
    examples = []
    for row in rows:
        encoded = loaded.tokenizer.encode(texts[row], loaded.max_length)
        words = list(test["rationale"].iloc[row]) if datamodule.has_rationales else []
        rationale = token_rationale(words, encoded.word_ids) if words else None
        examples.append(ExampleInput(example_id=int(row), text=texts[row],
                                     label=int(test["label"].iloc[row]), ids=list(encoded.ids),
                                     tokens=list(encoded.tokens), rationale=rationale))
    return examples


def explain(cfg: DictConfig, tracker: Any, datamodule: Any = None) -> ExplainResult:
    """Explain the model of ``tracker.run_id`` and log everything into that run."""
    explain_cfg = cfg.explain  # checked by build_job: known methods, valid budgets
    loaded = load_run_model(tracker.run_id, tracker.uri)
    pad_id = loaded.tokenizer.pad_id
    explainers = [build(explain_cfg[m], f"explain.{m}", pad_id=pad_id) for m in explain_cfg.methods]
    datamodule = load_run_data(tracker, datamodule)
    examples = examples_for(loaded, datamodule, explain_cfg.n_examples, explain_cfg.seed)
    runner = ExplainRunner(explainers, mask_id=loaded.tokenizer.mask_id, pad_id=pad_id,
                           n_heatmaps=explain_cfg.n_heatmaps, random_seed=explain_cfg.seed)
    out_dir = scratch_dir("explain")
    context = {"run_id": tracker.run_id, "data": datamodule.name, "seed": explain_cfg.seed,
               "methods": ", ".join(explain_cfg.methods)}
    result = runner.run(loaded.model, examples, loaded.label_names, out_dir, context)

    finite = {f"explain/{k}": v for k, v in result.metrics.items() if np.isfinite(v)}
    tracker.log_metrics(finite)
    tracker.log_artifacts(out_dir, "explanations")
    tracker.log_table(result.table, "explanations/attributions.json")
    tracker.log_text(OmegaConf.to_yaml(explain_cfg, resolve=True), "explanations/config.yaml")
    log.info("explanations logged to %s", tracker.artifact_uri("explanations"))
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="explain")
def main(cfg: DictConfig) -> None:
    with clean_errors(cfg), scratch_session():  # no glassworks-* temp folder outlives the command
        job = build_job(cfg, with_data=False)
        tracker = job.tracker
        finished_run(tracker, cfg.run_id)
        require_artifact(tracker, cfg.run_id, "model/MLmodel", "it was trained with logger.log_model=false")
        tracker.attach(cfg.run_id)
        with tracker.lifecycle("explain"):
            result = explain(cfg, tracker)
        scores = {k.split("/")[0]: round(v, 3) for k, v in result.metrics.items() if k.endswith("/comprehensiveness")}
        print_run_location(tracker, done=f"pipeline.explain finished: {result.table['example_id'].nunique()} "
                                         f"examples, comprehensiveness {scores}; see explanations/index.html")


if __name__ == "__main__":
    main()
