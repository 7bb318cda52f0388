"""SUPERB of released checkpoints (files published by others): ``--released`` specs with their model
config, the preflight that loads each once before any task, the mini KS task on a released-layout
Lightning checkpoint, and results tables that keep our students, released checkpoints and published
rows apart. The recipe options ``--upstream_ckpt`` / ``--upstream_config`` of stage 6 (slow: the
mini recipe's stages 6-7)."""

from __future__ import annotations

import fractions
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_wave_data_dir
from pickle_payloads import write_payload_checkpoint
from released_layouts import write_lightning_release

from audio_compress.bin import superb as cli
from audio_compress.data.kaldi import read_kaldi_map, write_kaldi_map
from audio_compress.superb import runner
from audio_compress.superb.commands import UpstreamSpec, parse_upstream, upstream_argv
from audio_compress.superb.layouts import build_mini_layouts
from audio_compress.superb.results import MetricsFileError, collect_released, write_results
from audio_compress.upstream import register
from compact_ssl.unpickle import UnsafePickleError

ROOT = Path(__file__).resolve().parents[1]
#: tiny s3prl runs: 4 updates of 3 clips, one dev evaluation at step 2 and 4
SHORT = ["runner.total_steps=4", "runner.eval_step=2", "runner.save_step=2", "runner.log_step=2",
         "downstream_expert.datarc.batch_size=3"]


def _keyword_dirs(root: Path, names: tuple[str, str, str] = ("train", "dev", "test")) -> dict[str, Path]:
    """train / dev / test data dirs of 9 / 6 / 6 synthetic clips labelled yes, no, up in turn."""
    dirs = {}
    for seed, (split, name, n) in enumerate(zip(("train", "dev", "test"), names, (9, 6, 6))):
        folder = make_wave_data_dir(root / name, n, seed=seed)
        utts = sorted(read_kaldi_map(folder / "wav.scp"))
        write_kaldi_map(folder / "utt2keyword", {u: ("yes", "no", "up")[i % 3] for i, u in enumerate(utts)})
        dirs[split] = folder
    return dirs


