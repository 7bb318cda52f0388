"""Train and evaluate one SUPERB task for one upstream through s3prl, and write ``metrics.json``.

:func:`run` (or :func:`run_task`) builds the ``run_downstream.py`` command lines (our config with ``-c``, every
path as an absolute ``-o`` override, the device again for evaluation), runs them in a
subprocess of :mod:`audio_compress.superb.runner` (which registers our upstreams and applies
the s3prl fixes), reads the metrics the downstream expert logged, and writes
``<expdir>/metrics.json``::

    {"upstream": "star_local", "task": "ks", "metrics": {"KS_acc": 87.5},
     "details": {...how it was obtained...}}

which :func:`audio_compress.superb.results.collect_metrics` merges into the results table.

Checkpoint selection follows each task's protocol (:mod:`audio_compress.superb.tasks`): the
best-on-dev checkpoint for most tasks, every saved checkpoint for ASV (lowest EER), the best
layer on dev for QbE (no training), the mean over the five folds for ER.

Re-running is safe: a finished (upstream, task) with ``metrics.json`` is skipped unless
``force``; an interrupted training resumes from its last ``states-*.ckpt`` (s3prl ``-a``).
s3prl checkpoints store only the upstream's *name* and checkpoint *path*, so the path must still
hold the same model at evaluation; its SHA-256 is recorded in ``details``.

A run is described by a :class:`RunSpec`; :func:`plan_run` checks it and prepares the
experiment folder, :func:`execute_plan` runs s3prl as the task's protocol says and
:func:`report_run` writes ``metrics.json``. The command lines come from
:mod:`audio_compress.superb.commands`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio_compress.superb.commands import (
    UpstreamSpec,
    ckpt_arg,
    effective_config,
    evaluate_argv,
    format_overrides,
    parse_overrides,
    parse_upstream,
    task_overrides,
    train_argv,
    upstream_argv,
)
from audio_compress.superb.tasks import TaskSpec, get_task
from compact_ssl.io import write_json

__all__ = [
    # re-exported from audio_compress.superb.commands
    "UpstreamSpec", "parse_upstream", "parse_overrides", "format_overrides", "effective_config",
    "task_overrides", "train_argv", "evaluate_argv", "upstream_argv",
    # a run: spec -> plan -> execution -> report
    "RunSpec", "RunPlan", "finished_run", "plan_run", "execute_plan", "report_run", "run", "run_task",
    "TaskFailed", "read_record", "metrics_from_record", "file_sha256", "parse_mtwv", "check_upstream", "probe_layers",
    "failure_cause",
]

RUNNER = "audio_compress.superb.runner"


class TaskFailed(RuntimeError):
    """A SUPERB run that did not produce its metrics."""


@dataclass
class RunSpec:
    """One (upstream, task) run, as the command line describes it.

    ``mode`` train / evaluate / both; ``overrides`` are ``key=value`` strings
    (:func:`parse_overrides`); ``lr`` replaces the config's learning rate; ``mini`` runs the mini
    config on the layouts in ``data_root`` (full tasks put derived metadata there); ``roots`` are
    the dataset roots by ``db.sh`` name; ``nproc`` DDP processes per training; ``force`` redoes a
    finished run; ``layers`` are QbE's layers (default: all); ``threads`` intra-op threads per
    process (CPU default 1); ``trust`` lets our s3prl entries unpickle checkpoint files fully
    (which can run code in them: only for trusted files that the safe reader refuses); ``log``
    receives every line of progress and runner output.
    """

    upstream: UpstreamSpec | str
    task: TaskSpec | str
    expdir: str | Path
    mode: str = "both"
    device: str = "cpu"
    overrides: Iterable[str] = ()
    lr: float | None = None
    paper_deviations: bool = False
    mini: bool = False
    data_root: str | Path | None = None
    roots: Mapping[str, str | Path | None] | None = None
    s3prl_root: str | Path | None = None
    nproc: int = 1
    force: bool = False
    seed: int = 1337
    layers: Sequence[int] | None = None
    threads: int | None = None
    trust: bool = False
    log: Callable[[str], None] = print


@dataclass
class RunPlan:
    """A checked :class:`RunSpec`: resolved upstream, task and folders, the s3prl overrides and
    the environment of the runner subprocesses."""

    spec: RunSpec
    upstream: UpstreamSpec
    task: TaskSpec
    expdir: Path
    #: the s3prl checkout, ``None`` when not given or not a folder
    s3prl_root: str | Path | None
    #: data overrides (paths of the task's data)
    data: dict[str, object]
    #: training overrides (learning rate, paper deviations, the user's other overrides)
    train: dict[str, object]
    env: dict[str, str]
    #: how the metrics were obtained; completed by :func:`execute_plan` and :func:`report_run`
    details: dict
    #: ``time.time()`` when the run started (for ``wall_s``)
    start: float

    @property
    def config(self) -> Path:
        return self.task.config_path(self.spec.mini)

    @property
    def logfile(self) -> Path:
        return self.expdir / "runner.log"

    @property
    def metrics_path(self) -> Path:
        return self.expdir / "metrics.json"

    @property
    def backend(self) -> str | None:
        """gloo for DDP on CPU (s3prl's default, nccl, needs GPUs)."""
        return "gloo" if self.spec.nproc > 1 and self.spec.device.startswith("cpu") else None


def read_record(path: str | Path) -> dict:
    """The scalars and arguments the runner's ``--record`` wrote for one invocation."""
    path = Path(path)
    if not path.is_file():
        raise TaskFailed(f"{path} was not written: the s3prl run did not finish (see the log)")
    return json.loads(path.read_text())


def metrics_from_record(task: TaskSpec, record: Mapping, split: str) -> dict[str, float]:
    """Our metrics from the scalars an evaluation logged (last value of each tag)."""
    values: dict[str, float] = {}
    scalars = record.get("scalars", [])
    for metric in task.metrics:
        tag = metric.tag_for(split)
        found = [s["value"] for s in scalars if s["tag"] == tag]
        if not found:
            seen = sorted({s["tag"] for s in scalars})
            raise TaskFailed(f"task {task.name}: s3prl logged no {tag!r} (logged: {seen})")
        values[metric.key] = float(found[-1]) * metric.scale
    return values


def file_sha256(path: str | Path | None) -> str | None:
    """SHA-256 of a file, or of a folder's files (relative names and contents, sorted)."""
    if not path:
        return None
    path = Path(path)
    if not path.exists():
        return None
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _run_runner(plan: RunPlan, args: Sequence[str], nproc: int = 1) -> None:
    """Run the runner on ``args`` in the experiment folder, appending its output to the log
    (and to ``spec.log``); a non-zero exit raises :class:`TaskFailed` with the output's tail."""
    cmd = [sys.executable]
    if nproc > 1:
        cmd += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    cmd += ["-m", RUNNER]
    if plan.s3prl_root:
        cmd += ["--s3prl_root", str(Path(plan.s3prl_root).resolve())]
    if plan.spec.trust:
        cmd += ["--trust"]
    cmd += list(args)
    full_env = {**os.environ, "TQDM_MININTERVAL": os.environ.get("TQDM_MININTERVAL", "5"),
                "PYTHONUNBUFFERED": "1", **plan.env}
    log, logfile = plan.spec.log, plan.logfile
    logfile.parent.mkdir(parents=True, exist_ok=True)
    log(f"running: {' '.join(cmd)}")
    with open(logfile, "a") as lf:
        lf.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n")
        lf.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=str(plan.expdir), env=full_env, bufsize=1)
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lf.write(line)
            tail = (tail + [line.rstrip()])[-40:]
            log(line.rstrip("\n"))
        rc = proc.wait()
    if rc != 0:
        raise TaskFailed(f"s3prl runner failed with exit code {rc}; log: {logfile}\n"
                         + "\n".join(tail[-25:]))


