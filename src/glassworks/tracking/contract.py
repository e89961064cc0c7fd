"""The MLflow run contract: what a glassworks run holds, and the one place each name is spelled.

Writers and readers import these names; no tag key, artifact path or metric-key pattern is
written as a literal anywhere else under ``src/`` or ``pipeline/``.

A run (``python -m pipeline.run``; ``pipeline.train`` makes the first two stages' part)
------------------------------------------------------------------------------------------
tags
    ``glassworks.task`` the entry point that opened the run (``run``, ``train``; ``run-sweep`` on a
    sweep's parent), ``glassworks.seed``, ``glassworks.command`` (argv), ``glassworks.overrides``,
    ``mlflow.source.git.commit`` + ``glassworks.git_dirty``, ``glassworks.env.<python|platform|
    device|torch.threads|...>``, ``glassworks.data.name`` + ``glassworks.data.digest`` (the data
    fingerprint a resume or reproduction compares), ``glassworks.stages_done`` (``train,explain,...``:
    what a resume skips), ``glassworks.best_checkpoint`` (artifact path of the best epoch),
    ``glassworks.resume_checkpoint`` (local file a resume continues from),
    ``glassworks.resumes`` + ``glassworks.resume.<n>`` (how often, from which state),
    ``glassworks.error`` + ``glassworks.failed_stage`` (a FAILED or KILLED run),
    ``glassworks.reproduces`` (on a reproduction: the original's run id),
    ``glassworks.dist.<world_size|num_nodes|launcher|ranks|owner>`` (how many processes trained
    the run, on how many nodes, started by ``spawn``/``torchrun``/``srun``; which global rank
    owns the run).
params
    the composed config, flattened (``model.d_model``, ``task._target_``, ...), and
    ``data.label_names``.
metrics
    ``train/loss``, ``val/loss``, ``val/acc``, ``test/acc``, ``test/f1``, ``train/tokens_per_sec``,
    ``time/<stage>_s``; ``explain/<method>/<metric>`` (:data:`EXPLAIN_METRICS`, plus
    ``comprehensiveness_at_<bin>``), ``explain/agreement/<a>~<b>``;
    ``robustness/<method>/<metric>`` (:data:`ROBUSTNESS_METRICS`, ``flip_rate_at_<k>``).
    Metric keys are MLflow-safe where they are built (:func:`at_key`), never rewritten later.
inputs
    the dataset's train/validation/test splits (name, source, digest).
artifacts
    ``config/config.yaml`` (the resolved config: what ``resume`` and ``reproduce`` replay),
    ``config/overrides.txt``, ``config/hydra/*.yaml`` (Hydra's own files);
    ``data/stats.json`` (label names, split sizes); ``tokenizer/``; ``checkpoints/``;
    ``model_summary.json`` (base model, parameters trainable/frozen, tokenizer, max length);
    ``model`` is not a run artifact but the run's MLflow 3 LoggedModel named ``model``
    (:data:`MODEL_NAME`; ``runs:/<run_id>/model`` = ``models:/<model_id>``, a pyfunc: raw text in,
    probabilities or generated text out; weights as tensors, loaded with ``weights_only=True``;
    the run's ``test/*`` metrics linked to it); ``explanations/`` (``attributions.parquet``: one row per
    example x method x token with token, score, base value and model output; ``metrics.json``,
    ``attention_tensors.npz``, ``index.html`` + ``examples/``, ``metrics.png``,
    ``global_importance.png``, ``config.yaml``); ``robustness/`` (``attacks.parquet``,
    ``metrics.json``, ``curves_deletion.png``, ``curves_insertion.png``, ``flip_rate.png``,
    ``adversarial_examples.html``); ``report/`` (``report.html``, ``report.md``, ``report.json``
    and their figures); ``error.txt`` (the traceback of a failed run).

A derived run (``python -m pipeline.explain|robustness run_id=X``)
--------------------------------------------------------------------
A finished run is never rewritten: later work on it is a nested child run of the run it was
given (``mlflow.parentRunId`` = ``glassworks.derived_from`` = that run), tagged
``glassworks.derived_stage`` (``explain`` | ``robustness``) and ``glassworks.derived_root`` (the
trained run whose model, data and config it uses; X itself, or X's own root when X is derived).
Its params are only the stage settings that differ from its parent's (effective) settings; it
holds that stage's metrics (``explain/...`` or ``robustness/...``, ``time/<stage>_s``) and
artifacts (``explanations/`` or ``robustness/``), ``config/stage.yaml`` (the resolved config of
the command that made it) and, once reported, ``report/``. The parent keeps its params, metrics,
artifacts, tags, status and end time.

A sweep (``python -m pipeline.run -m ...``)
-------------------------------------------
One parent run (``glassworks.sweep_role=parent``) and one nested child per job
(``mlflow.parentRunId``, ``glassworks.sweep_id``, ``glassworks.sweep_job``,
``glassworks.sweep_role=child``, ``glassworks.sweep_name``). The parent holds
``glassworks.sweep.*`` tags (overrides, launcher, sweeper, optimized metric and mode, counts,
best run, failures), metrics ``sweep/*`` and ``best/<metric>``, artifacts ``sweep/summary.json``
and ``sweep/plots/``, and the best child's model is registered (tags
:data:`TAG_MODEL_SWEEP_ID`, :data:`TAG_MODEL_OPTIMIZED_METRIC`, :data:`TAG_MODEL_BEST_VALUE`; the
child's LoggedModel lists the version in :data:`TAG_LOGGED_MODEL_VERSIONS`).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import PurePosixPath

# -- tags: the run ----------------------------------------------------------------------------

TAG_TASK = "glassworks.task"                  # the entry point (task_name), not the ML task
RESUMABLE_TASKS = ("run", "train")            # entry points whose unfinished runs continue with resume=<id>
TAG_SEED = "glassworks.seed"
TAG_COMMAND = "glassworks.command"
TAG_OVERRIDES = "glassworks.overrides"
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_SOURCE_TYPE = "mlflow.source.type"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_GIT_DIRTY = "glassworks.git_dirty"
TAG_ENV_PREFIX = "glassworks.env."            # + python, platform, device, torch.threads, ...
TAG_DATA_NAME = "glassworks.data.name"
TAG_DATA_DIGEST = "glassworks.data.digest"
TAG_STAGES_DONE = "glassworks.stages_done"
TAG_BEST_CHECKPOINT = "glassworks.best_checkpoint"
TAG_RESUME_CHECKPOINT = "glassworks.resume_checkpoint"
TAG_RESUMES = "glassworks.resumes"
TAG_RESUME_PREFIX = "glassworks.resume."      # + the resume's number
TAG_ERROR = "glassworks.error"
TAG_FAILED_STAGE = "glassworks.failed_stage"
TAG_REPRODUCES = "glassworks.reproduces"
TAG_DIST_WORLD_SIZE = "glassworks.dist.world_size"
TAG_DIST_NUM_NODES = "glassworks.dist.num_nodes"
TAG_DIST_LAUNCHER = "glassworks.dist.launcher"    # "none" | "spawn" | "torchrun" | "srun"
TAG_DIST_RANKS = "glassworks.dist.ranks"          # "0,1,..." the global ranks that trained
TAG_DIST_OWNER = "glassworks.dist.owner"          # the process that owns the run (global rank 0)
TAG_NOTE = "mlflow.note.content"
TAG_LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"
TAG_DATASET_CONTEXT = "mlflow.data.context"    # on each logged dataset input: the split

# -- tags: derived runs (later work on a finished run) ---------------------------------------

TAG_DERIVED_FROM = "glassworks.derived_from"      # the run it was made from (also its mlflow.parentRunId)
TAG_DERIVED_STAGE = "glassworks.derived_stage"    # "explain" | "robustness"
TAG_DERIVED_ROOT = "glassworks.derived_root"      # the trained run whose model, data and config it uses

# -- tags: the experiment -----------------------------------------------------------------------

# What the MLflow UI opens an experiment as: the Model training view (runs, datasets, models),
# not the GenAI one (traces, sessions, judges). A kind the user set is kept.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# Appended to an experiment or run link, it opens that view whatever the browser remembered.
UI_VIEW_QUERY = "?workflowType=machine_learning"

# -- tags: sweeps -----------------------------------------------------------------------------

TAG_PARENT_RUN = "mlflow.parentRunId"
TAG_SWEEP_ID = "glassworks.sweep_id"
TAG_SWEEP_JOB = "glassworks.sweep_job"
TAG_SWEEP_ROLE = "glassworks.sweep_role"      # "parent" | "child"
TAG_SWEEP_NAME = "glassworks.sweep_name"
TAG_SWEEP_DIR = "glassworks.sweep.dir"
TAG_SWEEP_OVERRIDES = "glassworks.sweep.overrides"
TAG_SWEEP_LAUNCHER = "glassworks.sweep.launcher"
TAG_SWEEP_SWEEPER = "glassworks.sweep.sweeper"
TAG_SWEEP_OPTIMIZED_METRIC = "glassworks.sweep.optimized_metric"
TAG_SWEEP_MODE = "glassworks.sweep.mode"
TAG_SWEEP_N_JOBS = "glassworks.sweep.n_jobs"
TAG_SWEEP_N_FAILED = "glassworks.sweep.n_failed"
TAG_SWEEP_BEST_RUN_ID = "glassworks.sweep.best_run_id"
TAG_SWEEP_BEST_RUN_NAME = "glassworks.sweep.best_run_name"
TAG_SWEEP_BEST_VALUE = "glassworks.sweep.best_value"
TAG_SWEEP_FAILURES = "glassworks.sweep.failures"
TAG_SWEEP_ABORTED = "glassworks.sweep.aborted"
TAG_SWEEP_REGISTERED_MODEL = "glassworks.sweep.registered_model"
# on the registered model version of a sweep's best child
TAG_MODEL_SWEEP_ID = TAG_SWEEP_ID
TAG_MODEL_OPTIMIZED_METRIC = "glassworks.optimized_metric"
TAG_MODEL_BEST_VALUE = "glassworks.best_value"
# on the best child's LoggedModel: its registered versions ([{"name", "version"}], as MLflow writes it)
TAG_LOGGED_MODEL_VERSIONS = "mlflow.modelVersions"

# -- artifacts --------------------------------------------------------------------------------

CONFIG_DIR = "config"
CONFIG = "config/config.yaml"
CONFIG_OVERRIDES = "config/overrides.txt"
CONFIG_HYDRA_DIR = "config/hydra"
STAGE_CONFIG = "config/stage.yaml"   # on a derived run: the resolved config of the command that made it
DATA_STATS = "data/stats.json"
TOKENIZER_DIR = "tokenizer"
CHECKPOINTS_DIR = "checkpoints"
# The run's LoggedModel (glassworks.tracking.logged_model): its name, so ``runs:/<run_id>/model``
# finds it; a run logged before LoggedModels holds the same files as the artifact folder model/.
MODEL_NAME = "model"
MODEL_SUMMARY = "model_summary.json"  # base model, parameters trainable/frozen, tokenizer
ERROR_TRACEBACK = "error.txt"

EXPLANATIONS_DIR = "explanations"
ATTRIBUTIONS = "explanations/attributions.parquet"
ATTRIBUTIONS_TABLE = "explanations/attributions.json"   # the same rows as an MLflow table (UI)
EXPLAIN_METRICS_JSON = "explanations/metrics.json"
EXPLAIN_CONFIG = "explanations/config.yaml"
ATTENTION_TENSORS = "explanations/attention_tensors.npz"
ATTENTION_HEATMAPS_DIR = "explanations/attention"     # attention/example_<id>.png
EXPLAIN_INDEX = "explanations/index.html"
EXPLAIN_EXAMPLES_DIR = "explanations/examples"
GENERATION_HEATMAPS_DIR = "explanations/generation"   # task=lm: example_<i>.png/.html per explained prompt
EXPLAIN_METRICS_PNG = "explanations/metrics.png"
GLOBAL_IMPORTANCE_PNG = "explanations/global_importance.png"

ROBUSTNESS_DIR = "robustness"
ATTACKS = "robustness/attacks.parquet"
ROBUSTNESS_METRICS_JSON = "robustness/metrics.json"
CURVES_DELETION_PNG = "robustness/curves_deletion.png"
CURVES_INSERTION_PNG = "robustness/curves_insertion.png"
FLIP_RATE_PNG = "robustness/flip_rate.png"
ADVERSARIAL_HTML = "robustness/adversarial_examples.html"
GENERATION_DELETION_CURVES = "robustness/deletion_curves.json"   # task=lm: mean curve per method

REPORT_DIR = "report"
REPORT_HTML = "report/report.html"

SWEEP_DIR = "sweep"
SWEEP_SUMMARY = "sweep/summary.json"
SWEEP_PLOTS_DIR = "sweep/plots"


def resume_command(task: str | None, run_id: str) -> str | None:
    """The command that continues an unfinished run of entry point ``task`` (its ``TAG_TASK``);
    None for the others (a derived run is made again, not resumed)."""
    return f"python -m pipeline.{task} resume={run_id}" if task in RESUMABLE_TASKS else None


def file_name(artifact_path: str) -> str:
    """The file name inside its artifact folder: what a stage writes into its local out_dir
    before logging the folder (``file_name(ATTRIBUTIONS) == "attributions.parquet"``)."""
    return PurePosixPath(artifact_path).name


def relative_to(artifact_path: str, folder: str) -> str:
    """``artifact_path`` inside ``folder`` (``relative_to(EXPLAIN_EXAMPLES_DIR, EXPLANATIONS_DIR)
    == "examples"``)."""
    return str(PurePosixPath(artifact_path).relative_to(folder))


def explain_example_page(example_id: int) -> str:
    """Artifact path of one explained example's page: ``explanations/examples/example_<id>.html``."""
    return f"{EXPLAIN_EXAMPLES_DIR}/example_{int(example_id)}.html"


