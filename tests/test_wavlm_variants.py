"""WavLM-teacher variants of the LibriSpeech recipes: ARMwavLM-S (960 h, 100 h) and STaRWavLM.

Their configs are the HuBERT ones with the WavLM Base teacher (released hyperparameters, speech.md
2.3), they pass the training entry point's dry run, the recipe takes their student and teacher
family from them, and a WavLM teacher is selected (a unilm-style checkpoint file, converted in
stage 2) while a missing file or a teacher of another family is refused before any work.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import make_wave_data_dir
from fairseq_fixtures import transformers_to_fairseq_config, transformers_to_fairseq_state_dict

from audio_compress.bin.distill import Distillation
from audio_compress.bin.recipe_conf import RecipeConfError, check_teacher, conf_values, teacher_family
from audio_compress.superb.published import PUBLISHED, ROWS_FOR_TEACHER, UNPUBLISHED, get_published
from audio_compress.tasks.config import load_config
from audio_compress.teachers import get_config, save_teacher
from audio_compress.teachers.configs import model_class_for
from compact_ssl.config import config_diff

ROOT = Path(__file__).resolve().parents[1]
ARM = ROOT / "egs/librispeech/armhubert"
STAR = ROOT / "egs/librispeech/star"
#: WavLM config -> its HuBERT twin
TWINS = {
    ARM / "conf/armwavlm_s_960h.yaml": ARM / "conf/armhubert_s_960h.yaml",
    ARM / "conf/armwavlm_s_100h.yaml": ARM / "conf/armhubert_s_100h.yaml",
    STAR / "conf/starwavlm_960h.yaml": STAR / "conf/starhubert_960h.yaml",
}
_ids = [p.stem for p in TWINS]


@pytest.mark.parametrize("conf,twin", TWINS.items(), ids=_ids)
def test_wavlm_configs_are_their_hubert_twins_with_the_wavlm_teacher(conf, twin):
    diff = config_diff(load_config(twin).to_dict(), load_config(conf).to_dict())
    assert diff == {"teacher": ("hubert_base", "wavlm_base")}


@pytest.mark.parametrize("name,epochs,per_gpu,accumulation,mask_prob", [
    ("armwavlm_s_960h", 100, 18, 4, 0.8),  # 18 x 2 GPUs x 4 = 144 utterances per update
    ("armwavlm_s_100h", 200, 6, 3, 0.4),   # 6 x 2 x 3 = 36
])
def test_armwavlm_hyperparameters_are_the_released_ones(name, epochs, per_gpu, accumulation, mask_prob):
    cfg = load_config(ARM / f"conf/{name}.yaml")
    assert (cfg.method, cfg.student, cfg.teacher) == ("armhubert", "armhubert_s", "wavlm_base")
    assert (cfg.trainer.max_epochs, cfg.data.max_batch_size, cfg.trainer.devices,
            cfg.trainer.accumulate_grad_batches) == (epochs, per_gpu, 2, accumulation)
    assert (cfg.loss.mask_prob, cfg.loss.mask_length) == (mask_prob, 10)
    assert (cfg.optim.lr, cfg.optim.betas, cfg.optim.eps, cfg.optim.warmup_proportion) == (5e-3, (0.9, 0.98), 1e-6, 0.05)
    assert cfg.trainer.precision == "16-mixed" and cfg.data.crop_samples is None


def test_starwavlm_is_starhubert_960h_with_the_wavlm_teacher():
    cfg = load_config(STAR / "conf/starwavlm_960h.yaml")
    assert (cfg.method, cfg.student, cfg.teacher) == ("star", "starhubert", "wavlm_base")
    assert (cfg.trainer.max_epochs, cfg.optim.lr, cfg.loss.normalize) == (100, 5e-4, "dim")


@pytest.mark.parametrize("conf", list(TWINS), ids=_ids)
def test_configs_pass_the_training_entry_points_dry_run(conf, tmp_path, capsys):
    cpu = ["--set", "trainer.accelerator=cpu", "--set", "trainer.precision=32-true"]  # no GPU here
    assert Distillation().main(["--config", str(conf), "--expdir", str(tmp_path / "exp"), "--check", *cpu]) == []
    assert capsys.readouterr().out == f"check: {tmp_path / 'exp'}: would start\n"
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("conf,values", [
    (ARM / "conf/armwavlm_s_960h.yaml", ("armhubert_s", "wavlm_base")),
    (ARM / "conf/armhubert_960h.yaml", ("armhubert", "hubert_base")),
    (STAR / "conf/starwavlm_960h.yaml", ("starhubert", "wavlm_base")),
])
def test_the_recipe_defaults_come_from_the_config(conf, values):
    assert conf_values(conf) == values
    assert teacher_family(values[1]) == values[1].split("_")[0]


def _wavlm_release(path: Path, name: str = "tiny_wavlm") -> Path:
    """A unilm-style checkpoint ({"cfg": flat model fields, "model": weights}) of a tiny teacher."""
    config = get_config(name)
    torch.manual_seed(3)
    model = model_class_for(config)(config)
    cfg = {k: v for k, v in transformers_to_fairseq_config(config).items() if k != "_name"}
    torch.save({"cfg": cfg, "model": transformers_to_fairseq_state_dict(model.state_dict(), config.model_type)}, path)
    return path


def test_teacher_selection_by_family(tmp_path):
    conf = ARM / "conf/armwavlm_s_960h.yaml"
    assert check_teacher(conf, "tiny_wavlm") == (
        "--teacher tiny_wavlm: a named architecture with RANDOM weights (tests, mini recipes); the released "
        "weights: --teacher /path/to/WavLM-Base.pt (microsoft/unilm)")
    pt = _wavlm_release(tmp_path / "WavLM-Base.pt")
    assert check_teacher(conf, str(pt)) == (
        f"--teacher {pt}: a checkpoint file; stage 2 converts it, then its family is checked (wavlm)")
    for name in ("tiny_wavlm", "tiny_hubert"):
        save_teacher(model_class_for(get_config(name))(get_config(name)), tmp_path / name)
    assert check_teacher(conf, str(tmp_path / "tiny_wavlm")).endswith(f"a wavlm teacher, as {conf} expects")
    with pytest.raises(RecipeConfError) as err:
        check_teacher(conf, str(tmp_path / "tiny_hubert"), label="the prepared teacher")
    assert str(err.value) == (
        f"the prepared teacher is a hubert model, but {conf} distils from a wavlm teacher (teacher: wavlm_base). "
        "Pass the wavlm weights (--teacher /path/to/WavLM-Base.pt (microsoft/unilm)) or use a config written "
        "for a hubert teacher")
    with pytest.raises(RecipeConfError) as err:
        check_teacher(conf, "/nope/WavLM-Base.pt")
    assert str(err.value).startswith("--teacher /nope/WavLM-Base.pt: no such file or folder, and not a named architecture")
    assert str(err.value).endswith(
        f"; {conf} distils from a wavlm teacher: pass --teacher /path/to/WavLM-Base.pt (microsoft/unilm)")


def _recipe(work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = ["bash", str(ARM / "run.sh"), "--conf", "conf/armwavlm_s_960h.yaml", "--stage", "2", "--stop_stage", "2",
           "--datadir", str(work / "data"), "--exp_root", str(work / "exp"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_recipe_refuses_a_missing_wavlm_checkpoint_before_any_stage(tmp_path):
    make_wave_data_dir(tmp_path / "data" / "dev_clean", 2, seed=0)
    proc = _recipe(tmp_path, "--teacher", str(tmp_path / "WavLM-Base.pt"))
    assert proc.returncode == 1
    assert f"ERROR: --teacher {tmp_path / 'WavLM-Base.pt'}: no such file or folder" in proc.stderr
    assert "pass --teacher /path/to/WavLM-Base.pt (microsoft/unilm)" in proc.stderr
    assert "Preflight check FAILED: no stage was run" in proc.stderr
    assert not (tmp_path / "exp/armhubert_armhubert_s/logs/stage2.log").exists()  # the conf's student names the run


def test_recipe_stage_2_converts_a_unilm_wavlm_checkpoint(tmp_path):
    make_wave_data_dir(tmp_path / "data" / "dev_clean", 2, seed=0)
    pt = _wavlm_release(tmp_path / "WavLM-Base.pt")
    proc = _recipe(tmp_path, "--teacher", str(pt))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expdir = tmp_path / "exp/armhubert_armhubert_s"
    assert json.loads((expdir / "teacher/config.json").read_text())["model_type"] == "wavlm"
    assert json.loads((expdir / "teacher/check.json").read_text())["check"]["num_hidden_states"] == 5
    log = (expdir / "logs/stage2.log").read_text().splitlines()
    assert (f"the teacher prepared from --teacher {pt} ({expdir}/teacher): a wavlm teacher, "
            "as conf/armwavlm_s_960h.yaml expects") in log


def test_published_rows_for_a_wavlm_teacher_and_no_numbers_for_starwavlm():
    assert ROWS_FOR_TEACHER["wavlm"] == ("wavLM Base", "ARMwavLM-S", "ARMwavLM-S (100h)", "STaRHuBERT", "STaRWavLM")
    assert PUBLISHED["ARMwavLM-S"]["SID_acc"] == 71.29 and PUBLISHED["ARMwavLM-S (100h)"]["PR_per"] == 8.33
    assert "STaRWavLM" not in PUBLISHED and set(UNPUBLISHED) == {"STaRWavLM"}
    with pytest.raises(KeyError, match="STaRWavLM has no published SUPERB row: released by the STaR authors"):
        get_published("STaRWavLM")