def _s3prl_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("s3prl")
    except PackageNotFoundError:
        return None


def _states(expdir: Path) -> list[Path]:
    paths = [Path(p) for p in glob.glob(str(expdir / "states-*.ckpt"))]
    return sorted(paths, key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))


def _layout_info(data_root: str | Path | None, task: str) -> dict:
    if data_root is None:
        return {}
    path = Path(data_root) / task / "layout.json"
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text())
    return {k: doc[k] for k in ("counts", "test_classes", "num_speakers", "num_phones", "intents")
            if k in doc}


# ------------------------------------------------------------------------------------ plan

def _resolve(spec: RunSpec) -> tuple[UpstreamSpec, TaskSpec, Path]:
    up = parse_upstream(spec.upstream) if isinstance(spec.upstream, str) else spec.upstream
    task = get_task(spec.task) if isinstance(spec.task, str) else spec.task
    if spec.mode not in ("train", "evaluate", "both"):
        raise ValueError(f"mode must be train, evaluate or both, got {spec.mode!r}")
    return up, task, Path(spec.expdir).resolve()


def finished_run(spec: RunSpec) -> dict | None:
    """The ``metrics.json`` document of a finished run that is neither forced nor train-only
    (it is then skipped), else ``None``."""
    up, task, expdir = _resolve(spec)
    metrics_path = expdir / "metrics.json"
    if metrics_path.is_file() and not spec.force and spec.mode != "train":
        spec.log(f"{up.label} / {task.name}: {metrics_path} exists, skipped (force to redo)")
        return json.loads(metrics_path.read_text())
    return None