def link(target: str, from_folder: str) -> str:
    """A relative link between two artifacts of the same run, for a page in ``from_folder``
    (``link(EXPLAIN_INDEX, REPORT_DIR) == "../explanations/index.html"``)."""
    return posixpath.relpath(target, from_folder)


def checkpoint_artifact(file: str) -> str:
    """Artifact path of a checkpoint file logged into :data:`CHECKPOINTS_DIR`."""
    return f"{CHECKPOINTS_DIR}/{file}"


# -- metric keys ------------------------------------------------------------------------------

EXPLAIN_PREFIX = "explain"
ROBUSTNESS_PREFIX = "robustness"
TIME_PREFIX = "time"
N_SKIPPED = "n_skipped"  # explain/<method>/n_skipped, robustness/<method>/n_skipped: examples a method's limit skipped
SWEEP_PREFIX = "sweep"
BEST_PREFIX = "best"
SYSTEM_PREFIX = "system"
AGREEMENT = "agreement"


# Metrics that measure the machine, not the model (fnmatch patterns): stage timings, system
# samples, seconds per explained example (``seconds_per_example``) or generated token
# (``seconds_per_step``), training throughput. A reproduction never compares them.
MACHINE_METRICS: tuple[str, ...] = (f"{TIME_PREFIX}/*", f"{SYSTEM_PREFIX}/*", "seconds_per_*", "*/seconds_per_*",
                                    "*tokens_per_sec")


