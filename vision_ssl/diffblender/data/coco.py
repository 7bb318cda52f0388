"""COCO (2017 layout) for DiffBlender: captions, instance boxes (category names as phrases) and
person keypoints, every image centre-cropped to a square (reference diffblender.md sections 1-2).

Layout under ``data.root`` (file names are configurable, ``{split}`` is filled in)::

    annotations/captions_<split>.json          images + captions (always needed)
    annotations/instances_<split>.json         boxes (box modality)
    annotations/person_keypoints_<split>.json  keypoints (keypoint modality)
    <split>/<file_name>                        the images

Per image the parser keeps the boxes that survive the centre crop (clipped, non-empty), largest
first, at most ``data.max_boxes`` (crowd regions included), and the persons with at least one
labelled keypoint inside the crop, largest annotation area first, at most ``data.max_persons``
(a keypoint that is unlabelled or outside the crop is masked). Images without captions are left
out. The parsed index is kept in the prepared-condition cache (``data.cache_dir``), so the large
JSON files are read once.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vision_ssl.data.base import DatasetLayoutError, layout_error, load_rgb
from vision_ssl.diffblender.data.base import NUM_KEYPOINTS, ConditionDataset, Record
from vision_ssl.diffblender.data.cache import ConditionCache
from vision_ssl.diffblender.data.config import DataConfig
from vision_ssl.diffblender.data.depth import MissingDepthError, depth_path, load_depth
from vision_ssl.diffblender.data.imageops import center_square, square_box

LAYOUT = ("<root>/annotations/{captions,instances,person_keypoints}_<split>.json and <root>/<split>/*.jpg "
          "(COCO 2017 from cocodataset.org: train2017.zip, val2017.zip, annotations_trainval2017.zip)")
_INDEX_VERSION = 1


class AnnotationError(ValueError):
    """A COCO annotation file is malformed (the message names the file and the problem)."""


def _bad(path: Path, problem: str) -> AnnotationError:
    return AnnotationError(f"{path}: {problem}; re-download or repair the annotation file")


def read_annotation_file(path: Path, keys: tuple[str, ...]) -> dict:
    """The JSON object in ``path``, which must have the top-level ``keys`` (each a list)."""
    if not path.is_file():
        raise layout_error("COCO", path.parent.parent, f"annotation file {path} not found", LAYOUT)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _bad(path, f"not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise _bad(path, f"expected a JSON object at the top level, got {type(data).__name__}")
    for key in keys:
        if not isinstance(data.get(key), list):
            raise _bad(path, f"missing or non-list top-level key {key!r}")
    return data


def _field(path: Path, kind: str, i: int, item: Any, name: str, length: int | None = None) -> Any:
    """``item[name]``, checked to exist (and to be a list of ``length`` numbers when given)."""
    if not isinstance(item, dict) or name not in item:
        raise _bad(path, f"{kind} #{i} has no {name!r} field")
    value = item[name]
    if length is not None and (not isinstance(value, list) or len(value) != length
                               or not all(isinstance(v, (int, float)) for v in value)):
        raise _bad(path, f"{kind} #{i}: {name!r} must be a list of {length} numbers, got {value!r}")
    return value


def _crop_box(bbox: list[float], crop: tuple[int, int, int]) -> list[float] | None:
    """COCO ``[x, y, w, h]`` in pixels -> normalised xyxy inside the square crop (None when empty)."""
    left, top, side = crop
    x0, y0 = (bbox[0] - left) / side, (bbox[1] - top) / side
    x1, y1 = x0 + bbox[2] / side, y0 + bbox[3] / side
    x0, y0, x1, y1 = (min(max(v, 0.0), 1.0) for v in (x0, y0, x1, y1))
    return [x0, y0, x1, y1] if x1 > x0 and y1 > y0 else None


def _crop_keypoints(flat: list[float], crop: tuple[int, int, int]) -> list[list[float]]:
    """51 COCO numbers (x, y, v per keypoint) -> 17 x [x, y, visible] normalised in the crop."""
    left, top, side = crop
    points = []
    for k in range(NUM_KEYPOINTS):
        x, y, v = flat[3 * k:3 * k + 3]
        nx, ny = (x - left) / side, (y - top) / side
        points.append([nx, ny, 1.0] if v > 0 and 0.0 <= nx <= 1.0 and 0.0 <= ny <= 1.0 else [0.0, 0.0, 0.0])
    return points


def parse_coco(captions_file: Path, instances_file: Path | None = None, keypoints_file: Path | None = None,
               max_boxes: int = 30, max_persons: int = 8) -> list[dict]:
    """Index of a COCO split: one dict per captioned image, ``{"id", "file", "captions", "boxes",
    "phrases", "keypoints"}`` (boxes normalised xyxy in the centre crop, largest first;
    keypoints ``[P][17][x, y, visible]``). Malformed files raise :class:`AnnotationError`."""
    data = read_annotation_file(captions_file, ("images", "annotations"))
    images, crops, captions = {}, {}, {}
    for i, img in enumerate(data["images"]):
        image_id = _field(captions_file, "image", i, img, "id")
        width, height = (_field(captions_file, "image", i, img, k) for k in ("width", "height"))
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
            raise _bad(captions_file, f"image #{i} (id {image_id}) has a bad size {width}x{height}")
        images[image_id] = _field(captions_file, "image", i, img, "file_name")
        crops[image_id] = square_box(width, height)
    for i, ann in enumerate(data["annotations"]):
        image_id = _field(captions_file, "annotation", i, ann, "image_id")
        if image_id not in images:
            raise _bad(captions_file, f"annotation #{i} refers to unknown image_id {image_id}")
        captions.setdefault(image_id, []).append(str(_field(captions_file, "annotation", i, ann, "caption")).strip())
    boxes: dict[Any, list[tuple[float, list[float], str]]] = {}
    if instances_file is not None:
        inst = read_annotation_file(instances_file, ("annotations", "categories"))
        names = {_field(instances_file, "category", i, c, "id"): _field(instances_file, "category", i, c, "name")
                 for i, c in enumerate(inst["categories"])}
        for i, ann in enumerate(inst["annotations"]):
            image_id = _field(instances_file, "annotation", i, ann, "image_id")
            bbox = _field(instances_file, "annotation", i, ann, "bbox", length=4)
            category = _field(instances_file, "annotation", i, ann, "category_id")
            if image_id not in images:
                raise _bad(instances_file, f"annotation #{i} refers to image_id {image_id}, "
                                           f"absent from {captions_file}")
            if category not in names:
                raise _bad(instances_file, f"annotation #{i} has unknown category_id {category}")
            box = _crop_box(bbox, crops[image_id])
            if box is not None:
                boxes.setdefault(image_id, []).append(((box[2] - box[0]) * (box[3] - box[1]), box, names[category]))
    persons: dict[Any, list[tuple[float, list[list[float]]]]] = {}
    if keypoints_file is not None:
        kp = read_annotation_file(keypoints_file, ("annotations",))
        for i, ann in enumerate(kp["annotations"]):
            image_id = _field(keypoints_file, "annotation", i, ann, "image_id")
            flat = _field(keypoints_file, "annotation", i, ann, "keypoints", length=3 * NUM_KEYPOINTS)
            if image_id not in images:
                raise _bad(keypoints_file, f"annotation #{i} refers to image_id {image_id}, "
                                           f"absent from {captions_file}")
            points = _crop_keypoints(flat, crops[image_id])
            if any(p[2] for p in points):
                persons.setdefault(image_id, []).append((float(ann.get("area", 0.0)), points))
    index = []
    for image_id, file_name in images.items():
        if image_id not in captions:
            continue
        kept = sorted(boxes.get(image_id, []), key=lambda b: -b[0])[:max_boxes]
        people = sorted(persons.get(image_id, []), key=lambda p: -p[0])[:max_persons]
        index.append({"id": image_id, "file": file_name, "captions": captions[image_id],
                      "boxes": [b[1] for b in kept], "phrases": [b[2] for b in kept],
                      "keypoints": [p[1] for p in people]})
    return index


class CocoDataset(ConditionDataset):
    """COCO images with captions and the raw conditions of ``config.modalities``."""

    def __init__(self, config: DataConfig, split: str | None = None) -> None:
        super().__init__(config)
        self.split = split or config.split
        root = Path(config.root)
        if not config.root or not root.is_dir():
            raise layout_error("COCO", config.root, "the dataset root does not exist (recipes: set COCO in "
                               "recipes/db.sh; library: data.root in the config)", LAYOUT)
        self.image_dir = config.file(config.image_dir, self.split)
        if not self.image_dir.is_dir():
            raise layout_error("COCO", root, f"image folder {self.image_dir} not found", LAYOUT)
        self.files = {"captions": config.file(config.captions_file, self.split)}
        if "box" in self.modalities:
            self.files["instances"] = config.file(config.instances_file, self.split)
        if "keypoint" in self.modalities:
            self.files["keypoints"] = config.file(config.keypoints_file, self.split)
        self.index = self._load_index()

    @property
    def name(self) -> str:
        return f"coco_{self.split}"

    def source_params(self) -> dict:
        stats = {}
        for role, path in self.files.items():
            if not path.is_file():
                raise layout_error("COCO", self.config.root, f"annotation file {path} not found", LAYOUT)
            st = path.stat()
            stats[role] = [str(path.resolve()), st.st_size, st.st_mtime_ns]
        return {"dataset": "coco", "version": _INDEX_VERSION, "split": self.split, "files": stats,
                "max_boxes": self.config.max_boxes, "max_persons": self.config.max_persons}

    def _load_index(self) -> list[dict]:
        cache = ConditionCache(self.config.cache_dir) if self.config.cache_dir else None
        params = self.source_params()
        index = cache.load(f"{self.name}_index", params) if cache else None
        if index is None:
            print(f"{self.name}: parsing {', '.join(str(p) for p in self.files.values())}")
            index = parse_coco(self.files["captions"], self.files.get("instances"), self.files.get("keypoints"),
                               self.config.max_boxes, self.config.max_persons)
            if cache:
                cache.save(f"{self.name}_index", params, index)
        if not index:
            raise DatasetLayoutError(f"{self.files['captions']}: no captioned images in split {self.split}")
        return index

    def __len__(self) -> int:
        return len(self.index)

    def image_path(self, index: int) -> Path:
        """File of item ``index``."""
        return self.image_dir / self.index[index]["file"]

    def record(self, index: int) -> Record:
        item = self.index[index]
        path = self.image_path(index)
        captions = item["captions"]
        caption = random.choice(captions) if self.config.caption_choice == "random" else captions[0]
        depth = None
        if "depth" in self.modalities:
            try:
                depth = load_depth(self.config.depth_dir, path, self.config.resolution)
            except MissingDepthError:
                if not self.config.depth_optional:
                    raise
        keypoints = np.asarray(item["keypoints"], dtype=np.float32).reshape(-1, NUM_KEYPOINTS, 3)
        return Record(key=str(item["id"]), image=center_square(load_rgb(path)), caption=caption,
                      boxes=item["boxes"], phrases=item["phrases"], keypoints=keypoints, depth=depth)

    def check_depth(self) -> list[Path]:
        """Depth maps missing from ``data.depth_dir`` (empty when depth is not requested)."""
        if "depth" not in self.modalities:
            return []
        return [p for p in (depth_path(self.config.depth_dir, self.image_path(i)) for i in
                            tqdm(range(len(self)), desc=f"{self.name}: depth maps", unit="img")) if not p.is_file()]