def _runner_env(spec: RunSpec) -> dict[str, str]:
    if spec.device.startswith("cpu"):
        # Small CPU runs: one intra-op thread per process. With several threads per process, a
        # busy machine slows tiny ops down by 10-50x (threads wait for descheduled siblings);
        # several runs in parallel (nj) use the cores instead.
        return {"OMP_NUM_THREADS": str(spec.threads or os.environ.get("OMP_NUM_THREADS") or 1)}
    if spec.threads:
        return {"OMP_NUM_THREADS": str(spec.threads)}
    return {}


def plan_run(spec: RunSpec) -> RunPlan:
    """Check ``spec`` and prepare its experiment folder (wiped first when forced, except for
    evaluation) and, for a full task, the derived metadata s3prl reads."""
    up, task, expdir = _resolve(spec)
    if spec.force and expdir.exists() and spec.mode != "evaluate":
        shutil.rmtree(expdir)
    expdir.mkdir(parents=True, exist_ok=True)
    if (up.ckpt and "://" not in up.ckpt and not Path(up.ckpt).exists()
            and (os.sep in up.ckpt or Path(up.ckpt).suffix)):
        # (a bare name such as ``tiny_hubert`` may be a named architecture: ssl_teacher_local;
        # ``*_url`` upstreams take URLs)
        raise FileNotFoundError(f"upstream checkpoint {up.ckpt} does not exist")
    if up.model_config and not Path(up.model_config).is_file():
        raise FileNotFoundError(f"upstream model config {up.model_config} (of {up.label}) does not exist")
    s3prl_root = spec.s3prl_root if spec.s3prl_root is not None and Path(spec.s3prl_root).is_dir() else None
    data, train, info = task_overrides(task, mini=spec.mini, data_root=spec.data_root, roots=spec.roots,
                                       s3prl_root=s3prl_root, lr=spec.lr,
                                       paper_deviations=spec.paper_deviations,
                                       user=parse_overrides(spec.overrides))
    if not spec.mini:
        from audio_compress.superb.layouts import prepare_full_task

        prepare_full_task(task.name, task.resolve_roots(spec.roots or {}), spec.data_root or "superb_data")
    start = time.time()
    details: dict = {"upstream_name": up.name, "upstream_ckpt": ckpt_arg(up.ckpt) if up.ckpt else None,
                     "upstream_sha256": file_sha256(up.ckpt), "released": up.released,
                     "upstream_model_config": ckpt_arg(up.model_config) if up.model_config else None,
                     "upstream_model_config_sha256": file_sha256(up.model_config), "trust": spec.trust,
                     "mini": spec.mini, "device": spec.device,
                     "config": str(task.config_path(spec.mini)), "eval_split": task.eval_split,
                     "selection": task.selection, "overrides": {**data, **train},
                     "s3prl_version": _s3prl_version(), **info}
    return RunPlan(spec, up, task, expdir, s3prl_root, data, train, _runner_env(spec), details, start)


# ------------------------------------------------------------------------------------- run

def _run_once(plan: RunPlan, run_dir: Path, extra_data: Mapping[str, object]) -> tuple[dict[str, float], dict]:
    """Train and/or test in ``run_dir`` (a fold's folder, or the experiment folder)."""
    spec, task = plan.spec, plan.task
    data_all = {**plan.data, **extra_data}
    ovr = {**data_all, **plan.train}
    rec_train = run_dir / "scalars-train.json"
    rec_eval = run_dir / f"scalars-evaluate-{task.eval_split}.json"
    groups: list[str] = []
    if spec.mode in ("train", "both"):
        groups += train_argv(task, plan.upstream, run_dir, plan.config, spec.device, ovr, seed=spec.seed,
                             backend=plan.backend, record=rec_train)
    ckpt = run_dir / task.best_ckpt
    if task.selection == "dev-best" and spec.mode in ("evaluate", "both"):
        ev = evaluate_argv(ckpt, task.eval_split, spec.device, data_all, record=rec_eval, or_latest=True)
        if groups and spec.nproc == 1:  # train, then test in the same process
            _run_runner(plan, [*groups, "--then", *ev])
        else:
            if groups:
                _run_runner(plan, groups, nproc=spec.nproc)
            _run_runner(plan, ev)
        record = read_record(rec_eval)
        return metrics_from_record(task, record, task.eval_split), {
            "checkpoint": (record.get("args") or {}).get("init_ckpt", str(ckpt))}
    if groups:
        _run_runner(plan, groups, nproc=spec.nproc)
    if spec.mode == "train":
        return {}, {}
    if task.selection == "all-states":
        return _evaluate_all_states(plan, run_dir, data_all)
    raise TaskFailed(f"task {task.name}: selection {task.selection!r} is handled elsewhere")


