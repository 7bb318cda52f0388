"""Fidelity to the official AST / Patch-Mix pipelines: the original AudioSet checkpoint file,
the resampler's kernel precision, the fade-out of exact-length cycles, and the clean protocol."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from audio_cls.data.cycles import fade, load_recording, pad_or_trim, resample
from audio_cls.models import build_ast, count_parameters

ROOT = Path(__file__).resolve().parents[1]
ICBHI_SAMPLES = SHARED_DATA / "icbhi_samples"
needs_icbhi = pytest.mark.skipif(not ICBHI_SAMPLES.is_dir(),
                                 reason=f"real ICBHI samples not found at {ICBHI_SAMPLES} (optional; `make test-data`)")


# ---------------------------------------------------------------- the original AudioSet checkpoint
def original_audioset_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of ``audioset_10_10_0.4593.pth`` with its shape, in state-dict order.

    The AST code saves its DataParallel model: ``module.v`` is timm's distilled DeiT-B/16-384
    (12 blocks, width 768, MLP 3072, patch conv 1 -> 768 with stride 10) fitted to 128 mel x 1024
    frames, i.e. a 12 x 101 grid and 1212 + 2 positions, still holding timm's two 1000-class heads;
    ``module.mlp_head`` is AST's LayerNorm + Linear 768 -> 527 AudioSet head.
    """
    d, hidden, classes = 768, 3072, 1000
    v = "module.v."
    shapes = {f"{v}cls_token": (1, 1, d), f"{v}pos_embed": (1, 2 + 12 * 101, d), f"{v}dist_token": (1, 1, d),
              f"{v}patch_embed.proj.weight": (d, 1, 16, 16), f"{v}patch_embed.proj.bias": (d,)}
    for i in range(12):
        block = f"{v}blocks.{i}."
        shapes.update({
            f"{block}norm1.weight": (d,), f"{block}norm1.bias": (d,),
            f"{block}attn.qkv.weight": (3 * d, d), f"{block}attn.qkv.bias": (3 * d,),
            f"{block}attn.proj.weight": (d, d), f"{block}attn.proj.bias": (d,),
            f"{block}norm2.weight": (d,), f"{block}norm2.bias": (d,),
            f"{block}mlp.fc1.weight": (hidden, d), f"{block}mlp.fc1.bias": (hidden,),
            f"{block}mlp.fc2.weight": (d, hidden), f"{block}mlp.fc2.bias": (d,),
        })
    shapes.update({
        f"{v}norm.weight": (d,), f"{v}norm.bias": (d,),
        f"{v}head.weight": (classes, d), f"{v}head.bias": (classes,),
        f"{v}head_dist.weight": (classes, d), f"{v}head_dist.bias": (classes,),
        "module.mlp_head.0.weight": (d,), "module.mlp_head.0.bias": (d,),
        "module.mlp_head.1.weight": (527, d), "module.mlp_head.1.bias": (527,),
    })
    return shapes


def test_original_audioset_key_set_matches_the_published_counts():
    shapes = original_audioset_shapes()
    numel = {key: math.prod(shape) for key, shape in shapes.items()}
    assert len(shapes) == 5 + 12 * 12 + 2 + 4 + 4 == 159
    # the original AST 128 x 1024 / 527 classes, module total with the unused heads
    assert sum(numel.values()) == 88_132_063
    heads = sum(n for key, n in numel.items() if ".head" in key or "mlp_head" in key)
    assert heads == 2 * 769_000 + 406_799
    # the Patch-Mix code's module: the same network with 950 positions and a 4-class mlp_head
    assert sum(numel.values()) - (1214 - 950) * 768 - 406_799 + 4_612 == 87_527_124


