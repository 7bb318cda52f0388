"""The trained ICBHI classifier as a shareable folder, loaded again with one call.

:class:`IcbhiClassifier` is what inference needs of a trained :class:`~audio_cls.tasks.IcbhiTask`:
the AST backbone, the classification head, the feature settings (sample rate, cycle length and
padding, Kaldi fbank, the normalisation statistics) and the class names. ``save_pretrained`` writes
``model.safetensors`` + ``config.json`` (format ``compact-ssl-icbhi-classifier``, version 1) + a
``README.md`` model card (:mod:`compact_ssl.pretrained`); ``IcbhiClassifier.from_pretrained`` (or
``audio_cls.from_pretrained``) reads a folder or a hub repo id holding one. Its logits equal those of
the task it came from.

The card's ICBHI table comes from :func:`icbhi_results_table`: a checkpoint's ``scores.json``
(:mod:`audio_cls.bin.evaluate`) or an experiment's ``results.json`` (:mod:`audio_cls.bin.results`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from audio_cls.data.cycles import fade_samples, pad_or_trim
from audio_cls.data.icbhi import CLASS_NAMES
from audio_cls.features import FeatureConfig, fbank
from audio_cls.models import ASTBackbone, ASTBackboneConfig, Classifier, count_parameters
from compact_ssl.config import build_dataclass
from compact_ssl.nn import load_state_strictly
from compact_ssl.pretrained import (
    CONFIG_FILE,
    CardInfo,
    PretrainedFormatError,
    ResultsTable,
    load_pretrained_folder,
    save_pretrained_folder,
)

CLASSIFIER_FORMAT = "compact-ssl-icbhi-classifier"
CLASSIFIER_VERSION = 1
#: class names of a ``data.num_classes`` task, in label order
CLASS_NAMES_BY_COUNT = {4: CLASS_NAMES, 2: ("normal", "abnormal")}
#: hub ids of the initial weights of ``model.init`` (the AudioSet AST; the distilled DeiT-B/16-384)
BASE_MODELS = {"audioset": "MIT/ast-finetuned-audioset-10-10-0.4593",
               "imagenet": "facebook/deit-base-distilled-patch16-384"}
PLACEHOLDER_NAME = "PATH_OR_REPO_ID"


class IcbhiClassifier(nn.Module):
    """AST backbone + classification head with the feature settings and class names of its training."""

    def __init__(self, backbone: ASTBackboneConfig, features: FeatureConfig, class_names: Sequence[str]):
        super().__init__()
        if (backbone.num_frames, backbone.num_mel_bins) != (features.num_frames, features.num_mel_bins):
            raise ValueError(f"the backbone takes {backbone.num_frames} x {backbone.num_mel_bins} inputs but the "
                             f"features are {features.num_frames} x {features.num_mel_bins}")
        self.features = features
        self.class_names = tuple(class_names)
        self.backbone = ASTBackbone(backbone)
        self.classifier = Classifier(backbone.hidden_size, len(self.class_names))

    def forward(self, spec: Tensor) -> Tensor:
        """Class logits of (batch, frames, mel bins) normalised fbank, as the task's forward."""
        return self.classifier(self.backbone(spec))

    def spectrogram(self, cycle: np.ndarray | Tensor) -> Tensor:
        """The model input (frames, mel bins) of one breathing cycle: its samples at
        ``features.sample_rate``, cut or padded to the training length, then normalised fbank."""
        feats = self.features
        wave = np.asarray(cycle, dtype=np.float32).reshape(-1)
        return fbank(pad_or_trim(wave, feats.num_samples, feats.pad_type, fade_samples(feats.sample_rate)), feats)

    def model_config(self) -> dict[str, Any]:
        """What ``config.json`` stores: backbone and feature settings and the class names."""
        return {"backbone": asdict(self.backbone.config), "features": asdict(self.features),
                "class_names": list(self.class_names)}

    @classmethod
    def from_task(cls, task: nn.Module) -> IcbhiClassifier:
        """The inference part of a trained :class:`~audio_cls.tasks.IcbhiTask` (its weights copied), in eval mode."""
        config = task.config
        model = cls(task.backbone.config, config.features, CLASS_NAMES_BY_COUNT[config.data.num_classes])
        model.backbone.load_state_dict(task.backbone.state_dict())
        model.classifier.load_state_dict(task.classifier.state_dict())
        return model.eval()

    def save_pretrained(self, folder: str | Path, *, info: dict[str, Any] | None = None, **card_info: Any) -> Path:
        """Write the shareable folder ``folder`` atomically; returns it.

        Args:
            info: provenance stored in ``config.json`` (plain JSON data: method, epoch, source file).
            card_info: what the card says, see :func:`classifier_card` (``training``, ``results`` (a
                ``scores.json`` / ``results.json`` path or a table), ``license``, ``repo_id``, ...).
        """
        return save_pretrained_folder(folder, format_tag=CLASSIFIER_FORMAT, version=CLASSIFIER_VERSION,
                                      config=self.model_config(), state_dict=self.state_dict(),
                                      card=classifier_card(self, **card_info), info=info)

    @classmethod
    def from_pretrained(cls, folder_or_repo_id: str | Path, *, revision: str | None = None,
                        cache_dir: str | Path | None = None, map_location: str | torch.device = "cpu") -> IcbhiClassifier:
        """The classifier of a folder written by :meth:`save_pretrained`, or of a hub repo holding one
        (fetched only when ``folder_or_repo_id`` is not an existing path), in eval mode.

        Raises:
            PretrainedFormatError: missing or damaged files, another format, or a config or weights that
                do not fit (messages name the folder).
            PretrainedFetchError: a repo id that could not be fetched (e.g. offline).
        """
        loaded = load_pretrained_folder(folder_or_repo_id, CLASSIFIER_FORMAT, CLASSIFIER_VERSION,
                                        revision=revision, cache_dir=cache_dir)
        where = f"{loaded.folder / CONFIG_FILE}: config"
        config = loaded.config
        try:
            unknown = sorted(set(config) - {"backbone", "features", "class_names"})
            if unknown:
                raise ValueError(f"unknown keys {unknown}")
            model = cls(build_dataclass(ASTBackboneConfig, config["backbone"], f"{where}.backbone"),
                        build_dataclass(FeatureConfig, config["features"], f"{where}.features"),
                        [str(name) for name in config["class_names"]])
        except (KeyError, TypeError, ValueError) as err:
            raise PretrainedFormatError(f"{loaded.folder}: {CONFIG_FILE} holds no valid classifier config "
                                        f"({type(err).__name__}: {err})") from err
        load_state_strictly(model, loaded.state_dict, loaded.folder,
                            "the weights do not fit the model its config describes", PretrainedFormatError)
        return model.eval().to(map_location)