def _run_folds(plan: RunPlan) -> tuple[dict[str, float], dict]:
    """One run per fold; the metrics are the mean over the folds."""
    task = plan.task
    per_fold: dict[str, dict[str, float]] = {}
    for fold in task.folds:
        plan.spec.log(f"{plan.upstream.label} / {task.name}: {fold}")
        per_fold[fold], _ = _run_once(plan, plan.expdir / fold, {task.fold_override: fold})
    if plan.spec.mode == "train":
        return {}, {}
    metrics = {k: sum(m[k] for m in per_fold.values()) / len(per_fold) for k in task.metric_keys()}
    return metrics, {"folds": per_fold}


def execute_plan(plan: RunPlan) -> tuple[dict[str, float], dict]:
    """Run s3prl as the task's protocol says; returns (metrics, how they were obtained).
    The metrics are empty for ``mode="train"``."""
    if plan.task.selection == "no-train":
        return _run_qbe(plan)
    if plan.task.folds:
        return _run_folds(plan)
    return _run_once(plan, plan.expdir, {})


def _evaluate_all_states(plan: RunPlan, run_dir: Path, data: Mapping[str, object]
                         ) -> tuple[dict[str, float], dict]:
    """Test every saved ``states-*.ckpt`` and keep the best one (ASV's protocol)."""
    task = plan.task
    states = _states(run_dir)
    if not states:
        raise TaskFailed(f"no states-*.ckpt in {run_dir}; was the task trained?")
    groups: list[str] = []
    records = {}
    for ckpt in states:
        out = run_dir / f"eval-{ckpt.stem}"
        records[ckpt] = out / f"scalars-evaluate-{task.eval_split}.json"
        if records[ckpt].is_file():
            continue
        ev = evaluate_argv(ckpt, task.eval_split, plan.spec.device, {**data, "args.expdir": str(out)},
                           record=records[ckpt])
        groups += (["--then"] if groups else []) + ev
    if groups:
        _run_runner(plan, groups)
    per_ckpt = {c.name: metrics_from_record(task, read_record(r), task.eval_split)
                for c, r in records.items()}
    key = task.metrics[0]
    best = (max if key.higher_is_better else min)(per_ckpt, key=lambda c: per_ckpt[c][key.key])
    return per_ckpt[best], {"checkpoint": str(run_dir / best), "per_checkpoint": per_ckpt}


_TWV = re.compile(r"maxTWV\s*[:=]?\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_mtwv(text: str) -> float | None:
    """The maxTWV value in the output of QUESST14's ``score-TWV-Cnxe.sh``."""
    found = _TWV.findall(text)
    return float(found[-1]) if found else None


_CAUSE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit): .*")


def failure_cause(output: str) -> str | None:
    """The last ``SomeError: message`` line of a Python traceback (``None`` when there is none)."""
    found = [ln for ln in output.splitlines() if _CAUSE.match(ln)]
    return found[-1] if found else None


def check_upstream(up: UpstreamSpec, device: str = "cpu", trust: bool = False) -> dict:
    """Build the upstream once through its s3prl entry, exactly as the runs will (the runner's
    ``--probe`` in a subprocess: registration, checkpoint and model config), and run it on one
    second of noise: ``{"upstream", "num_layers", "dims", "downsample_rate"}``.

    Raises :class:`TaskFailed` with the loader's error (e.g. a released file without its YAML,
    or one the safe reader refuses), or the output's tail when there is no Python error.
    """
    cmd = [sys.executable, "-m", RUNNER, *(["--trust"] if trust else []), "--probe", *upstream_argv(up),
           "--device", device]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        output = proc.stdout + proc.stderr
        raise TaskFailed(failure_cause(output) or f"{' '.join(cmd)} failed (exit status {proc.returncode}):\n"
                         + output[-2500:])
    return json.loads(lines[-1])


