"""Export a trained student from a Lightning distillation checkpoint: to a standalone file (checked
as an s3prl upstream) or to a shareable pretrained folder with a model card filled from the run.

Checkpoints are read with :func:`compact_ssl.unpickle.load_untrusted` (no code runs while loading;
Lightning objects become inert placeholders); ``trust=True`` unpickles fully, for files from a trusted
source only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import torch
import yaml

from audio_compress.methods import METHODS
from audio_compress.models import StudentModel, get_student_config, save_student
from compact_ssl.unpickle import LIGHTNING, load_untrusted, to_plain

#: s3prl upstream entry for each distillation method.
UPSTREAM_FOR_METHOD = {name: method.upstream for name, method in METHODS.items()}

_VAL_LOSS = re.compile(r"val_loss=([0-9.eE+-]+|nan|inf|-inf)\.ckpt$")


def select_checkpoint(ckpt_dir: str | Path, which: str = "best") -> Path:
    """``best``: the ``best-*.ckpt`` with the lowest finite dev loss; ``last``: ``last.ckpt``;
    anything else is taken as a file name inside ``ckpt_dir``.

    ``best`` never falls back silently: with no best checkpoint of finite dev loss it raises
    and says to export ``--which last`` deliberately.
    """
    ckpt_dir = Path(ckpt_dir)
    if which == "best":
        scored = [(float(m.group(1)), p) for p in ckpt_dir.glob("best-*.ckpt") if (m := _VAL_LOSS.search(p.name))]
        finite = [(loss, p) for loss, p in scored if math.isfinite(loss)]
        if finite:
            return min(finite)[1]
        found = f" (found only non-finite ones: {sorted(p.name for _, p in scored)})" if scored else ""
        raise FileNotFoundError(
            f"{ckpt_dir}: no best-*.ckpt with a finite dev loss{found}; has validation run (trainer.val_every_n_steps)? "
            "Export the last checkpoint deliberately with --which last")
    path = ckpt_dir / ("last.ckpt" if which == "last" else which)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint; has the distillation stage finished?")
    return path


def read_distillation_checkpoint(ckpt_path: str | Path, trust: bool = False) -> tuple[dict, dict]:
    """The raw checkpoint dict of a :class:`~audio_compress.tasks.distill.DistillationTask` and its run
    config (plain data), read without running code unless ``trust``."""
    ckpt = load_untrusted(ckpt_path, what="Lightning checkpoint of a distillation run", placeholders=LIGHTNING,
                          trust=trust)
    hparams = to_plain(ckpt.get("hyper_parameters")) if isinstance(ckpt, dict) else None
    config = hparams.get("config") if isinstance(hparams, dict) else None
    if not isinstance(config, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{ckpt_path}: not a distillation checkpoint (no hyper_parameters.config or no state_dict)")
    return ckpt, config


def student_from_lightning(ckpt_path: str | Path, trust: bool = False) -> tuple[StudentModel, dict]:
    """Rebuild the student of a :class:`~audio_compress.tasks.distill.DistillationTask` checkpoint.

    Returns the model (eval mode) and metadata (method, step, source path).
    """
    ckpt, config = read_distillation_checkpoint(ckpt_path, trust)
    return _student_of(ckpt, config, ckpt_path)


def _student_of(ckpt: dict, config: dict, ckpt_path: str | Path) -> tuple[StudentModel, dict]:
    student = StudentModel(get_student_config(config["student"], **config.get("student_overrides", {})))
    prefix = "student."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if not state:
        raise ValueError(f"{ckpt_path}: the checkpoint holds no 'student.*' weights")
    student.load_state_dict(state, strict=True)
    student.eval()
    meta = {"method": config["method"], "step": int(ckpt.get("global_step", -1)), "source": str(ckpt_path)}
    return student, meta


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (recorded so SUPERB results can name the exact weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_student(ckpt_path: str | Path, out_path: str | Path, trust: bool = False) -> Path:
    """Write the student of ``ckpt_path`` as a standalone checkpoint at ``out_path``."""
    student, meta = student_from_lightning(ckpt_path, trust)
    return save_student(student, out_path, extra=meta)


def superb_results_of(ckpt_path: str | Path) -> Path | None:
    """``<expdir>/superb/results.json`` of a checkpoint in ``<expdir>/checkpoints/``, if it exists."""
    results = Path(ckpt_path).resolve().parent.parent / "superb" / "results.json"
    return results if results.is_file() else None


def describe_teacher(teacher: str, teacher_id: str | None = None) -> str:
    """The run's teacher in words: its path or name, and for a transformers folder its size."""
    text = f"`{teacher}`"
    config_file = Path(teacher) / "config.json"
    if config_file.is_file():
        hf = json.loads(config_file.read_text())
        text += (f" ({hf.get('model_type', 'unknown type')}, {hf.get('num_hidden_layers', '?')} layers, "
                 f"width {hf.get('hidden_size', '?')})")
    elif Path(teacher).exists():
        text += " (a checkpoint file)"
    else:
        text += " (a named architecture of audio_compress.teachers, random weights)"
    return text + (f"; released as `{teacher_id}` on the model hub." if teacher_id else ".")


