"""DiffBlender evaluation: FID through torchmetrics with a custom feature module, CLIP score from a
local folder, colour / box alignment on synthetic shapes, the detector hook (AP50, mean IoU) and
the condition grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vision_ssl.diffblender.data import DataConfig, collate_conditions
from vision_ssl.diffblender.data.shapes import SHAPE_COLORS, Shape, ShapesDataset, draw_shapes
from vision_ssl.diffblender.metrics import (
    RandomConvFeatures,
    average_precision,
    color_match_rate,
    compute_clip_score,
    compute_fid,
    detection_alignment,
    dominant_colors,
    load_detections,
    segment_colors,
    shapes_box_iou,
)


class ChannelMeans(torch.nn.Module):
    num_features = 3

    def forward(self, images):
        return images.mean(dim=(2, 3))


def _image(shapes, size=16) -> torch.Tensor:
    image, _ = draw_shapes(shapes, size)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255


def test_fid_with_custom_features():
    real = torch.rand(50, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    # a constant shift of every feature by 0.1 leaves the covariance: FID = |shift|^2 = 3 x 0.01
    assert compute_fid(real, real + 0.1, ChannelMeans()) == pytest.approx(0.03, abs=1e-4)
    assert compute_fid(real, real, ChannelMeans()) == pytest.approx(0.0, abs=1e-6)
    features = RandomConvFeatures(num_features=16, seed=3)
    out = features(real[:2])
    assert out.shape == (2, 16) and torch.equal(out, RandomConvFeatures(16, seed=3)(real[:2]))
    assert compute_fid(real, real.flip(0), features) == pytest.approx(0.0, abs=1e-6)  # order does not matter
    assert compute_fid(real, real * 0.3, features) > 0.1


def test_clip_score_from_local_folder(tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from vision_ssl.diffblender.tiny import write_char_tokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(write_char_tokenizer(tmp_path / "tok")))
    vocab = tokenizer.get_vocab()
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=20, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(hidden_size=16, intermediate_size=20, num_hidden_layers=1, num_attention_heads=2,
                           image_size=16, patch_size=8), projection_dim=8)).eval()
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 16},
                                                                 crop_size={"height": 16, "width": 16}),
                              tokenizer=tokenizer)
    model.save_pretrained(tmp_path / "clip")
    processor.save_pretrained(tmp_path / "clip")
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    captions = ["a red ellipse", "a blue rectangle", "x"]
    score = compute_clip_score(images, captions, tmp_path / "clip")
    with torch.no_grad():  # by hand: 100 x cosine of the projected embeddings, clipped at 0, averaged
        inputs = processor(text=captions, images=list((images * 255).round().to(torch.uint8)), return_tensors="pt",
                           padding=True)
        out = model(**inputs)
        cos = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds)
    assert score == pytest.approx(float((100 * cos).clamp_min(0).mean()), abs=1e-3)
    with pytest.raises(FileNotFoundError, match="no CLIP model here"):
        compute_clip_score(images, captions, tmp_path / "missing")


def test_colour_segmentation_and_match():
    red_big = _image([Shape("red", "rectangle", (0, 0, 10, 10)), Shape("blue", "ellipse", (11, 11, 16, 16))])
    labels = segment_colors(red_big.unsqueeze(0))[0]
    assert (labels == 1).sum() == 100 and labels[0, 15] == 0 and labels[13, 13] == list(SHAPE_COLORS).index("blue") + 1
    blank = torch.zeros(3, 16, 16)
    noisy = (red_big * 0.8 + 0.1).clamp(0, 1)  # colour shifts still map to the nearest reference
    assert dominant_colors(torch.stack([red_big, blank, noisy])) == ["red", None, "red"]
    assert color_match_rate(torch.stack([red_big, blank, noisy]), ["red", "red", "blue"]) == pytest.approx(1 / 3)


def test_shapes_box_iou():
    data = ShapesDataset(DataConfig(dataset="shapes", resolution=32, modalities=["box"], shapes_count=6, shapes_max=3))
    batch = collate_conditions([data[i] for i in range(6)])
    box = batch["conditions"]["box"]
    boxes = [b[m.bool()].tolist() for b, m in zip(box["boxes"], box["mask"])]
    ious = shapes_box_iou((batch["pixel_values"] + 1) / 2, boxes, box["phrases"])
    assert len(ious) == int(box["mask"].sum()) and ious == pytest.approx([1.0] * len(ious))
    # a red 4 x 4 square drawn at (4, 4) while (2, 2)-(6, 6) was asked: IoU = 4 / 28; absent colour: 0
    image = _image([Shape("red", "rectangle", (4, 4, 8, 8))], size=16)
    asked = [[[2 / 16, 2 / 16, 6 / 16, 6 / 16], [0.5, 0.5, 1.0, 1.0]]]
    ious = shapes_box_iou(image.unsqueeze(0), asked, [["red rectangle", "green ellipse"]])
    assert ious == pytest.approx([4 / 28, 0.0])
    # a red blob far away from the asked box does not count
    assert shapes_box_iou(image.unsqueeze(0), [[[0.8, 0.8, 0.9, 0.9]]], [["red ellipse"]]) == [0.0]


def test_average_precision_by_hand():
    # ranks: hit, miss, hit over 2 targets -> recall .5 .5 1, precision 1 .5 .667 -> AP = .5 + .5 x 2/3
    assert average_precision([0.9, 0.8, 0.7], [True, False, True], 2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision([0.2, 0.9], [True, False], 1) == pytest.approx(0.5)  # sorted by score first
    assert average_precision([], [], 3) == 0.0 and np.isnan(average_precision([0.5], [False], 0))


def test_detection_alignment(tmp_path):
    requested = {"a": ([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], ["dog", "cat"]),
                 "b": ([[0.0, 0.0, 1.0, 1.0]], ["dog"])}
    detections = {"a": [{"box": [0.0, 0.0, 0.5, 0.5], "label": "dog", "score": 0.9},
                        {"box": [0.5, 0.5, 1.0, 1.0], "label": "dog", "score": 0.8},  # right place, wrong label
                        {"box": [0.5, 0.5, 0.75, 1.0], "label": "cat", "score": 0.7}]}  # IoU 0.5 with the cat
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(detections))
    result = detection_alignment(load_detections(path), requested)
    # dog: hit (0.9), miss (0.8) over 2 targets -> AP 0.5; cat: one hit -> AP 1; "b" has no detections
    assert result["ap50"] == pytest.approx(0.75) and result["num_boxes"] == 3
    assert result["mean_iou"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    path.write_text(json.dumps({"a": [{"box": [0, 0, 1], "label": "dog"}]}))
    with pytest.raises(ValueError, match=r"dets.json: detection #0 of 'a' must be"):
        load_detections(path)


def test_condition_grid_layout():
    from vision_ssl.diffblender.visualize import condition_grid

    data = ShapesDataset(DataConfig(dataset="shapes", resolution=16, modalities=["sketch", "depth", "box", "keypoint",
                                                                                   "color"], shapes_count=3))
    batch = collate_conditions([data[i] for i in range(3)])
    batch["conditions"]["keypoint"]["mask"][0, 0, :2] = 1.0
    grid = condition_grid(batch, size=32, style_images=[data.record(i).image for i in range(3)])
    assert grid.size == (7 * 32, 3 * (32 + 14))
    pixels = np.asarray(grid)
    assert pixels[:32, 6 * 32:].max() > 0 and (pixels[:32, :32].max(-1) > 0).sum() > 0  # result and sketch drawn
    # palette column: the widest stripe (leftmost) is black, the background's colour
    assert tuple(pixels[16, 5 * 32 - 32 + 1]) == (0, 0, 0)
