"""Reading an original fairseq / unilm checkpoint file into a :class:`FairseqCheckpoint`.

A fairseq checkpoint (``hubert_base_ls960.pt``, ``wav2vec_small.pt``, ``WavLM-Base.pt``) is a
pickled dict with

* ``"model"``: the state dict of the pre-training model;
* ``"cfg"``: an omegaconf container whose ``"model"`` entry holds the architecture fields
  (unilm's WavLM stores that flat field dict directly under ``"cfg"``), or, in older files,
  ``"args"``: an :class:`argparse.Namespace` with the same fields.

The file is read with :func:`compact_ssl.unpickle.load_untrusted`: fairseq's own classes (configs,
meters) become inert placeholders, anything else that is not plain data is refused, and fairseq
itself is never imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from compact_ssl.unpickle import UnsafePickleError, load_untrusted, to_plain

__all__ = ["FairseqCheckpoint", "FairseqConversionError", "load_fairseq_checkpoint"]


class FairseqConversionError(ValueError):
    """A fairseq checkpoint that cannot be converted (bad file, unknown keys, bad config)."""


@dataclass
class FairseqCheckpoint:
    """Result of :func:`load_fairseq_checkpoint`."""

    path: str
    #: fairseq-named parameters (tensors on CPU).
    state_dict: dict[str, torch.Tensor]
    #: plain dict of the model fields (``encoder_layers``, ``conv_feature_layers`` ...).
    model_cfg: dict[str, Any] = field(default_factory=dict)
    #: whether the model expects per-utterance normalised waveforms (fairseq ``normalize``).
    normalize: bool = False


def _looks_like_fairseq_state_dict(sd: Any) -> bool:
    if not isinstance(sd, Mapping) or not sd:
        return False
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        return False
    return any(k.startswith("feature_extractor.conv_layers.") for k in sd) and any(
        k.startswith("encoder.layers.") for k in sd
    )


def _check_contents(path: Path, ckpt: Any) -> None:
    """Refuse what is not a pre-training checkpoint, with a hint at what the file looks like."""
    if not isinstance(ckpt, Mapping) or "model" not in ckpt:
        keys = sorted(map(str, ckpt.keys()))[:10] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        hint = ""
        if isinstance(ckpt, Mapping) and "state_dict" in ckpt:
            hint = " (this looks like a Lightning checkpoint)"
        elif isinstance(ckpt, Mapping) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            hint = " (this looks like a bare state dict; for a transformers model pass its folder)"
        raise FairseqConversionError(
            f"{path}: not a fairseq checkpoint: expected a dict with a 'model' state dict and "
            f"'cfg' or 'args', found {keys}{hint}"
        )
    sd = ckpt["model"]
    if isinstance(sd, Mapping) and any(str(k).startswith("w2v_encoder.") for k in sd):
        raise FairseqConversionError(
            f"{path}: fine-tuned fairseq checkpoints (w2v_encoder.*) are not supported; "
            "use the pre-training checkpoint (e.g. hubert_base_ls960.pt)"
        )
    if not _looks_like_fairseq_state_dict(sd):
        raise FairseqConversionError(
            f"{path}: 'model' is not a wav2vec 2.0 / HuBERT / WavLM state dict "
            "(no feature_extractor.conv_layers.* and encoder.layers.* tensors)"
        )


def _model_fields(ckpt: Mapping) -> tuple[dict[str, Any], bool]:
    """(model fields, normalize) from ``cfg`` (fairseq's model section, or unilm's flat dict)
    or the legacy ``args``; ``normalize`` comes from the task section when it has one."""
    model_cfg: dict[str, Any] = {}
    normalize = None
    cfg = ckpt.get("cfg")
    args = ckpt.get("args")
    if cfg is not None:
        cfg = to_plain(cfg)
        if isinstance(cfg, Mapping) and isinstance(cfg.get("model"), Mapping):
            model_cfg = dict(cfg["model"])
            task = cfg.get("task")
            if isinstance(task, Mapping) and task.get("normalize") is not None:
                normalize = task["normalize"]
        elif isinstance(cfg, Mapping):  # unilm WavLM: the model fields directly
            model_cfg = dict(cfg)
    if not model_cfg and args is not None:
        args = to_plain(args)
        if isinstance(args, Mapping):
            model_cfg = dict(args)
    if normalize is None:
        normalize = model_cfg.get("normalize")
    return model_cfg, bool(normalize)


def load_fairseq_checkpoint(path: str | Path, trust: bool = False) -> FairseqCheckpoint:
    """Read an original fairseq / unilm checkpoint without fairseq and without running its code.

    ``trust=True`` unpickles fully (only for files from a trusted source). Raises
    :class:`~compact_ssl.unpickle.UnsafePickleError` for a file that names other globals than
    plain data and fairseq classes, and :class:`FairseqConversionError` naming the file when it is
    not a readable fairseq wav2vec 2.0 / HuBERT / WavLM pre-training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FairseqConversionError(f"{path}: no such checkpoint file")
    try:
        ckpt = load_untrusted(path, what="fairseq checkpoint", placeholders=("fairseq",), trust=trust)
    except UnsafePickleError:
        raise
    except ValueError as err:
        raise FairseqConversionError(str(err)) from err
    _check_contents(path, ckpt)
    model_cfg, normalize = _model_fields(ckpt)
    return FairseqCheckpoint(
        path=str(path), state_dict=dict(ckpt["model"]), model_cfg=model_cfg, normalize=normalize
    )
