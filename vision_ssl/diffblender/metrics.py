"""Evaluation of generated images (reference diffblender.md section 4): FID and CLIP score
through torchmetrics, colour and box alignment on the synthetic shapes, and AP50 / mean IoU of an
external detector's boxes against the requested boxes (the paper's YOLO score) on COCO.

FID: :func:`fid_metric` wraps ``torchmetrics.image.fid.FrechetInceptionDistance``. The published
protocol uses its InceptionV3 pool features (``feature=2048``, computed by ``torch-fidelity``) with
the FID Inception weights (TensorFlow's 2015-12-05 Inception, sha256 prefix ``6726825d``; the same
file is ``pt_inception-2015-12-05-6726825d.pth`` in pytorch-fid and
``weights-inception-2015-12-05-6726825d.pth`` in torch-fidelity). They are never downloaded here:
:func:`fid_weights_path` takes a local file from ``inception_weights=``, else
``$COMPACT_SSL_FID_INCEPTION``, else torch hub's cache (``$TORCH_HOME/hub/checkpoints/``, where
torch-fidelity itself would put it), and says how to obtain one when there is none. The file is
read without running code from it (:func:`compact_ssl.unpickle.load_untrusted`). Offline, pass any
feature module instead, e.g. :class:`RandomConvFeatures`, a fixed random convolutional network whose
Frechet distance is a proxy that is only comparable within one setting, never with published FIDs.

CLIP score: :func:`clip_score_metric` wraps ``torchmetrics.multimodal.CLIPScore`` with a CLIP model
and processor read from a local folder (100 x cosine similarity, clipped at 0).

Shapes alignment: every pixel is labelled with the nearest reference colour (background or one of
``SHAPE_COLORS``) in RGB. An image's dominant colour is its most frequent non-background label.
For a requested box with phrase ``"<colour> <kind>"``, the connected regions (4-neighbourhood) of
that colour are found, the one with most pixels inside the box's neighbourhood (the box grown by
half its width / height on each side) is kept, and its bounding box is compared with the request
(IoU; 0 when no region of that colour touches the neighbourhood).

Detector hook (COCO): run any detector over the generated images and write a JSON file
``{"<sample key>": [{"box": [x0, y0, x1, y1], "label": "<category name>", "score": s}, ...]}``
with boxes normalised to [0, 1] by the image size and labels in the phrase vocabulary (COCO
category names); :func:`detection_alignment` scores it against the requested boxes: AP at IoU 0.5
per label (all-point interpolated precision envelope, greedy matching by score), averaged over the
labels that have requested boxes, and the mean over requested boxes of their best IoU with a
same-label detection.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor, nn
from torchvision.ops import box_iou

from compact_ssl.unpickle import load_untrusted
from vision_ssl.diffblender.data.shapes import BACKGROUND, SHAPE_COLORS

#: environment variable naming a local FID Inception weights file
FID_WEIGHTS_ENV = "COMPACT_SSL_FID_INCEPTION"
#: names of the FID Inception weights file (pytorch-fid's, torch-fidelity's), looked for in torch hub's cache
FID_WEIGHTS_NAMES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")

# ---- FID and CLIP score ----------------------------------------------------------------------


class RandomConvFeatures(nn.Module):
    """Fixed random-weight convolutional features (``num_features``-d) of [0, 1] images, for an
    offline FID-like statistic; the weights depend only on ``seed``."""

    def __init__(self, num_features: int = 64, seed: int = 0, size: int = 64) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        widths = (3, 32, 64, num_features)
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, stride=2, padding=1) for i, o in zip(widths[:-1], widths[1:]))
        for conv in self.convs:
            nn.init.normal_(conv.weight, std=(2.0 / conv.weight[0].numel()) ** 0.5, generator=generator)
            nn.init.zeros_(conv.bias)
        self.size, self.num_features = size, num_features
        self.requires_grad_(False)

    def forward(self, images: Tensor) -> Tensor:
        x = nn.functional.interpolate(images.float() * 2 - 1, size=(self.size, self.size), mode="bilinear",
                                      align_corners=False)
        for conv in self.convs:
            x = torch.relu(conv(x))
        return x.mean(dim=(2, 3))


def fid_weights_path(path: str | Path | None = None) -> Path:
    """The local FID Inception weights file: ``path``, else ``$COMPACT_SSL_FID_INCEPTION``, else
    one of :data:`FID_WEIGHTS_NAMES` in torch hub's checkpoint cache. Raises ``FileNotFoundError``
    saying how to obtain and provide the file when none is found (nothing is downloaded)."""
    if path is None and os.environ.get(FID_WEIGHTS_ENV):
        path, source = os.environ[FID_WEIGHTS_ENV], f"${FID_WEIGHTS_ENV}"
    else:
        source = "fid_inception_weights"
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: FID Inception weights file not found (from {source})")
        return Path(path)
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    for name in FID_WEIGHTS_NAMES:
        if (cache / name).is_file():
            return cache / name
    raise FileNotFoundError(
        "FID with InceptionV3 needs the FID Inception weights, and nothing is downloaded here. On a machine with "
        f"internet, get {FID_WEIGHTS_NAMES[1]} (the URL is torch_fidelity.feature_extractor_inceptionv3."
        f"URL_INCEPTION_V3; pytorch-fid's {FID_WEIGHTS_NAMES[0]} is the same file), copy it here and pass it "
        f"as fid_inception_weights=PATH (command line: --fid_inception_weights PATH), set {FID_WEIGHTS_ENV}=PATH, "
        f"or put it into {cache}/")


def load_fid_weights(path: str | Path) -> dict[str, Tensor]:
    """The state dict in a FID Inception weights file, read without running code from it."""
    state = load_untrusted(path, what="FID Inception weights file", trust=False)
    if not isinstance(state, Mapping) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path}: not FID Inception weights (expected a state dict of tensors); see "
                         "vision_ssl.diffblender.metrics.fid_weights_path for the file to use")
    return dict(state)


def fid_metric(feature_extractor: nn.Module | None = None, feature: int = 2048,
               inception_weights: str | Path | None = None):
    """A FID metric taking float images in [0, 1] (``update(images, real=...)``, ``compute()``).

    ``feature_extractor`` (a module mapping ``[B, 3, H, W]`` to ``[B, D]``) replaces InceptionV3;
    without one, the InceptionV3 of torch-fidelity gets the weights of :func:`fid_weights_path`
    (``inception_weights``). Those are handed over in memory, re-serialised from the safely read
    tensors, because torch-fidelity would unpickle the file itself without restriction.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    if feature_extractor is not None:
        return FrechetInceptionDistance(feature=feature_extractor, normalize=True)
    path = fid_weights_path(inception_weights)
    buffer = io.BytesIO()
    torch.save(load_fid_weights(path), buffer)
    buffer.seek(0)
    try:
        return FrechetInceptionDistance(feature=feature, normalize=True, feature_extractor_weights_path=buffer)
    except RuntimeError as err:  # load_state_dict: missing / unexpected / reshaped keys
        raise ValueError(f"{path}: these are not the FID Inception weights torch-fidelity's InceptionV3 takes "
                         f"({str(err).splitlines()[0]} ...)") from err


