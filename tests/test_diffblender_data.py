"""DiffBlender data side: Lab conversion and the 180-bin palette, the edge detector, depth maps,
synthetic shapes, the COCO reader and its errors, the cache, CLIP style embeddings, batching, the
data module, the preparation entry point and the condition grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vision_ssl.data.base import DatasetLayoutError
from vision_ssl.diffblender.config import load_config
from vision_ssl.diffblender.data import (
    ConditionCache,
    DataConfig,
    DiffBlenderDataModule,
    MissingDepthError,
    collate_conditions,
    color_histogram,
    extract_sketch,
    load_depth,
    palette_rgb,
    srgb_to_lab,
)
from vision_ssl.diffblender.data.coco import AnnotationError, CocoDataset, parse_coco
from vision_ssl.diffblender.data.shapes import SHAPE_COLORS, Shape, ShapesDataset, caption_for, draw_shapes

ALL = ["sketch", "depth", "box", "keypoint", "color"]


def shapes_config(**kw) -> DataConfig:
    base = dict(dataset="shapes", resolution=32, modalities=ALL, shapes_count=12, shapes_val_count=4, batch_size=4,
                num_workers=0)
    return DataConfig(**{**base, **kw})


# ---- palette ---------------------------------------------------------------------------------

def test_srgb_to_lab_known_colours():
    lab = srgb_to_lab(torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]))
    assert torch.allclose(lab[0], torch.tensor([100.0, 0.0, 0.0], dtype=torch.float64), atol=1e-3)
    assert torch.allclose(lab[1], torch.tensor([53.24, 80.09, 67.20], dtype=torch.float64), atol=0.01)
    assert torch.allclose(lab[2], torch.zeros(3, dtype=torch.float64), atol=1e-6)
    # mid grey (sRGB 0.5 -> linear 0.214) has L 53.39 and no chroma
    assert abs(lab[3, 0].item() - 53.39) < 0.01 and lab[3, 1:].abs().max() < 1e-3


def test_palette_layout():
    rgb = palette_rgb()
    assert rgb.shape == (180, 3)
    assert torch.equal(rgb[14], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))  # hue 0, sat 1, value 1
    greys = rgb[165:]
    assert greys[0].sum() == 0 and greys[-1].sum() == 3
    assert torch.all(greys[:, 0] == greys[:, 1]) and len(torch.unique(rgb, dim=0)) == 180


def test_color_histogram_values():
    red = np.zeros((20, 30, 3), np.uint8)
    red[..., 0] = 255
    full = color_histogram(red, min_weight=0.0)
    assert full.shape == (180,) and full.dtype == torch.float32
    assert abs(full.sum().item() - 1.0) < 1e-5 and full.argmax().item() == 14
    sparse = color_histogram(red)
    assert sparse.sum() <= 1.0 and (sparse[(sparse > 0)] >= 0.01).all() and sparse[14] == full[14]
    # half red, half white = the mean of the two one-colour histograms; a big image is downsampled to <= 241 px
    half = np.full((600, 400, 3), 255, np.uint8)
    half[:300, :, 1:] = 0
    big = color_histogram(half, min_weight=0.0)
    white = color_histogram(np.full((5, 5, 3), 255, np.uint8), min_weight=0.0)
    assert white.argmax() == 179 and torch.allclose(big, (full + white) / 2, atol=2e-3)
    assert torch.allclose(big, color_histogram(Image.fromarray(half).resize((40, 60)), min_weight=0.0), atol=0.02)
    # tensors in [0, 1] give the same histogram as uint8 arrays
    assert torch.allclose(color_histogram(torch.from_numpy(red).permute(2, 0, 1) / 255.0), sparse)


# ---- sketch ----------------------------------------------------------------------------------

def test_sketch_of_a_square():
    img = torch.zeros(3, 24, 24)
    img[:, 6:18, 6:18] = 1.0
    sketch = extract_sketch(img, sigma=0.8)
    assert sketch.shape == (3, 24, 24) and set(sketch.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(sketch[0], sketch[2])
    ring = torch.zeros(24, 24, dtype=torch.bool)
    ring[4:20, 4:20] = True
    ring[8:16, 8:16] = False
    on = sketch[0].bool()
    assert on[ring].sum() == on.sum() and 40 <= on.sum() <= 60  # strokes only near the 4 x 12 px outline
    assert torch.equal(extract_sketch(img * 0.5, sigma=0.8), sketch)  # threshold is relative to the strongest edge
    assert extract_sketch(torch.full((3, 8, 8), 0.3)).sum() == 0
    assert torch.equal(extract_sketch(img.unsqueeze(0).repeat(2, 1, 1, 1), sigma=0.8)[1], sketch)


# ---- depth -----------------------------------------------------------------------------------

def test_depth_maps(tmp_path):
    wide = np.zeros((20, 40), np.uint16)
    wide[:, 20:] = 65535
    Image.fromarray(wide).save(tmp_path / "a.png")
    depth = load_depth(tmp_path, "images/a.jpg", 10)
    # the centre 20 x 20 crop holds columns 10..29: left half 0, right half 1
    assert depth.shape == (3, 10, 10) and depth[:, :, :4].max() == 0 and depth[:, :, 6:].min() == 1.0
    Image.fromarray((wide // 257).astype(np.uint8)).save(tmp_path / "b.png")
    assert torch.allclose(load_depth(tmp_path, "b.jpg", 10), depth)
    with pytest.raises(MissingDepthError, match=r"c\.png.*depth_optional"):
        load_depth(tmp_path, "c.jpg", 10)


# ---- shapes ----------------------------------------------------------------------------------

def test_shapes_dataset():
    data = ShapesDataset(shapes_config(shapes_max=3))
    sample = data[3]
    again = ShapesDataset(shapes_config(shapes_max=3))[3]
    assert torch.equal(sample["pixel_values"], again["pixel_values"]) and sample["caption"] == again["caption"]
    assert sample["pixel_values"].shape == (3, 32, 32) and sample["pixel_values"].min() == -1.0
    shapes = data.layout(3)
    assert sample["caption"] == caption_for(shapes)
    assert sample["conditions"]["box"]["phrases"] == [s.phrase for s in shapes]
    assert len({s.color for s in shapes}) == len(shapes)
    assert sample["conditions"]["keypoint"]["points"].shape == (0, 17, 2)
    depth = sample["conditions"]["depth"]
    assert depth["mask"] == 1.0 and depth["image"].max() == 1.0  # the last shape is the nearest
    assert len(ShapesDataset(shapes_config(), "val")) == 4
    val_image = ShapesDataset(shapes_config(), "val")[0]["pixel_values"]
    assert not torch.equal(val_image, ShapesDataset(shapes_config())[0]["pixel_values"])
    with pytest.raises(IndexError):
        data.layout(12)


def test_shapes_drawing_and_caption():
    shapes = [Shape("red", "rectangle", (0, 0, 4, 3)), Shape("blue", "ellipse", (4, 4, 8, 8))]
    image, labels = draw_shapes(shapes, 8)
    pixels = np.asarray(image)
    assert (labels == 1).sum() == 12 and tuple(pixels[1, 1]) == SHAPE_COLORS["red"] and tuple(pixels[7, 0]) == (0, 0, 0)
    assert labels[6, 6] == 2 and labels[4, 4] == 0  # ellipse corners stay background
    assert caption_for(shapes) == "a red rectangle and a blue ellipse"
    assert caption_for(shapes[:1] * 3) == "a red rectangle, a red rectangle and a red rectangle"


# ---- COCO ------------------------------------------------------------------------------------

def _person(points: dict[int, tuple[float, float]]) -> list[float]:
    flat = [0.0] * 51
    for k, (x, y) in points.items():
        flat[3 * k:3 * k + 3] = [x, y, 2]
    return flat


def write_coco(root: Path, split: str = "val2017") -> Path:
    """Two images (40 x 20 landscape, 20 x 30 portrait) with captions, boxes and keypoints."""
    (root / split).mkdir(parents=True)
    (root / "annotations").mkdir()
    Image.new("RGB", (40, 20), (200, 10, 10)).save(root / split / "1.jpg")
    Image.new("RGB", (20, 30), (10, 10, 200)).save(root / split / "2.jpg")
    images = [{"id": 1, "file_name": "1.jpg", "width": 40, "height": 20},
              {"id": 2, "file_name": "2.jpg", "width": 20, "height": 30},
              {"id": 3, "file_name": "3.jpg", "width": 10, "height": 10}]  # no caption: left out
    (root / "annotations" / f"captions_{split}.json").write_text(json.dumps({"images": images, "annotations": [
        {"image_id": 1, "caption": "a red thing "}, {"image_id": 1, "caption": "red"},
        {"image_id": 2, "caption": "a blue thing"}]}))
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps({"images": images, "categories": [
        {"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}], "annotations": [
        {"image_id": 1, "bbox": [10, 0, 5, 5], "category_id": 1},     # inside the crop (x 10..30)
        {"image_id": 1, "bbox": [0, 0, 5, 5], "category_id": 2},      # left of the crop: dropped
        {"image_id": 1, "bbox": [25, 10, 10, 10], "category_id": 2},  # clipped to x 25..30
        {"image_id": 1, "bbox": [12, 2, 6, 16], "category_id": 2}]}))  # the largest
    (root / "annotations" / f"person_keypoints_{split}.json").write_text(json.dumps({"annotations": [
        {"image_id": 2, "area": 10.0, "keypoints": _person({0: (10, 15), 1: (10, 2)})},  # y 2 is above the crop
        {"image_id": 2, "area": 50.0, "keypoints": _person({5: (5, 20)})},
        {"image_id": 2, "area": 99.0, "keypoints": _person({})}]}))  # nothing labelled: dropped
    return root


def test_coco_parse(tmp_path):
    root = write_coco(tmp_path)
    ann = root / "annotations"
    index = parse_coco(ann / "captions_val2017.json", ann / "instances_val2017.json",
                       ann / "person_keypoints_val2017.json", max_boxes=2, max_persons=8)
    assert [item["id"] for item in index] == [1, 2]
    first = index[0]
    assert first["captions"] == ["a red thing", "red"] and first["phrases"] == ["cat", "cat"]
    # crop x 10..30; largest first, the smallest (dog, area 0.0625) is cut by max_boxes 2
    assert np.allclose(first["boxes"], [[0.1, 0.1, 0.4, 0.9], [0.75, 0.5, 1.0, 1.0]])
    people = np.asarray(index[1]["keypoints"])  # crop of the portrait: rows 5..25
    assert people.shape == (2, 17, 3)
    assert np.allclose(people[0, 5], [0.25, 0.75, 1]) and people[0].sum() == 2.0  # area 50 first
    assert np.allclose(people[1, 0], [0.5, 0.5, 1]) and np.allclose(people[1, 1], 0)  # outside the crop: masked


def test_coco_dataset_and_cache(tmp_path, monkeypatch):
    root = write_coco(tmp_path / "coco")
    depth_dir = tmp_path / "depth"
    depth_dir.mkdir()
    Image.new("L", (40, 20), 128).save(depth_dir / "1.png")
    config = DataConfig(root=str(root), split="val2017", resolution=16, modalities=ALL, caption_choice="first",
                        depth_dir=str(depth_dir), depth_optional=True, cache_dir=str(tmp_path / "cache"))
    data = CocoDataset(config)
    first, second = data[0], data[1]
    assert first["caption"] == "a red thing" and first["key"] == "1"
    pixels, depth = first["pixel_values"], first["conditions"]["depth"]
    assert pixels.shape == (3, 16, 16) and abs(pixels[0].mean().item() - (200 / 127.5 - 1)) < 0.02
    assert depth["mask"] == 1.0 and abs(depth["image"].mean().item() - 128 / 255) < 1e-3
    assert second["conditions"]["depth"]["mask"] == 0.0 and second["conditions"]["depth"]["image"].sum() == 0
    assert second["conditions"]["keypoint"]["mask"].sum() == 2 and first["conditions"]["box"]["boxes"].shape == (3, 4)
    reference = color_histogram(Image.new("RGB", (4, 4), (200, 10, 10)))
    assert first["conditions"]["color"]["vector"].argmax() == reference.argmax()
    # the parsed index is cached: a second dataset does not parse again
    monkeypatch.setattr("vision_ssl.diffblender.data.coco.parse_coco", lambda *a, **k: pytest.fail("parsed twice"))
    assert len(CocoDataset(config)) == 2
    with pytest.raises(MissingDepthError, match="2.png"):
        CocoDataset(DataConfig(**{**config.__dict__, "depth_optional": False}))[1]


@pytest.mark.parametrize("content,message", [
    ("{not json", "not valid JSON"),
    ('{"images": []}', "missing or non-list top-level key 'annotations'"),
    ('{"images": [{"id": 1, "file_name": "1.jpg", "width": 4, "height": 4}], "annotations": [{"image_id": 7, '
     '"caption": "x"}]}', "annotation #0 refers to unknown image_id 7"),
    ('{"images": [{"id": 1, "file_name": "1.jpg", "width": 4}], "annotations": []}', "image #0 has no 'height'"),
])
def test_coco_malformed_captions(tmp_path, content, message):
    root = write_coco(tmp_path)
    bad = root / "annotations" / "captions_val2017.json"
    bad.write_text(content)
    with pytest.raises(AnnotationError, match=f"captions_val2017.json: {message}"):
        CocoDataset(DataConfig(root=str(root), split="val2017", modalities=["box"]))


def test_coco_malformed_boxes_and_layout(tmp_path):
    root = write_coco(tmp_path)
    inst = root / "annotations" / "instances_val2017.json"
    data = json.loads(inst.read_text())
    data["annotations"][2]["bbox"] = [1, 2, 3]
    inst.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"instances_val2017.json: annotation #2: 'bbox' must be a list of 4"):
        CocoDataset(DataConfig(root=str(root), split="val2017", modalities=["box"]))
    with pytest.raises(DatasetLayoutError, match="captions_train2017.json not found"):
        CocoDataset(DataConfig(root=str(root), split="train2017", image_dir="val2017", modalities=["keypoint"]))
    with pytest.raises(DatasetLayoutError, match="does not exist.*recipes/db.sh"):
        CocoDataset(DataConfig(root=str(tmp_path / "nowhere")))


# ---- cache, style, collate, data module, prepare, grid ----------------------------------------

def test_cache_round_trip(tmp_path):
    cache = ConditionCache(tmp_path / "c")
    assert cache.load("x", {"a": 1}) is None
    cache.save("x", {"a": 1, "b": [1, 2]}, {"v": torch.arange(3), "names": ["p"]})
    out = cache.load("x", {"b": [1, 2], "a": 1})
    assert torch.equal(out["v"], torch.arange(3)) and out["names"] == ["p"]
    assert cache.load("x", {"a": 2, "b": [1, 2]}) is None and not list(tmp_path.glob("c/*.tmp"))
    cache.path("y").write_bytes(b"garbage")
    with pytest.raises(OSError, match=r"(?s)y\.pt: cannot read cache entry.*delete it"):
        cache.load("y", {})


@pytest.fixture(scope="module")
def clip_vision_dir(tmp_path_factory) -> Path:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = tmp_path_factory.mktemp("clip_vision")
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                                   num_attention_heads=4, image_size=32, patch_size=8,
                                                   projection_dim=12)).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_style_embeddings_and_cache(tmp_path, clip_vision_dir):
    from vision_ssl.diffblender.data import StyleEncoder

    config = shapes_config(modalities=["style", "color"], style_model=str(clip_vision_dir), cache_dir=str(tmp_path))
    data = ShapesDataset(config)
    encoder = StyleEncoder(clip_vision_dir)
    direct = encoder([data.record(i).image for i in range(3)])
    assert direct.shape == (3, 12) and torch.allclose(direct.norm(dim=1), torch.ones(3), atol=1e-5)
    assert data.attach_cache(ConditionCache(tmp_path), build=True) == {"color": "built", "style": "built"}
    assert torch.allclose(data[1]["conditions"]["style"]["vector"], direct[1], atol=1e-5)
    assert ShapesDataset(config).attach_cache(ConditionCache(tmp_path)) == {"color": "cached", "style": "cached"}
    with pytest.raises(FileNotFoundError, match="config.json missing"):
        StyleEncoder(tmp_path / "empty")


def test_collate_pads_and_masks():
    data = ShapesDataset(shapes_config(shapes_max=3))
    samples = [data[i] for i in range(3)]
    samples[1]["conditions"].pop("color")
    samples[2]["conditions"]["keypoint"] = {"points": torch.full((9, 17, 2), 0.5), "mask": torch.ones(9, 17)}
    batch = collate_conditions(samples, max_boxes=2, max_persons=8)
    c = batch["conditions"]
    assert batch["pixel_values"].shape == (3, 3, 32, 32) and batch["keys"] == [f"train00000{i}" for i in range(3)]
    assert c["color"]["mask"].tolist() == [1.0, 0.0, 1.0] and c["color"]["vector"][1].sum() == 0
    assert c["box"]["boxes"].shape == (3, 2, 4)
    assert c["box"]["mask"].sum(1).tolist() == [min(2, len(s["conditions"]["box"]["phrases"])) for s in samples]
    assert [len(p) for p in c["box"]["phrases"]] == c["box"]["mask"].sum(1).int().tolist()
    assert c["keypoint"]["points"].shape == (3, 8, 17, 2) and c["keypoint"]["mask"].sum().item() == 8 * 17
    assert c["sketch"]["mask"].tolist() == [1.0, 1.0, 1.0] and c["depth"]["image"].shape == (3, 3, 32, 32)
    assert "style" not in c


def test_datamodule_batches():
    module = DiffBlenderDataModule(shapes_config())
    batch = next(iter(module.train_dataloader()))
    assert batch["pixel_values"].shape == (4, 3, 32, 32) and len(batch["captions"]) == 4
    conds = batch["conditions"]
    assert conds["box"]["boxes"].shape == (4, 30, 4) and conds["color"]["vector"].shape == (4, 180)
    assert len(module.train_dataloader()) == 3 and len(module.val_dataloader()) == 1
    with pytest.raises(ValueError, match="fewer than one batch"):
        DiffBlenderDataModule(shapes_config(batch_size=64)).train_dataloader()


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="style_model is empty"):
        DataConfig(modalities=["style"])
    with pytest.raises(ValueError, match="depth_dir is empty"):
        DataConfig(modalities=["depth"])
    with pytest.raises(ValueError, match="unknown \\['edges'\\]"):
        DataConfig(modalities=["edges"])
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  dataset: shapes\n  resolution: 16\n")
    config = load_config(path, ["data.batch_size=3"]).data
    assert (config.dataset, config.resolution, config.batch_size) == ("shapes", 16, 3)
    with pytest.raises(ValueError, match=f"{path}: data: unknown keys \\['bogus'\\]"):
        load_config(path, ["data.bogus=1"])


def test_prepare_entry_point(tmp_path, capsys):
    from vision_ssl.bin.diffblender import main

    cache, preview = tmp_path / "cache", tmp_path / "grid.png"
    assert main(["prepare", "--set", "data.dataset=shapes", "--set", "data.resolution=16",
                 "--set", "data.shapes_count=6", "--set", "data.shapes_val_count=2", "--set", f"data.cache_dir={cache}",
                 "--set", "data.modalities=[sketch,box,color]", "--preview", str(preview)]) == 0
    assert json.loads((cache / "prepared_shapes_train.json").read_text())["items"] == 6
    assert sorted(p.name for p in cache.glob("*.pt")) == ["shapes_train_color.pt", "shapes_val_color.pt"]
    assert Image.open(preview).size == (4 * 128, 6 * (128 + 14))  # sketch, boxes, palette, image x 6 rows
    root = write_coco(tmp_path / "coco")
    (root / "annotations" / "captions_val2017.json").write_text("[]")
    assert main(["prepare", "--set", f"data.root={root}", "--set", "data.split=val2017",
                 "--set", f"data.cache_dir={cache}"]) == 1
    assert "captions_val2017.json: expected a JSON object" in capsys.readouterr().err