def metric_key(*parts: object) -> str:
    """``metric_key("explain", "shap", "aopc") == "explain/shap/aopc"``."""
    return "/".join(str(p) for p in parts)


def at_key(name: str, at: object) -> str:
    """A metric measured at a cut-off, MLflow-safe at the source: ``at_key("flip_rate", 5) ==
    "flip_rate_at_5"`` (MLflow metric names cannot hold ``@``)."""
    return f"{name}_at_{at}"


def flip_rate_key(k: int) -> str:
    return at_key("flip_rate", k)


def stage_time_key(stage: str) -> str:
    """Seconds a pipeline stage took: ``time/<stage>_s``."""
    return metric_key(TIME_PREFIX, f"{stage}_s")


def prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    """A stage's own metric names under its prefix (``explain/<method>/<metric>``)."""
    return {metric_key(prefix, k): v for k, v in metrics.items()}


# -- what each metric means ---------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSpec:
    """A per-method metric as the report and the sweep show it."""

    key: str             # the last part of the metric key
    display: str         # header in tables, with the direction's arrow
    higher_is_better: bool


EXPLAIN_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("comprehensiveness", "comprehensiveness ↑", True),
    MetricSpec("sufficiency", "sufficiency ↓", False),
    MetricSpec("aopc", "AOPC ↑", True),
    MetricSpec("rationale_auprc", "rationale AUPRC ↑", True),
    MetricSpec("rationale_f1", "rationale F1 ↑", True),
)
ROBUSTNESS_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("deletion_auc", "deletion AUC ↓", False),
    MetricSpec("insertion_auc", "insertion AUC ↑", True),
    MetricSpec(flip_rate_key(1), "flip rate @1 ↑", True),
    MetricSpec(flip_rate_key(5), "flip rate @5 ↑", True),
    MetricSpec("attack_success", "attack success ↑", True),
    MetricSpec("mean_edits", "mean edits ↓", False),
    MetricSpec("stability", "stability ↑", True),
)
# task=lm: scores of generation attributions against the gold evidence and the generated
# token's log-probability (glassworks.explain.generation_metrics), and its deletion curves.
GENERATION_EXPLAIN_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("hit_at_1", "gold hit@1 ↑", True),
    MetricSpec("mrr", "gold MRR ↑", True),
    MetricSpec("auprc", "gold AUPRC ↑", True),
    MetricSpec("comprehensiveness", "comprehensiveness ↑", True),
    MetricSpec("sufficiency", "sufficiency ↓", False),
)
GENERATION_ROBUSTNESS_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("deletion_auc", "deletion AUC ↓", False),
    MetricSpec("deletion_auc_ratio", "deletion AUC / random ↓", False),
)
# The metric whose presence marks a method as explained (one per method, always logged).
EXPLAIN_PRESENCE_METRIC = "comprehensiveness"
# The chance-level method every table, figure and metric compares with: ONE name everywhere. The
# explain stage's random scores rank a text's tokens in a seeded random order, which is what the
# robustness stage's baseline deletes and attacks in, so both stages call it ``random_order``.
BASELINE = "random_order"
EXPLAIN_BASELINE = BASELINE
ROBUSTNESS_BASELINE = BASELINE
LEGACY_BASELINES = ("random",)  # the explain baseline's name in runs logged before the two were one