def compute_fid(real: Tensor, fake: Tensor, feature_extractor: nn.Module | None = None, batch_size: int = 64,
                inception_weights: str | Path | None = None) -> float:
    """FID between two sets of [0, 1] images ``[N, 3, H, W]`` (see :func:`fid_metric`)."""
    metric = fid_metric(feature_extractor, inception_weights=inception_weights)
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            metric.update(images[start:start + batch_size], real=is_real)
    return float(metric.compute())


class _TensorFeatures(nn.Module):
    """CLIPModel whose ``get_*_features`` return tensors: transformers >= 5 returns a model output
    (projection in ``pooler_output``) where torchmetrics' CLIP score expects the tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.config = model, model.config

    @staticmethod
    def _tensor(out) -> Tensor:
        return out if isinstance(out, Tensor) else out.pooler_output

    def get_image_features(self, *args, **kwargs) -> Tensor:
        return self._tensor(self.model.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs) -> Tensor:
        return self._tensor(self.model.get_text_features(*args, **kwargs))


def clip_score_metric(model_dir: str | Path):
    """torchmetrics ``CLIPScore`` with the ``CLIPModel`` + ``CLIPProcessor`` saved in ``model_dir``
    (``update(images, captions)`` with uint8-range ``[B, 3, H, W]`` images, ``compute()``)."""
    from torchmetrics.multimodal import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no CLIP model here (config.json missing); save CLIPModel and "
                                "CLIPProcessor there (e.g. openai/clip-vit-large-patch14) with save_pretrained")

    def load() -> tuple[nn.Module, Callable]:
        model = CLIPModel.from_pretrained(str(folder)).eval()
        return _TensorFeatures(model), CLIPProcessor.from_pretrained(str(folder))

    return CLIPScore(model_name_or_path=load)


def compute_clip_score(images: Tensor, captions: Sequence[str], model_dir: str | Path) -> float:
    """Mean CLIP score of [0, 1] images ``[N, 3, H, W]`` against their captions."""
    metric = clip_score_metric(model_dir)
    metric.update((images.clamp(0, 1) * 255).round().to(torch.uint8), list(captions))
    return float(metric.compute())


# ---- synthetic shapes: colour and box alignment ----------------------------------------------

COLOR_NAMES = tuple(SHAPE_COLORS)  #: label k (1-based) of :func:`segment_colors` is COLOR_NAMES[k - 1]
_REFERENCE = torch.tensor([BACKGROUND, *SHAPE_COLORS.values()], dtype=torch.float32) / 255.0


def segment_colors(images: Tensor) -> Tensor:
    """``[B, H, W]`` labels of [0, 1] images ``[B, 3, H, W]``: 0 background, k the k-th shape colour."""
    pixels = images.float().permute(0, 2, 3, 1)
    return torch.cdist(pixels.reshape(-1, 3), _REFERENCE).argmin(1).view(pixels.shape[:3])


def dominant_colors(images: Tensor, min_fraction: float = 0.02) -> list[str | None]:
    """The most frequent shape colour of each image (None when fewer than ``min_fraction`` of the
    pixels have any shape colour)."""
    labels = segment_colors(images)
    out = []
    for lab in labels:
        counts = torch.bincount(lab.flatten(), minlength=len(_REFERENCE))[1:]
        out.append(COLOR_NAMES[int(counts.argmax())] if counts.max() >= min_fraction * lab.numel() else None)
    return out


def color_match_rate(images: Tensor, colors: Sequence[str]) -> float:
    """Fraction of images whose dominant colour is the requested one."""
    found = dominant_colors(images)
    return sum(f == c for f, c in zip(found, colors)) / max(len(colors), 1)


def region_box(labels: np.ndarray, color: str, box: Sequence[float]) -> list[float] | None:
    """Normalised xyxy bounding box of the ``color`` region that best covers the neighbourhood of
    ``box`` in a label map from :func:`segment_colors` (None when no such region touches it)."""
    h, w = labels.shape
    regions, count = ndimage.label(labels == COLOR_NAMES.index(color) + 1)
    if count == 0:
        return None
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) / 2, (y1 - y0) / 2
    rows = slice(max(0, int(np.floor((y0 - my) * h))), int(np.ceil((y1 + my) * h)))
    cols = slice(max(0, int(np.floor((x0 - mx) * w))), int(np.ceil((x1 + mx) * w)))
    overlap = np.bincount(regions[rows, cols].ravel(), minlength=count + 1)[1:]
    if overlap.max() == 0:
        return None
    ys, xs = np.nonzero(regions == int(overlap.argmax()) + 1)
    return [xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h]


def shapes_box_iou(images: Tensor, boxes: Sequence[Sequence[Sequence[float]]],
                   phrases: Sequence[Sequence[str]]) -> list[float]:
    """IoU of every requested box (``boxes[i][j]`` normalised xyxy, phrase ``phrases[i][j]`` =
    ``"<colour> <kind>"``) with the drawn region of its colour, flattened over images."""
    labels = segment_colors(images).numpy()
    ious = []
    for lab, image_boxes, image_phrases in zip(labels, boxes, phrases):
        for box, phrase in zip(image_boxes, image_phrases):
            found = region_box(lab, phrase.split()[0], [float(v) for v in box])
            ious.append(0.0 if found is None else float(box_iou(torch.tensor([found]),
                                                                 torch.tensor([list(map(float, box))]))[0, 0]))
    return ious


# ---- external detector on COCO ---------------------------------------------------------------


def load_detections(path: str | Path) -> dict[str, list[dict]]:
    """Read a detections JSON file (format in the module docstring); errors name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read detections ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object mapping sample keys to detection lists")
    for key, dets in data.items():
        for i, det in enumerate(dets if isinstance(dets, list) else [None]):
            if not (isinstance(det, dict) and len(det.get("box", [])) == 4 and "label" in det):
                raise ValueError(f"{path}: detection #{i} of {key!r} must be {{'box': [x0, y0, x1, y1], 'label': ..., "
                                 f"'score': ...}}, got {det!r}")
    return data


