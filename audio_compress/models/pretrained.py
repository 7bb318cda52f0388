"""Shareable student folders: ``StudentModel.save_pretrained`` / ``StudentModel.from_pretrained``.

A folder holds ``model.safetensors``, ``config.json`` (format ``compact-ssl-student``, version 1, the
:class:`~audio_compress.models.config.StudentConfig` as plain data) and a ``README.md`` model card
(:mod:`compact_ssl.pretrained`). ``from_pretrained`` takes that folder or a hub repo id holding one
and rebuilds the student bit-exactly (eval mode).

The card states the architecture, the exact parameter count, the teacher, the training data, the
recipe and resolved config when given, and a SUPERB table when a ``results.json`` of
:mod:`audio_compress.superb.results` is given.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import torch

from audio_compress.frames import HOP, RECEPTIVE_FIELD
from audio_compress.models.config import StudentConfig
from compact_ssl.nn import count_parameters, load_state_strictly
from compact_ssl.pretrained import (
    CONFIG_FILE,
    CardInfo,
    PretrainedFormatError,
    ResultsTable,
    load_pretrained_folder,
    save_pretrained_folder,
)

PRETRAINED_FORMAT = "compact-ssl-student"
PRETRAINED_VERSION = 1
#: what the card's load example names when no repo id is known yet
PLACEHOLDER_NAME = "PATH_OR_REPO_ID"

_UPSTREAM_TEXT = {
    "layers": "the {L} layer outputs ({d}-d)",
    "projections": "the {L} projection-head outputs ({p}-d)",
    "distiller": "the projected CNN features, the {L} layer outputs and the {n} head predictions ({d}-d)",
}

S = TypeVar("S", bound="PretrainedStudentMixin")


class PretrainedStudentMixin:
    """``save_pretrained`` / ``from_pretrained`` of :class:`~audio_compress.models.StudentModel`."""

    config: StudentConfig

    def save_pretrained(self, folder: str | Path, *, info: dict[str, Any] | None = None, **card_info: Any) -> Path:
        """Write the shareable folder ``folder`` atomically; returns it.

        Args:
            info: provenance stored in ``config.json`` (plain JSON data: method, step, source file).
            card_info: what the card says, see :func:`student_card` (``teacher``, ``training_data``,
                ``recipe``, ``config_text``, ``results`` (a SUPERB ``results.json`` path or a table),
                ``upstream``, ``license``, ``repo_id``, ...).
        """
        return save_pretrained_folder(
            folder, format_tag=PRETRAINED_FORMAT, version=PRETRAINED_VERSION, config=asdict(self.config),
            state_dict=self.state_dict(), card=student_card(self, **card_info), info=info)

    @classmethod
    def from_pretrained(cls: type[S], folder_or_repo_id: str | Path, *, revision: str | None = None,
                        cache_dir: str | Path | None = None, map_location: str | torch.device = "cpu") -> S:
        """The student of a folder written by :meth:`save_pretrained`, or of a hub repo holding one
        (fetched only when ``folder_or_repo_id`` is not an existing path), in eval mode.

        Raises:
            PretrainedFormatError: missing or damaged files, another format, or weights that do not
                fit the stored config (messages name the folder).
            PretrainedFetchError: a repo id that could not be fetched (e.g. offline).
        """
        loaded = load_pretrained_folder(folder_or_repo_id, PRETRAINED_FORMAT, PRETRAINED_VERSION,
                                        revision=revision, cache_dir=cache_dir)
        try:
            config = StudentConfig.from_dict(loaded.config)
        except (TypeError, ValueError) as err:
            raise PretrainedFormatError(f"{loaded.folder}: {CONFIG_FILE} holds no valid student config ({err})") from err
        model = cls(config)
        load_state_strictly(model, loaded.state_dict, loaded.folder,
                            "the weights do not fit the model its config describes", PretrainedFormatError)
        return model.eval().to(map_location)


def describe_student(config: StudentConfig) -> str:
    """The architecture of ``config`` in words (Markdown bullet list)."""
    channels = ", ".join(str(c) for c, _, _ in config.conv_layers)
    kernels = ", ".join(str(k) for _, k, _ in config.conv_layers)
    strides = ", ".join(str(s) for _, _, s in config.conv_layers)
    d, L = config.embed_dim, config.num_layers
    reusing = [str(i + 1) for i, computes in enumerate(config.reuse_pattern) if not computes]
    lines = [
        f"- Input: 16 kHz mono waveform; one frame every {HOP} samples (20 ms), receptive field {RECEPTIVE_FIELD} "
        "samples.",
        f"- CNN feature encoder: {len(config.conv_layers)} blocks, channels {channels}, kernels {kernels}, strides "
        f"{strides}; feature LayerNorm: {'yes' if config.feature_layer_norm else 'no'}"
        + (f"; Linear {config.cnn_dim} -> {d}." if config.cnn_dim != d else "."),
        f"- Transformer: {L} post-LN layers, width {d}, FFN {config.ffn_dim}, {config.num_heads} heads, "
        f"convolutional positional embedding (kernel {config.pos_conv_kernel}, {config.pos_conv_groups} groups).",
        "- Attention reuse: " + (f"layers {', '.join(reusing)} reuse the previous layer's attention map."
                                 if reusing else "none (every layer computes its attention)."),
    ]
    if config.mask_emb:
        lines.append(f"- Learned {d}-d mask embedding (masking distillation).")
    if config.proj_dim is not None:
        lines.append(f"- Projection heads: {L} x Linear({d}, {config.proj_dim}), one per layer.")
    if config.pred_layers is not None:
        lines.append(f"- Prediction heads for teacher layers {config.pred_layers} (width {config.pred_dim or d}).")
    upstream = _UPSTREAM_TEXT[config.upstream_outputs].format(
        L=L, d=d, p=config.proj_dim, n=len(config.pred_layers or ()))
    lines.append(f"- s3prl hidden states (`upstream_outputs: {config.upstream_outputs}`): {upstream}.")
    return "\n".join(lines)


def _head_parameters(model: torch.nn.Module) -> int:
    return sum(count_parameters(module) for module in (model.proj_heads, model.pred_head) if module is not None)


def student_card(model: PretrainedStudentMixin, *, teacher: str | None = None, base_model: str | None = None,
                 training_data: str | None = None, datasets: tuple[str, ...] | list[str] = (),
                 recipe: str | None = None, config_text: str | None = None,
                 results: str | Path | ResultsTable | None = None, upstream: str | None = None,
                 license: str = "other", tags: tuple[str, ...] | list[str] = (), repo_id: str | None = None,
                 title: str | None = None, summary: str | None = None) -> CardInfo:
    """The model card content of a student.

    Args:
        teacher: the teacher in words (name, source); ``None`` says it was not recorded.
        base_model: the teacher's hub id where known (card metadata).
        results: a SUPERB ``results.json`` (see :func:`superb_results_table`) or a ready table.
        upstream: the row of ``results`` that is this model (default: the only non-baseline row).
        repo_id: the hub id the folder will have, for the loading example.
    """
    config = model.config
    total = count_parameters(model)
    heads = _head_parameters(model)
    table = superb_results_table(results, upstream) if isinstance(results, (str, Path)) else results
    name = repo_id or PLACEHOLDER_NAME
    return CardInfo(
        title=title or f"{config.name}: compact speech SSL student",
        summary=summary or (f"A compact self-supervised speech model (`{config.name}`) distilled from a larger "
                            "teacher with compact-ssl (STaR / ARMHuBERT / DistilHuBERT family). It maps a 16 kHz "
                            "waveform to frame-level features for downstream tasks (SUPERB)."),
        architecture=describe_student(config),
        num_parameters=total,
        parameter_detail=(f"Of these, {heads:,} are in the distillation heads ({total - heads:,} without them)."
                          if heads else ""),
        teacher=teacher or "Not recorded.",
        base_model=base_model,
        training_data=training_data,
        datasets=tuple(datasets),
        recipe=recipe,
        config_text=config_text,
        results=table,
        license=license,
        tags=("speech", "self-supervised-learning", "knowledge-distillation", config.name, *tags),
        pipeline_tag="feature-extraction",
        load_code=(f'from audio_compress.models import StudentModel\n\nmodel = StudentModel.from_pretrained("{name}")\n'
                   "output = model(wavs)  # wavs: (batch, samples) float, 16 kHz\n"
                   "features = model.upstream_hidden_states(output)  # what the s3prl upstream exposes"),
    )


#: upstream labels of the baseline rows a mini SUPERB run adds beside the student
_BASELINE_ROWS = ("ssl_teacher_local", "fbank")


def superb_results_table(path: str | Path, upstream: str | None = None) -> ResultsTable:
    """The card's SUPERB table from a ``results.json`` of :func:`audio_compress.superb.results.write_results`.

    Every row of the file is kept (the run's baselines, released checkpoints evaluated beside it and the
    published rows give context); the row of this model (``upstream``, or the only one of our rows that
    is not a baseline) is marked. Raises ``ValueError`` naming the file when ``upstream`` is not one of
    our rows or cannot be told.
    """
    from audio_compress.superb.results import read_results, score_row
    from audio_compress.superb.score import METRIC_INFO, format_metric

    doc = read_results(path)
    ours = doc["ours"]
    if upstream is None:
        candidates = [name for name in ours if name not in _BASELINE_ROWS]
        if len(candidates) != 1:
            raise ValueError(f"{path}: cannot tell which row is this model among {sorted(ours)}; name it (upstream=...)")
        upstream = candidates[0]
    if upstream not in ours:
        raise ValueError(f"{path}: no row {upstream!r}; its rows are {sorted(ours)}")
    keys = doc["metric_keys"]
    columns = ("Model", *(METRIC_INFO[k].header for k in keys), "Overall", "SUPERB")

    def row(label: str, metrics: dict[str, float]) -> tuple[str, ...]:
        scores = score_row(metrics, partial=doc["partial_scores"])
        return (label, *(format_metric(k, metrics.get(k)) for k in keys),
                *("n/a" if scores[kind] is None else scores[kind].short_label for kind in ("overall", "superb")))

    rows = [row(f"**{name}** (this model)" if name == upstream else f"{name} (same run)", entry["metrics"])
            for name, entry in ours.items()]
    rows += [row(f"{name} (released)", entry["metrics"]) for name, entry in doc.get("released", {}).items()]
    rows += [row(f"{name} (published)", entry["metrics"]) for name, entry in doc["published"].items()]
    return ResultsTable(columns, tuple(rows), caption=doc.get("caption", ""), source=str(path))
