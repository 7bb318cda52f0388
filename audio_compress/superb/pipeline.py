"""Train and evaluate one SUPERB task for one upstream through s3prl, and write ``metrics.json``.

:func:`run_task` builds the ``run_downstream.py`` command lines (our config with ``-c``, every
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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import yaml

from audio_compress.superb.tasks import TaskSpec, get_task

__all__ = [
    "UpstreamSpec",
    "parse_upstream",
    "parse_overrides",
    "format_overrides",
    "effective_config",
    "task_overrides",
    "train_argv",
    "evaluate_argv",
    "read_record",
    "metrics_from_record",
    "run_task",
    "TaskFailed",
    "file_sha256",
]

RUNNER = "audio_compress.superb.runner"


class TaskFailed(RuntimeError):
    """A SUPERB run that did not produce its metrics."""


@dataclass(frozen=True)
class UpstreamSpec:
    """An upstream to evaluate: s3prl hub ``name``, optional checkpoint, result-table ``tag``."""

    name: str
    ckpt: str | None = None
    tag: str | None = None

    @property
    def label(self) -> str:
        return self.tag or self.name


def parse_upstream(spec: str) -> UpstreamSpec:
    """``name``, ``name=ckpt`` or ``tag:name=ckpt`` (e.g. ``star_local=exp/x/student.pt``)."""
    spec = spec.strip()
    tag = None
    head, eq, ckpt = spec.partition("=")
    if ":" in head:
        tag, _, head = head.partition(":")
    if not head:
        raise ValueError(f"bad upstream spec {spec!r}; expected name[=ckpt] or tag:name[=ckpt]")
    return UpstreamSpec(head, ckpt if eq and ckpt else None, tag or None)


def _literal(text: str):
    """A Python literal (``1e-3``, ``'x'``, ``[1, 2]``), else YAML (``true``, ``[dev, test]``),
    else the string itself."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(items: Iterable[str]) -> dict[str, object]:
    """``key=value`` strings to ``{s3prl_key: value}``. Keys without an ``args.``/``config.``
    prefix are config keys (``runner.total_steps=50`` -> ``config.runner.total_steps``); values
    are Python literals or YAML (``1e-3``, ``[dev, test]``, ``true``, strings)."""
    out: dict[str, object] = {}
    for item in items:
        for part in [p for p in str(item).split(",,") if p.strip()]:
            key, eq, value = part.partition("=")
            key = key.strip()
            if not eq or not key:
                raise ValueError(f"override {part!r} is not key=value")
            if not key.startswith(("config.", "args.")):
                key = "config." + key
            out[key] = _literal(value.strip())
    return out


def format_overrides(overrides: Mapping[str, object]) -> str:
    """s3prl's ``-o`` string: ``key=<python literal>`` joined by ``,,`` (s3prl splits each
    field at ``=`` and ``eval``s the value, so values are written as Python literals)."""
    fields = []
    for key, value in overrides.items():
        text = repr(value)
        if "=" in text or ",," in text:
            raise ValueError(f"override {key}: value {text} contains '=' or ',,', which s3prl's "
                             "override parser cannot take")
        fields.append(f"{key}={text}")
    return ",,".join(fields)


def effective_config(config_path: str | Path, overrides: Mapping[str, object]) -> dict:
    """The config after ``config.*`` overrides (for reading values such as total_steps)."""
    config = yaml.safe_load(Path(config_path).read_text()) or {}
    for key, value in overrides.items():
        if not key.startswith("config."):
            continue
        node = config
        parts = key.split(".")[1:]
        for name in parts[:-1]:
            node = node.setdefault(name, {})
        node[parts[-1]] = value
    return config


