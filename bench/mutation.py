"""Mutation testing of the modules whose bugs silently corrupt results, each against its own fast
unit tests, with mutmut 3 (installed into .venv by this script; not a project dependency).

    nice -n 10 .venv/bin/python bench/mutation.py                 # every target, one after the other
    nice -n 10 .venv/bin/python bench/mutation.py pyfunc stability  # some targets
    .venv/bin/python bench/mutation.py --list                      # targets, files, tests
    nice -n 19 .venv/bin/python bench/mutation.py faithfulness --mutants 'glassworks.explain.metrics.x_ranking__mutmut_3'
                                                                   # re-run named mutants (a survivor, after a new test)

For each target, a scratch copy of the checkout (src/, tests/, pipeline/, conf/, pyproject.toml
with a [tool.mutmut] section naming the target's file and tests) goes under
``.scratch/mutation/<target>/``, so the checkout is never mutated in place. mutmut runs the target's
test files once to learn which test covers which function, then runs each mutant of the target's
functions against those tests only. The script prints killed/survived counts per target, every
survivor's name and its diff, and a summary table; bench/README.md records the latest figures and
why each survivor survives.

CPU heavy and the machine is shared: one worker (``--max-children 1``) by default, one target at
a time; run it under ``nice``. Not part of CI: run it before resolving an issue that touches one of
these modules (see DEVELOPERS.md).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTMUT = "mutmut==3.8.1"


@dataclass(frozen=True)
class Target:
    source: str  # the one file mutated, relative to the checkout
    tests: tuple[str, ...]  # its fast test files
    functions: tuple[str, ...] = ()  # mutmut name patterns to restrict to (default: the whole file)
    what: str = ""


TARGETS: dict[str, Target] = {
    "shap_masking": Target(
        "src/glassworks/explain/shap.py",
        ("tests/unit/test_explain_shap.py", "tests/unit/test_shap_masking_spy.py"),
        what="SHAP masking, the partition tree, the batched id model",
    ),
    "faithfulness": Target(
        "src/glassworks/explain/metrics.py", ("tests/unit/test_explain_metrics.py", "tests/unit/test_pages.py"),
        what="comprehensiveness, sufficiency, AOPC, rationale AUPRC/F1, rank agreement",
    ),
    "attention": Target(
        "src/glassworks/explain/attention.py", ("tests/unit/test_explain_methods.py",),
        what="raw attention, rollout, flow, grad-weighted attention",
    ),
    "stability": Target(
        "src/glassworks/robustness/stability.py", ("tests/unit/test_robustness_stability.py",),
        functions=("glassworks.robustness.stability.x_explanation_stability*",),
        what="robustness stability metric (Spearman rho of near-copies)",
    ),
    "robustness_curves": Target(
        "src/glassworks/robustness/curves.py", ("tests/unit/test_robustness.py",),
        functions=("glassworks.robustness.curves.x_perturbation_curves*", "glassworks.robustness.curves.xǁCurvesǁ*"),
        what="deletion/insertion curves, flip rates, AUCs, attack summary",
    ),
    "pyfunc": Target(
        "src/glassworks/tracking/pyfunc.py", ("tests/unit/test_pyfunc_meaning.py",),
        functions=("glassworks.tracking.pyfunc.xǁLoadedModelǁpredict_proba__*",
                   "glassworks.tracking.pyfunc.xǁTextClassifierPyfuncǁpredict__*"),
        what="what the logged model answers: LoadedModel.predict_proba and the pyfunc's predict",
    ),
    "pyfunc_files": Target(
        # test_hf_encoder.py holds the Hugging Face round trip (save_pretrained files, load_weights).
        "src/glassworks/tracking/pyfunc.py", ("tests/unit/test_pyfunc_meaning.py", "tests/unit/test_hf_encoder.py"),
        functions=("glassworks.tracking.pyfunc.x_load_model_dir*", "glassworks.tracking.pyfunc.x_save_model_files*",
                   "glassworks.tracking.pyfunc.x__texts*", "glassworks.tracking.pyfunc.x_load_run_model*"),
        what="the pyfunc's files: save/load, input parsing, reading a run's model",
    ),
    "resume": Target(
        "src/glassworks/training/resume.py",
        ("tests/unit/test_resume_callback.py", "tests/unit/test_resume_parts.py"),
        what="ResumeCheckpoint: when it saves, the step fix-up, RNG capture/restore",
    ),
    "history": Target(
        "src/glassworks/tracking/history.py", ("tests/unit/test_resume_parts.py",),
        what="the metric points a resumed run skips",
    ),
}

STATUSES = ("killed", "survived", "timeout", "suspicious", "no tests", "skipped", "caught by type check",
            "segfault", "not checked")


def scratch_copy(name: str, target: Target) -> Path:
    """A fresh copy of what the tests need, with a [tool.mutmut] section for this target."""
    work = ROOT / ".scratch" / "mutation" / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache")
    for folder in ("src", "tests", "pipeline", "conf"):
        shutil.copytree(ROOT / folder, work / folder, ignore=ignore)
    config = [
        "",
        "[tool.mutmut]",
        'source_paths = ["src"]',
        f"only_mutate = [{target.source!r}]".replace("'", '"'),
        'also_copy = ["pipeline", "conf"]',
        "pytest_add_cli_args_test_selection = [" + ", ".join(f'"{t}"' for t in target.tests) + "]",
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:xdist", "-q"]',
        # torch is not fork-safe once it has run: fork every mutant from a clean server process.
        'process_isolation = "forkserver"',
        "use_git_change_detection = false",
        # mutmut's time limit is ~30x the covering tests' own duration, but a module fixture's cost
        # (a model trained in the fixture) is charged to whichever test ran first: without a large
        # constant, mutants whose tests need that fixture end as timeouts instead of killed/survived.
        "timeout_constant = 120",
    ]
    pyproject = (ROOT / "pyproject.toml").read_text() + "\n".join(config) + "\n"
    (work / "pyproject.toml").write_text(pyproject)
    return work


def mutmut(work: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "mutmut"), *args]
    out = subprocess.run(command, cwd=work, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise SystemExit(f"mutmut {' '.join(args)} failed in {work} (exit {out.returncode}):\n"
                         f"{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out


def statuses(work: Path, patterns: tuple[str, ...]) -> dict[str, str]:
    """mutant name -> status, for the target's mutants (``mutmut results --all true``)."""
    out = mutmut(work, "results", "--all", "true").stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        match = re.match(r"\s*(\S+): (.+)$", line)
        if match and match.group(2).strip() in STATUSES:
            found[match.group(1)] = match.group(2).strip()
    if patterns:
        import fnmatch

        found = {k: v for k, v in found.items() if any(fnmatch.fnmatch(k, p) for p in patterns)}
    return found