@pytest.mark.slow
def test_original_audioset_pth_loads(tmp_path):
    """The file as the AST code saves it (full key set, real shapes, random float16 weights) loads
    through the public loader, every head dropped, each weight where it belongs."""
    generator = torch.Generator().manual_seed(0)
    state = {key: torch.empty(shape, dtype=torch.float16).uniform_(-1, 1, generator=generator)
             for key, shape in original_audioset_shapes().items()}
    path = tmp_path / "audioset_10_10_0.4593.pth"
    torch.save(state, path)
    backbone = build_ast("ast_base", num_mel_bins=128, num_frames=798, init="audioset", checkpoint=path)
    ast = backbone.ast
    assert count_parameters(backbone) == 85_984_512

    def file(key: str) -> torch.Tensor:
        return state[f"module.v.{key}"].float()

    emb = ast.embeddings
    assert torch.equal(emb.patch_embeddings.projection.weight, file("patch_embed.proj.weight"))
    assert torch.equal(emb.patch_embeddings.projection.bias, file("patch_embed.proj.bias"))
    assert torch.equal(emb.cls_token, file("cls_token")) and torch.equal(emb.distillation_token, file("dist_token"))
    pos = file("pos_embed")
    assert torch.equal(emb.position_embeddings[:, :2], pos[:, :2])
    # 12 x 101 -> 12 x 79: token (f, t) takes checkpoint cell (f, t + 11)
    grid = emb.position_embeddings[0, 2:].reshape(12, 79, 768)
    assert torch.equal(grid, pos[0, 2:].reshape(12, 101, 768)[:, 11:90])
    qkv_w, qkv_b = file("blocks.5.attn.qkv.weight"), file("blocks.5.attn.qkv.bias")
    attention = ast.layers[5].attention
    assert torch.equal(attention.q_proj.weight, qkv_w[:768]) and torch.equal(attention.k_proj.weight, qkv_w[768:1536])
    assert torch.equal(attention.v_proj.weight, qkv_w[1536:]) and torch.equal(attention.v_proj.bias, qkv_b[1536:])
    assert torch.equal(attention.o_proj.weight, file("blocks.5.attn.proj.weight"))
    assert torch.equal(ast.layers[0].layernorm_before.weight, file("blocks.0.norm1.weight"))
    assert torch.equal(ast.layers[11].layernorm_after.bias, file("blocks.11.norm2.bias"))
    assert torch.equal(ast.layers[11].mlp.fc1.weight, file("blocks.11.mlp.fc1.weight"))
    assert torch.equal(ast.layers[11].mlp.fc2.weight, file("blocks.11.mlp.fc2.weight"))
    assert torch.equal(ast.layernorm.weight, file("norm.weight")) and torch.equal(ast.layernorm.bias, file("norm.bias"))
    # no head reaches the backbone: no tensor with 1000 or 527 rows
    assert not any(value.shape[0] in (1000, 527) for value in ast.state_dict().values())


# ---------------------------------------------------------------- resampling
def _synthetic_44k(seconds: float = 2.0) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    t = torch.arange(int(44100 * seconds)) / 44100
    wave = 0.5 * torch.sin(2 * torch.pi * 440 * t) + 0.3 * torch.sin(2 * torch.pi * 7000 * t)
    return (wave + 0.2 * torch.randn(t.shape, generator=generator)).float().numpy()


def test_resampler_matches_the_reference_transform():
    import torchaudio
    import torchaudio.functional as AF

    wave = _synthetic_44k()
    ours = torch.from_numpy(resample(wave, 44100, 16000))
    reference = torchaudio.transforms.Resample(44100, 16000)(torch.from_numpy(wave))
    float32_kernel = AF.resample(torch.from_numpy(wave), 44100, 16000)
    assert ours.shape == reference.shape == (32000,)
    assert (ours - reference).abs().max() <= 1e-6
    # the functional form builds its kernel in float32: 4.4e-6 off on this signal
    assert (float32_kernel - reference).abs().max() > 1e-6
    assert resample(wave, 16000, 16000) is wave