def task_overrides(task: TaskSpec, *, mini: bool, data_root: str | Path | None,
                   roots: Mapping[str, str | Path | None] | None, s3prl_root: str | Path | None,
                   lr: float | None, paper_deviations: bool, user: Mapping[str, object]
                   ) -> tuple[dict[str, object], dict[str, object], dict]:
    """(data overrides, training overrides, info). Training overrides hold the learning rate,
    the paper deviations and the user's overrides (these win)."""
    if mini:
        if data_root is None:
            raise ValueError("mini tasks need data_root (the folder with the mini layouts)")
        layout = Path(data_root) / task.name / "layout.json"
        if not layout.is_file():
            raise FileNotFoundError(
                f"{layout} is missing: build the mini layouts first (python -m "
                "audio_compress.bin.superb layouts --train DIR --dev DIR --test DIR --out "
                f"{data_root})")
        data = task.mini_overrides(data_root)
    else:
        data = task.data_overrides(roots or {}, s3prl_root, data_root or "superb_data")
    config = effective_config(task.config_path(mini), {**data, **user})
    optimizer = config.get("optimizer") or {}
    base_lr = float(lr) if lr is not None else optimizer.get("lr")
    train: dict[str, object] = {}
    info: dict = {"paper_deviations": bool(paper_deviations)}
    if task.trains:
        if base_lr is None:
            raise ValueError(f"{task.config_path(mini)} has no optimizer.lr")
        final_lr = float(base_lr) * (task.paper_lr_scale if paper_deviations else 1.0)
        if lr is not None or final_lr != optimizer.get("lr"):
            train["config.optimizer.lr"] = final_lr
        info["lr"] = final_lr
        total = int(config.get("runner", {}).get("total_steps", 0))
        info["total_steps"] = total
        if paper_deviations and task.paper_warmup:
            warmup = task.paper_warmup if not mini else max(
                1, round(task.paper_warmup * total / task.protocol_steps))
            train["config.scheduler"] = {"name": "linear_schedule_with_warmup",
                                         "num_warmup_steps": int(warmup)}
            info["scheduler"] = train["config.scheduler"]
    train.update({k: v for k, v in user.items() if k not in data})
    data.update({k: v for k, v in user.items() if k in data})
    return data, train, info


def _ckpt_arg(ckpt: str) -> str:
    """Existing paths become absolute (the run's CWD is the experiment folder); anything else
    (a named architecture such as ``tiny_hubert``, a URL) is passed unchanged."""
    return str(Path(ckpt).resolve()) if Path(ckpt).exists() else ckpt


def train_argv(task: TaskSpec, upstream: UpstreamSpec, expdir: Path, config: Path, device: str,
               overrides: Mapping[str, object], *, seed: int = 1337, backend: str | None = None,
               record: Path | None = None, extra: Sequence[str] = ()) -> list[str]:
    """``run_downstream.py`` arguments for training (auto-resume on)."""
    argv = ["-m", "train", "-u", upstream.name]
    if upstream.ckpt:
        argv += ["-k", _ckpt_arg(upstream.ckpt)]
    argv += ["-d", task.downstream, "-c", str(config), "-p", str(expdir), "--device", device,
             "--seed", str(seed), "-a"]
    if backend:
        argv += ["--backend", backend]
    if overrides:
        argv += ["-o", format_overrides(overrides)]
    if record:
        argv += ["--record", str(record)]
    return argv + list(extra)


def evaluate_argv(ckpt: Path, split: str, device: str, overrides: Mapping[str, object], *,
                  record: Path | None = None, or_latest: bool = False) -> list[str]:
    """``run_downstream.py`` arguments to test a saved checkpoint. The device is given again:
    s3prl restores every other argument from the checkpoint, but not the device."""
    argv = ["-m", "evaluate", "-e", str(ckpt), "-t", split, "--device", device]
    if overrides:
        argv += ["-o", format_overrides(overrides)]
    if record:
        argv += ["--record", str(record)]
    if or_latest:
        argv += ["--or_latest"]
    return argv


def read_record(path: str | Path) -> dict:
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


def _write_json(path: Path, doc: Mapping) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def _run_runner(args: Sequence[str], logfile: Path, log: Callable[[str], None], *,
                nproc: int = 1, s3prl_root: str | Path | None = None, cwd: Path | None = None,
                env: Mapping[str, str] | None = None) -> None:
    cmd = [sys.executable]
    if nproc > 1:
        cmd += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    cmd += ["-m", RUNNER]
    if s3prl_root:
        cmd += ["--s3prl_root", str(Path(s3prl_root).resolve())]
    cmd += list(args)
    full_env = {**os.environ, "TQDM_MININTERVAL": os.environ.get("TQDM_MININTERVAL", "5"),
                "PYTHONUNBUFFERED": "1", **(env or {})}
    logfile.parent.mkdir(parents=True, exist_ok=True)
    log(f"running: {' '.join(cmd)}")
    with open(logfile, "a") as lf:
        lf.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n")
        lf.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=str(cwd) if cwd else None, env=full_env, bufsize=1)
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


