"""Released speech checkpoints load as published: STaR / ARMHuBERT-family Lightning files with their
YAML, and s3prl DistilHuBERT files (audio_compress.models.released, the s3prl entries, the
``student`` CLI). Fixtures are built by tests/released_layouts.py at random init."""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml
from conftest import FULL_COUNTS
from pickle_payloads import write_payload_checkpoint
from released_layouts import (
    release_model,
    s3prl_distiller_config,
    write_lightning_release,
    write_release_yaml,
    write_s3prl_distiller,
)

from audio_compress.bin.student import main as student_cli
from audio_compress.export import sha256
from audio_compress.models import (
    StudentModel,
    count_parameters,
    get_student_config,
    load_student,
    open_student,
    read_student_checkpoint,
    save_student,
)
from audio_compress.models.config import _cnn
from audio_compress.models.released_config import (
    distiller_config,
    parse_conv_spec,
    read_distiller_section,
    release_config,
)
from audio_compress.upstream import register
from compact_ssl.unpickle import UnsafePickleError

#: (fixture name, how it is written, s3prl entry)
TINY = [("tiny_star", "lightning", "star_local"), ("tiny_arm", "lightning", "armhubert_local"),
        ("tiny_mask", "lightning", "armhubert_local"), ("tiny_distil", "s3prl", "distilhubert_local")]
#: the released Lightning layouts (DistilHuBERT is released in the s3prl layout)
RELEASED_COUNTS = {k: v for k, v in FULL_COUNTS.items() if k != "distilhubert"}


def _write(name: str, kind: str, folder, model: StudentModel):
    """(checkpoint, model_config or None) of ``model`` written in the released layout ``kind``."""
    if kind == "lightning":
        return write_lightning_release(name, folder, model=model)
    return write_s3prl_distiller(folder, name, model=model), None


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    wavs = torch.randn(2, 16000, generator=torch.Generator().manual_seed(5))
    padding = torch.zeros(2, 16000, dtype=torch.bool)
    padding[1, 9000:] = True
    return wavs, padding


def _states(model: StudentModel) -> list[torch.Tensor]:
    wavs, padding = _batch()
    with torch.no_grad():
        out = model.eval()(wavs, padding_mask=padding)
    return [out.features, out.pre_transformer, *out.hidden_states, *model.upstream_hidden_states(out)]


def _assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.fixture(scope="module")
def hub():
    register()
    import s3prl.hub

    return s3prl.hub


@pytest.mark.parametrize("name,kind,entry", TINY)
def test_release_loads_like_project_format(tmp_path, name, kind, entry):
    model = release_model(name, seed=3)
    ckpt, model_config = _write(name, kind, tmp_path / "release", model)
    project = load_student(save_student(model, tmp_path / "project.pt"))
    loaded = open_student(ckpt)
    assert loaded.layout == ("lightning_release" if kind == "lightning" else "s3prl_distiller")
    assert loaded.entry == entry and loaded.model_config == model_config
    assert loaded.model.config == model.config == project.config
    _assert_same(_states(loaded.model), _states(project))


def test_ignored_weights_of_a_lightning_release(tmp_path):
    ckpt, _ = write_lightning_release("tiny_star", tmp_path)
    assert open_student(ckpt).ignored_keys == [
        "student_model.final_proj.weight", "student_model.final_proj.bias", "teacher_model.model.mask_emb",
        "teacher_model.model.feature_extractor.conv_layers.0.0.weight"]
    ckpt, _ = write_lightning_release("tiny_arm", tmp_path / "arm")
    assert open_student(ckpt).ignored_keys == [
        "teacher_model.model.mask_emb", "teacher_model.model.feature_extractor.conv_layers.0.0.weight"]


def test_arm_family_is_built_for_the_released_reuse(tmp_path):
    ckpt, _ = write_lightning_release("tiny_arm", tmp_path)
    config = load_student(ckpt).config
    assert config.arm_release_compat and config.mask_emb and config.layer_grad_scale
    assert config.reuse_pattern == [True, False, True, False] and config.upstream_outputs == "projections"


