"""The tiny frozen base of the DiffBlender mini recipe: evaluation helpers, the NaN guard, and a
short end-to-end run of ``python -m vision_ssl.bin.diffblender base`` that writes a diffusers SD folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compact_ssl.training import NonFiniteLossError
from vision_ssl.diffblender.base_training import VAETraining, centre_spread, eval_captions
from vision_ssl.diffblender.data.shapes import Shape, draw_shapes


def _image(shapes, size=10) -> torch.Tensor:
    image, _ = draw_shapes(shapes, size)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255


def test_eval_captions_cycle_colours_and_kinds():
    captions, colors = eval_captions(10)
    assert captions[:3] == ["a red rectangle", "a red ellipse", "a green rectangle"]
    assert captions[8] == captions[0] and colors[:4] == ["red", "red", "green", "green"]


def test_centre_spread_by_hand():
    # 2 x 2 squares centred at x 0.2 / 0.8 (y 0.5 for both): std of x over 2 images = 0.6 / sqrt(2), of y = 0
    left = _image([Shape("red", "rectangle", (1, 4, 3, 6))])
    right = _image([Shape("blue", "rectangle", (7, 4, 9, 6))])
    assert centre_spread(torch.stack([left, right])) == pytest.approx(0.6 / 2 ** 0.5 / 2, abs=1e-6)
    assert centre_spread(torch.stack([left, left])) == 0.0
    assert centre_spread(torch.stack([left, torch.zeros(3, 10, 10)])) == 0.0  # one shape only


def test_tiny_vae_latent_factor(tmp_path):
    from vision_ssl.diffblender.tiny import build_tiny_components, tiny_vae_config

    assert tiny_vae_config(2)["block_out_channels"] == (32, 64)
    assert tiny_vae_config(4)["block_out_channels"] == (32, 64, 64)
    with pytest.raises(ValueError, match="latent_factor must be a power of two >= 2, got 3"):
        tiny_vae_config(3)
    parts = build_tiny_components(tmp_path, latent_factor=4)
    with torch.no_grad():
        latents = parts["vae"].encode(torch.zeros(1, 3, 32, 32)).latent_dist.mean
    assert latents.shape == (1, 4, 8, 8) and parts["unet"].config.sample_size == 16


def test_vae_training_stops_on_nan(tmp_path):
    from vision_ssl.diffblender.tiny import build_tiny_components

    vae = build_tiny_components(tmp_path)["vae"]
    module = VAETraining(vae, lr=1e-3, kl_weight=1e-5)
    batch = {"pixel_values": torch.full((1, 3, 8, 8), float("nan"))}
    with pytest.raises(NonFiniteLossError, match="tiny base VAE: loss is nan at step 0"):
        module.training_step(batch, 0)


@pytest.mark.slow
def test_base_entry_point_writes_a_diffusers_folder(tmp_path, capsys):
    from diffusers import StableDiffusionPipeline

    from vision_ssl.bin.diffblender import main
    from vision_ssl.diffblender.tiny import build_tiny_components

    out = tmp_path / "base"
    args = ["base", "--out", str(out), "--steps", "2", "--vae_steps", "2", "--resolution", "16", "--count", "16",
            "--batch_size", "8", "--eval_samples", "4", "--num_inference_steps", "2", "--accelerator", "cpu"]
    assert main(args) == 0
    summary = json.loads((out / "base_training.json").read_text())
    assert summary["config"]["unet_steps"] == 2 and summary["eval"]["eval_samples"] == 4
    assert 0.0 <= summary["eval"]["color_match"] <= 1.0 and summary["eval"]["chance_color_match"] == 0.25
    assert summary["eval"]["fid_proxy_real_vs_real"] < summary["eval"]["fid_proxy_real_vs_noise"]
    assert (out / "samples.png").is_file() and (out / "logs" / "unet" / "metrics.csv").is_file()
    pipe = StableDiffusionPipeline.from_pretrained(str(out), safety_checker=None, requires_safety_checker=False)
    assert pipe.vae.config.scaling_factor == pytest.approx(summary["scaling_factor"]) and summary["scaling_factor"] > 0
    fresh = build_tiny_components(tmp_path / "tok")
    for name in ("unet", "vae", "text_encoder"):  # every trained part moved away from its initialisation
        before, after = fresh[name].state_dict(), getattr(pipe, name).state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before), name
    main(args)  # finished: skipped
    assert "already trained; skipping" in capsys.readouterr().out