def run_task(upstream: UpstreamSpec | str, task: TaskSpec | str, expdir: str | Path, *,
             mode: str = "both", device: str = "cpu", overrides: Iterable[str] = (),
             lr: float | None = None, paper_deviations: bool = False, mini: bool = False,
             data_root: str | Path | None = None, roots: Mapping[str, str | Path | None] | None = None,
             s3prl_root: str | Path | None = None, nproc: int = 1, force: bool = False,
             seed: int = 1337, layers: Sequence[int] | None = None,
             threads: int | None = None, log: Callable[[str], None] = print) -> dict:
    """Train (``mode`` train/both) and test (evaluate/both) ``task`` for ``upstream`` in
    ``expdir``; returns the ``metrics.json`` document (also written there)."""
    up = parse_upstream(upstream) if isinstance(upstream, str) else upstream
    spec = get_task(task) if isinstance(task, str) else task
    if mode not in ("train", "evaluate", "both"):
        raise ValueError(f"mode must be train, evaluate or both, got {mode!r}")
    expdir = Path(expdir).resolve()
    metrics_path = expdir / "metrics.json"
    if metrics_path.is_file() and not force and mode != "train":
        log(f"{up.label} / {spec.name}: {metrics_path} exists, skipped (force to redo)")
        return json.loads(metrics_path.read_text())
    if force and expdir.exists() and mode != "evaluate":
        shutil.rmtree(expdir)
    expdir.mkdir(parents=True, exist_ok=True)
    if (up.ckpt and "://" not in up.ckpt and not Path(up.ckpt).exists()
            and (os.sep in up.ckpt or Path(up.ckpt).suffix)):
        # (a bare name such as ``tiny_hubert`` may be a named architecture: ssl_teacher_local;
        # ``*_url`` upstreams take URLs)
        raise FileNotFoundError(f"upstream checkpoint {up.ckpt} does not exist")
    if s3prl_root is not None and not Path(s3prl_root).is_dir():
        s3prl_root = None
    user = parse_overrides(overrides)
    data, train_ovr, info = task_overrides(spec, mini=mini, data_root=data_root, roots=roots,
                                           s3prl_root=s3prl_root, lr=lr,
                                           paper_deviations=paper_deviations, user=user)
    if not mini:
        from audio_compress.superb.layouts import prepare_full_task

        prepare_full_task(spec.name, spec.resolve_roots(roots or {}), data_root or "superb_data")
    config = spec.config_path(mini)
    backend = "gloo" if nproc > 1 and device.startswith("cpu") else None
    logfile = expdir / "runner.log"
    start = time.time()
    env = {}
    if device.startswith("cpu"):
        # Small CPU runs: one intra-op thread per process. With several threads per process, a
        # busy machine slows tiny ops down by 10-50x (threads wait for descheduled siblings);
        # several runs in parallel (nj) use the cores instead.
        env["OMP_NUM_THREADS"] = str(threads or os.environ.get("OMP_NUM_THREADS") or 1)
    elif threads:
        env["OMP_NUM_THREADS"] = str(threads)
    common = dict(nproc=1, s3prl_root=s3prl_root, cwd=expdir, env=env)
    details: dict = {"upstream_name": up.name, "upstream_ckpt": _ckpt_arg(up.ckpt) if up.ckpt else None,
                     "upstream_sha256": file_sha256(up.ckpt), "mini": mini, "device": device,
                     "config": str(config), "eval_split": spec.eval_split,
                     "selection": spec.selection, "overrides": {**data, **train_ovr},
                     "s3prl_version": _s3prl_version(), **info}

    def one_run(run_dir: Path, extra_data: Mapping[str, object]) -> tuple[dict[str, float], dict]:
        data_all = {**data, **extra_data}
        ovr = {**data_all, **train_ovr}
        rec_train = run_dir / "scalars-train.json"
        rec_eval = run_dir / f"scalars-evaluate-{spec.eval_split}.json"
        groups: list[str] = []
        if mode in ("train", "both"):
            groups += train_argv(spec, up, run_dir, config, device, ovr, seed=seed,
                                 backend=backend, record=rec_train)
        ckpt = run_dir / spec.best_ckpt
        if spec.selection == "dev-best" and mode in ("evaluate", "both"):
            ev = evaluate_argv(ckpt, spec.eval_split, device, data_all, record=rec_eval,
                               or_latest=True)
            if groups and nproc == 1:
                groups += ["--then", *ev]
                _run_runner(groups, logfile, log, **common)
            else:
                if groups:
                    _run_runner(groups, logfile, log, **{**common, "nproc": nproc})
                _run_runner(ev, logfile, log, **common)
            record = read_record(rec_eval)
            return metrics_from_record(spec, record, spec.eval_split), {
                "checkpoint": (record.get("args") or {}).get("init_ckpt", str(ckpt))}
        if groups:
            _run_runner(groups, logfile, log, **{**common, "nproc": nproc})
        if mode == "train":
            return {}, {}
        if spec.selection == "all-states":
            return _evaluate_all_states(spec, run_dir, device, data_all, logfile, log, common)
        raise TaskFailed(f"task {spec.name}: selection {spec.selection!r} is handled elsewhere")

    if spec.selection == "no-train":
        metrics, extra = _run_qbe(spec, up, expdir, config, device, data, layers, roots, logfile,
                                  log, common)
    elif spec.folds:
        per_fold: dict[str, dict[str, float]] = {}
        for fold in spec.folds:
            log(f"{up.label} / {spec.name}: {fold}")
            per_fold[fold], _ = one_run(expdir / fold, {spec.fold_override: fold})
        if mode == "train":
            metrics, extra = {}, {}
        else:
            metrics = {k: sum(m[k] for m in per_fold.values()) / len(per_fold)
                       for k in spec.metric_keys()}
            extra = {"folds": per_fold}
    else:
        metrics, extra = one_run(expdir, {})
    details.update(extra)
    details["wall_s"] = round(time.time() - start, 1)
    details.update(_layout_info(data_root, spec.name) if mini else {})
    if mode == "train":
        log(f"{up.label} / {spec.name}: trained in {details['wall_s']} s (no evaluation: mode=train)")
        return {"upstream": up.label, "task": spec.name, "metrics": {}, "details": details}
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        raise TaskFailed(f"task {spec.name}: non-finite metrics {bad}")
    doc = {"upstream": up.label, "task": spec.name, "metrics": metrics, "details": details}
    _write_json(metrics_path, doc)
    log(f"{up.label} / {spec.name}: " + ", ".join(f"{k} = {v:.4g}" for k, v in metrics.items())
        + f" ({details['wall_s']} s) -> {metrics_path}")
    return doc