@pytest.mark.parametrize("name,kind,entry", TINY)
def test_s3prl_entry_loads_release(hub, tmp_path, name, kind, entry):
    from s3prl.nn import S3PRLUpstream

    model = release_model(name, seed=4)
    ckpt, model_config = _write(name, kind, tmp_path, model)
    project = save_student(model, tmp_path / "project.pt")
    extra = {"model_config": str(model_config)} if model_config else None
    upstreams = [S3PRLUpstream(entry, str(ckpt), extra_conf=extra).eval(), S3PRLUpstream(entry, str(project)).eval()]
    wavs, padding = _batch()
    lens = (~padding).sum(dim=1)
    with torch.no_grad():
        (released, released_lens), (own, own_lens) = [u(wavs, lens) for u in upstreams]
    _assert_same(released, own)
    _assert_same(released_lens, own_lens)
    assert len(released) == {"tiny_star": 3, "tiny_arm": 4, "tiny_mask": 4, "tiny_distil": 6}[name]


def test_legacy_hub_call_with_model_config(hub, tmp_path):
    model = release_model("tiny_arm", seed=1)
    ckpt, model_config = write_lightning_release("tiny_arm", tmp_path / "r", model=model, stem="ARMHuBERT-tiny")
    shutil.move(model_config, tmp_path / "dumped.yaml")  # the -g file need not sit beside the checkpoint
    expert = hub.armhubert_local(ckpt=str(ckpt), model_config=str(tmp_path / "dumped.yaml"), refresh=False)
    with torch.no_grad():
        out = expert([torch.ones(16000) * 0.1, torch.ones(8000) * 0.1])
    assert expert.get_downsample_rates("hidden_states") == 320
    assert len(out["hidden_states"]) == 4 and all(h.shape == (2, 49, 64) for h in out["hidden_states"])
    assert torch.equal(out["last_hidden_state"], out["hidden_states"][-1])


@pytest.mark.parametrize("name,kind,entry", TINY)
def test_convert_then_load(tmp_path, capsys, name, kind, entry):
    model = release_model(name, seed=5)
    ckpt, model_config = _write(name, kind, tmp_path / "release", model)
    out = tmp_path / "converted.pt"
    assert student_cli(["convert", str(ckpt), "--out", str(out)]) == 0
    layout = "lightning_release" if kind == "lightning" else "s3prl_distiller"
    assert capsys.readouterr().out == (f"Converted {ckpt} ({layout}) -> {out}: {model.config.name}, "
                                       f"{count_parameters(model):,} parameters, s3prl entry {entry}\n")
    extra = read_student_checkpoint(out)["extra"]
    assert extra == {
        "source_layout": layout, "source_path": str(ckpt.resolve()), "source_sha256": sha256(ckpt),
        "source_model_config": str(model_config.resolve()) if model_config else None,
        "source_model_config_sha256": sha256(model_config) if model_config else None,
    }
    converted = open_student(out)
    assert converted.layout == "project" and converted.model.config == model.config
    _assert_same(_states(converted.model), _states(model))


def test_info_output(tmp_path, capsys):
    ckpt, model_config = write_lightning_release("tiny_arm", tmp_path, model=release_model("tiny_arm"))
    assert student_cli(["info", str(ckpt), "--model_config", str(model_config)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"source: {ckpt}",
        "layout: lightning_release",
        f"model_config: {model_config}",
        "architecture: tiny_arm (4 layers, d=64, ffn=128, 4 heads, 2 attention-reuse layers, 4 projection heads to 64)",
        f"parameters: {count_parameters(release_model('tiny_arm')):,}",
        "upstream entry: armhubert_local",
        "not loaded: 2 weights outside the student (teacher_model.model.mask_emb, ...)",
        f"s3prl: S3PRLUpstream('armhubert_local', '{ckpt}', extra_conf={{'model_config': '{model_config}'}})",
    ]


def test_project_format_info(tmp_path, capsys):
    path = save_student(release_model("tiny_star"), tmp_path / "s.pt")
    assert student_cli(["info", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "layout: project",
        "architecture: tiny_star (3 layers, d=64, ffn=128, 4 heads, 0 attention-reuse layers)",
        f"parameters: {count_parameters(release_model('tiny_star')):,}",
        "upstream entry: star_local",
        f"s3prl: S3PRLUpstream('star_local', '{path}')",
    ]


# ---------------------------------------------------------------- full-size architectures

@pytest.mark.parametrize("name", sorted(RELEASED_COUNTS))
def test_full_size_parameter_counts_from_the_yaml(tmp_path, name):
    yaml_path = write_release_yaml(get_student_config(name), tmp_path / f"{name}.yaml")
    config = release_config(read_distiller_section(yaml_path), str(yaml_path), arm_family=name != "starhubert"
                            and name != "starhubert_l")
    assert config.name == name
    with torch.device("meta"):
        model = StudentModel(config)
    assert count_parameters(model) == RELEASED_COUNTS[name]


def test_full_size_distilhubert_config():
    config = distiller_config(s3prl_distiller_config(get_student_config("distilhubert"))["distiller"], "Config")
    assert config == get_student_config("distilhubert")
    assert (config.pred_layers, config.feature_layer_norm, config.feature_grad_mult) == ([4, 8, 12], False, 0.1)
    with torch.device("meta"):
        model = StudentModel(config)
    assert count_parameters(model) == 27_034_752
    assert count_parameters(model, exclude=("pred_head",)) == 23_491_200


def test_star_heads_come_from_the_yaml(tmp_path):
    yaml_path = write_release_yaml(get_student_config("starhubert", num_heads=8), tmp_path / "star.yaml")
    config = release_config(read_distiller_section(yaml_path), str(yaml_path), arm_family=False)
    assert (config.name, config.num_heads, config.upstream_outputs, config.mask_emb) == ("starhubert", 8, "layers", False)


def test_one_full_size_release(tmp_path):
    model = release_model("armhubert_s", seed=0)
    ckpt, _ = write_lightning_release("armhubert_s", tmp_path, model=model)
    loaded = load_student(ckpt)
    assert loaded.config == model.config and count_parameters(loaded) == 22_394_080
    expected = model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())
    with torch.no_grad():
        out = loaded.eval()(torch.randn(1, 8000))
    assert [tuple(p.shape) for p in out.projections] == [(1, 24, 768)] * 12


# ---------------------------------------------------------------- incomplete or contradictory files

def _rewrite_lightning(ckpt, edit) -> None:
    payload = torch.load(ckpt, weights_only=False)
    edit(payload)
    torch.save(payload, ckpt)


def _rewrite_yaml(path, edit) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data["distiller"])
    path.write_text(yaml.safe_dump(data))