@needs_icbhi
def test_real_44k_recording_resampled_as_the_reference():
    import torchaudio
    import torchaudio.functional as AF

    from audio_cls.features import FeatureConfig, fbank
    from compact_ssl.audio import load_audio

    path = ICBHI_SAMPLES / "audio_and_txt_files" / "101_1b1_Al_sc_Meditron.wav"
    native = torch.from_numpy(load_audio(path, sample_rate=44100, resample=False, min_samples=1))
    reference = fade(torchaudio.transforms.Resample(44100, 16000)(native).numpy(), 1000, 1000)
    float32_kernel = fade(AF.resample(native, 44100, 16000).numpy(), 1000, 1000)
    ours = load_recording(path)
    assert ours.shape == reference.shape == (320000,)
    assert np.abs(ours - reference).max() <= 1e-6
    assert np.abs(float32_kernel - reference).max() > 1e-6
    # the first 8 s as one cycle: the float32 kernel moves the normalized fbank by 1.4e-2 here
    config = FeatureConfig()
    ours_fbank, old_fbank = fbank(ours[:128000], config), fbank(float32_kernel[:128000], config)
    assert torch.equal(ours_fbank, fbank(reference[:128000], config))
    assert (ours_fbank - old_fbank).abs().max() > 5e-3


# ---------------------------------------------------------------- cycles of exactly the target length
def test_exact_length_cycle_is_faded_like_the_reference():
    length = 128000
    exact = pad_or_trim(np.full(length, 2.0, dtype=np.float32), length, "repeat", 1000)
    # repeat x1 then the 1000-sample fade-out: sample length - 1000 + i is scaled by 1 - i / 999
    assert exact.shape == (length,) and exact.dtype == np.float32
    assert exact[-1001] == 2.0 and exact[-1000] == 2.0
    assert exact[-1] == 0.0
    assert exact[-2] == pytest.approx(2 / 999, rel=1e-6)
    assert exact[-500] == pytest.approx(2 * 499 / 999, rel=1e-6)
    assert exact[:length - 1000].min() == 2.0
    longer = np.full(length + 1, 2.0, dtype=np.float32)
    longer[-1] = 5.0
    trimmed = pad_or_trim(longer, length, "repeat", 1000)
    assert trimmed.shape == (length,) and trimmed.min() == trimmed.max() == 2.0  # first 8 s, no fade
    shorter = np.arange(1, length, dtype=np.float32)  # 127,999 samples: tiled twice, cut, faded
    padded = pad_or_trim(shorter, length, "repeat", 1000)
    assert padded[0] == 1.0 and padded[length - 1001] == length - 1000
    assert padded[-1] == 0.0  # the wrapped-around first sample, faded to zero
    assert padded[-2] == pytest.approx((length - 1) * 1 / 999, rel=1e-6)
    # zero padding has nothing to pad: an exact-length cycle comes back unchanged
    np.testing.assert_array_equal(pad_or_trim(np.full(length, 2.0, dtype=np.float32), length, "zero"), 2.0)


# ---------------------------------------------------------------- clean protocol: selection on held-out patients
@pytest.fixture(scope="module")
def mini_train(tmp_path_factory):
    """The mini corpus (seed 0) prepared into manifests: 85 training cycles of 12 patients."""
    from audio_cls.data import make_mini_icbhi, prepare_icbhi, write_manifest

    root = tmp_path_factory.mktemp("clean")
    corpus = prepare_icbhi(make_mini_icbhi(root / "corpus", seed=0).root)
    for split, records in corpus.cycles.items():
        write_manifest(records, root / "data" / split / "cycles.tsv")
    return root, corpus.cycles["train"]


def _record(patient: int, label: int, number: int):
    from audio_cls.data.manifest import CycleRecord

    name = f"{patient}_1b1_Al_sc_Meditron"
    return CycleRecord(id=f"{name}_{number:03d}", recording=name, audio=f"/x/{name}.wav", start=0.0, end=1.0,
                       crackle=int(label in (1, 3)), wheeze=int(label in (2, 3)), label=label, patient=patient,
                       device="Meditron", annotation=f"/x/{name}.txt", line=number + 1)