def _evaluate_all_states(spec: TaskSpec, run_dir: Path, device: str, data: Mapping[str, object],
                         logfile: Path, log, common) -> tuple[dict[str, float], dict]:
    states = _states(run_dir)
    if not states:
        raise TaskFailed(f"no states-*.ckpt in {run_dir}; was the task trained?")
    groups: list[str] = []
    records = {}
    for ckpt in states:
        out = run_dir / f"eval-{ckpt.stem}"
        records[ckpt] = out / f"scalars-evaluate-{spec.eval_split}.json"
        if records[ckpt].is_file():
            continue
        ev = evaluate_argv(ckpt, spec.eval_split, device, {**data, "args.expdir": str(out)},
                           record=records[ckpt])
        groups += (["--then"] if groups else []) + ev
    if groups:
        _run_runner(groups, logfile, log, **common)
    per_ckpt = {c.name: metrics_from_record(spec, read_record(r), spec.eval_split)
                for c, r in records.items()}
    key = spec.metrics[0]
    best = (max if key.higher_is_better else min)(per_ckpt, key=lambda c: per_ckpt[c][key.key])
    return per_ckpt[best], {"checkpoint": str(run_dir / best), "per_checkpoint": per_ckpt}


_TWV = re.compile(r"maxTWV\s*[:=]?\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_mtwv(text: str) -> float | None:
    """The maxTWV value in the output of QUESST14's ``score-TWV-Cnxe.sh``."""
    found = _TWV.findall(text)
    return float(found[-1]) if found else None


def probe_layers(up: UpstreamSpec, device: str, s3prl_root=None) -> int:
    """Number of hidden states of an upstream (runs the runner's ``--probe``)."""
    cmd = [sys.executable, "-m", RUNNER, "--probe", "-u", up.name, "--device", device]
    if up.ckpt:
        cmd += ["-k", _ckpt_arg(up.ckpt)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise TaskFailed(f"probing upstream {up.name} failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return int(json.loads(lines[-1])["num_layers"])


def _run_qbe(spec, up, expdir, config, device, data, layers, roots, logfile, log, common):
    """QbE: DTW on every layer for dev and test (no training), score each with the corpus's
    scoring script, report the test MTWV of the layer best on dev."""
    root = Path((roots or {}).get("QUESST14") or "")
    scoring = root / "scoring"
    if not (scoring / "score-TWV-Cnxe.sh").is_file():
        raise TaskFailed(f"{scoring}/score-TWV-Cnxe.sh is missing; QbE is scored with the "
                         "QUESST14 database's own scoring script")
    if layers is None:
        layers = list(range(probe_layers(up, device, common.get("s3prl_root"))))
    groups: list[str] = []
    base = ["-u", up.name] + (["-k", _ckpt_arg(up.ckpt)] if up.ckpt else [])
    for layer in layers:
        for split in ("dev", "test"):
            out = expdir / f"layer{layer}_{split}"
            if (out / "benchmark.stdlist.xml").is_file():
                continue
            groups += (["--then"] if groups else []) + [
                "-m", "evaluate", "-t", split, *base, "-d", spec.downstream, "-c", str(config),
                "-l", str(layer), "-p", str(out), "--device", device,
                "-o", format_overrides(data)]
    if groups:
        _run_runner(groups, logfile, log, **common)
    scores: dict[str, dict[int, float]] = {"dev": {}, "test": {}}
    for layer in layers:
        for split, truth in (("dev", "groundtruth_quesst14_dev"), ("test", "groundtruth_quesst14_eval")):
            out = expdir / f"layer{layer}_{split}"
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