def export_pretrained(ckpt_path: str | Path, out_folder: str | Path, *, results: str | Path | None = None,
                      upstream: str | None = None, teacher_id: str | None = None, datasets: tuple[str, ...] = (),
                      license: str = "other", repo_id: str | None = None, trust: bool = False) -> Path:
    """Write the student of ``ckpt_path`` as a shareable folder (``StudentModel.save_pretrained``) with a
    card filled from the run: teacher, training data, method, steps, the resolved config and, when
    ``results`` is given or ``<expdir>/superb/results.json`` exists, the SUPERB table.

    Args:
        upstream: the row of the results that is this student (default: the only non-baseline row).
        teacher_id: the teacher's hub id (card metadata ``base_model``), when known.
        datasets: hub dataset ids of the training data (card metadata).
        repo_id: the hub id the folder will be pushed to (for the card's loading example).
    """
    ckpt, config = read_distillation_checkpoint(ckpt_path, trust)
    student, meta = _student_of(ckpt, config, ckpt_path)
    method = config["method"]
    data = config.get("data", {})
    trainer = config.get("trainer", {})
    overrides = config.get("student_overrides") or {}
    budget = (f"max_steps {trainer['max_steps']}" if trainer.get("max_steps", -1) > 0
              else f"max_epochs {trainer.get('max_epochs')}")
    recipe = (f"Distilled with {METHODS[method].__name__} (`method: {method}`), optimizer steps: {meta['step']:,} "
              f"({budget}), student `{config['student']}`"
              + (f" with overrides {overrides}" if overrides else "")
              + f". Exported from `{ckpt_path}`. The recipe is `recipes/distill.sh` (e.g. "
              f"`egs/librispeech/{method}/run.sh`) with the config below.")
    return student.save_pretrained(
        out_folder, info=meta, teacher=describe_teacher(str(config["teacher"]), teacher_id), base_model=teacher_id,
        training_data=(f"Training set `{data.get('train')}` (Kaldi data dir), validation set `{data.get('dev')}`"
                       + (f", random crops of {data['crop_samples']} samples." if data.get("crop_samples") else ".")),
        datasets=datasets, recipe=recipe, config_text=yaml.safe_dump(config, sort_keys=False),
        results=results or superb_results_of(ckpt_path), upstream=upstream, license=license,
        tags=(method,), repo_id=repo_id)


def check_upstream(entry: str, path: str | Path, seconds: float = 1.0) -> list[tuple[int, ...]]:
    """Load ``path`` through ``s3prl.nn.S3PRLUpstream(entry, path)`` and run it on random audio;
    returns the hidden-state shapes."""
    from audio_compress.upstream import register

    register()
    from s3prl.nn import S3PRLUpstream

    upstream = S3PRLUpstream(entry, path_or_url=str(path))
    upstream.eval()
    wavs = torch.randn(2, int(16000 * seconds))
    lens = torch.tensor([wavs.shape[1], wavs.shape[1] // 2])
    with torch.no_grad():
        states, _ = upstream(wavs, lens)
    return [tuple(s.shape) for s in states]