def test_validation_split_is_patient_disjoint_seeded_and_stratified(mini_train):
    from audio_cls.data.manifest import class_counts
    from audio_cls.data.split import validation_split

    _, records = mini_train
    train, val = validation_split(records, 0.2, seed=0)
    assert sorted(train + val) == list(range(85)) and train == sorted(train) and val == sorted(val)
    train_patients, val_patients = {records[i].patient for i in train}, {records[i].patient for i in val}
    assert not train_patients & val_patients and len(train_patients | val_patients) == 12
    # round(0.2 x 12) = 2 patients: one of the 7 mostly-normal patients and, by the largest remainder
    # (2/12 each, ties to the lower label), one of the 2 mostly-crackle ones
    assert val_patients == {104, 113} and class_counts([records[i] for i in val]) == [4, 5, 2, 1]
    assert validation_split(records, 0.2, seed=0) == (train, val)  # deterministic
    assert {records[i].patient for i in validation_split(records, 0.2, seed=4)[1]} == {103, 114}
    # stratification on hand-made records: 5 mostly-normal and 5 mostly-wheeze patients -> one of each
    made = [_record(p, 0 if p < 5 else 2, n) for p in range(10) for n in range(3)]
    for seed in range(5):
        held = {made[i].patient for i in validation_split(made, 0.2, seed)[1]}
        assert len(held) == 2 and len({p < 5 for p in held}) == 2
    with pytest.raises(ValueError, match=r"must be in \(0, 1\)"):
        validation_split(made, 0.0)
    with pytest.raises(ValueError, match="at least 2 training patients, got 1"):
        validation_split(made[:3], 0.2)
    assert len({made[i].patient for i in validation_split(made[:6], 0.9)[1]}) == 1  # one patient stays for training


#: the class every evaluated cycle is predicted as, per epoch: on the held-out patients (val_seed 4:
#: [4, 4, 1, 2] cycles per class) "both" beats "wheeze", on the test set ([20, 15, 12, 10]) it is the other
#: way round, and the all-normal epoch has the top Score (50) but no sensitivity, so the gate drops it
SCRIPT = (2, 0, 3)


@pytest.mark.slow
def test_clean_protocol_selects_the_best_validation_epoch(mini_train, monkeypatch, tmp_path):
    import csv
    import json

    from lightning.pytorch.callbacks import Callback

    from audio_cls.bin import evaluate, results
    from audio_cls.bin.train import IcbhiTraining
    from audio_cls.losses import class_weights
    from audio_cls.tasks import IcbhiTask, load_config

    root, _ = mini_train
    predicted: dict[str, int | None] = {"class": None}
    real_forward = IcbhiTask.forward

    def scripted(self, spec):
        logits = real_forward(self, spec)
        if self.training or predicted["class"] is None:
            return logits
        return torch.nn.functional.one_hot(torch.full((spec.shape[0],), predicted["class"]), logits.shape[1]).float()

    class Script(Callback):
        def on_validation_epoch_start(self, trainer, pl_module):
            predicted["class"] = SCRIPT[trainer.current_epoch]

    monkeypatch.setattr(IcbhiTask, "forward", scripted)
    config = load_config(ROOT / "egs" / "mini_icbhi" / "patchmix" / "conf" / "ce.yaml", [
        f"data.train={root}/data/train/cycles.tsv", f"data.test={root}/data/test/cycles.tsv",
        f"data.cache_dir={root}/features", "data.val_fraction=0.2", "data.val_seed=4",
        f"trainer.max_epochs={len(SCRIPT)}"])
    run = tmp_path / "exp" / "ce_clean" / "seed1"
    training = IcbhiTraining()
    setup = training.setup(config, run)
    # trained on the 74 cycles of the other 10 patients, class weights from those
    torch.testing.assert_close(setup.module.class_weight, class_weights([26, 18, 14, 16]))
    setup.datamodule.prepare_data()
    setup.datamodule.setup()
    assert len(setup.datamodule.train_set) == 74 and len(setup.datamodule.selection_set) == 11
    summary = training.run(config, run, callbacks=[Script()])
    assert summary["selected_on"] == "validation"
    history = [{k: float(v) for k, v in row.items() if v}
               for row in csv.DictReader(open(run / "csv" / "metrics.csv")) if row.get("val_score")]
    # every epoch scored on the 11 held-out cycles: constant "wheeze" 1 of 7 abnormal, "normal" Sp 100 Se 0,
    # constant "both" 2 of 7
    assert [round(e["val_se"], 4) for e in history] == [14.2857, 0.0, 28.5714]
    assert [round(e["val_score"], 4) for e in history] == [7.1429, 50.0, 14.2857]
    assert [round(e["val_selection"], 4) for e in history] == [7.1429, -1.0, 14.2857]
    assert torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)["epoch"] == 2
    predicted["class"] = SCRIPT[2]
    evaluate.main(["--expdir", str(run.parent), "--which", "best", "last"])
    best = json.loads((run / "eval" / "best" / "scores.json").read_text())
    assert (best["epoch"], best["selected_on"], best["gate"]["passed"]) == (3, "validation", True)
    # on the test set, 10 of 37 abnormal cycles (test-set selection would have kept epoch 1: 12 of 37)
    assert best["num_cycles"] == 57 and best["sensitivity"] == pytest.approx(1000 / 37, abs=1e-3)
    assert best["validation"]["num_cycles"] == 11 and best["validation"]["score"] == pytest.approx(100 / 7, abs=1e-3)
    assert json.loads((run / "eval" / "last" / "scores.json").read_text())["selected_on"] is None
    results.main(["--exp", str(tmp_path / "exp")])
    rows = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert [(r["method"], r["selection"]) for r in rows] == [("ce_clean", "best_val"), ("ce_clean", "last")]
    assert "| ce_clean | best epoch on validation (clean protocol) | 1 |" in (tmp_path / "exp" / "results.md").read_text()


