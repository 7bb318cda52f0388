"""DiffBlender model core on a tiny random diffusers base (reference diffblender.md section 7)."""

from __future__ import annotations

import copy

import pytest
import torch

from vision_ssl.diffblender.adapter import DiffBlenderAdapter, EncodedConditions, GateScales, encode_text
from vision_ssl.diffblender.config import DiffBlenderConfig, SampleConfig, TrainConfig, tiny_adapter_config
from vision_ssl.diffblender.encoders.spatial import fourier_embed
from vision_ssl.diffblender.guidance import combine_guidance, unconditional, without_modality
from vision_ssl.diffblender.schedule import gate_schedule
from vision_ssl.diffblender.task import DiffBlenderTask, drop_conditions, sample_timesteps
from vision_ssl.diffblender.tiny import build_tiny_components, save_tiny_base
from vision_ssl.diffblender.weights import (
    convert_official_state_dict,
    ldm_block_name,
    load_adapter,
    read_adapter_config,
    save_adapter,
)

B, PX = 2, 32  # 32 px images -> 16 x 16 latents with the tiny VAE


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    torch.set_num_threads(1)
    return build_tiny_components(tmp_path_factory.mktemp("tok"))


def raw_conditions(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    box_mask = torch.zeros(B, 30)
    box_mask[0, :2] = box_mask[1, :1] = 1
    return {
        "sketch": {"image": torch.rand(B, 3, PX, PX, generator=g), "mask": torch.ones(B)},
        "depth": {"image": torch.rand(B, 3, PX, PX, generator=g), "mask": torch.ones(B)},
        "box": {"boxes": torch.rand(B, 30, 4, generator=g), "phrases": [["a cat", "a dog"], ["a tree"]],
                "mask": box_mask},
        "keypoint": {"points": torch.rand(B, 8, 17, 2, generator=g),
                     "mask": (torch.rand(B, 8, 17, generator=g) > 0.5).float()},
        "color": {"vector": torch.rand(B, 180, generator=g), "mask": torch.ones(B)},
        "style": {"vector": torch.randn(B, 32, generator=g), "mask": torch.ones(B)},
    }


def randomise(adapter: DiffBlenderAdapter, seed: int = 0) -> DiffBlenderAdapter:
    """Non-zero gates, output convs and null vectors (a "trained" adapter)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return adapter


def inputs(parts, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    text = encode_text(parts["text_encoder"], parts["tokenizer"], ["a red cube", "two dogs"])
    return torch.randn(B, 4, PX // 2, PX // 2, generator=g), torch.tensor(500), text


def prepare(adapter, parts, conditions, **kw):
    return adapter.prepare(conditions, B, vae=parts["vae"], text_encoder=parts["text_encoder"],
                           tokenizer=parts["tokenizer"], image_size=(PX, PX),
                           generator=torch.Generator().manual_seed(3), **kw)


@pytest.fixture()
def adapter(parts):
    a = DiffBlenderAdapter.from_unet(tiny_adapter_config(), parts["unet"]).attach(parts["unet"])
    yield a
    a.detach()


@torch.no_grad()
def test_shapes_and_fourier_order(parts, adapter):
    from diffusers.models.embeddings import get_fourier_embeds_from_boundingbox

    boxes = torch.rand(B, 30, 4)
    assert fourier_embed(boxes, 8).shape == (B, 30, 64)
    assert torch.equal(fourier_embed(boxes, 8), get_fourier_embeds_from_boundingbox(8, boxes))
    prepared = prepare(adapter, parts, raw_conditions())
    assert prepared["box"]["phrase_embeds"].shape == (B, 30, 32)
    assert torch.all(prepared["box"]["phrase_embeds"][0, 2:] == 0)
    assert adapter.encoders["box"](prepared["box"]).shape == (B, 30, 32)
    assert adapter.encoders["keypoint"](prepared["keypoint"]).shape == (B, 136, 32)
    enc = adapter.encode(prepared, B)
    assert enc.spatial.shape == (B, 166, 32) and enc.nonspatial.shape == (B, 2, 32)
    # one map per down block, shaped like that block's features before its downsampler
    unet, (x, t, text) = parts["unet"], inputs(parts)
    seen = []
    hooks = [b.resnets[-1].register_forward_hook(lambda m, i, o: seen.append(o.shape)) for b in unet.down_blocks]
    unet(x, t, text)
    for h in hooks:
        h.remove()
    assert [f.shape for f in enc.image] == seen
    assert [tuple(f.shape) for f in enc.image] == [(B, 32, 16, 16), (B, 64, 8, 8)]
    assert len(adapter.sp_fusers) == len(adapter.nsp_fusers) == 6  # 2 down + 1 mid + 3 up blocks


@torch.no_grad()
def test_identity_at_init_and_native_path(parts, adapter):
    unet = parts["unet"]
    x, t, text = inputs(parts)
    adapter.detach()
    base = unet(x, t, text).sample
    adapter.attach(unet)
    enc = adapter.encode(prepare(adapter, parts, raw_conditions()), B)
    assert enc.image is not None and all(torch.all(f == 0) for f in enc.image)
    assert torch.equal(adapter.predict(unet, x, t, text, enc), base)
    # no conditions at all: processors fall through and no residuals are passed
    randomise(adapter)
    assert torch.equal(adapter.predict(unet, x, t, text, EncodedConditions()), base)
    assert torch.equal(unet(x, t, text).sample, base)


@torch.no_grad()
def test_gates_off_equals_base_after_perturbation(parts, adapter):
    unet = parts["unet"]
    x, t, text = inputs(parts)
    base = unet(x, t, text).sample
    randomise(adapter)
    enc = adapter.encode(prepare(adapter, parts, raw_conditions()), B)
    assert torch.equal(adapter.predict(unet, x, t, text, enc, GateScales(0, 0, 0)), base)
    for scales in (GateScales(1, 0, 0), GateScales(0, 1, 0), GateScales(0, 0, 0.7)):
        assert (adapter.predict(unet, x, t, text, enc, scales) - base).abs().max() > 1e-4
    # detaching restores the base processors
    adapter.detach()
    assert torch.equal(unet(x, t, text).sample, base)


@torch.no_grad()
def test_null_semantics_mask_zero(parts, adapter):
    randomise(adapter)
    unet = parts["unet"]
    x, t, text = inputs(parts)
    outs = []
    for seed in (0, 1):
        c = raw_conditions(seed)
        for name in ("box", "keypoint", "color", "style"):
            c[name]["mask"] = torch.zeros_like(c[name]["mask"])
        c["box"]["phrase_embeds"] = torch.randn(B, 30, 32)
        c = {k: v for k, v in c.items() if k not in ("sketch", "depth")}
        outs.append(adapter.predict(unet, x, t, text, adapter.encode(prepare(adapter, parts, c), B)))
    assert torch.equal(outs[0], outs[1])
    # masked tokens are exactly the null tokens of absent modalities
    absent = adapter.encode(prepare(adapter, parts, {}), B)
    assert torch.equal(adapter.predict(unet, x, t, text, absent), outs[0])
    # image-form null: official black image is not an identity, "skip" is
    skip = DiffBlenderAdapter.from_unet(tiny_adapter_config(image_null="skip"), unet)
    skip.load_state_dict(adapter.state_dict())
    c = raw_conditions()
    c["sketch"]["mask"] = torch.zeros(B)
    enc = skip.encode(prepare(skip, parts, {"sketch": c["sketch"]}), B)
    assert all(torch.all(f == 0) for f in enc.image)
    assert skip.encode(prepare(skip, parts, {}), B).image is None
    zero = adapter.encode(prepare(adapter, parts, {}), B)
    assert zero.image is not None and zero.image[0].abs().max() > 0


def test_gate_schedule():
    assert gate_schedule((0.3, 0, 0.7, 1), 50) == [1.0] * 15 + [0.0] * 35
    assert gate_schedule((1, 0, 0, 0.7), 50) == [0.7] * 50
    decay = gate_schedule((0.2, 0.5, 0.3, 1.0), 20)
    assert decay[:4] == [1.0] * 4 and decay[4:14] == [1.0 * (9 - j) / 10 for j in range(10)]
    assert all(a >= b for a, b in zip(decay, decay[1:])) and decay[13] == 0.0 and decay[-1] == 0.0
    with pytest.raises(ValueError, match="sum to 1"):
        gate_schedule((0.3, 0, 0.6, 1), 50)
    with pytest.raises(ValueError, match="sample.gate_spatial"):
        SampleConfig(gate_spatial=(0.5, 0.2, 0.2, 1.0))


def test_guidance_arithmetic():
    def mock_eps(conds: dict, text: float) -> torch.Tensor:
        value = text + sum(float(10 ** i) for i, k in enumerate(sorted(conds)))
        return torch.full((B, 4, 2, 2), value)

    conds = {"sketch": {"x": 1}, "box": {"x": 2}, "color": {"x": 3}}
    eps_c = mock_eps(conds, 0.5)
    uncond = unconditional(conds, ["sketch", "depth"])
    assert list(uncond) == ["sketch"] and uncond["sketch"] is conds["sketch"]
    eps_u = mock_eps(uncond, 0.0)
    nulled = without_modality(conds, "color")
    assert set(conds) - set(nulled) == {"color"} and all(nulled[k] is conds[k] for k in nulled)
    eps_m = mock_eps(nulled, 0.5)
    assert torch.equal(combine_guidance(eps_u, eps_c, 1.0), eps_c)
    plain = eps_u + 5.0 * (eps_c - eps_u)
    assert torch.equal(combine_guidance(eps_u, eps_c, 5.0, [(eps_m, 0.0)]), plain)
    got = combine_guidance(eps_u, eps_c, 5.0, [(eps_m, [2.0, -1.0])])
    assert torch.allclose(got[0], plain[0] + 2.0 * (eps_c[0] - eps_m[0]))
    assert torch.allclose(got[1], plain[1] - 1.0 * (eps_c[1] - eps_m[1]))
    with pytest.raises(ValueError, match="not among the given conditions"):
        without_modality(conds, "style")


@torch.no_grad()
def test_residual_list_hygiene(parts, adapter):
    randomise(adapter)
    unet = parts["unet"]
    x, t, text = inputs(parts)
    enc = adapter.encode(prepare(adapter, parts, raw_conditions()), B)
    residuals = adapter.image_residuals(enc, 0.7)
    first = unet(x, t, text, down_intrablock_additional_residuals=residuals).sample
    assert residuals == []  # the UNet pops: a list must never be reused
    again = unet(x, t, text, down_intrablock_additional_residuals=adapter.image_residuals(enc, 0.7)).sample
    assert torch.equal(first, again)
    scales = GateScales(1, 1, 0.7)
    assert torch.equal(adapter.predict(unet, x, t, text, enc, scales), adapter.predict(unet, x, t, text, enc, scales))
    again = adapter.encode(prepare(adapter, parts, raw_conditions()), B)
    assert all(torch.equal(a, b) for a, b in zip(enc.image, again.image))


@torch.no_grad()
def test_determinism_of_image_latents(parts, adapter):
    c = {"sketch": raw_conditions()["sketch"]}
    a = prepare(adapter, parts, c)["sketch"]["latent"]
    assert torch.equal(a, prepare(adapter, parts, c)["sketch"]["latent"])
    unseeded = adapter.prepare(c, B, vae=parts["vae"], image_size=(PX, PX))["sketch"]["latent"]
    assert not torch.equal(a, unseeded)
    modes = [adapter.prepare(c, B, vae=parts["vae"], image_size=(PX, PX), posterior="mode")["sketch"]["latent"]
             for _ in range(2)]
    assert torch.equal(*modes)


@torch.no_grad()
def test_save_load_roundtrip_and_base_reload(parts, adapter, tmp_path):
    from vision_ssl.diffblender.pipeline import load_base_components

    randomise(adapter)
    path = save_adapter(adapter, tmp_path / "adapter.safetensors")
    from safetensors.torch import load_file

    keys = set(load_file(str(path)))
    base_keys = {f"{m}.{k}" for m in ("unet", "vae", "text_encoder") for k in parts[m].state_dict()}
    assert keys == set(adapter.state_dict()) and not keys & base_keys
    assert not keys & set(parts["unet"].state_dict())
    assert {k.split(".")[0] for k in keys} == {"encoders", "sp_fusers", "nsp_fusers"}
    assert read_adapter_config(path) == adapter.adapter_config
    x, t, text = inputs(parts)
    enc = adapter.encode(prepare(adapter, parts, raw_conditions()), B)
    want = adapter.predict(parts["unet"], x, t, text, enc)
    adapter.detach()
    save_tiny_base(parts, tmp_path / "base")
    base = load_base_components(tmp_path / "base")
    loaded = load_adapter(path, base["unet"])
    enc2 = loaded.encode(loaded.prepare(raw_conditions(), B, vae=base["vae"], text_encoder=base["text_encoder"],
                                        tokenizer=base["tokenizer"], generator=torch.Generator().manual_seed(3)), B)
    text2 = encode_text(base["text_encoder"], base["tokenizer"], ["a red cube", "two dogs"])
    assert torch.equal(loaded.predict(base["unet"], x, t, text2, enc2), want)


def test_convert_official_layout(parts, adapter):
    assert [ldm_block_name("input_blocks", i) for i in (1, 2, 4, 5, 7, 8)] == [
        f"down_blocks.{lv}.attentions.{j}" for lv in (0, 1, 2) for j in (0, 1)]
    assert ldm_block_name("middle_block", 1) == "mid_block.attentions.0"
    assert [ldm_block_name("output_blocks", i) for i in range(3, 12)] == [
        f"up_blocks.{lv}.attentions.{j}" for lv in (1, 2, 3) for j in (0, 1, 2)]
    randomise(adapter)
    # the tiny UNet's attention blocks under their ldm names
    ldm = {"input_blocks.1.1": "down_blocks_0_attentions_0", "input_blocks.2.1": "down_blocks_0_attentions_1",
           "middle_block.1": "mid_block_attentions_0", "output_blocks.3.1": "up_blocks_1_attentions_0",
           "output_blocks.4.1": "up_blocks_1_attentions_1", "output_blocks.5.1": "up_blocks_1_attentions_2"}
    official = {"model.input_blocks.1.1.proj_in.weight": torch.zeros(1),
                "model.condition_nets.sketch.autoencoder.encoder.conv_in.weight": torch.zeros(1)}
    for key, value in adapter.state_dict().items():
        group, rest = key.split(".", 1)
        if group == "encoders":
            official[f"model.condition_nets.{rest}"] = value.clone()
            continue
        block, param = rest.split(".", 1)
        ldm_name = next(k for k, v in ldm.items() if block == f"{v}_transformer_blocks_0")
        fuser = "sp_fuser" if group == "sp_fusers" else "nsp_fuser"
        official[f"model.{ldm_name}.transformer_blocks.0.{fuser}.{param}"] = value.clone()
    converted = convert_official_state_dict(official)
    fresh = DiffBlenderAdapter.from_unet(tiny_adapter_config(), parts["unet"])
    fresh.load_state_dict(converted, strict=True)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in adapter.state_dict().items())


def test_condition_dropout():
    c = raw_conditions()
    g = torch.Generator().manual_seed(0)
    out = drop_conditions(c, {"box": 1.0, "keypoint": 1.0, "sketch": 0.0}, g)
    assert torch.all(out["box"]["mask"] == 0) and torch.all(out["keypoint"]["mask"] == 0)
    assert out["sketch"] is c["sketch"] and out["color"] is c["color"]
    assert c["box"]["mask"].sum() == 3  # input untouched
    half = drop_conditions({"color": {"vector": torch.ones(1000, 180), "mask": torch.ones(1000)}}, {"color": 0.5}, g)
    assert 400 < half["color"]["mask"].sum() < 600


def test_timestep_sampling():
    u = torch.rand(5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cubic = sample_timesteps(5, 1000, "cubic", torch.Generator().manual_seed(3))
    assert cubic.tolist() == [int((1 - x ** 3) * 1000) for x in u.tolist()]
    many = sample_timesteps(100_000, 1000, "cubic", torch.Generator().manual_seed(0))
    assert many.min() >= 0 and many.max() == 999
    assert (many >= 500).float().mean().item() == pytest.approx(0.5 ** (1 / 3), abs=0.005)  # P(u^3 < 1/2)
    uniform = sample_timesteps(100_000, 1000, "uniform", torch.Generator().manual_seed(0))
    assert uniform.min() == 0 and uniform.max() == 999
    assert (uniform >= 500).float().mean().item() == pytest.approx(0.5, abs=0.005)
    with pytest.raises(ValueError, match="train.timestep_sampling must be one of"):
        TrainConfig(timestep_sampling="logit")


@pytest.mark.slow
def test_training_freezes_base_bitwise(tmp_path):
    torch.manual_seed(0)
    parts = build_tiny_components(tmp_path / "tok")
    config = DiffBlenderConfig(adapter=tiny_adapter_config(),
                               train=TrainConfig(lr=1e-3, warmup_steps=1, text_dropout=0.0))
    task = DiffBlenderTask(config, parts)
    snapshot = {m: copy.deepcopy(getattr(task, m).state_dict()) for m in ("unet", "vae", "text_encoder")}
    before = copy.deepcopy(task.adapter.state_dict())
    optimizer = task.configure_optimizers()["optimizer"]
    base_ids = {id(p) for p in task.base_parameters().values()}
    assert base_ids and not base_ids & {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all(group["weight_decay"] == 0 for group in optimizer.param_groups)
    batch = {"pixel_values": torch.rand(B, 3, PX, PX) * 2 - 1, "captions": ["a", "b"], "conditions": raw_conditions()}
    task.train()
    for _ in range(2):
        optimizer.zero_grad()
        task.compute_loss(batch, generator=torch.Generator().manual_seed(0)).backward()
        optimizer.step()
    for m, state in snapshot.items():
        module = getattr(task, m)
        assert not module.training
        assert all(torch.equal(v, module.state_dict()[k]) for k, v in state.items())
    assert all(not p.requires_grad and p.grad is None for p in task.base_parameters().values())
    after = task.adapter.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {k for k in before if k.endswith(("alpha_attn", "alpha_dense"))} <= changed
    assert {k for k in before if ".out_convs." in k} <= changed
    assert {k for k in after if k.startswith(("unet", "vae"))} == set()


@pytest.mark.slow
def test_pipeline_end_to_end(parts, adapter, tmp_path):
    from vision_ssl.diffblender.pipeline import DiffBlenderPipeline

    randomise(adapter)
    adapter.detach()
    save_tiny_base(parts, tmp_path / "base")
    path = save_adapter(adapter, tmp_path / "adapter.safetensors")
    pipe = DiffBlenderPipeline.from_pretrained(tmp_path / "base", adapter=path, sampler="ddim")
    pipe.set_progress_bar_config(disable=True)

    def run(**kw):
        return pipe(["a red cube", "a blue ball"], conditions=raw_conditions(), num_inference_steps=3,
                    height=PX, width=PX, generator=torch.Generator().manual_seed(0), **kw)

    images = run().images
    assert len(images) == 2 and images[0].size == (PX, PX)
    assert (run(output_type="np").images == run(output_type="np").images).all()
    plain = run(output_type="pt").images
    assert torch.allclose(run(output_type="pt", mode_guidance={"color": 0.0}).images, plain, atol=1e-5)
    moved = run(output_type="pt", mode_guidance={"color": [3.0, 0.0]}).images
    assert not torch.equal(moved[0], plain[0]) and torch.allclose(moved[1], plain[1], atol=1e-5)