def test_missing_weight_is_named(tmp_path):
    ckpt, _ = write_lightning_release("tiny_star", tmp_path)
    _rewrite_lightning(ckpt, lambda p: p["state_dict"].pop("student_model.encoder.layers.1.fc1.weight"))
    with pytest.raises(ValueError, match=r"tiny_star.yaml \(names after mapping to this toolkit's layout\); "
                                         r"missing keys: \['encoder.layers.1.fc1.weight'\]; unexpected keys: \[\]; "
                                         r"wrong shapes: \[\]"):
        load_student(ckpt)


def test_unknown_weight_is_named(tmp_path):
    ckpt, _ = write_lightning_release("tiny_star", tmp_path)
    _rewrite_lightning(ckpt, lambda p: p["state_dict"].update({"student_model.encoder.extra.weight": torch.zeros(1)}))
    with pytest.raises(ValueError, match=r"missing keys: \[\]; unexpected keys: \['encoder.extra.weight'\]"):
        load_student(ckpt)


def test_wrong_shapes_are_named(tmp_path):
    ckpt, model_config = write_lightning_release("tiny_star", tmp_path)
    _rewrite_yaml(model_config, lambda d: d.update(encoder_ffn_embed_dim=96))
    with pytest.raises(ValueError) as err:
        load_student(ckpt)
    message = str(err.value)
    assert "missing keys: []; unexpected keys: []; wrong shapes: ['encoder.layers.0.fc1.bias: (128,) in the file, " \
           "(96,) expected', 'encoder.layers.0.fc1.weight: (128, 64) in the file, (96, 64) expected'" in message


def test_missing_yaml_says_where_it_looked(tmp_path):
    ckpt, model_config = write_lightning_release("tiny_star", tmp_path)
    model_config.unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_student(ckpt)
    message = str(err.value)
    assert message.startswith(f"{ckpt}: a released Lightning checkpoint needs the YAML it was trained with")
    assert (f"Looked at: an explicit model_config (none given); {tmp_path / 'tiny_star.yaml'} (missing); "
            f"{tmp_path / '*.yaml'} (none there). To fix, pass it explicitly: load_student(ckpt, model_config=YAML); "
            "s3prl runner -g YAML") in message


def test_ambiguous_yaml_folder(tmp_path):
    ckpt, model_config = write_lightning_release("tiny_star", tmp_path)
    shutil.copy(model_config, tmp_path / "a.yaml")
    shutil.move(model_config, tmp_path / "b.yaml")
    with pytest.raises(FileNotFoundError, match=r"\(2, so which one is ambiguous: a.yaml, b.yaml\)"):
        load_student(ckpt)
    assert load_student(ckpt, model_config=tmp_path / "b.yaml").config.name == "tiny_star"


