"""Any student file in: this toolkit's format or a released checkpoint, as it was published.

Layouts (:data:`LAYOUTS`), told apart by the file's content:

* ``project``: this toolkit's own format (:mod:`audio_compress.models.checkpoint`), loaded strictly;
* ``lightning_release``: a PyTorch Lightning ``.ckpt`` of the ARMHuBERT code base (ARMHuBERT,
  ARMHuBERT-S, ARMwavLM-S, MaskHuBERT, STaRHuBERT, STaRHuBERT-L, STaRWavLM): ``state_dict`` with
  ``student_model.*`` weights, next to the training YAML whose ``distiller:`` section gives the
  architecture (:func:`find_model_config` says where it is looked for);
* ``s3prl_distiller``: an s3prl DistilHuBERT pre-training checkpoint (``Distiller`` weights and
  ``Config`` inside).

STaR or ARMHuBERT family? A Lightning release with layer-wise projection heads
(``student_model.proj_head.*``) is of the ARMHuBERT family: it gets a mask embedding, keeps its
heads as the upstream's hidden states, and is built with ``arm_release_compat=True`` (its weights
were trained with the released attention-reuse code). One without heads is STaR: its upstream
exposes the layer outputs. The YAML must agree (``layerwise_proj``, ``reuse_pattern``), and so must
the s3prl entry used (:func:`check_entry`); any contradiction is an error naming both sides.

Every file is read through :func:`compact_ssl.unpickle.load_untrusted` (Lightning's own classes
become inert placeholders); ``trust=True`` unpickles fully and is only for trusted sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from audio_compress.models.checkpoint import (
    CHECKPOINT_FORMAT,
    is_student_payload,
    student_from_payload,
    validate_student_payload,
)
from audio_compress.models.released_config import distiller_config, read_distiller_section, release_config
from audio_compress.models.released_keys import (
    LIGHTNING_PREFIX,
    has_projection_heads,
    map_distiller_state,
    map_lightning_state,
)
from audio_compress.models.student import StudentModel
from compact_ssl.nn import load_state_strictly
from compact_ssl.unpickle import LIGHTNING, load_untrusted, to_plain

LAYOUTS = ("project", "lightning_release", "s3prl_distiller")
#: s3prl entry (``audio_compress.upstream``) for each ``StudentConfig.upstream_outputs``.
ENTRY_FOR_OUTPUTS = {"layers": "star_local", "projections": "armhubert_local", "distiller": "distilhubert_local"}
_ENTRY_KIND = {
    "star_local": "a STaR release (no projection heads; its upstream exposes the layer outputs)",
    "armhubert_local": "an ARMHuBERT-family release (layer-wise projection heads)",
    "distilhubert_local": "an s3prl DistilHuBERT checkpoint",
}
_HOW_TO_PASS_YAML = ("pass it explicitly: load_student(ckpt, model_config=YAML); s3prl runner -g YAML; "
                     "S3PRLUpstream(entry, ckpt, extra_conf={'model_config': YAML}); "
                     "python -m audio_compress.bin.student convert CKPT --out OUT --model_config YAML")


@dataclass
class LoadedStudent:
    """A student read from any layout.

    Attributes:
        model: the student (weights loaded, mode as built).
        layout: one of :data:`LAYOUTS`.
        source: the file read.
        model_config: the YAML the architecture came from (Lightning releases only).
        ignored_keys: released weight names deliberately not loaded (outside the student,
            STaR's ``final_proj``).
    """

    model: StudentModel
    layout: str
    source: Path
    model_config: Path | None = None
    ignored_keys: list[str] = field(default_factory=list)

    @property
    def entry(self) -> str:
        """The s3prl entry that exposes this student as its release did."""
        return ENTRY_FOR_OUTPUTS[self.model.config.upstream_outputs]


def detect_layout(obj: Any, path: str | Path) -> str:
    """Which of :data:`LAYOUTS` an unpickled file is; a clear ``ValueError`` for anything else."""
    if is_student_payload(obj):
        return "project"
    if isinstance(obj, Mapping):
        if "Distiller" in obj and "Config" in obj:
            return "s3prl_distiller"
        state = obj.get("state_dict")
        if isinstance(state, Mapping) and any(str(k).startswith(LIGHTNING_PREFIX) for k in state):
            return "lightning_release"
    keys = sorted(map(str, obj))[:12] if isinstance(obj, Mapping) else type(obj).__name__
    raise ValueError(
        f"{path}: not a {CHECKPOINT_FORMAT} checkpoint, a released STaR / ARMHuBERT Lightning checkpoint "
        f"('state_dict' with '{LIGHTNING_PREFIX}*' weights) nor an s3prl DistilHuBERT checkpoint ('Distiller' and "
        f"'Config' keys); found {keys}. A distillation checkpoint of this toolkit ('student.*' weights) is "
        "exported with python -m audio_compress.bin.export")


def find_model_config(ckpt: str | Path, model_config: str | Path | None = None) -> Path:
    """The YAML of a Lightning release: ``model_config`` if given, else ``<stem>.yaml`` beside the
    checkpoint, else the only ``*.yaml`` in its folder. The error names every place looked at."""
    ckpt = Path(ckpt)
    if model_config is not None:
        if not Path(model_config).is_file():
            raise FileNotFoundError(f"{model_config}: model_config YAML not found (given for {ckpt})")
        return Path(model_config)
    beside = ckpt.with_suffix(".yaml")
    if beside.is_file():
        return beside
    candidates = sorted(ckpt.parent.glob("*.yaml"))
    if len(candidates) == 1:
        return candidates[0]
    found = "none there" if not candidates else f"{len(candidates)}, so which one is ambiguous: " + ", ".join(
        p.name for p in candidates)
    raise FileNotFoundError(
        f"{ckpt}: a released Lightning checkpoint needs the YAML it was trained with (its 'distiller:' section gives "
        f"the architecture). Looked at: an explicit model_config (none given); {beside} (missing); "
        f"{ckpt.parent / '*.yaml'} ({found}). To fix, {_HOW_TO_PASS_YAML}")


def open_student(path: str | Path, model_config: str | Path | None = None, trust: bool = False,
                 map_location: str | torch.device = "cpu") -> LoadedStudent:
    """Read the student at ``path`` in any of :data:`LAYOUTS`.

    Args:
        path: the checkpoint file.
        model_config: the training YAML of a Lightning release (default: found beside it);
            an error for the other layouts, which carry their own config.
        trust: unpickle fully (can run code); only for files from a trusted source.
        map_location: device of the returned model.
    """
    path = Path(path)
    obj = load_untrusted(path, what="student checkpoint", placeholders=LIGHTNING, trust=trust,
                         map_location="cpu")
    layout = detect_layout(obj, path)
    if layout != "lightning_release" and model_config is not None:
        raise ValueError(f"{path}: model_config {model_config} is only for released Lightning checkpoints; this file "
                         f"({layout}) carries its own config, so leave model_config (s3prl -g) out")
    if layout == "project":
        loaded = LoadedStudent(student_from_payload(validate_student_payload(obj, path), path), layout, path)
    elif layout == "lightning_release":
        loaded = _open_lightning_release(obj["state_dict"], path, find_model_config(path, model_config))
    else:
        loaded = _open_s3prl_distiller(obj, path)
    loaded.model.to(map_location)
    return loaded


def load_student(path: str | Path, model_config: str | Path | None = None, trust: bool = False,
                 map_location: str | torch.device = "cpu") -> StudentModel:
    """The student stored at ``path``: this toolkit's format or a released checkpoint as published
    (see :func:`open_student` for the arguments)."""
    return open_student(path, model_config, trust, map_location).model


def check_entry(loaded: LoadedStudent, entry: str) -> None:
    """Refuse a released checkpoint loaded through another family's s3prl entry.

    Files of this toolkit's format are accepted by every entry: their config says what to expose.
    """
    if loaded.layout != "project" and loaded.entry != entry:
        raise ValueError(f"{loaded.source} is {_ENTRY_KIND[loaded.entry]}; load it with the s3prl entry "
                         f"{loaded.entry}, not {entry}")


def _open_lightning_release(state_dict: Mapping[str, Any], path: Path, yaml_path: Path) -> LoadedStudent:
    config = release_config(read_distiller_section(yaml_path), str(yaml_path), has_projection_heads(state_dict))
    mapped = map_lightning_state(state_dict, str(path))
    model = StudentModel(config)
    load_state_strictly(model, mapped.state_dict, path,
                          f"the weights do not match the architecture in {yaml_path} (names after mapping to this "
                          "toolkit's layout)")
    return LoadedStudent(model, "lightning_release", path, yaml_path, mapped.ignored)


def _open_s3prl_distiller(obj: Mapping[str, Any], path: Path) -> LoadedStudent:
    section = to_plain(obj["Config"])
    section = section.get("distiller") if isinstance(section, Mapping) else None
    if not isinstance(section, Mapping):
        raise ValueError(f"{path}: Config has no 'distiller' section; not an s3prl DistilHuBERT checkpoint")
    config = distiller_config(dict(section), f"{path}: Config['distiller']")
    mapped = map_distiller_state(obj["Distiller"], str(path))
    model = StudentModel(config)
    load_state_strictly(model, mapped.state_dict, path,
                          "the Distiller weights do not match Config['distiller'] (names after mapping to this "
                          "toolkit's layout)")
    return LoadedStudent(model, "s3prl_distiller", path, None, mapped.ignored)