def describe_classifier(model: IcbhiClassifier) -> str:
    """The architecture in words (Markdown bullet list)."""
    b = model.backbone.config
    freq, time = b.grid
    return "\n".join([
        f"- Audio Spectrogram Transformer (ViT with CLS and distillation tokens): {b.num_layers} layers, width "
        f"{b.hidden_size}, FFN {b.intermediate_size}, {b.num_heads} heads, layer-norm eps {b.layer_norm_eps}.",
        f"- Input {b.num_frames} frames x {b.num_mel_bins} mel bins; {b.patch_size} x {b.patch_size} patches with "
        f"stride {b.frequency_stride} (frequency) and {b.time_stride} (time): a {freq} x {time} grid.",
        "- Feature: the mean of the final CLS and distillation tokens.",
        f"- Head: LayerNorm + Linear({b.hidden_size}, {len(model.class_names)}).",
    ])


def describe_inference(model: IcbhiClassifier) -> str:
    """What an input must go through before the model, in words."""
    f = model.features
    classes = ", ".join(f"{i} {name}" for i, name in enumerate(model.class_names))
    return (f"Input: one breathing cycle, mono, at {f.sample_rate} Hz, cut or padded to {f.desired_length} s "
            f"({f.num_samples} samples; `{f.pad_type}` padding with a fade-out), then Kaldi fbank ({f.num_mel_bins} "
            f"mel bins, {f.frame_length} ms Hann windows every {f.frame_shift} ms, no dither) normalised as "
            f"(x - ({f.norm_mean})) / (2 x {f.norm_std}): a {f.num_frames} x {f.num_mel_bins} matrix. "
            f"`model.spectrogram(cycle)` does all of it. Classes: {classes}.")


