"""Shareable checkpoints: pretrained folders (safetensors + config.json + model card) of students and of
the ICBHI classifier, their exports from training runs, hub fetch and push (no network), safe loading."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import make_wave_data_dir
from huggingface_hub import ModelCard
from pickle_payloads import write_payload_checkpoint
from torch.utils.data import DataLoader, TensorDataset

import audio_cls
from audio_cls.bin.export import export_classifier
from audio_cls.bin.export import main as export_classifier_main
from audio_cls.bin.results import collect
from audio_cls.data.cycles import cycle_waves
from audio_cls.features import FeatureConfig, fbank
from audio_cls.models import get_arch
from audio_cls.pretrained import IcbhiClassifier, classifier_card, icbhi_results_table
from audio_cls.tasks import IcbhiTask, load_config, load_task
from audio_compress.bin.distill import Distillation
from audio_compress.bin.export import main as export_student_main
from audio_compress.export import export_pretrained, student_from_lightning
from audio_compress.models import StudentModel, build_student, count_parameters
from audio_compress.models.pretrained import student_card, superb_results_table
from audio_compress.superb.results import write_results
from audio_compress.tasks.config import load_config as load_distill_config
from compact_ssl.pretrained import (
    FOLDER_FILES,
    PretrainedFetchError,
    PretrainedFormatError,
    push_to_hub,
)
from compact_ssl.unpickle import UnsafePickleError

ROOT = Path(__file__).resolve().parents[1]
MINI_ICBHI = ROOT / "egs" / "mini_icbhi" / "patchmix" / "conf"
SUPERB_ROWS = {"star_local": {"PR_per": 40.0, "KS_acc": 80.0}, "ssl_teacher_local": {"PR_per": 30.0, "KS_acc": 90.0},
               "fbank": {"PR_per": 80.0, "KS_acc": 20.0}}
#: the card's SUPERB table for SUPERB_ROWS with the published DistilHuBERT row
SUPERB_TABLE = [
    "| Model | PR PER↓ | KS Acc↑ | Overall | SUPERB |",
    "|:---|---:|---:|---:|---:|",
    "| **star_local** (this model) | 40.00 | 80.00 | 70.0 (partial 2/11 metrics) | 617 (partial 2/10 tasks) |",
    "| ssl_teacher_local (same run) | 30.00 | 90.00 | 80.0 (partial 2/11 metrics) | 771 (partial 2/10 tasks) |",
    "| fbank (same run) | 80.00 | 20.00 | 20.0 (partial 2/11 metrics) | -181 (partial 2/10 tasks) |",
    "| DistilHuBERT (published) | 16.27 | 95.98 | 75.9 | 717 |",
]


def _superb_results(folder: Path) -> Path:
    """A ``results.json`` as the SUPERB results stage writes it (mini run, one published row)."""
    return write_results(SUPERB_ROWS, folder, published=("DistilHuBERT",), mini=True)["json"]


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


# ------------------------------------------------------------------------------------------- students
@pytest.mark.parametrize("name", ["tiny_star", "tiny_arm", "tiny_distil"])
def test_student_round_trip_is_bit_exact(name, tmp_path):
    torch.manual_seed(0)
    model = build_student(name).eval()
    folder = model.save_pretrained(tmp_path / "shared", teacher="`tiny_hubert`", info={"method": "star", "step": 7})
    assert sorted(os.listdir(tmp_path)) == ["shared"]  # the staged folder was renamed, nothing left beside it
    assert sorted(os.listdir(folder)) == sorted(FOLDER_FILES)
    document = json.loads((folder / "config.json").read_text())
    assert list(document) == ["format", "format_version", "library", "library_version", "config", "info"]
    assert (document["format"], document["format_version"], document["info"]) == (
        "compact-ssl-student", 1, {"method": "star", "step": 7})
    loaded = StudentModel.from_pretrained(folder)
    assert not loaded.training and loaded.config == model.config
    _same_state(model, loaded)
    wavs = torch.randn(2, 8000)
    with torch.no_grad():
        expected = model.upstream_hidden_states(model(wavs))
        got = loaded.upstream_hidden_states(loaded(wavs))
    assert len(got) == len(expected) and all(torch.equal(g, e) for g, e in zip(got, expected))


def test_student_card_has_metadata_parameters_teacher_and_superb_table(tmp_path):
    torch.manual_seed(0)
    model = build_student("tiny_arm")
    folder = model.save_pretrained(
        tmp_path / "arm", teacher="`exp/teacher` (hubert, 4 layers, width 64)", base_model="facebook/hubert-base-ls960",
        datasets=["openslr/librispeech_asr"], license="cc-by-4.0", results=_superb_results(tmp_path / "superb"),
        repo_id="someone/tiny-arm", training_data="Training set `data/train`.")
    card = ModelCard.load(folder / "README.md")
    assert card.data.to_dict() == {
        "base_model": "facebook/hubert-base-ls960", "datasets": ["openslr/librispeech_asr"], "library_name": "compact-ssl",
        "license": "cc-by-4.0", "pipeline_tag": "feature-extraction",
        "tags": ["speech", "self-supervised-learning", "knowledge-distillation", "tiny_arm"]}
    text = card.text
    assert count_parameters(model) == 192_128
    assert ("Parameters: **192,128** (192128 exactly). Of these, 16,640 are in the distillation heads (175,488 without "
            "them).") in text
    assert "- Attention reuse: layers 2, 4 reuse the previous layer's attention map." in text
    assert "## Teacher\n\n`exp/teacher` (hubert, 4 layers, width 64)\n" in text
    assert "## Training data\n\nTraining set `data/train`.\n" in text
    assert "\n".join(SUPERB_TABLE) in text
    assert 'model = StudentModel.from_pretrained("someone/tiny-arm")' in text
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## Architecture", "## Teacher", "## Training data", "## Recipe and config", "## Results",
                        "## How to load"]


def test_cards_of_full_size_models_state_the_published_parameter_counts():
    with torch.device("meta"):
        arm = build_student("armhubert")
        ast = IcbhiClassifier(get_arch("ast_base"), FeatureConfig(), ("normal", "crackle", "wheeze", "both"))
    card = student_card(arm)
    assert card.num_parameters == 26_448_448
    assert card.parameter_detail == "Of these, 4,432,896 are in the distillation heads (22,015,552 without them)."
    classifier = classifier_card(ast, method="patchmix_cl", init="audioset")
    assert classifier.num_parameters == 85_984_512 + 4_612
    assert classifier.base_model == "MIT/ast-finetuned-audioset-10-10-0.4593"
    assert "a 12 x 79 grid" in classifier.architecture


def test_superb_table_needs_to_know_which_row_is_the_model(tmp_path):
    path = write_results({"a_local": {"KS_acc": 80.0}, "b_local": {"KS_acc": 70.0}}, tmp_path, published=())["json"]
    with pytest.raises(ValueError, match=r"cannot tell which row is this model among \['a_local', 'b_local'\]"):
        build_student("tiny_star").save_pretrained(tmp_path / "out", results=path)
    assert not (tmp_path / "out").exists()
    folder = build_student("tiny_star").save_pretrained(tmp_path / "out", results=path, upstream="b_local")
    assert "| **b_local** (this model) | 70.00 | 70.0 (partial 1/11 metrics) |" in (folder / "README.md").read_text()


def test_superb_table_lists_released_checkpoints_apart(tmp_path):
    source = {"entry": "armhubert_local", "ckpt": "released/armhubert.ckpt", "sha256": "ab" * 32,
              "model_config": "released/armhubert.yaml", "model_config_sha256": "cd" * 32}
    path = write_results({"star_local": {"KS_acc": 80.0}, "ARMHuBERT": {"KS_acc": 85.0}}, tmp_path, published=(),
                         released={"ARMHuBERT": source})["json"]
    table = superb_results_table(path)
    assert [row[0] for row in table.rows] == ["**star_local** (this model)", "ARMHuBERT (released)"]
    assert table.rows[1][1] == "85.00"


@pytest.fixture(scope="module")
def distill_run(tmp_path_factory) -> Path:
    """A real one-step STaR run (tiny student and teacher): ``<expdir>`` with ``checkpoints/`` and a
    mini SUPERB ``superb/results.json``."""
    root = tmp_path_factory.mktemp("distill")
    train, dev = make_wave_data_dir(root / "train", 4, seed=0), make_wave_data_dir(root / "dev", 2, seed=1)
    config = load_distill_config(None, [
        "method=star", "student=tiny_star", "teacher=tiny_hubert", f"data.train={train}", f"data.dev={dev}",
        "data.max_batch_samples=48000", "data.num_workers=0", "trainer.precision=32-true", "trainer.accelerator=cpu",
        "trainer.devices=1", "trainer.max_steps=1", "trainer.val_every_n_steps=1", "trainer.log_every_n_steps=1"])
    Distillation().run(config, root / "exp")
    _superb_results(root / "exp" / "superb")
    return root / "exp"


def test_export_pretrained_from_a_distillation_run(distill_run, tmp_path):
    ckpt = distill_run / "checkpoints" / "last.ckpt"
    folder = export_pretrained(ckpt, tmp_path / "star", teacher_id="facebook/hubert-base-ls960")
    reference, meta = student_from_lightning(ckpt)
    loaded = StudentModel.from_pretrained(folder)
    _same_state(reference, loaded)
    document = json.loads((folder / "config.json").read_text())
    assert document["info"] == meta == {"method": "star", "step": 1, "source": str(ckpt)}
    text = (folder / "README.md").read_text()
    assert ("`tiny_hubert` (a named architecture of audio_compress.teachers, random weights); released as "
            "`facebook/hubert-base-ls960` on the model hub.") in text
    assert (f"Distilled with STaR (`method: star`), optimizer steps: 1 (max_steps 1), student `tiny_star`. Exported "
            f"from `{ckpt}`.") in text
    assert "```yaml\nmethod: star\nstudent: tiny_star\n" in text and "  max_steps: 1\n" in text
    assert "\n".join(SUPERB_TABLE) in text  # found at <expdir>/superb/results.json
    assert f"Source: `{(distill_run / 'superb' / 'results.json').resolve()}`." in text


def test_student_export_cli_writes_the_folder_only(distill_run, tmp_path, capsys):
    export_student_main(["--ckpt_dir", str(distill_run / "checkpoints"), "--which", "last",
                         "--pretrained", str(tmp_path / "cli"), "--repo_id", "someone/star-tiny"])
    assert sorted(os.listdir(tmp_path)) == ["cli"]
    assert capsys.readouterr().out.startswith(f"Wrote the pretrained folder {tmp_path / 'cli'}")
    assert 'StudentModel.from_pretrained("someone/star-tiny")' in (tmp_path / "cli" / "README.md").read_text()
    with pytest.raises(SystemExit):
        export_student_main(["--ckpt_dir", str(distill_run), "--pretrained", str(tmp_path / "x"), "--push_to_hub", "true"])
    assert capsys.readouterr().err.endswith("error: --push_to_hub true needs --pretrained and --repo_id\n")


def test_student_export_refuses_a_pickle_that_runs_code(distill_run, tmp_path):
    checkpoint = torch.load(distill_run / "checkpoints" / "last.ckpt", weights_only=False)
    path = write_payload_checkpoint(tmp_path / "last.ckpt", tmp_path / "marker", extra=checkpoint)
    with pytest.raises(UnsafePickleError, match=f"{path}: refuses to unpickle os.makedirs"):
        export_pretrained(path, tmp_path / "out")
    assert not (tmp_path / "marker").exists() and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------- ICBHI classifier
@pytest.fixture(scope="module")
def icbhi_run(tmp_path_factory) -> Path:
    """``<method>/seed1/checkpoints/best.ckpt`` of a one-step tiny AST ``ce`` run (Lightning's own file)
    and its evaluation ``seed1/eval/best/scores.json`` as :mod:`audio_cls.bin.evaluate` writes it."""
    seed = tmp_path_factory.mktemp("icbhi") / "ce" / "seed1"
    config = load_config(MINI_ICBHI / "ce.yaml", ["method_args.weighted_ce=false"])
    torch.manual_seed(0)
    task = IcbhiTask(config, [30, 22, 15, 18])
    spec, labels = torch.randn(4, 198, 128), torch.tensor([0, 1, 2, 3])
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
                        default_root_dir=str(seed))
    trainer.fit(task, DataLoader(TensorDataset(spec, labels, torch.arange(4)), batch_size=4))
    trainer.save_checkpoint(seed / "checkpoints" / "best.ckpt")
    (seed / "eval" / "best").mkdir(parents=True)
    (seed / "eval" / "best" / "scores.json").write_text(json.dumps({
        "checkpoint": str(seed / "checkpoints" / "best.ckpt"), "epoch": 1, "method": "ce", "seed": 1,
        "test_manifest": "data/test/cycles.tsv", "num_cycles": 12, "specificity": 80.0, "sensitivity": 40.5,
        "score": 60.25, "two_class": {"specificity": 80.0, "sensitivity": 50.0, "score": 65.0},
        "confusion": [[4, 1, 0, 0], [1, 2, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], "selected_on": "test",
        "gate": {"min_sensitivity": 5.0, "passed": True, "best_sensitivity": 40.5, "epochs": 1,
                 "source": str(seed / "csv" / "metrics.csv")}}))
    return seed


def test_classifier_round_trip_gives_the_task_logits(icbhi_run, tmp_path):
    ckpt = icbhi_run / "checkpoints" / "best.ckpt"
    folder = export_classifier(ckpt, tmp_path / "icbhi")
    task = load_task(ckpt)
    model = audio_cls.from_pretrained(folder)
    assert isinstance(model, IcbhiClassifier) and not model.training
    assert model.class_names == ("normal", "crackle", "wheeze", "both")
    expected = {k: v for k, v in task.state_dict().items() if k.startswith(("backbone.", "classifier."))}
    assert list(model.state_dict()) == list(expected)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())
    spec = torch.randn(3, 198, 128)
    with torch.no_grad():
        assert torch.equal(model(spec), task(spec))
    document = json.loads((folder / "config.json").read_text())
    assert document["config"]["class_names"] == ["normal", "crackle", "wheeze", "both"]
    assert document["config"]["features"]["norm_std"] == 4.5689974
    # Lightning stored epoch 1 (the first epoch ended with the step); numbered from 1 as audio_cls.bin.evaluate does
    assert document["info"] == {"method": "ce", "seed": 1, "epoch": 2, "source": str(ckpt)}
    # the input of one cycle is what the training features of that cycle were (cut, padded, fbank)
    recording = np.sin(np.arange(48000, dtype=np.float32) / 7.0)
    for start, end in [(0.5, 1.75), (0.0, 2.5)]:
        trained = fbank(next(cycle_waves(recording, 16000, [(start, end)], 32000, "repeat")), model.features)
        spec = model.spectrogram(recording[int(start * 16000):int(end * 16000)])
        assert spec.shape == (198, 128) and torch.equal(spec, trained)


def test_classifier_card_has_the_icbhi_table(icbhi_run, tmp_path):
    folder = export_classifier(icbhi_run / "checkpoints" / "best.ckpt", tmp_path / "icbhi", repo_id="someone/ast-icbhi")
    card = ModelCard.load(folder / "README.md")
    assert card.data.to_dict() == {
        "library_name": "compact-ssl", "license": "other", "pipeline_tag": "audio-classification",
        "tags": ["audio", "audio-classification", "respiratory-sound", "icbhi", "audio-spectrogram-transformer", "ce"]}
    text = card.text
    assert "Parameters: **131,780** (131780 exactly). Of these, 388 are in the classification head." in text
    assert "None: supervised training on the ICBHI labels, starting from random weights." in text
    assert ("| Model | selection | Sp | Se | Score | Se 2-cls | Score 2-cls |\n|:---|---:|---:|---:|---:|---:|---:|\n"
            "| ce seed 1 epoch 1 | best epoch on test (paper protocol) | 80.00 | 40.50 | 60.25 | 50.00 | 65.00 |") in text
    assert "(x - (-4.2677393)) / (2 x 4.5689974): a 198 x 128 matrix" in text
    assert 'model = audio_cls.from_pretrained("someone/ast-icbhi")' in text


def test_icbhi_results_table_over_seeds(tmp_path):
    for seed, (sp, se, passed) in enumerate([(80.0, 40.0, True), (70.0, 50.0, False)], start=1):
        scores = {"checkpoint": "best.ckpt", "epoch": 3, "method": "ce", "seed": seed, "test_manifest": "test.tsv",
                  "num_cycles": 12, "specificity": sp, "sensitivity": se, "score": (sp + se) / 2,
                  "two_class": {"specificity": sp, "sensitivity": se + 10, "score": (sp + se + 10) / 2},
                  "confusion": [[1, 0], [0, 1]], "selected_on": "test",
                  "gate": {"min_sensitivity": 45.0, "passed": passed, "best_sensitivity": se, "epochs": 3,
                           "source": f"ce/seed{seed}/csv/metrics.csv"}}
        (tmp_path / "ce" / f"seed{seed}" / "eval" / "best").mkdir(parents=True)
        (tmp_path / "ce" / f"seed{seed}" / "eval" / "best" / "scores.json").write_text(json.dumps(scores))
    (tmp_path / "results.json").write_text(json.dumps(collect(tmp_path)))
    table = icbhi_results_table(tmp_path / "results.json")
    assert table.columns == ("Method", "selection", "seeds", "Sp", "Se", "Score", "Se 2-cls", "Score 2-cls")
    assert table.rows == (("ce", "best", "1,2†", "75.00 ± 7.07", "45.00 ± 7.07", "60.00 ± 0.00", "55.00 ± 7.07",
                           "65.00 ± 0.00"),)
    assert table.caption.endswith("† a seed where no epoch passed the sensitivity gate (its best epoch is a fallback).")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="other.json: neither a scores.json of audio_cls.bin.evaluate nor a results.json"):
        icbhi_results_table(tmp_path / "other.json")


def test_classifier_export_cli_and_safe_loading(icbhi_run, tmp_path, capsys):
    ckpt = icbhi_run / "checkpoints" / "best.ckpt"
    export_classifier_main(["--ckpt", str(ckpt), "--out", str(tmp_path / "cli")])
    assert capsys.readouterr().out.startswith(f"Wrote the pretrained folder {tmp_path / 'cli'}")
    assert "| ce seed 1 epoch 1 | best epoch on test" in (tmp_path / "cli" / "README.md").read_text()
    payload = write_payload_checkpoint(tmp_path / "evil.ckpt", tmp_path / "marker",
                                       extra=torch.load(ckpt, weights_only=False))
    with pytest.raises(UnsafePickleError, match=f"{payload}: refuses to unpickle os.makedirs"):
        load_task(payload)
    with pytest.raises(SystemExit, match="ERROR: .*evil.ckpt: refuses to unpickle os.makedirs"):
        export_classifier_main(["--ckpt", str(payload), "--out", str(tmp_path / "evil")])
    assert not (tmp_path / "marker").exists() and not (tmp_path / "evil").exists()


# ------------------------------------------------------------------------------------ refused folders
@pytest.fixture
def student_folder(tmp_path) -> Path:
    torch.manual_seed(0)
    return build_student("tiny_star").save_pretrained(tmp_path / "student")


def _edit_config(folder: Path, **changes) -> None:
    document = json.loads((folder / "config.json").read_text())
    document.update(changes)
    (folder / "config.json").write_text(json.dumps(document))


def test_missing_and_damaged_files_are_refused(student_folder):
    weights = student_folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(PretrainedFormatError, match=f"{student_folder}: model.safetensors cannot be read .*truncated"):
        StudentModel.from_pretrained(student_folder)
    weights.unlink()
    with pytest.raises(PretrainedFormatError,
                       match=f"{student_folder}: not a complete pretrained folder, missing model.safetensors"):
        StudentModel.from_pretrained(student_folder)
    weights.write_bytes(data)
    (student_folder / "config.json").write_text("{")
    with pytest.raises(PretrainedFormatError, match=f"{student_folder}: config.json is not valid JSON"):
        StudentModel.from_pretrained(student_folder)
    with pytest.raises(PretrainedFormatError, match=f"{weights}: is a file; a pretrained model is a folder"):
        StudentModel.from_pretrained(weights)
    with pytest.raises(PretrainedFormatError, match=r"\./nowhere/at/all: no such folder"):
        StudentModel.from_pretrained("./nowhere/at/all")


def test_other_formats_and_unfitting_configs_are_refused(student_folder):
    with pytest.raises(PretrainedFormatError, match=f"{student_folder}: holds a 'compact-ssl-student' model, not a "
                                                    "'compact-ssl-icbhi-classifier' one"):
        IcbhiClassifier.from_pretrained(student_folder)
    _edit_config(student_folder, format_version=2)
    with pytest.raises(PretrainedFormatError, match="format version 2 of 'compact-ssl-student' is not the supported"):
        StudentModel.from_pretrained(student_folder)
    document = json.loads((student_folder / "config.json").read_text())
    config = dict(document["config"])
    _edit_config(student_folder, format_version=1, config={**config, "bogus": 1})
    with pytest.raises(PretrainedFormatError, match=r"holds no valid student config \(unknown StudentConfig fields: "
                                                    r"\['bogus'\]\)"):
        StudentModel.from_pretrained(student_folder)
    _edit_config(student_folder, config={**config, "num_layers": 2, "reuse_pattern": [True, True]})
    with pytest.raises(PretrainedFormatError, match=r"the weights do not fit the model its config describes"
                                                    r"; missing keys: \[\]; unexpected keys: \['encoder.layers.2"):
        StudentModel.from_pretrained(student_folder)
    _edit_config(student_folder, config={**config, "ffn_dim": 96})
    with pytest.raises(PretrainedFormatError,
                       match=r"wrong shapes: \['encoder.layers.0.fc1.bias: \(128,\) in the file, \(96,\) expected', "
                             r"'encoder.layers.0.fc1.weight: \(128, 64\) in the file, \(96, 64\) expected'"):
        StudentModel.from_pretrained(student_folder)
    (student_folder / "config.json").write_text(json.dumps({"model_type": "hubert", "hidden_size": 64}))
    with pytest.raises(PretrainedFormatError, match="config.json has no 'format' tag, so this is not a compact_ssl"):
        StudentModel.from_pretrained(student_folder)


def test_a_failed_save_leaves_the_previous_folder(student_folder):
    before = {name: (student_folder / name).read_bytes() for name in FOLDER_FILES}
    with pytest.raises(TypeError, match="not JSON serializable"):
        build_student("tiny_arm").save_pretrained(student_folder, info={"when": object()})
    assert {name: (student_folder / name).read_bytes() for name in FOLDER_FILES} == before
    assert sorted(os.listdir(student_folder.parent)) == ["student"]


# ------------------------------------------------------------------------------------------------ hub
def test_repo_id_is_fetched_and_offline_gives_a_clear_error(student_folder, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []

    def offline(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        raise LocalEntryNotFoundError("Cannot find an appropriate cached snapshot folder ... outgoing traffic has been "
                                      "disabled.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(PretrainedFetchError) as caught:
        StudentModel.from_pretrained("someone/tiny-star", revision="v1")
    assert str(caught.value).startswith(
        "someone/tiny-star: no such local folder, and the hub repo 'someone/tiny-star' could not be fetched "
        "(LocalEntryNotFoundError: Cannot find an appropriate cached snapshot folder")
    assert str(caught.value).endswith("`hf download someone/tiny-star --local-dir DIR` on a machine with access) and pass "
                                      "the local folder DIR instead")
    assert calls == [("someone/tiny-star", {"revision": "v1", "cache_dir": None, "allow_patterns": list(FOLDER_FILES),
                                            "library_name": "compact-ssl", "library_version": "0.1.0"})]
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kwargs: str(student_folder))
    _same_state(StudentModel.from_pretrained("someone/tiny-star"), StudentModel.from_pretrained(student_folder))


def test_push_to_hub_creates_the_repo_and_uploads_the_folder(student_folder, monkeypatch, tmp_path):
    import huggingface_hub

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))
            return type("Commit", (), {"commit_url": "hub/someone/tiny-star/commit/abc"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = push_to_hub(student_folder, "someone/tiny-star", private=True, token="secret", commit_message="first")
    assert url == "hub/someone/tiny-star/commit/abc"
    assert calls == [
        ("init", "secret"),
        ("create_repo", "someone/tiny-star", {"private": True, "exist_ok": True, "repo_type": "model"}),
        ("upload_folder", {"repo_id": "someone/tiny-star", "folder_path": str(student_folder), "repo_type": "model",
                           "revision": None, "commit_message": "first", "create_pr": False,
                           "allow_patterns": ["model.safetensors", "config.json", "README.md"]}),
    ]
    calls.clear()
    (tmp_path / "empty").mkdir()
    with pytest.raises(PretrainedFormatError, match="empty: not a pretrained folder, missing model.safetensors, "
                                                    "config.json, README.md"):
        push_to_hub(tmp_path / "empty", "someone/x")
    assert calls == []
