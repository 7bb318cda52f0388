"""Export a trained student from a Lightning distillation checkpoint to a standalone file, and
check that it loads as an s3prl upstream."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import torch

from audio_compress.methods import METHODS
from audio_compress.models import StudentModel, get_student_config, save_student

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


def student_from_lightning(ckpt_path: str | Path) -> tuple[StudentModel, dict]:
    """Rebuild the student of a :class:`~audio_compress.tasks.distill.DistillationTask` checkpoint.

    Returns the model (eval mode) and metadata (method, step, source path).
    """
    ckpt = torch.load(str(ckpt_path), map_location="cpu", weights_only=False)
    try:
        config = ckpt["hyper_parameters"]["config"]
    except KeyError as err:
        raise ValueError(f"{ckpt_path}: not a distillation checkpoint (no hyper_parameters.config)") from err
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


def export_student(ckpt_path: str | Path, out_path: str | Path) -> Path:
    """Write the student of ``ckpt_path`` as a standalone checkpoint at ``out_path``."""
    student, meta = student_from_lightning(ckpt_path)
    return save_student(student, out_path, extra=meta)


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