def _scores(seed: int, score: float, selected_on: str | None) -> dict:
    result = {"seed": seed, "epoch": 3, "method": "patchmix_cl", "specificity": 80.0, "sensitivity": 2 * score - 80.0,
              "score": score, "two_class": {"specificity": 80.0, "sensitivity": 50.0, "score": 65.0}}
    if selected_on is not None:
        result["selected_on"] = selected_on
        result["gate"] = {"min_sensitivity": 5.0, "passed": True, "best_sensitivity": 45.0, "epochs": 50, "source": "h"}
    return result


def test_results_table_has_paper_and_clean_rows(tmp_path):
    import json

    from audio_cls.bin import results

    exp = tmp_path / "exp"
    runs = {("patchmix_cl", "best"): (62.0, 63.0, "test"), ("patchmix_cl", "last"): (60.0, 61.0, None),
            ("patchmix_cl_clean", "best"): (59.0, 61.0, "validation"), ("patchmix_cl_clean", "last"): (58.0, 60.0, None)}
    for (folder, which), (first, second, selected_on) in runs.items():
        for seed, score in ((1, first), (2, second)):
            path = exp / folder / f"seed{seed}" / "eval" / which / "scores.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(_scores(seed, score, selected_on)))
    # an evaluation from before selected_on was recorded is a paper-protocol one
    legacy = exp / "patchmix_cl" / "seed2" / "eval" / "best" / "scores.json"
    legacy.write_text(json.dumps({k: v for k, v in json.loads(legacy.read_text()).items() if k != "selected_on"}))
    results.main(["--exp", str(exp)])
    table = (exp / "results.md").read_text().splitlines()
    assert "best epoch on test = chosen on the test set itself (test-set selection, the paper protocol" in table[2]
    assert table[6] == ("| patchmix_cl | best epoch on test (paper protocol) | 1,2 | 80.00 ± 0.00 | 45.00 ± 1.41 | "
                        "62.50 ± 0.71 | 50.00 ± 0.00 | 65.00 ± 0.00 |")
    assert table[7].startswith("| patchmix_cl | last epoch | 1,2 | 80.00 ± 0.00 | 41.00 ± 1.41 | 60.50 ± 0.71 |")
    assert table[8] == ("| patchmix_cl_clean | best epoch on validation (clean protocol) | 1,2 | 80.00 ± 0.00 | "
                        "40.00 ± 2.83 | 60.00 ± 1.41 | 50.00 ± 0.00 | 65.00 ± 0.00 |")
    assert table[9].startswith("| patchmix_cl_clean | last epoch | 1,2 |")
    rows = json.loads((exp / "results.json").read_text())
    assert [r["selection"] for r in rows] == ["best", "last", "best_val", "last"]
