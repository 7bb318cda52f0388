"""Released DiffBlender models: the official checkpoint in (safely), diffusers-native pipeline
folders out and back, and FID with a local Inception weights file. All on the tiny random base."""

from __future__ import annotations

import dataclasses
import json
import re
import sys

import pytest
import torch
from omegaconf import OmegaConf
from pickle_payloads import write_payload_checkpoint

from compact_ssl.unpickle import UnsafePickleError
from vision_ssl.diffblender.adapter import DiffBlenderAdapter, config_to_json
from vision_ssl.diffblender.config import ModalitySpec, tiny_adapter_config
from vision_ssl.diffblender.official import adapter_config_from_official, load_official_adapter
from vision_ssl.diffblender.tiny import build_tiny_components, save_tiny_base

B, PX = 2, 32
OURS_TO_OFFICIAL = {"color": "color_palette", "style": "image_embedding"}
CONDITION_NETS = "ldm.modules.diffusionmodules.condition_net."


def official_config(**image_params) -> dict:
    """The trainer config of a DiffBlender model on the tiny base, in the official layout."""
    def image() -> dict:
        return {"target": CONDITION_NETS + "ImageConditionNet",
                "params": {"channels": [32, 64], "nums_rb": 1, "cin": 4, "ksize": 1, "sk": True, "use_conv": True,
                           **image_params}}

    names = ["sketch", "depth", "box", "keypoint", "color_palette", "image_embedding"]
    return {
        "name": "diffblender", "batch_size": 2, "base_learning_rate": 5e-5, "total_iters": 3, "enable_ema": False,
        "model": {"target": "ldm.modules.diffusionmodules.multimodal_openaimodel.UNetModel", "params": {
            "image_size": 16, "in_channels": 4, "out_channels": 4, "model_channels": 32, "num_res_blocks": 2,
            "attention_resolutions": [1], "channel_mult": [1, 2], "num_heads": 4, "transformer_depth": 1,
            "context_dim": 32, "fuser_type": "gatedSA", "use_checkpoint": True, "inpaint_mode": False,
            "use_autoencoder_kl": True, "image_cond_injection_type": "enc", "freeze_modules": [],
            "input_modalities": names,
            "input_types": ["image", "image", "sp_vector", "sp_vector", "nsp_vector", "nsp_vector"],
            "grounding_tokenizer": {
                "tokenizer_sketch": image(), "tokenizer_depth": image(),
                "tokenizer_box": {"target": CONDITION_NETS + "BoxConditionNet",
                                  "params": {"in_dim": 32, "out_dim": 32}},
                "tokenizer_keypoint": {"target": CONDITION_NETS + "KeypointConditionNet",
                                       "params": {"max_persons_per_image": 8, "out_dim": 32}},
                "tokenizer_color_palette": {"target": CONDITION_NETS + "NSPVectorConditionNet",
                                            "params": {"in_dim": 180, "out_dim": 32, "norm": False}},
                "tokenizer_image_embedding": {"target": CONDITION_NETS + "NSPVectorConditionNet",
                                              "params": {"in_dim": 32, "out_dim": 32, "norm": False}},
            }}},
        "autoencoder": {"target": "ldm.models.autoencoder.AutoencoderKL",
                        "params": {"scale_factor": 0.18215, "embed_dim": 4}},
        "text_encoder": {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder"},
        "diffusion": {"target": "ldm.models.diffusion.ldm.LatentDiffusion",
                      "params": {"linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000}},
        "condition_null_generator": {"input_modalities": names, **{
            mode: {"target": f"grounding_input.condition_null_generator.{kind}NullGenerator"}
            for mode, kind in zip(names, ["Image", "Image", "Box", "Keypoint", "Vector", "Vector"])}},
    }


def ldm_block(name: str, layers_per_block: int = 2) -> str:
    """The ldm name of the diffusers transformer block ``name`` (written independently of the converter)."""
    mid = re.fullmatch(r"mid_block_attentions_0_transformer_blocks_(\d+)", name)
    if mid:
        return f"middle_block.1.transformer_blocks.{mid[1]}"
    kind, level, j, k = re.fullmatch(r"(down|up)_blocks_(\d+)_attentions_(\d+)_transformer_blocks_(\d+)", name).groups()
    index = int(level) * (layers_per_block + 1) + int(j) + (1 if kind == "down" else 0)
    return f"{'input' if kind == 'down' else 'output'}_blocks.{index}.1.transformer_blocks.{k}"


def to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Adapter weights in the official ldm layout, with base-UNet and VAE-copy keys beside them."""
    out = {"input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3), "time_embed.0.weight": torch.zeros(128, 32),
           "condition_nets.sketch.autoencoder.encoder.conv_in.weight": torch.zeros(32, 3, 3, 3)}
    for key, value in state.items():
        group, module, param = key.split(".", 2)
        if group == "encoders":
            out[f"condition_nets.{OURS_TO_OFFICIAL.get(module, module)}.{param}"] = value.clone()
        else:
            fuser = {"sp_fusers": "sp_fuser", "nsp_fusers": "nsp_fuser"}[group]
            out[f"{ldm_block(module)}.{fuser}.{param}"] = value.clone()
    return out


def write_official(path, state: dict[str, torch.Tensor], config: dict, as_vars: bool = True):
    """Save like the official trainer: ``config_dict`` is ``vars(DictConfig)`` (or the DictConfig)."""
    cfg = OmegaConf.create(config)
    torch.save({"model": state, "opt": {"state": {}, "param_groups": [{"lr": 5e-5, "params": [0, 1]}]},
                "scheduler": {"base_lrs": [5e-5], "last_epoch": 3, "_step_count": 4, "lr_lambdas": [None]},
                "iters": 3, "config_dict": vars(cfg) if as_vars else cfg}, path)
    return path


def reference_config():
    return tiny_adapter_config(token_hidden=512, modalities={
        "sketch": ModalitySpec("image", "latent_adapter"), "depth": ModalitySpec("image", "latent_adapter"),
        "box": ModalitySpec("spatial", "box"), "keypoint": ModalitySpec("spatial", "keypoint"),
        "color": ModalitySpec("nonspatial", "vector", in_dim=180),
        "style": ModalitySpec("nonspatial", "vector", in_dim=32)})


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Tiny SD base folder, a randomised reference adapter and its official-layout checkpoint."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("release")
    parts = build_tiny_components(root / "tok")
    base = save_tiny_base(parts, root / "base")
    reference = DiffBlenderAdapter.from_unet(reference_config(), parts["unet"])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    ckpt = write_official(root / "checkpoint_latest.pth", to_official(state), official_config())
    return {"root": root, "base": base, "state": state, "ckpt": ckpt, "unet": parts["unet"]}


def raw_conditions() -> dict:
    g = torch.Generator().manual_seed(0)
    box_mask = torch.zeros(B, 30)
    box_mask[0, :2] = box_mask[1, :1] = 1
    return {"sketch": {"image": torch.rand(B, 3, PX, PX, generator=g), "mask": torch.ones(B)},
            "box": {"boxes": torch.rand(B, 30, 4, generator=g), "phrases": [["a cat", "a dog"], ["a tree"]],
                    "mask": box_mask},
            "keypoint": {"points": torch.rand(B, 8, 17, 2, generator=g), "mask": torch.ones(B, 8, 17)},
            "color": {"vector": torch.rand(B, 180, generator=g), "mask": torch.ones(B)},
            "style": {"vector": torch.randn(B, 32, generator=g), "mask": torch.ones(B)}}


@torch.no_grad()
def sample(pipe) -> torch.Tensor:
    pipe.set_progress_bar_config(disable=True)
    return pipe(["a red cube", "two dogs"], conditions=raw_conditions(), num_inference_steps=2, height=PX, width=PX,
                generator=torch.Generator().manual_seed(7), output_type="pt").images


def assert_state_equal(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)


# ---------------------------------------------------------------- official checkpoint in
def test_from_official_loads_the_written_weights(release):
    from vision_ssl.diffblender.pipeline import DiffBlenderPipeline

    pipe = DiffBlenderPipeline.from_official(release["ckpt"], release["base"])
    assert pipe.adapter.adapter_config == reference_config()
    assert list(pipe.adapter.adapter_config.modalities) == ["sketch", "depth", "box", "keypoint", "color", "style"]
    assert_state_equal(pipe.adapter.state_dict(), release["state"])
    # a config_dict saved as the DictConfig itself reads the same; names={} keeps the official names
    ckpt = write_official(release["root"] / "dictconfig.pth", to_official(release["state"]), official_config(),
                          as_vars=False)
    kept = load_official_adapter(ckpt, pipe.unet, names={}, attach=False)
    assert list(kept.adapter_config.modalities) == ["sketch", "depth", "box", "keypoint", "color_palette",
                                                    "image_embedding"]
    ours = {official: name for name, official in OURS_TO_OFFICIAL.items()}
    renamed = {}
    for key, value in kept.state_dict().items():
        group, module, param = key.split(".", 2)
        renamed[f"{group}.{ours.get(module, module) if group == 'encoders' else module}.{param}"] = value
    assert_state_equal(renamed, release["state"])


def test_official_checkpoint_with_wrong_keys_is_an_error(release, tmp_path):
    official = to_official(release["state"])
    dropped = "output_blocks.5.1.transformer_blocks.0.nsp_fuser.alpha_attn"
    missing = write_official(tmp_path / "missing.pth", {k: v for k, v in official.items() if k != dropped},
                             official_config())
    with pytest.raises(ValueError, match=r"missing.pth: adapter weights do not fit the config/UNet; missing keys: "
                                         r"\['nsp_fusers.up_blocks_1_attentions_2_transformer_blocks_0.alpha_attn'\]; "
                                         r"unexpected keys: \[\]"):
        load_official_adapter(missing, release["unet"])
    extra = {**official, "input_blocks.1.1.transformer_blocks.0.sp_fuser.gamma": torch.zeros(1),
             "condition_nets.sketch.extra.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"missing keys: \[\]; unexpected keys: \['encoders.sketch.extra.weight', "
                                         r"'sp_fusers.down_blocks_0_attentions_0_transformer_blocks_0.gamma'\]"):
        load_official_adapter(write_official(tmp_path / "extra.pth", extra, official_config()), release["unet"])
    # the project's own modality names do not fit the official keys
    wrong = official_config()
    wrong["model"]["params"]["input_modalities"][4] = "color"
    wrong["model"]["params"]["grounding_tokenizer"]["tokenizer_color"] = \
        wrong["model"]["params"]["grounding_tokenizer"]["tokenizer_color_palette"]
    with pytest.raises(ValueError, match=r"missing keys: \['encoders.color.linears.0.bias'"):
        load_official_adapter(write_official(tmp_path / "names.pth", official, wrong), release["unet"], names={})
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other.pth: not a DiffBlender official checkpoint: expected a dict with "
                                         r"'model' and 'config_dict', found \['state_dict'\]"):
        load_official_adapter(tmp_path / "other.pth", release["unet"])


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c["model"]["params"].update(fuser_type="gatedCA"),
     r"model.params.fuser_type is 'gatedCA'; only 'gatedSA' is implemented"),
    (lambda c: c["model"]["params"].update(image_cond_injection_type="dec"),
     r"model.params.image_cond_injection_type is 'dec'; only 'enc' is implemented"),
    (lambda c: c["model"]["params"]["grounding_tokenizer"]["tokenizer_depth"].update(
        params={"channels": [32, 64], "nums_rb": 1}),
     r"image encoder 'depth' has ksize=3, sk=False; only ksize=1, sk=True"),
    (lambda c: c["model"]["params"]["grounding_tokenizer"]["tokenizer_depth"]["params"].update(nums_rb=2),
     r"the modalities differ in image encoder settings"),
    (lambda c: c["model"]["params"]["grounding_tokenizer"]["tokenizer_color_palette"]["params"].update(fourier_freqs=4),
     r"vector encoder 'color_palette' has fourier_freqs=4"),
    (lambda c: c["model"]["params"]["input_types"].__setitem__(2, "nsp_vector"),
     r"modality 'box' has input type 'nsp_vector' but its encoder BoxConditionNet is a 'sp_vector' encoder"),
    (lambda c: c["model"]["params"]["grounding_tokenizer"]["tokenizer_box"].update(target="ldm.x.SegmentationNet"),
     r"modality 'box' uses SegmentationNet; supported encoders: \['BoxConditionNet'"),
    (lambda c: c["model"]["params"].pop("grounding_tokenizer"), r"config_dict has no 'grounding_tokenizer'"),
])
def test_official_config_that_cannot_be_built_is_an_error(edit, message):
    config = official_config()
    edit(config)
    with pytest.raises(ValueError, match=f"^ckpt.pth: {message}"):
        adapter_config_from_official(config, where="ckpt.pth")


def test_official_config_options_map_onto_the_adapter_config():
    config = official_config(use_conv=False)
    config["model"]["params"]["num_res_blocks"] = 3
    for name in ("color_palette", "image_embedding"):
        config["model"]["params"]["grounding_tokenizer"][f"tokenizer_{name}"]["params"].update(norm=True, scale=5.0)
    adapter, layers_per_block = adapter_config_from_official(config)
    assert layers_per_block == 3
    assert adapter == dataclasses.replace(reference_config(), use_conv=False, vector_norm=True)
    assert adapter.modalities["color"] == ModalitySpec("nonspatial", "vector", in_dim=180)  # scale unused without Fourier


def test_code_executing_checkpoint_is_refused(release, tmp_path):
    from vision_ssl.diffblender.pipeline import DiffBlenderPipeline

    marker = tmp_path / "pwned"
    official = to_official(release["state"])
    path = write_payload_checkpoint(tmp_path / "checkpoint_latest.pth", marker,
                                    extra={"model": official, "config_dict": vars(OmegaConf.create(official_config()))})
    with pytest.raises(UnsafePickleError, match=r"checkpoint_latest.pth: refuses to unpickle os.makedirs.*"
                                                r"DiffBlender official checkpoint.*trust=True"):
        DiffBlenderPipeline.from_official(path, release["base"])
    assert not marker.exists()


# ---------------------------------------------------------------- diffusers-native folders out and back
def test_save_pretrained_round_trip(release, tmp_path, monkeypatch):
    import diffusers.utils.dynamic_modules_utils as dynamic
    from diffusers import DiffusionPipeline
    from safetensors.torch import load_file

    import vision_ssl.diffblender.pipeline as pipeline_module
    from vision_ssl.diffblender.pipeline import DiffBlenderPipeline

    pipe = DiffBlenderPipeline.from_official(release["ckpt"], release["base"])
    want = sample(pipe)
    pipe.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["adapter"] == ["vision_ssl.diffblender.adapter", "DiffBlenderAdapter"]
    config = json.loads((tmp_path / "pipe" / "adapter" / "config.json").read_text())
    assert sorted(config) == ["_class_name", "_diffusers_version", "adapter_config", "unet_layout"]
    assert config["adapter_config"] == {**reference_config().to_dict(), "modalities": [
        {"name": name, **dataclasses.asdict(spec)} for name, spec in reference_config().modalities.items()]}
    assert [b["name"] for b in config["unet_layout"]["blocks"]] == [f"{b}.transformer_blocks.0" for b in (
        "down_blocks.0.attentions.0", "down_blocks.0.attentions.1", "up_blocks.1.attentions.0",
        "up_blocks.1.attentions.1", "up_blocks.1.attentions.2", "mid_block.attentions.0")]
    saved = load_file(str(tmp_path / "pipe" / "adapter" / "diffusion_pytorch_model.safetensors"))
    assert sorted(saved) == sorted(release["state"])  # the adapter alone: no UNet key

    loaded = DiffBlenderPipeline.from_pretrained(tmp_path / "pipe")
    assert_state_equal(loaded.adapter.state_dict(), release["state"])
    assert torch.equal(sample(loaded), want)
    adapter = DiffBlenderAdapter.from_pretrained(tmp_path / "pipe" / "adapter")
    assert_state_equal(adapter.state_dict(), release["state"])

    # diffusers' own loader, with this module as the custom pipeline (its code copied to a temp cache)
    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    native = DiffusionPipeline.from_pretrained(str(tmp_path / "pipe"), custom_pipeline=pipeline_module.__file__,
                                               trust_remote_code=True)
    assert type(native).__name__ == "DiffBlenderPipeline" and isinstance(native.adapter, DiffBlenderAdapter)
    assert torch.equal(sample(native), want)


def test_incomplete_folders_are_errors(release, tmp_path):
    from safetensors.torch import load_file, save_file

    from vision_ssl.diffblender.pipeline import DiffBlenderPipeline

    with pytest.raises(ValueError, match=r"base: this folder has no DiffBlender adapter \(model_index.json lists none: "
                                         r"a plain Stable Diffusion base\); pass adapter=ADAPTER_FILE"):
        DiffBlenderPipeline.from_pretrained(release["base"])
    adapter = DiffBlenderAdapter.from_unet(reference_config(), release["unet"])
    adapter.load_state_dict(release["state"])
    folder = tmp_path / "adapter"
    adapter.save_pretrained(folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if not k.startswith("encoders.box.")}, str(weights))
    with pytest.raises(ValueError, match=r"adapter: the adapter weights do not match its config.json: 8 missing keys "
                                         r"\(e.g. \['encoders.box.linears.0.bias', 'encoders.box.linears.0.weight'"):
        DiffBlenderAdapter.from_pretrained(folder)
    save_file({**state, "encoders.box.extra": torch.zeros(2)}, str(weights))
    with pytest.raises(ValueError, match=r"1 unexpected keys \(e.g. \['encoders.box.extra'\]\)"):
        DiffBlenderAdapter.from_pretrained(folder)
    # a pipeline folder whose adapter/ lost its weights
    pipe = DiffBlenderPipeline.from_pretrained(release["base"], adapter=adapter)
    pipe.save_pretrained(tmp_path / "pipe")
    (tmp_path / "pipe" / "adapter" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"pipe: model_index.json lists an adapter but adapter/ is missing or "
                                                r"incomplete"):
        DiffBlenderPipeline.from_pretrained(tmp_path / "pipe")


def test_existing_adapter_file_api_still_works(release, tmp_path):
    from vision_ssl.diffblender.pipeline import DiffBlenderPipeline
    from vision_ssl.diffblender.weights import load_adapter, read_adapter_config, save_adapter

    adapter = DiffBlenderAdapter.from_unet(reference_config(), release["unet"])
    adapter.load_state_dict(release["state"])
    path = save_adapter(adapter, tmp_path / "adapter.safetensors")
    assert read_adapter_config(path) == reference_config()
    assert_state_equal(load_adapter(path, release["unet"], attach=False).state_dict(), release["state"])
    pipe = DiffBlenderPipeline.from_pretrained(release["base"], adapter=path)
    assert_state_equal(pipe.adapter.state_dict(), release["state"])
    fresh = DiffBlenderPipeline.from_pretrained(release["base"], adapter_config=reference_config())
    assert all(torch.all(p == 0) for n, p in fresh.adapter.named_parameters() if n.endswith(".alpha_attn"))
    # an adapter built for another UNet layout refuses to attach
    with pytest.raises(ValueError, match=r"another layout: cross_attention_dim 48 \(this UNet: 32\)"):
        DiffBlenderAdapter(adapter_config=config_to_json(tiny_adapter_config(token_dim=48)),
                           unet_layout={**adapter.config.unet_layout, "cross_attention_dim": 48}).attach(pipe.unet)


def test_cli_convert(release, tmp_path, capsys):
    from vision_ssl.bin.diffblender import main

    out = tmp_path / "converted"
    assert main(["convert", "--official", str(release["ckpt"]), "--base", str(release["base"]), "--out", str(out)]) == 0
    assert "(modalities ['sketch', 'depth', 'box', 'keypoint', 'color', 'style'])" in capsys.readouterr().out
    adapter = DiffBlenderAdapter.from_pretrained(out / "adapter")
    assert_state_equal(adapter.state_dict(), release["state"])
    marker = tmp_path / "pwned"
    bad = write_payload_checkpoint(tmp_path / "bad.pth", marker)
    assert main(["convert", "--official", str(bad), "--base", str(release["base"]), "--out", str(tmp_path / "x")]) == 1
    assert "refuses to unpickle os.makedirs" in capsys.readouterr().err and not marker.exists()


# ---------------------------------------------------------------- FID with a local Inception
def random_inception_weights(path, seed: int, monkeypatch) -> dict[str, torch.Tensor]:
    """torch-fidelity's InceptionV3 at a seeded random init, saved as the FID weights file is (a state dict)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with monkeypatch.context() as m:  # build without any weights: no download, no load
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state, *a, **k: None)
        torch.manual_seed(seed)
        state = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    torch.save(state, path)
    return state


@pytest.fixture()
def no_fid_weights(tmp_path, monkeypatch):
    from vision_ssl.diffblender.metrics import FID_WEIGHTS_ENV

    monkeypatch.delenv(FID_WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def test_fid_without_inception_weights_says_how_to_get_them(no_fid_weights, tmp_path):
    from vision_ssl.diffblender.metrics import compute_fid

    images = torch.rand(2, 3, 8, 8)
    with pytest.raises(FileNotFoundError, match=r"needs the FID Inception weights, and nothing is downloaded here.*"
                                                r"weights-inception-2015-12-05-6726825d.pth.*URL_INCEPTION_V3.*"
                                                r"pt_inception-2015-12-05-6726825d.pth is the same file.*"
                                                r"fid_inception_weights=PATH.*--fid_inception_weights PATH.*"
                                                r"COMPACT_SSL_FID_INCEPTION=PATH.*torch_home/hub/checkpoints/"):
        compute_fid(images, images)
    with pytest.raises(FileNotFoundError, match=r"nope.pth: FID Inception weights file not found"):
        compute_fid(images, images, inception_weights=tmp_path / "nope.pth")


def test_eval_command_reports_missing_inception_weights_first(no_fid_weights, tmp_path, capsys):
    from vision_ssl.bin.diffblender import main

    assert main(["eval", "--samples", str(tmp_path / "never_read"), "--fid_features", "inception"]) == 1
    assert "ERROR: FID with InceptionV3 needs the FID Inception weights" in capsys.readouterr().err


def test_fid_uses_the_given_inception_weights(no_fid_weights, tmp_path, monkeypatch):
    from vision_ssl.diffblender.metrics import FID_WEIGHTS_ENV, FID_WEIGHTS_NAMES, fid_metric

    images = (torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    state_a = random_inception_weights(tmp_path / "a.pth", 0, monkeypatch)
    random_inception_weights(tmp_path / "b.pth", 1, monkeypatch)
    metric_a = fid_metric(inception_weights=tmp_path / "a.pth")
    assert_state_equal(metric_a.inception.state_dict(), state_a)
    features_a = metric_a.inception(images)
    features_b = fid_metric(inception_weights=tmp_path / "b.pth").inception(images)
    assert features_a.shape == (2, 2048)
    assert (features_a - features_b).abs().max() > 0.1 * features_a.abs().max()
    # the environment variable, then torch hub's cache, name the file when the argument does not
    monkeypatch.setenv(FID_WEIGHTS_ENV, str(tmp_path / "b.pth"))
    assert torch.equal(fid_metric().inception(images), features_b)
    monkeypatch.delenv(FID_WEIGHTS_ENV)
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (tmp_path / "a.pth").rename(cache / FID_WEIGHTS_NAMES[0])
    assert torch.equal(fid_metric().inception(images), features_a)


def test_fid_weights_file_is_read_safely(no_fid_weights, tmp_path):
    from vision_ssl.diffblender.metrics import fid_metric

    marker = tmp_path / "pwned"
    payload = write_payload_checkpoint(tmp_path / "inception.pth", marker, extra={"fc.bias": torch.zeros(1008)})
    with pytest.raises(UnsafePickleError, match=r"inception.pth: refuses to unpickle os.makedirs"):
        fid_metric(inception_weights=payload)
    assert not marker.exists()
    torch.save({"fc.bias": torch.zeros(1008)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"partial.pth: these are not the FID Inception weights torch-fidelity's "
                                         r"InceptionV3 takes \(Error\(s\) in loading state_dict"):
        fid_metric(inception_weights=tmp_path / "partial.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list.pth: not FID Inception weights \(expected a state dict of tensors\)"):
        fid_metric(inception_weights=tmp_path / "list.pth")