def classifier_card(model: IcbhiClassifier, *, method: str | None = None, init: str | None = None,
                    training_data: str | None = None, recipe: str | None = None, config_text: str | None = None,
                    results: str | Path | ResultsTable | None = None, datasets: tuple[str, ...] | list[str] = (),
                    license: str = "other", tags: tuple[str, ...] | list[str] = (), repo_id: str | None = None,
                    title: str | None = None, summary: str | None = None) -> CardInfo:
    """The model card content of a classifier.

    Args:
        method: the training method (``ce``, ``patchmix``, ``patchmix_cl``).
        init: the initial weights (``audioset``, ``imagenet``, ``random``); sets the card's base model.
        results: a ``scores.json`` / ``results.json`` path (:func:`icbhi_results_table`) or a ready table.
        repo_id: the hub id the folder will have, for the loading example.
    """
    total = count_parameters(model)
    head = count_parameters(model.classifier)
    trained = f" with `{method}`" if method else ""
    start = {"audioset": "the AudioSet-trained AST", "imagenet": "an ImageNet distilled DeiT-B/16-384",
             "random": "random weights"}.get(init or "", "unrecorded initial weights")
    table = icbhi_results_table(results) if isinstance(results, (str, Path)) else results
    name = repo_id or PLACEHOLDER_NAME
    return CardInfo(
        title=title or f"AST respiratory sound classifier (ICBHI 2017{', ' + method if method else ''})",
        summary=summary or (f"Classifies one breathing cycle of a lung sound recording into "
                            f"{len(model.class_names)} classes ({', '.join(model.class_names)}): an Audio "
                            f"Spectrogram Transformer fine-tuned{trained} on ICBHI 2017 by compact-ssl."),
        architecture=describe_classifier(model),
        num_parameters=total,
        parameter_detail=f"Of these, {head:,} are in the classification head.",
        teacher=f"None: supervised training on the ICBHI labels, starting from {start}.",
        base_model=BASE_MODELS.get(init or ""),
        training_data=training_data,
        datasets=tuple(datasets),
        recipe=recipe,
        config_text=config_text,
        results=table,
        license=license,
        tags=("audio", "audio-classification", "respiratory-sound", "icbhi", "audio-spectrogram-transformer",
              *((method,) if method else ()), *tags),
        pipeline_tag="audio-classification",
        extra_sections={"Inference": describe_inference(model)},
        load_code=(f'import audio_cls\n\nmodel = audio_cls.from_pretrained("{name}")\n'
                   "spec = model.spectrogram(cycle)  # cycle: 1-D float samples of one breathing cycle\n"
                   "probabilities = model(spec[None]).softmax(-1)  # (1, classes), in model.class_names order"),
    )


#: column labels of the ICBHI metrics (4-class; ``two_class.*`` is the 2-class evaluation)
_METRIC_LABELS = {"specificity": "Sp", "sensitivity": "Se", "score": "Score"}


def _metric_label(key: str) -> str:
    group, _, name = key.rpartition(".")
    return _METRIC_LABELS.get(name, name) + (" 2-cls" if group == "two_class" else "")


def icbhi_results_table(path: str | Path) -> ResultsTable:
    """The card's ICBHI table (values in %) from a checkpoint's ``scores.json`` (one row: Sp, Se,
    Score and the 2-class Se and Score) or an experiment's ``results.json`` (one row per method and
    checkpoint selection, mean ± std over seeds). Raises ``ValueError`` naming a file of neither kind."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read ICBHI results ({err})") from err
    if isinstance(doc, dict) and {"specificity", "sensitivity", "score"} <= set(doc):
        selection = {"test": "best epoch on test (paper protocol)", "validation": "best epoch on validation"}.get(
            doc.get("selected_on"), "as evaluated")
        cells = [doc["specificity"], doc["sensitivity"], doc["score"]]
        columns = ["Model", "selection", "Sp", "Se", "Score"]
        if isinstance(doc.get("two_class"), dict):
            cells += [doc["two_class"]["sensitivity"], doc["two_class"]["score"]]
            columns += ["Se 2-cls", "Score 2-cls"]
        row = (f"{doc.get('method', 'this model')} seed {doc.get('seed', '?')} epoch {doc.get('epoch', '?')}",
               selection, *(f"{float(v):.2f}" for v in cells))
        caption = (f"ICBHI 2017 official split, {doc.get('num_cycles', 'all')} test cycles; values in %. A best epoch "
                   "chosen on the test set itself is optimistic (the published protocol).")
        if isinstance(doc.get("gate"), dict) and not doc["gate"].get("passed", True):
            caption += (f" No epoch passed the sensitivity gate (Se > {doc['gate'].get('min_sensitivity')}%): "
                        "this best epoch is only a fallback.")
        return ResultsTable(tuple(columns), (row,), caption=caption, source=str(path))
    if isinstance(doc, list) and doc and all(isinstance(r, dict) and "metrics" in r for r in doc):
        keys = list(doc[0]["metrics"])
        columns = ("Method", "selection", "seeds", *(_metric_label(k) for k in keys))

        def cell(metric: dict) -> str:
            return f"{metric['mean']:.2f}" + ("" if metric.get("std") is None else f" ± {metric['std']:.2f}")

        def seeds(row: dict) -> str:
            failed = set(row.get("gate_failed_seeds") or ())
            return ",".join(f"{s}†" if s in failed else str(s) for s in row["seeds"])

        rows = tuple((r["method"], r["selection"], seeds(r), *(cell(r["metrics"][k]) for k in keys)) for r in doc)
        caption = ("ICBHI 2017 official split; values in %, mean ± std over seeds. Selections: best = best epoch "
                   "chosen on the test set (paper protocol, optimistic), best_val = chosen on held-out training "
                   "patients, last = final epoch.")
        if any(r.get("gate_failed_seeds") for r in doc):
            caption += " † a seed where no epoch passed the sensitivity gate (its best epoch is a fallback)."
        return ResultsTable(columns, rows, caption=caption, source=str(path))
    raise ValueError(f"{path}: neither a scores.json of audio_cls.bin.evaluate nor a results.json of "
                     "audio_cls.bin.results")