def test_single_yaml_in_folder_is_used(tmp_path):
    ckpt, model_config = write_lightning_release("tiny_star", tmp_path)
    shutil.move(model_config, tmp_path / "20230501-1200.yaml")
    assert open_student(ckpt).model_config == tmp_path / "20230501-1200.yaml"


def test_yaml_contradicting_the_checkpoint(tmp_path):
    ckpt, model_config = write_lightning_release("tiny_star", tmp_path)
    _rewrite_yaml(model_config, lambda d: d.update(layerwise_proj=True))
    with pytest.raises(ValueError, match="sets layerwise_proj: True .ARMHuBERT family. but the checkpoint holds no "
                                         r"student_model.proj_head.\* weights"):
        load_student(ckpt)
    _rewrite_yaml(model_config, lambda d: d.update(layerwise_proj=False, reuse_pattern="[True, False, True]"))
    with pytest.raises(ValueError, match=r"reuse_pattern \[True, False, True\] has attention-reuse layers"):
        load_student(ckpt)
    arm, arm_config = write_lightning_release("tiny_arm", tmp_path / "arm")
    _rewrite_yaml(arm_config, lambda d: d.pop("layerwise_proj"))
    with pytest.raises(ValueError, match="holds layer-wise projection heads .ARMHuBERT family. but the YAML does not "
                                         "set layerwise_proj: True"):
        load_student(arm)


@pytest.mark.parametrize("key,value", [("layer_norm_first", True), ("activation_fn", "relu"),
                                       ("extractor_mode", "layer_norm"), ("enable_tr_layer", True)])
def test_unsupported_architecture_options(tmp_path, key, value):
    ckpt, model_config = write_lightning_release("tiny_star", tmp_path)
    _rewrite_yaml(model_config, lambda d: d.update({key: value}))
    with pytest.raises(ValueError, match=f"{key}: {value!r} is not supported"):
        load_student(ckpt)


def test_yaml_without_distiller_section_or_architecture(tmp_path):
    ckpt, model_config = write_lightning_release("tiny_star", tmp_path)
    _rewrite_yaml(model_config, lambda d: d.pop("encoder_embed_dim"))
    with pytest.raises(ValueError, match=r"the distiller config lacks \['encoder_embed_dim'\]"):
        load_student(ckpt)
    model_config.write_text("train: {}\n")
    with pytest.raises(ValueError, match="no 'distiller:' section"):
        load_student(ckpt)


def test_invalid_architecture_names_the_yaml(tmp_path):
    ckpt, model_config = write_lightning_release("tiny_star", tmp_path)
    _rewrite_yaml(model_config, lambda d: d.update(encoder_attention_heads=5))
    with pytest.raises(ValueError, match=f"{model_config}: not a valid student architecture: embed_dim 64 is not "
                                         "divisible by num_heads 5"):
        load_student(ckpt)
    _rewrite_yaml(model_config, lambda d: d.update(encoder_attention_heads=4, reuse_pattern="['True', 'True', 'True']"))
    with pytest.raises(ValueError, match=r"reuse_pattern must be a list of True/False, got \['True', 'True', 'True'\]"):
        load_student(ckpt)


@pytest.mark.parametrize("name,kind,entry,wrong", [
    ("tiny_arm", "lightning", "armhubert_local", "star_local"),
    ("tiny_star", "lightning", "star_local", "armhubert_local"),
    ("tiny_distil", "s3prl", "distilhubert_local", "star_local"),
])
def test_entry_of_another_family_is_refused(hub, tmp_path, name, kind, entry, wrong):
    ckpt, model_config = _write(name, kind, tmp_path, release_model(name))
    kind_text = {"star_local": "a STaR release", "armhubert_local": "an ARMHuBERT-family release",
                 "distilhubert_local": "an s3prl DistilHuBERT checkpoint"}[entry]
    with pytest.raises(ValueError, match=f"{ckpt} is {kind_text}.*; load it with the s3prl entry {entry}, not {wrong}"):
        getattr(hub, wrong)(ckpt=str(ckpt))


def test_project_format_refuses_model_config(tmp_path):
    path = save_student(release_model("tiny_star"), tmp_path / "s.pt")
    with pytest.raises(ValueError, match=r"model_config x.yaml is only for released Lightning checkpoints; this file "
                                         r"\(project\) carries its own config"):
        load_student(path, model_config="x.yaml")