def sampled(target: Target, digit: str | None) -> Target:
    """Only the mutants whose number ends in ``digit``: a 1-in-10 sample spread over the file."""
    if digit is None:
        return target
    module = target.source.removeprefix("src/").removesuffix(".py").replace("/", ".")
    patterns = target.functions or (f"{module}.*",)
    return Target(target.source, target.tests, tuple(f"{p.rstrip('*')}*{digit}" for p in patterns), target.what)


def run_target(name: str, target: Target, max_children: int, show_diffs: bool, minutes: float | None) -> dict[str, int]:
    print(f"== {name}: {target.source} against {' '.join(target.tests)}"
          + (f", mutants {' '.join(target.functions)}" if target.functions else ""), flush=True)
    work = scratch_copy(name, target)
    start = time.perf_counter()
    command = [str(Path(sys.executable).parent / "mutmut"), "run", "--max-children", str(max_children),
               *target.functions]
    log_path = work / "mutmut-run.log"
    with open(log_path, "w") as log:
        # Its own process group: mutmut's forkserver and the mutant it is testing stop with it.
        proc = subprocess.Popen(command, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = proc.wait(timeout=minutes * 60 if minutes else None)
        except subprocess.TimeoutExpired:
            # Each finished mutant's result is already on disk (mutants/*.meta); the rest count as
            # not checked. mutmut 3.8 does not always stop on Ctrl-C (seen: it ran on to the end),
            # so the group gets SIGTERM, then SIGKILL.
            for signum, grace in ((signal.SIGINT, 30), (signal.SIGTERM, 15), (signal.SIGKILL, 15)):
                try:
                    os.killpg(proc.pid, signum)
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
                except ProcessLookupError:
                    break
            print(f"   stopped after {minutes} min (--minutes): counts cover the mutants tested so far")
            returncode = 0
    seconds = time.perf_counter() - start
    if returncode != 0:
        print(log_path.read_text()[-3000:])
        raise SystemExit(f"mutmut run failed for {name} (exit {returncode}), log: {log_path}")
    result = statuses(work, target.functions)
    counts = {s: sum(1 for v in result.values() if v == s) for s in STATUSES}
    counts["total"] = len(result)
    counts["seconds"] = round(seconds)
    print(f"   {counts['killed']} killed, {counts['survived']} survived, {counts['timeout']} timeout, "
          f"{counts['no tests']} without tests, {counts['suspicious']} suspicious, {counts['not checked']} not "
          f"checked, of {len(result)} in {seconds:.0f} s", flush=True)
    for mutant, status in sorted(result.items()):
        if status in ("killed", "not checked"):
            continue
        print(f"   {status}: {mutant}")
        if show_diffs:
            diff = mutmut(work, "show", mutant, check=False).stdout
            print("\n".join("      " + line for line in diff.splitlines() if line.startswith(("+", "-"))
                            and not line.startswith(("+++", "---"))))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", choices=[[], *TARGETS], default=[], metavar="TARGET",
                        help=f"some of: {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutant workers (default 1)")
    parser.add_argument("--no-diffs", action="store_true", help="list survivors without their diffs")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop each target's run after this long (a sample: the rest are 'not checked')")
    parser.add_argument("--sample-digit", choices=list("0123456789"), default=None,
                        help="only mutants whose number ends in this digit (a 10%% sample over the whole file)")
    parser.add_argument("--mutants", nargs="+", default=None, metavar="NAME",
                        help="only these mutants (names or patterns as printed, e.g. a survivor after a new "
                             "test); needs exactly one TARGET")
    parser.add_argument("--list", action="store_true", help="print the targets and exit")
    args = parser.parse_args()
    if args.list:
        for name, t in TARGETS.items():
            print(f"{name:18s} {t.source}  [{', '.join(t.tests)}]  {t.what}")
        return
    if args.mutants and (len(args.targets) != 1 or args.sample_digit):
        parser.error("--mutants needs exactly one TARGET and no --sample-digit")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", MUTMUT], check=True)
    names = args.targets or list(TARGETS)
    chosen = {name: sampled(TARGETS[name], args.sample_digit) for name in names}
    if args.mutants:
        t = chosen[names[0]]
        chosen[names[0]] = Target(t.source, t.tests, tuple(args.mutants), t.what)
    rows = {name: run_target(name, target, args.max_children, not args.no_diffs, args.minutes)
            for name, target in chosen.items()}
    print()
    print(f"{'target':18s} {'killed':>6s} {'survived':>8s} {'timeout':>7s} {'no tests':>8s} {'unchecked':>9s} "
          f"{'score':>6s} {'s':>5s}")
    for name, c in rows.items():
        tested = c["killed"] + c["survived"] + c["timeout"] + c["suspicious"]
        score = (c["killed"] + c["timeout"]) / tested if tested else float("nan")
        print(f"{name:18s} {c['killed']:6d} {c['survived']:8d} {c['timeout']:7d} {c['no tests']:8d} "
              f"{c['not checked']:9d} {score:6.1%} {c['seconds']:5d}")


if __name__ == "__main__":
    main()