def average_precision(scores: Sequence[float], hits: Sequence[bool], num_targets: int) -> float:
    """All-point interpolated AP of detections (``scores``, whether each matched a target) against
    ``num_targets`` targets."""
    if num_targets == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp = np.asarray(hits, dtype=np.float64)[order]
    if tp.size == 0:
        return 0.0
    recall = np.concatenate([[0.0], np.cumsum(tp) / num_targets])
    precision = np.concatenate([[1.0], np.cumsum(tp) / np.arange(1, tp.size + 1)])
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * envelope[1:]))


def detection_alignment(detections: Mapping[str, list[dict]], requested: Mapping[str, tuple[list, list[str]]],
                        iou_threshold: float = 0.5) -> dict[str, float]:
    """``{"ap50", "mean_iou", "num_boxes"}`` of ``detections`` (per sample key, see
    :func:`load_detections`) against ``requested`` (per sample key: (boxes, labels)); samples
    missing from ``detections`` count as having no detection."""
    per_label: dict[str, dict] = {}
    best_ious = []
    for key, (boxes, labels) in requested.items():
        targets = torch.tensor([list(map(float, b)) for b in boxes]).view(-1, 4)
        dets = sorted(detections.get(key, []), key=lambda d: -float(d.get("score", 1.0)))
        pred = torch.tensor([list(map(float, d["box"])) for d in dets]).view(-1, 4)
        iou = box_iou(targets, pred) if len(dets) and len(boxes) else torch.zeros(len(boxes), len(dets))
        same = torch.tensor([[t == d["label"] for d in dets] for t in labels], dtype=torch.bool).view(len(labels), -1)
        iou = iou * same
        best_ious += (iou.amax(1) if len(dets) else torch.zeros(len(labels))).tolist()
        taken = torch.zeros(len(labels), dtype=torch.bool)
        for j, det in enumerate(dets):
            entry = per_label.setdefault(det["label"], {"scores": [], "hits": [], "targets": 0})
            candidates = iou[:, j].masked_fill(taken, -1.0)
            hit = bool(len(labels)) and float(candidates.max()) >= iou_threshold
            if hit:
                taken[int(candidates.argmax())] = True
            entry["scores"].append(float(det.get("score", 1.0)))
            entry["hits"].append(hit)
        for label in labels:
            per_label.setdefault(label, {"scores": [], "hits": [], "targets": 0})["targets"] += 1
    aps = [average_precision(e["scores"], e["hits"], e["targets"]) for e in per_label.values() if e["targets"]]
    return {"ap50": float(np.mean(aps)) if aps else float("nan"),
            "mean_iou": float(np.mean(best_ious)) if best_ious else float("nan"), "num_boxes": len(best_ious)}
