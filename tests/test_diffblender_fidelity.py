"""DiffBlender against the official implementation (reference diffblender.md): image-encoder level
chaining, gate schedules over PLMS's extra evaluation, per-call posterior samples, the vector
encoders' Fourier input option and mask blending. Each test is built from the specification and
fails on the behaviour it replaced."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vision_ssl.diffblender.adapter import DiffBlenderAdapter
from vision_ssl.diffblender.config import AdapterConfig, ModalitySpec, tiny_adapter_config
from vision_ssl.diffblender.encoders.image_form import LatentAdapter
from vision_ssl.diffblender.encoders.nonspatial import VectorEncoder
from vision_ssl.diffblender.encoders.spatial import BoxEncoder, KeypointEncoder
from vision_ssl.diffblender.schedule import evaluation_gate_schedule, evaluation_steps, gate_schedule

SD_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
PX = 32  # tiny VAE: 32 px images -> 16 x 16 latents


def seeded_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter of ``module`` set from a seeded normal (out convs and nulls included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return module


# ---------------------------------------------------------------- 1. image-form encoder levels
def spec_block(block, x: torch.Tensor) -> torch.Tensor:
    """One residual block as the spec lays it out: [downsample] -> [1x1 channel change] ->
    GroupNorm -> x + conv1x1(SiLU(conv3x3(x)))."""
    if block.down_opt is not None:
        x = F.conv2d(x, block.down_opt.op.weight, block.down_opt.op.bias, stride=2, padding=1)
    if block.in_conv is not None:
        x = F.conv2d(x, block.in_conv.weight, block.in_conv.bias)
    x = F.group_norm(x, block.norm.num_groups, block.norm.weight, block.norm.bias, block.norm.eps)
    conv3, conv1 = block.body[0], block.body[2]
    return x + F.conv2d(F.silu(F.conv2d(x, conv3.weight, conv3.bias, padding=1)), conv1.weight, conv1.bias)


def spec_encoder(enc: LatentAdapter, latent: torch.Tensor) -> list[torch.Tensor]:
    """Affine InstanceNorm -> 3x3 conv -> per level: its blocks, then its zero-init 1x1 conv, whose
    result is both the level's feature map and the next level's input."""
    norm, conv = enc.in_layers
    x = F.instance_norm(latent, weight=norm.weight, bias=norm.bias, eps=norm.eps)
    x = F.conv2d(x, conv.weight, conv.bias, padding=1)
    features = []
    for level in range(len(enc.channels)):
        for block in enc.body[level * enc.nums_rb:(level + 1) * enc.nums_rb]:
            x = spec_block(block, x)
        x = F.conv2d(x, enc.out_convs[level].weight)
        features.append(x)
    return features


@torch.no_grad()
def test_image_encoder_levels_chain_through_out_convs():
    config = AdapterConfig(image_channels=[32, 64, 64], nums_rb=2, use_conv=True)
    enc = LatentAdapter(ModalitySpec("image", "latent_adapter"), config)
    assert all(torch.all(f == 0) for f in enc(torch.randn(2, 4, 16, 16)))  # zero-init outputs
    seeded_(enc)
    latent = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    got, want = enc(latent), spec_encoder(enc, latent)
    assert [tuple(f.shape) for f in got] == [(2, 32, 16, 16), (2, 64, 8, 8), (2, 64, 4, 4)]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    # the old encoder passed the pre-conv features on: level 1 ignored level 0's out conv
    enc.out_convs[0].weight.mul_(2.0)
    moved = enc(latent)
    assert (moved[1] - got[1]).abs().max() > 1e-2 and (moved[2] - got[2]).abs().max() > 1e-3


# ---------------------------------------------------------------- 2. gate schedule over PLMS evaluations
def test_gate_schedule_counts_steps_not_plms_evaluations():
    from diffusers import DDIMScheduler, PNDMScheduler

    gate = (0.3, 0.0, 0.7, 1.0)
    pndm = PNDMScheduler(**SD_SCHEDULER, skip_prk_steps=True, steps_offset=1)
    pndm.set_timesteps(50)
    timesteps = pndm.timesteps.tolist()
    assert len(timesteps) == 51 and timesteps[:4] == [981, 961, 961, 941] and timesteps[-1] == 1
    assert evaluation_steps(51, 50) == [0, 0] + list(range(1, 50))
    scales = evaluation_gate_schedule(gate, 50, len(timesteps))
    on = [t for t, s in zip(timesteps, scales) if s > 0]
    # official: steps 0-14 gated (floor(0.3 x 50) = 15), step 0 evaluated twice -> 16 evaluations
    assert scales == [1.0] * 16 + [0.0] * 35 and len(on) == 16 and on[-1] == 701
    old = gate_schedule(gate, len(timesteps))  # the former schedule over the 51 evaluations
    assert sum(s > 0 for s in old) == 15 and [t for t, s in zip(timesteps, old) if s > 0][-1] == 721
    # a decaying schedule keeps its per-step values, step 0's repeated
    decay = (0.2, 0.4, 0.4, 0.5)
    assert evaluation_gate_schedule(decay, 50, 51) == [0.5] + gate_schedule(decay, 50)

    ddim = DDIMScheduler(**SD_SCHEDULER, steps_offset=1)
    ddim.set_timesteps(50)
    assert len(ddim.timesteps) == 50
    assert evaluation_gate_schedule(gate, 50, 50) == gate_schedule(gate, 50) == [1.0] * 15 + [0.0] * 35
    with pytest.raises(ValueError, match="cannot cover"):
        evaluation_steps(49, 50)


# ---------------------------------------------------------------- pipeline on the tiny base
@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from vision_ssl.diffblender.tiny import build_tiny_components

    torch.set_num_threads(1)
    return build_tiny_components(tmp_path_factory.mktemp("tok"))


@pytest.fixture()
def tiny_pipeline(parts):
    """``make(scheduler, adapter_config)``: a pipeline on the tiny base with a seeded adapter
    (detached from the shared UNet afterwards)."""
    from vision_ssl.diffblender.pipeline import DiffBlenderPipeline

    made = []

    def make(scheduler, config: AdapterConfig) -> DiffBlenderPipeline:
        adapter = seeded_(DiffBlenderAdapter.from_unet(config, parts["unet"]))
        pipe = DiffBlenderPipeline(vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
                                   unet=parts["unet"], scheduler=scheduler, adapter=adapter)
        pipe.set_progress_bar_config(disable=True)
        made.append(adapter)
        return pipe

    yield make
    for adapter in made:
        adapter.detach()


def record_predict(monkeypatch, adapter) -> list[tuple[int, float, list[torch.Tensor] | None]]:
    """Spy on each UNet evaluation: (timestep, spatial scale, image features)."""
    calls, predict = [], adapter.predict

    def spy(unet, sample, t, text, encoded, scales=None):
        image = None if encoded.image is None else [f.clone() for f in encoded.image]
        calls.append((int(t), scales.spatial, image))
        return predict(unet, sample, t, text, encoded, scales)

    monkeypatch.setattr(adapter, "predict", spy)
    return calls


def box_conditions() -> dict:
    mask = torch.zeros(1, 30)
    mask[0, 0] = 1
    return {"box": {"boxes": torch.rand(1, 30, 4, generator=torch.Generator().manual_seed(0)),
                    "phrases": [["a cube"]], "mask": mask}}


@torch.no_grad()
def test_pipeline_gates_sixteen_plms_evaluations(tiny_pipeline, monkeypatch):
    from diffusers import PNDMScheduler

    scheduler = PNDMScheduler(**SD_SCHEDULER, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    config = tiny_adapter_config(modalities={"box": ModalitySpec("spatial", "box")})
    pipe = tiny_pipeline(scheduler, config)
    calls = record_predict(monkeypatch, pipe.adapter)
    pipe("a cube", conditions=box_conditions(), num_inference_steps=50, guidance_scale=1.0, height=PX, width=PX,
         generator=torch.Generator().manual_seed(0), output_type="latent")
    gated = [t for t, s, _ in calls if s > 0]
    assert len(calls) == 51 and len(gated) == 16 and gated[-1] == 701
    assert [s for _, s, _ in calls] == [1.0] * 16 + [0.0] * 35


# ---------------------------------------------------------------- 3. posterior sample per UNet call
@torch.no_grad()
def test_image_latents_resampled_at_every_unet_call(tiny_pipeline, monkeypatch):
    from diffusers import DDIMScheduler

    config = tiny_adapter_config(modalities={"sketch": ModalitySpec("image", "latent_adapter")})
    pipe = tiny_pipeline(DDIMScheduler(**SD_SCHEDULER, steps_offset=1), config)
    sketch = {"sketch": {"image": torch.rand(1, 3, PX, PX, generator=torch.Generator().manual_seed(2)),
                         "mask": torch.ones(1)}}
    calls = record_predict(monkeypatch, pipe.adapter)

    def run(**kw):
        calls.clear()
        pipe("a cube", conditions=sketch, num_inference_steps=2, guidance_scale=5.0, height=PX, width=PX,
             generator=torch.Generator().manual_seed(0), output_type="latent", **kw)
        return [image[0] for _, _, image in calls]  # level-0 features, [uncond; cond] per call

    first, second = run()
    assert len(calls) == 2 and first.shape == (2, 32, 16, 16)
    # official: each call, and each of its cond / uncond halves, encodes its own posterior sample
    assert (first - second).abs().max() > 1e-3 and (first[0] - first[1]).abs().max() > 1e-3
    assert all(torch.equal(a, b) for a, b in zip(run(), (first, second)))  # seeded: reproducible
    once = run(resample_image_latents=False)
    assert torch.equal(once[0], once[1]) and torch.equal(once[0][0], once[0][1])
    # the posterior's mode never changes, whatever the option
    pipe.adapter.adapter_config.posterior = "mode"
    try:
        mode = run()
    finally:
        pipe.adapter.adapter_config.posterior = "sample"
    assert torch.equal(mode[0], mode[1])


@torch.no_grad()
def test_resample_draws_from_the_kept_posterior(parts):
    adapter = DiffBlenderAdapter.from_unet(tiny_adapter_config(), parts["unet"])
    image = torch.rand(2, 3, PX, PX, generator=torch.Generator().manual_seed(4))
    prepared = adapter.prepare({"sketch": {"image": image, "mask": torch.ones(2)}}, 2, vae=parts["vae"],
                               image_size=(PX, PX), generator=torch.Generator().manual_seed(5))
    sketch = prepared["sketch"]
    dist = parts["vae"].encode(image).latent_dist
    assert torch.equal(sketch["posterior_mean"], dist.mean) and torch.equal(sketch["posterior_std"], dist.std)
    # same generator state -> the same draw as prepare's (diffusers' sample), a later state -> another
    again = adapter.resample(prepared, torch.Generator().manual_seed(5))
    assert torch.equal(again["sketch"]["latent"], sketch["latent"])
    other = adapter.resample(prepared, torch.Generator().manual_seed(6))["sketch"]["latent"]
    noise = (other / 0.18215 - dist.mean) / dist.std
    assert (other - sketch["latent"]).abs().max() > 1e-3 and abs(noise.std().item() - 1) < 0.1


# ---------------------------------------------------------------- 4. Fourier input of the vector encoders
@torch.no_grad()
def test_vector_encoder_fourier_input_option():
    config = tiny_adapter_config()
    enc = VectorEncoder(ModalitySpec("nonspatial", "vector", in_dim=1, fourier_freqs=2, scale=0.5), config)
    # x = 1, scale 0.5, frequencies 100^(0/2) = 1 and 100^(1/2) = 10: angles 0.5 and 5, order freq -> sin/cos
    want = torch.tensor([[math.sin(0.5), math.cos(0.5), math.sin(5.0), math.cos(5.0)]])
    torch.testing.assert_close(enc.features(torch.tensor([[1.0]])), want)
    assert enc.linears[0].in_features == 4
    seeded_(enc)
    out = enc({"vector": torch.tensor([[1.0], [3.0]]), "mask": torch.tensor([1.0, 0.0])})
    assert out.shape == (2, 1, 32)
    torch.testing.assert_close(out[0, 0], enc.linears(want)[0])
    # a masked vector is nulled in input space, before the scale and the Fourier code
    null = enc.null_features.reshape(1, 1)
    torch.testing.assert_close(out[1, 0], enc.linears(enc.features(null))[0])
    palette = VectorEncoder(ModalitySpec("nonspatial", "vector", in_dim=180, fourier_freqs=8), config)
    assert palette.linears[0].in_features == 180 * 16
    assert palette({"vector": torch.rand(3, 180), "mask": torch.ones(3)}).shape == (3, 1, 32)
    # off by default: the raw vector feeds the MLP
    plain = VectorEncoder(ModalitySpec("nonspatial", "vector", in_dim=180), config)
    v = torch.rand(3, 180)
    assert plain.linears[0].in_features == 180 and torch.equal(plain.features(v), v)
    with pytest.raises(ValueError, match="fourier_freqs"):
        ModalitySpec("nonspatial", "vector", in_dim=4, fourier_freqs=-1)


# ---------------------------------------------------------------- 5. fractional masks blend
def mlp_input(encoder, condition) -> torch.Tensor:
    seen = []
    hook = encoder.linears.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    encoder(condition)
    hook.remove()
    return seen[0]


@torch.no_grad()
def test_fractional_masks_blend_with_null():
    config = tiny_adapter_config(fourier_freqs=2)
    box = BoxEncoder(ModalitySpec("spatial", "box"), config)
    box.null_text_feature.fill_(4.0)
    box.null_position_feature.fill_(2.0)
    mask = torch.zeros(1, 30)
    mask[0, 0] = 0.25
    x = mlp_input(box, {"boxes": torch.zeros(1, 30, 4), "phrase_embeds": torch.full((1, 30, 32), 8.0), "mask": mask})
    # slot 0: text 0.25 x 8 + 0.75 x 4 = 5 (the old switch gave 8); position of a zero box is
    # sin 0 / cos 1 per frequency and coordinate: 0.25 x 0 + 0.75 x 2 = 1.5 and 0.25 x 1 + 0.75 x 2 = 1.75
    assert torch.allclose(x[0, 0, :32], torch.full((32,), 5.0))
    position = torch.tensor([1.5] * 4 + [1.75] * 4).repeat(2)
    assert torch.allclose(x[0, 0, 32:], position)
    assert torch.allclose(x[0, 1, :32], torch.full((32,), 4.0)) and torch.allclose(x[0, 1, 32:], torch.full((16,), 2.0))

    vector = VectorEncoder(ModalitySpec("nonspatial", "vector", in_dim=3), config)
    vector.null_features.fill_(3.0)
    x = mlp_input(vector, {"vector": torch.ones(2, 3), "mask": torch.tensor([0.25, 1.0])})
    assert torch.allclose(x, torch.tensor([[2.5] * 3, [1.0] * 3]))  # 0.25 x 1 + 0.75 x 3 = 2.5

    keypoint = KeypointEncoder(ModalitySpec("spatial", "keypoint"), config)
    keypoint.person_embeddings.fill_(1.0)
    keypoint.keypoint_embeddings.fill_(2.0)
    keypoint.null_person_feature.fill_(-1.0)
    kmask = torch.zeros(1, 8, 17)
    kmask[0, 0, 0] = 0.5
    x = mlp_input(keypoint, {"points": torch.zeros(1, 8, 17, 2), "mask": kmask})
    assert torch.allclose(x[0, 0, :32], torch.full((32,), 1.0))  # 0.5 x (1 + 2) + 0.5 x (-1)