def test_unknown_layout_is_refused(tmp_path):
    path = tmp_path / "task.ckpt"
    torch.save({"state_dict": {"student.encoder.layer_norm.weight": torch.zeros(2)}, "epoch": 0}, path)
    with pytest.raises(ValueError, match=r"not a compact-ssl-student checkpoint, a released STaR / ARMHuBERT Lightning "
                                         r"checkpoint .* found \['epoch', 'state_dict'\]. A distillation checkpoint of "
                                         "this toolkit .'student.\\*' weights. is exported with python -m "
                                         "audio_compress.bin.export"):
        load_student(path)


def test_distiller_with_unsupported_heads_or_broken_split(tmp_path):
    path = write_s3prl_distiller(tmp_path, model=release_model("tiny_distil"))
    payload = torch.load(path, weights_only=False)
    payload["Config"]["distiller"]["out_layer_type"] = "none"
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"Config\['distiller'\]: out_layer_type: 'none' is not supported"):
        load_student(path)
    payload["Config"]["distiller"]["out_layer_type"] = "expand-last"
    payload["Distiller"]["output_layer.2.bias"] = torch.zeros(3, 64)
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"output_layer.2.weight \(3, 64, 64\) and output_layer.2.bias \(3, 64\) are not "
                                         r"an s3prl split linear layer"):
        load_student(path)


def test_conv_spec_parser():
    spec = "[(128, 10, 5)] + [(256, 1, 1)] + [(256, 3, 2)] * 4 + [(432, 1, 1)] + [(432, 2, 2)] * 2"
    assert parse_conv_spec(spec, "x") == _cnn(432)
    assert parse_conv_spec("[(512,10,5)]+[(512,3,2)]*4+[(512,2,2)]*2", "x") == get_student_config("distilhubert").conv_layers
    assert parse_conv_spec([[32, 10, 5], [32, 2, 2]], "x") == [(32, 10, 5), (32, 2, 2)]
    with pytest.raises(ValueError, match=r"a.yaml: conv_feature_layers: unsupported expression in conv_feature_layers"):
        parse_conv_spec("__import__('os').system('true')", "a.yaml: conv_feature_layers")
    with pytest.raises(ValueError, match="x: unsupported expression"):
        parse_conv_spec("[(1, 2, 3)] - [(1, 2, 3)]", "x")
    with pytest.raises(ValueError, match=r"x: conv_feature_layers entries must be \(dim, kernel, stride\) integer triples"):
        parse_conv_spec("[(1, 2)]", "x")


# ---------------------------------------------------------------- safe loading

def _lightning_payload(tmp_path):
    ckpt, model_config = write_lightning_release("tiny_arm", tmp_path / "genuine")
    genuine = torch.load(ckpt, weights_only=False)
    path = write_payload_checkpoint(tmp_path / "evil.ckpt", tmp_path / "marker", extra=genuine)
    return path, model_config


def test_payload_refused_by_load_student(tmp_path):
    path, model_config = _lightning_payload(tmp_path)
    with pytest.raises(UnsafePickleError, match=f"{path}: refuses to unpickle os.makedirs"):
        load_student(path, model_config=model_config)
    assert not (tmp_path / "marker").exists()


def test_payload_refused_by_the_entries(hub, tmp_path):
    from s3prl.nn import S3PRLUpstream

    path, model_config = _lightning_payload(tmp_path)
    with pytest.raises(UnsafePickleError, match="trust=True"):
        S3PRLUpstream("armhubert_local", str(path), extra_conf={"model_config": str(model_config)})
    distiller = write_s3prl_distiller(tmp_path / "d", model=release_model("tiny_distil"))
    evil = write_payload_checkpoint(tmp_path / "evil_distiller.ckpt", tmp_path / "marker",
                                    extra=torch.load(distiller, weights_only=False))
    with pytest.raises(UnsafePickleError):
        hub.distilhubert_local(ckpt=str(evil))
    assert not (tmp_path / "marker").exists()


def test_payload_refused_by_convert(tmp_path):
    path, model_config = _lightning_payload(tmp_path)
    with pytest.raises(SystemExit, match=f"ERROR: {path}: refuses to unpickle os.makedirs.*--trust true"):
        student_cli(["convert", str(path), "--out", str(tmp_path / "out.pt"), "--model_config", str(model_config)])
    assert not (tmp_path / "marker").exists() and not (tmp_path / "out.pt").exists()


def test_trust_reads_a_genuine_release_fully(tmp_path):
    model = release_model("tiny_arm", seed=2)
    ckpt, _ = write_lightning_release("tiny_arm", tmp_path, model=model)
    out = tmp_path / "out.pt"
    assert student_cli(["convert", str(ckpt), "--out", str(out), "--trust"]) == 0
    _assert_same(_states(load_student(out, trust=True)), _states(model))