@pytest.fixture(scope="module")
def ks_layout(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ks")
    build_mini_layouts(_keyword_dirs(root / "data"), root / "superb", ["ks"])
    return root / "superb"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny ARMHuBERT-family Lightning release, its YAML kept in another folder (so that it must be
    given: nothing is found beside the checkpoint)."""
    root = tmp_path_factory.mktemp("release")
    ckpt, yaml_path = write_lightning_release("tiny_arm", root / "downloads", stem="ARMwavLM-S-tiny")
    (root / "configs").mkdir()
    return ckpt, yaml_path.rename(root / "configs" / yaml_path.name)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _superb(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audio_compress.bin.superb", *args], capture_output=True, text=True,
                          timeout=600)


def test_specs_carry_the_model_config_after_the_last_at(tmp_path):
    spec = parse_upstream("armhubert_local=dl/ARMwavLM-S.ckpt@dl/ARMwavLM-S.yaml", released=True)
    assert spec == UpstreamSpec("armhubert_local", "dl/ARMwavLM-S.ckpt", None, "dl/ARMwavLM-S.yaml", True)
    assert spec.label == "ARMwavLM-S" and spec.as_spec() == "armhubert_local=dl/ARMwavLM-S.ckpt@dl/ARMwavLM-S.yaml"
    # an '@' not followed by a YAML file stays in the checkpoint path; Lightning names keep their '='
    assert parse_upstream("mine:star_local=exp/lr@1e-3/student.pt") == UpstreamSpec(
        "star_local", "exp/lr@1e-3/student.pt", "mine")
    assert parse_upstream("x:star_local=exp/best-step=100.ckpt@c.yml", released=True) == UpstreamSpec(
        "star_local", "exp/best-step=100.ckpt", "x", "c.yml", True)
    assert parse_upstream("star_local=exp/x/student.pt").label == "star_local"  # ours: the entry names the row
    with pytest.raises(ValueError, match="released upstream 'star_local' needs its checkpoint: name=PATH"):
        parse_upstream("star_local", released=True)
    ckpt, config = tmp_path / "a.ckpt", tmp_path / "a.yaml"
    ckpt.touch()
    config.touch()
    assert upstream_argv(UpstreamSpec("star_local", str(ckpt), model_config=str(config))) == [
        "-u", "star_local", "-k", str(ckpt.resolve()), "-g", str(config.resolve())]


def test_a_released_checkpoint_runs_the_mini_ks_task_and_is_marked_in_the_table(ks_layout, release, tmp_path, capsys):
    ckpt, config = release
    out = tmp_path / "superb"
    proc = _superb("--released", f"armhubert_local={ckpt}@{config}", "--task", "ks", "--mini", "true",
                   "--data_root", str(ks_layout), "--out_root", str(out), "--device", "cpu", "--override", *SHORT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"armhubert_local={ckpt}@{config}: loads through armhubert_local: 4 hidden states of dims [64]" in proc.stdout
    doc = json.loads((out / "ARMwavLM-S-tiny" / "ks" / "metrics.json").read_text())
    details = doc["details"]
    assert doc["upstream"] == "ARMwavLM-S-tiny" and details["released"] is True
    assert (details["upstream_ckpt"], details["upstream_model_config"]) == (str(ckpt.resolve()), str(config.resolve()))
    assert (details["upstream_sha256"], details["upstream_model_config_sha256"]) == (_sha256(ckpt), _sha256(config))
    record = json.loads((out / "ARMwavLM-S-tiny" / "ks" / "scalars-evaluate-test.json").read_text())
    assert record["args"]["upstream_model_config"] == str(config.resolve())  # -g reached s3prl, restored at evaluation

    ours = tmp_path / "ours" / "metrics.json"
    ours.parent.mkdir()
    ours.write_text(json.dumps({"upstream": "star_local", "task": "ks", "metrics": {"KS_acc": 50.0},
                                "details": {"released": False, "upstream_ckpt": "/exp/student.pt"}}))
    assert cli.main(["results", "--metrics", str(out), str(ours), "--out", str(tmp_path / "table"), "--mini",
                     "--published_for", "wavlm"]) == 0
    md = capsys.readouterr().out
    ks = doc["metrics"]["KS_acc"]
    assert f"| **ARMwavLM-S-tiny** (released) | – | – | – | {ks:.2f} |" in md
    assert "| **star_local** (ours) | – | – | – | 50.00 |" in md and "| ARMwavLM-S | 22.39 |" in md
    assert (f"- ARMwavLM-S-tiny (released): a released checkpoint (not one of our students, not a published row) "
            f"evaluated here through armhubert_local: {ckpt} (SHA-256 {_sha256(ckpt)[:16]}…), model config {config}; "
            "full hashes in results.json.") in md.splitlines()
    assert "- STaRWavLM: no published SUPERB row; released by the STaR authors" in md
    table = json.loads((tmp_path / "table" / "results.json").read_text())
    assert list(table["ours"]) == ["star_local"] and list(table["released"]) == ["ARMwavLM-S-tiny"]
    assert table["released"]["ARMwavLM-S-tiny"]["source"] == {
        "entry": "armhubert_local", "ckpt": str(ckpt.resolve()), "sha256": _sha256(ckpt),
        "model_config": str(config.resolve()), "model_config_sha256": _sha256(config)}
    assert table["caption"].startswith("Our rows and the released checkpoints' rows come from the mini SUPERB")


def test_preflight_refuses_bad_released_files_before_any_task(ks_layout, release, tmp_path):
    ckpt, config = release
    alone = tmp_path / "alone" / "ARMwavLM-S-tiny.ckpt"  # its YAML neither given nor beside it
    alone.parent.mkdir()
    shutil.copy(ckpt, alone)
    marker = tmp_path / "pwned"
    payload = write_payload_checkpoint(tmp_path / "evil.ckpt", marker, extra={
        "epoch": 1, "global_step": 10, "pytorch-lightning_version": "1.7.7",
        "state_dict": {"student_model.mask_emb": torch.zeros(64)}})
    specs = [f"armhubert_local={tmp_path / 'missing.ckpt'}", f"no_yaml:armhubert_local={ckpt}@{tmp_path / 'missing.yaml'}",
             f"armhubert_local={alone}", f"armhubert_local={payload}@{config}"]
    proc = _superb("--released", *specs, "--task", "ks", "--mini", "true", "--data_root", str(ks_layout),
                   "--out_root", str(tmp_path / "out"), "--device", "cpu")
    assert proc.returncode == 1
    err = proc.stderr.splitlines()
    assert err[0] == "ERROR: released checkpoint(s) that do not load (no task was run):"
    assert err[1] == f"  --released {specs[0]}: checkpoint {tmp_path / 'missing.ckpt'} does not exist"
    assert err[2] == f"  --released {specs[1]}: model config {tmp_path / 'missing.yaml'} does not exist"
    assert err[3].startswith(f"  --released {specs[2]}: FileNotFoundError: {alone}: a released Lightning "
                             "checkpoint needs the YAML it was trained with")
    assert err[4].startswith(f"  --released {specs[3]}: compact_ssl.unpickle.UnsafePickleError: {payload}: "
                             "refuses to unpickle os.makedirs")
    assert err[4].endswith("(command line: --trust true) only if the file comes from a source you trust")
    assert len(err) == 5
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_trust_reaches_our_entries_through_the_runner(release, tmp_path):
    """s3prl calls an upstream with ckpt, model_config and refresh only: the runner's --trust is bound
    into our factories. A harmless object the safe reader does not admit tells the two modes apart."""
    ckpt, config = release
    doc = torch.load(ckpt, weights_only=False)  # our own fixture
    doc["hyper_parameters"]["lr_fraction"] = fractions.Fraction(1, 3)
    odd = tmp_path / "odd.ckpt"
    torch.save(doc, odd)
    assert runner.pop_trust(["-m", "train", "--trust", "-u", "x"]) == (True, ["-m", "train", "-u", "x"])
    names = register()
    import s3prl.hub as hub

    with pytest.raises(UnsafePickleError, match="refuses to unpickle fractions.Fraction"):
        hub.armhubert_local(ckpt=str(odd), model_config=str(config), refresh=False)
    runner.trust_registered_upstreams(names)
    try:
        upstream = hub.armhubert_local(ckpt=str(odd), model_config=str(config), refresh=False)
        assert len(upstream([torch.zeros(16000)])["hidden_states"]) == 4
    finally:
        register()  # the plain factories again


def _mini_recipe(work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = ["bash", str(ROOT / "egs/mini_speech/armhubert/run.sh"), "--datadir", str(work / "data"),
           "--exp_root", str(work / "exp"), "--dumpdir", str(work / "dump"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def test_recipe_preflight_names_the_option_and_the_path(release, tmp_path):
    ckpt, _ = release
    stage6 = ["--stage", "6", "--superb_student", "false"]
    cases = [
        (["--upstream_ckpt", str(tmp_path / "nope.ckpt")],
         f"ERROR: --upstream_ckpt {tmp_path / 'nope.ckpt'}: no such file {tmp_path / 'nope.ckpt'}"),
        (["--upstream_ckpt", f"armhubert_local={ckpt}", "--upstream_config", str(tmp_path / "nope.yaml")],
         f"ERROR: --upstream_config {tmp_path / 'nope.yaml'}: no such file (the model-config YAML of "
         f"--upstream_ckpt armhubert_local={ckpt})"),
        (["--upstream_ckpt", str(ckpt), "--upstream_config", str(tmp_path / "model.cfg")],
         f"ERROR: --upstream_config {tmp_path / 'model.cfg'}: expected the model-config YAML (*.yaml or *.yml)"),
        (["--superb_mini", "false"],  # (mini SUPERB adds the teacher and fbank)
         "ERROR: stage 6 has no upstream to evaluate (--superb_student false, no --upstream_ckpt or "
         "--superb_upstreams)"),
    ]
    for args, message in cases:
        proc = _mini_recipe(tmp_path, *stage6, *args)
        assert proc.returncode == 1, args
        assert message in proc.stderr.splitlines(), (args, proc.stderr)
        assert "Preflight check FAILED: no stage was run" in proc.stderr
    assert not (tmp_path / "exp" / "armhubert_tiny_arm" / "logs" / "stage6.log").exists()


def test_released_sources_must_agree_across_tasks(tmp_path):
    def metrics(folder: str, task: str, sha: str) -> None:
        path = tmp_path / folder / "metrics.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"upstream": "rel", "task": task, "metrics": {"KS_acc": 1.0} if task == "ks"
                                    else {"IC_acc": 2.0}, "details": {"released": True, "upstream_name": "star_local",
                                                                      "upstream_ckpt": "/d/x.ckpt", "upstream_sha256": sha}}))

    metrics("ks", "ks", "aa")
    metrics("ic", "ic", "aa")
    assert collect_released([tmp_path]) == {"rel": {"entry": "star_local", "ckpt": "/d/x.ckpt", "sha256": "aa",
                                                    "model_config": None, "model_config_sha256": None}}
    metrics("ic2", "ic", "bb")
    with pytest.raises(MetricsFileError, match="upstream 'rel': .*ic2/metrics.json and .*describe different checkpoints"):
        collect_released([tmp_path])
    with pytest.raises(ValueError, match=r"released upstream\(s\) \['gone'\] have no metrics"):
        write_results({"rel": {"KS_acc": 1.0}}, tmp_path / "t", released={"gone": {}})


@pytest.mark.slow
def test_mini_recipe_stages_6_7_evaluate_a_released_checkpoint(tmp_path):
    """The mini ARMHuBERT recipe, stages 6-7 only: fbank and a released STaR Lightning file (its YAML
    beside it, found without --upstream_config), the mini KS task, the table marks the release."""
    _keyword_dirs(tmp_path / "data", ("train", "dev_mini", "test_mini"))
    ckpt, _ = write_lightning_release("tiny_star", tmp_path / "downloads", stem="STaRWavLM-tiny")
    superb_args = "--override " + " ".join(SHORT)
    proc = _mini_recipe(tmp_path, "--stage", "6", "--superb_tasks", "ks", "--superb_upstreams", "fbank",
                        "--upstream_ckpt", f"star_local={ckpt}", "--superb_args", superb_args)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    tail = proc.stdout[proc.stdout.index("==== Stage 7"):]
    assert "| **fbank** (ours) |" in tail and "| **STaRWavLM-tiny** (released) |" in tail
    assert "| STaRHuBERT | 22.31 |" in tail  # published rows of the conf's HuBERT teacher
    doc = json.loads((tmp_path / "exp" / "armhubert_tiny_arm" / "superb" / "results.json").read_text())
    assert list(doc["released"]) == ["STaRWavLM-tiny"] and list(doc["ours"]) == ["fbank"]
    assert doc["released"]["STaRWavLM-tiny"]["source"]["sha256"] == _sha256(ckpt)