def probe_layers(up: UpstreamSpec, device: str, trust: bool = False) -> int:
    """Number of hidden states of an upstream (:func:`check_upstream`; s3prl's hub alone is
    enough, the checkout is not needed)."""
    return int(check_upstream(up, device, trust)["num_layers"])


def _run_qbe(plan: RunPlan) -> tuple[dict[str, float], dict]:
    """QbE: DTW on every layer for dev and test (no training), score each with the corpus's
    scoring script, report the test MTWV of the layer best on dev."""
    spec, up = plan.spec, plan.upstream
    root = Path((spec.roots or {}).get("QUESST14") or "")
    scoring = root / "scoring"
    if not (scoring / "score-TWV-Cnxe.sh").is_file():
        raise TaskFailed(f"{scoring}/score-TWV-Cnxe.sh is missing; QbE is scored with the "
                         "QUESST14 database's own scoring script")
    layers = spec.layers
    if layers is None:
        layers = list(range(probe_layers(up, spec.device, spec.trust)))
    groups: list[str] = []
    base = upstream_argv(up)
    for layer in layers:
        for split in ("dev", "test"):
            out = plan.expdir / f"layer{layer}_{split}"
            if (out / "benchmark.stdlist.xml").is_file():
                continue
            groups += (["--then"] if groups else []) + [
                "-m", "evaluate", "-t", split, *base, "-d", plan.task.downstream, "-c", str(plan.config),
                "-l", str(layer), "-p", str(out), "--device", spec.device,
                "-o", format_overrides(plan.data)]
    if groups:
        _run_runner(plan, groups)
    scores: dict[str, dict[int, float]] = {"dev": {}, "test": {}}
    for layer in layers:
        for split, truth in (("dev", "groundtruth_quesst14_dev"), ("test", "groundtruth_quesst14_eval")):
            out = plan.expdir / f"layer{layer}_{split}"
            proc = subprocess.run(["bash", "score-TWV-Cnxe.sh", str(out), truth, "-10"],
                                  cwd=scoring, capture_output=True, text=True)
            text = proc.stdout + proc.stderr
            for f in out.glob("*.out"):
                text += f.read_text(errors="replace")
            value = parse_mtwv(text)
            if value is None:
                raise TaskFailed(f"no maxTWV in the scoring output for {out}:\n{text[-2000:]}")
            scores[split][layer] = value
    best = max(scores["dev"], key=scores["dev"].get)
    return {"QbE_mtwv": scores["test"][best]}, {"best_layer": best, "mtwv": scores}


# ---------------------------------------------------------------------------------- report

def report_run(plan: RunPlan, metrics: Mapping[str, float], extra: Mapping) -> dict:
    """The ``metrics.json`` document (written to the experiment folder unless ``mode="train"``)."""
    spec, up, task, details = plan.spec, plan.upstream, plan.task, plan.details
    details.update(extra)
    details["wall_s"] = round(time.time() - plan.start, 1)
    details.update(_layout_info(spec.data_root, task.name) if spec.mini else {})
    if spec.mode == "train":
        spec.log(f"{up.label} / {task.name}: trained in {details['wall_s']} s (no evaluation: mode=train)")
        return {"upstream": up.label, "task": task.name, "metrics": {}, "details": details}
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        raise TaskFailed(f"task {task.name}: non-finite metrics {bad}")
    doc = {"upstream": up.label, "task": task.name, "metrics": metrics, "details": details}
    write_json(plan.metrics_path, doc)
    spec.log(f"{up.label} / {task.name}: " + ", ".join(f"{k} = {v:.4g}" for k, v in metrics.items())
             + f" ({details['wall_s']} s) -> {plan.metrics_path}")
    return doc


def run(spec: RunSpec) -> dict:
    """Train (``mode`` train/both) and test (evaluate/both) ``spec.task`` for ``spec.upstream``
    in ``spec.expdir``; returns the ``metrics.json`` document (also written there). A finished
    run is read back, not redone (unless ``force``)."""
    done = finished_run(spec)
    if done is not None:
        return done
    plan = plan_run(spec)
    metrics, extra = execute_plan(plan)
    return report_run(plan, metrics, extra)


def run_task(upstream: UpstreamSpec | str, task: TaskSpec | str, expdir: str | Path, **options: Any) -> dict:
    """:func:`run` for ``RunSpec(upstream, task, expdir, **options)`` (the options are the other
    fields of :class:`RunSpec`)."""
    return run(RunSpec(upstream, task, expdir, **options))
