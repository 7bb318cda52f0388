"""s3prl command lines of a SUPERB run: the upstream spec, ``-o`` overrides, and the
``run_downstream.py`` arguments for training and evaluation."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from audio_compress.superb.tasks import TaskSpec

__all__ = [
    "UpstreamSpec",
    "ckpt_arg",
    "effective_config",
    "evaluate_argv",
    "format_overrides",
    "parse_overrides",
    "parse_upstream",
    "task_overrides",
    "train_argv",
    "upstream_argv",
]


#: model-config files: what may follow the ``@`` of ``name=ckpt@config`` (s3prl's ``-g`` is YAML)
MODEL_CONFIG_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class UpstreamSpec:
    """An upstream to evaluate: s3prl hub ``name``, optional checkpoint and model config (s3prl's
    ``-k`` / ``-g``), result-table ``tag``, and whether the checkpoint is a ``released`` one (a
    file published by others, e.g. a paper's Lightning ``.ckpt``, as opposed to our students)."""

    name: str
    ckpt: str | None = None
    tag: str | None = None
    model_config: str | None = None
    released: bool = False

    @property
    def label(self) -> str:
        """Row of the results table and folder name: the tag, else a released checkpoint's file
        name without suffix (it shares the entry with our student), else the entry name."""
        if self.tag:
            return self.tag
        if self.released and self.ckpt:
            return Path(self.ckpt).stem
        return self.name

    def as_spec(self) -> str:
        """The ``[tag:]name[=ckpt[@config.yaml]]`` text :func:`parse_upstream` reads back."""
        text = f"{self.tag}:{self.name}" if self.tag else self.name
        if self.ckpt:
            text += f"={self.ckpt}" + (f"@{self.model_config}" if self.model_config else "")
        return text


def parse_upstream(spec: str, released: bool = False) -> UpstreamSpec:
    """``[tag:]name[=ckpt[@config.yaml]]``, e.g. ``star_local=exp/x/student.pt`` or
    ``armhubert_local=ARMwavLM-S.ckpt@ARMwavLM-S.yaml``. The model config (s3prl ``-g``) follows
    the last ``@`` and must end in ``.yaml``/``.yml`` (so a checkpoint path may contain ``@``).
    ``released``: a checkpoint published by others; it must be given."""
    spec = spec.strip()
    tag = None
    head, eq, ckpt = spec.partition("=")
    if ":" in head:
        tag, _, head = head.partition(":")
    if not head:
        raise ValueError(f"bad upstream spec {spec!r}; expected [tag:]name[=ckpt[@config.yaml]]")
    model_config = None
    path, at, config = ckpt.rpartition("@")
    if at and path and config.lower().endswith(MODEL_CONFIG_SUFFIXES):
        ckpt, model_config = path, config
    if released and not (eq and ckpt):
        raise ValueError(f"released upstream {spec!r} needs its checkpoint: name=PATH[@config.yaml]")
    return UpstreamSpec(head, ckpt if eq and ckpt else None, tag or None, model_config, released)


def _literal(text: str):
    """A Python literal (``1e-3``, ``'x'``, ``[1, 2]``), else YAML (``true``, ``[dev, test]``),
    else the string itself."""
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



def ckpt_arg(ckpt: str) -> str:
    """Existing paths become absolute (the run's CWD is the experiment folder); anything else
    (a named architecture such as ``tiny_hubert``, a URL) is passed unchanged."""
    return str(Path(ckpt).resolve()) if Path(ckpt).exists() else ckpt


def upstream_argv(upstream: UpstreamSpec) -> list[str]:
    """``-u NAME [-k CKPT] [-g MODEL_CONFIG]`` (existing paths absolute: s3prl stores them in its
    checkpoints and evaluation restores them, from another working directory)."""
    argv = ["-u", upstream.name]
    if upstream.ckpt:
        argv += ["-k", ckpt_arg(upstream.ckpt)]
    if upstream.model_config:
        argv += ["-g", ckpt_arg(upstream.model_config)]
    return argv


def train_argv(task: TaskSpec, upstream: UpstreamSpec, expdir: Path, config: Path, device: str,
               overrides: Mapping[str, object], *, seed: int = 1337, backend: str | None = None,
               record: Path | None = None, extra: Sequence[str] = ()) -> list[str]:
    """``run_downstream.py`` arguments for training (auto-resume on)."""
    argv = ["-m", "train", *upstream_argv(upstream)]
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
