"""Configuration of the DiffBlender data side: which dataset, which conditions, how they are
made and batched. It is the ``data:`` section of the DiffBlender YAML configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DATASETS = ("coco", "shapes")
MODALITIES = ("sketch", "depth", "box", "keypoint", "color", "style")
CAPTION_CHOICES = ("random", "first")


@dataclass
class DataConfig:
    """Dataset, condition extraction and batching (``{split}`` in file names is replaced by the split)."""

    dataset: str = "coco"  #: coco | shapes
    root: str = ""  #: COCO root (recipes fill it from recipes/db.sh); unused by shapes
    split: str = "train2017"  #: COCO training split
    val_split: str = ""  #: COCO validation split ("" : no validation loader)
    image_dir: str = "{split}"  #: images of a split, relative to root
    captions_file: str = "annotations/captions_{split}.json"
    instances_file: str = "annotations/instances_{split}.json"  #: boxes (needed for the box modality)
    keypoints_file: str = "annotations/person_keypoints_{split}.json"  #: needed for the keypoint modality
    resolution: int = 512  #: side of the square centre crop fed to the model
    max_boxes: int = 30  #: box slots (largest boxes kept)
    max_persons: int = 8  #: keypoint persons (largest kept), 17 COCO keypoints each
    #: conditions to produce (default: those needing no external model or files; add depth and style
    #: once data.depth_dir and data.style_model are set)
    modalities: list[str] = field(default_factory=lambda: ["sketch", "box", "keypoint", "color"])
    caption_choice: str = "random"  #: which COCO caption of an image: random (training) | first
    depth_dir: str = ""  #: folder of <image stem>.png depth maps from an external estimator (COCO)
    depth_optional: bool = False  #: a missing depth map gives mask 0 instead of an error
    style_model: str = ""  #: local CLIPVisionModelWithProjection folder (style modality)
    cache_dir: str = ""  #: prepared-condition cache ("" : compute everything on the fly)
    sketch_sigma: float = 1.0  #: Gaussian blur of the edge detector, in pixels at the resolution
    sketch_threshold: float = 0.2  #: edges kept above this fraction of the strongest edge
    palette_min_weight: float = 0.01  #: palette bins below this mass are zeroed
    shapes_count: int = 512  #: synthetic shapes: training images
    shapes_val_count: int = 64  #: synthetic shapes: validation images (another seed; 0: none)
    shapes_seed: int = 0
    shapes_min: int = 1  #: shapes per image, at least
    shapes_max: int = 2  #: shapes per image, at most
    batch_size: int = 8  #: per device
    num_workers: int = 2

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"data.dataset must be one of {list(DATASETS)}, got {self.dataset!r}")
        unknown = sorted(set(self.modalities) - set(MODALITIES))
        if unknown:
            raise ValueError(f"data.modalities: unknown {unknown}; choose among {list(MODALITIES)}")
        if self.caption_choice not in CAPTION_CHOICES:
            raise ValueError(f"data.caption_choice must be one of {list(CAPTION_CHOICES)}, got {self.caption_choice!r}")
        if self.resolution < 8 or self.max_boxes < 1 or self.max_persons < 1:
            raise ValueError("data.resolution must be >= 8 and data.max_boxes, data.max_persons >= 1")
        if not 1 <= self.shapes_min <= self.shapes_max:
            raise ValueError(f"data.shapes_min ({self.shapes_min}) must be in 1..data.shapes_max ({self.shapes_max})")
        if "style" in self.modalities and not self.style_model:
            raise ValueError("data.modalities has 'style' but data.style_model is empty: point it at a local CLIP "
                             "vision model folder, or drop 'style'")
        if self.dataset == "coco" and "depth" in self.modalities and not (self.depth_dir or self.depth_optional):
            raise ValueError("data.modalities has 'depth' but data.depth_dir is empty: set it to the folder of "
                             "<image stem>.png depth maps, set data.depth_optional: true, or drop 'depth'")

    def file(self, template: str, split: str | None = None) -> Path:
        """``root / template`` with ``{split}`` filled (default: the training split)."""
        return Path(self.root) / template.format(split=split or self.split)
