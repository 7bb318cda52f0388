"""SUPERB runner: task table, configs, s3prl command lines and overrides, layouts read back by
s3prl's own dataset code, the runner's s3prl fixes, and one short run of s3prl's downstream
runner end to end (train + evaluate in one process, metrics.json)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from audio_compress.data.kaldi import write_kaldi_map
from audio_compress.superb import layouts, pipeline, runner, s3prl_patches
from audio_compress.superb.score import METRIC_KEYS
from audio_compress.superb.tasks import (
    MINI_TASKS,
    SUPERB_TASKS,
    TASKS,
    MissingRootError,
    MissingToolFileError,
    get_task,
)

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


@pytest.fixture(autouse=True, scope="module")
def _s3prl_compat():
    """s3prl's dataset modules bind torchaudio functions at import: the shims come first."""
    from audio_compress.upstream import register

    register()


# ------------------------------------------------------------------------------ task table

def test_task_table_covers_superb_with_valid_metric_keys():
    assert set(SUPERB_TASKS) == {"pr", "asr", "ks", "qbe", "sid", "asv", "sd", "ic", "sf", "er"}
    keys = [m.key for t in TASKS.values() for m in t.metrics]
    assert sorted(keys) == sorted(METRIC_KEYS)  # every metric of the 11 columns exactly once
    assert set(MINI_TASKS) == {"pr", "ks", "sid", "ic"}
    assert get_task("KS").downstream == "speech_commands"
    with pytest.raises(KeyError, match="unknown SUPERB task"):
        get_task("nope")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_full_configs_follow_the_protocol(name):
    spec = TASKS[name]
    config = yaml.safe_load(spec.config_path().read_text())
    if spec.trains:
        assert config["optimizer"]["lr"] == pytest.approx(spec.protocol_lr)
        assert config["runner"]["total_steps"] == spec.protocol_steps
        assert "scheduler" not in config  # the protocol runs without one; paper deviations add it
        assert spec.dev_split in config["runner"]["eval_dataloaders"] or spec.selection == "all-states"
    if spec.mini_config:
        mini = yaml.safe_load(spec.config_path(mini=True).read_text())
        assert mini["runner"]["total_steps"] <= 300
        assert mini["optimizer"]["name"] == config["optimizer"]["name"]
        text = spec.config_path(mini=True).read_text()
        assert "num_workers: 0" in text


def test_protocol_values_of_the_papers():
    assert TASKS["ks"].protocol_steps == 200_000 and TASKS["ks"].protocol_lr == 1e-4
    assert TASKS["pr"].protocol_steps == 100_000 and TASKS["pr"].protocol_lr == 1e-2
    assert TASKS["er"].protocol_steps == 30_000 and len(TASKS["er"].folds) == 5
    assert TASKS["sid"].paper_lr_scale == 10.0
    assert all(t.paper_lr_scale == 1.0 for n, t in TASKS.items() if n != "sid")
    sid = yaml.safe_load(TASKS["sid"].config_path().read_text())
    assert sid["runner"]["gradient_accumulate_steps"] == 4
    assert sid["downstream_expert"]["datarc"]["max_timestep"] == 128000


def test_missing_roots_and_tool_files_give_clear_errors(tmp_path):
    with pytest.raises(MissingRootError, match="SPEECH_COMMANDS"):
        TASKS["ks"].data_overrides({})
    (tmp_path / "sc").mkdir()
    with pytest.raises(MissingRootError, match="SPEECH_COMMANDS_TEST"):
        TASKS["ks"].data_overrides({"SPEECH_COMMANDS": tmp_path / "sc"})
    (tmp_path / "vox").mkdir()
    with pytest.raises(MissingToolFileError, match="s3prl clone"):
        TASKS["sid"].data_overrides({"VOXCELEB1": tmp_path / "vox"}, None)
    clone = tmp_path / "s3prl"
    with pytest.raises(MissingToolFileError, match="veri_test_class.txt"):
        TASKS["sid"].data_overrides({"VOXCELEB1": tmp_path / "vox"}, clone)
    for rel in TASKS["sid"].tool_files:
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        (clone / rel).write_text("1 id10001/a/00001.wav\n")
    ovr = TASKS["sid"].data_overrides({"VOXCELEB1": str(tmp_path / "vox")}, clone)
    assert ovr["config.downstream_expert.datarc.file_path"] == str((tmp_path / "vox").resolve())
    assert Path(ovr["config.downstream_expert.datarc.meta_data"]).is_absolute()
    assert Path(ovr["config.downstream_expert.datarc.meta_data"]).is_file()


def test_pr_needs_the_ctc_corpus_package_of_the_clone(tmp_path):
    (tmp_path / "LibriSpeech").mkdir()
    clone = tmp_path / "s3prl"
    for rel in TASKS["pr"].tool_files:
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        (clone / rel).write_text("x\n")
    with pytest.raises(MissingToolFileError, match="ctc/corpus"):
        TASKS["pr"].data_overrides({"LIBRISPEECH": tmp_path}, clone)
    (clone / "s3prl/downstream/ctc/corpus").mkdir()
    ovr = TASKS["pr"].data_overrides({"LIBRISPEECH": tmp_path}, clone)
    assert ovr["config.downstream_expert.corpus.path"] == str((tmp_path / "LibriSpeech").resolve())
    assert len(ovr["config.downstream_expert.corpus.lexicon"]) == 2


# ------------------------------------------------------------------------------ overrides

def _s3prl_override(text: str) -> tuple[argparse.Namespace, dict]:
    from s3prl.utility.helper import override

    args, config = argparse.Namespace(), {}
    override(text, args, config)
    return args, config


def test_overrides_survive_s3prls_own_parser():
    ovr = {"config.downstream_expert.datarc.file_path": "/data/a b/train",
           "config.downstream_expert.corpus.lexicon": ["/x/lex1.txt", "/x/lex2.txt"],
           "config.scheduler": {"name": "linear_schedule_with_warmup", "num_warmup_steps": 14},
           "config.optimizer.lr": 1e-3, "config.runner.eval_dataloaders": ["dev"],
           "config.downstream_expert.datarc.test_fold": "fold3", "args.expdir": "/e/x"}
    args, config = _s3prl_override(pipeline.format_overrides(ovr))
    dx = config["downstream_expert"]
    assert dx["datarc"]["file_path"] == "/data/a b/train"
    assert dx["corpus"]["lexicon"] == ["/x/lex1.txt", "/x/lex2.txt"]
    assert config["scheduler"] == {"name": "linear_schedule_with_warmup", "num_warmup_steps": 14}
    assert config["optimizer"]["lr"] == 1e-3 and config["runner"]["eval_dataloaders"] == ["dev"]
    assert dx["datarc"]["test_fold"] == "fold3" and args.expdir == "/e/x"
    with pytest.raises(ValueError, match="cannot take"):
        pipeline.format_overrides({"config.a": "x=y"})


def test_user_overrides_are_config_keys_with_yaml_values():
    got = pipeline.parse_overrides(["runner.total_steps=50", "optimizer.lr=1e-3,,args.seed=3",
                                    "runner.eval_dataloaders=[dev, test]"])
    assert got == {"config.runner.total_steps": 50, "config.optimizer.lr": 1e-3, "args.seed": 3,
                   "config.runner.eval_dataloaders": ["dev", "test"]}
    with pytest.raises(ValueError, match="key=value"):
        pipeline.parse_overrides(["runner.total_steps"])


def _layout_stub(root: Path, task: str) -> Path:
    (root / task).mkdir(parents=True, exist_ok=True)
    (root / task / "layout.json").write_text("{}")
    return root


def test_paper_deviations_and_lr_option(tmp_path):
    data_root = _layout_stub(_layout_stub(tmp_path, "sid"), "ks")
    kw = dict(mini=True, data_root=data_root, roots=None, s3prl_root=None, user={})
    _, train, info = pipeline.task_overrides(TASKS["sid"], lr=None, paper_deviations=False, **kw)
    assert train == {} and info["lr"] == pytest.approx(5e-3)
    _, train, info = pipeline.task_overrides(TASKS["sid"], lr=None, paper_deviations=True, **kw)
    assert train["config.optimizer.lr"] == pytest.approx(5e-2)  # SID x10
    sched = train["config.scheduler"]
    assert sched["name"] == "linear_schedule_with_warmup" and 1 <= sched["num_warmup_steps"] <= 10
    _, train, info = pipeline.task_overrides(TASKS["ks"], lr=3e-4, paper_deviations=True, **kw)
    assert train["config.optimizer.lr"] == pytest.approx(3e-4)  # KS: no x10, --lr wins
    assert info["scheduler"]["num_warmup_steps"] == 1
    data, train, _ = pipeline.task_overrides(
        TASKS["ks"], lr=None, paper_deviations=False, mini=True, data_root=data_root, roots=None,
        s3prl_root=None, user={"config.runner.total_steps": 7,
                               "config.downstream_expert.datarc.speech_commands_root": "/x"})
    assert train == {"config.runner.total_steps": 7}
    assert data["config.downstream_expert.datarc.speech_commands_root"] == "/x"
    with pytest.raises(FileNotFoundError, match="build the mini layouts"):
        pipeline.task_overrides(TASKS["pr"], lr=None, paper_deviations=False, **kw)


def test_full_warmup_is_the_protocol_value(tmp_path):
    (tmp_path / "sc").mkdir()
    roots = {"SPEECH_COMMANDS": tmp_path / "sc", "SPEECH_COMMANDS_TEST": tmp_path / "sc"}
    data, train, info = pipeline.task_overrides(TASKS["ks"], mini=False, data_root=tmp_path, roots=roots,
                                                s3prl_root=None, lr=None, paper_deviations=True, user={})
    assert train["config.scheduler"]["num_warmup_steps"] == 1400
    assert "config.optimizer.lr" not in train and info["lr"] == 1e-4


def test_command_lines_pass_the_device_again_for_evaluation(tmp_path):
    ckpt = tmp_path / "student.pt"
    ckpt.write_bytes(b"x")
    up = pipeline.parse_upstream(f"mine:star_local={ckpt}")
    assert (up.name, up.tag, up.label) == ("star_local", "mine", "mine")
    assert pipeline.parse_upstream("fbank") == pipeline.UpstreamSpec("fbank")
    argv = pipeline.train_argv(TASKS["ks"], up, tmp_path / "exp", Path("/c.yaml"), "cuda",
                               {"config.a": 1}, record=tmp_path / "r.json")
    assert argv[argv.index("-k") + 1] == str(ckpt.resolve())
    assert argv[argv.index("-d") + 1] == "speech_commands" and "-a" in argv
    assert argv[argv.index("--device") + 1] == "cuda"
    ev = pipeline.evaluate_argv(tmp_path / "exp" / "dev-best.ckpt", "test", "cuda", {"config.a": 1})
    assert ev[:2] == ["-m", "evaluate"] and ev[ev.index("--device") + 1] == "cuda"
    assert ev[ev.index("-t") + 1] == "test"
    named = pipeline.train_argv(TASKS["ks"], pipeline.parse_upstream("ssl_teacher_local=tiny_hubert"),
                                tmp_path, Path("/c.yaml"), "cpu", {})
    assert named[named.index("-k") + 1] == "tiny_hubert"  # a named architecture stays a name


def test_metrics_from_recorded_scalars():
    record = {"scalars": [{"tag": "speech_commands/dev-acc", "value": 0.5, "step": 100},
                          {"tag": "speech_commands/test-acc", "value": 0.875, "step": 0}]}
    assert pipeline.metrics_from_record(TASKS["ks"], record, "test") == {"KS_acc": 87.5}
    sf_record = {"scalars": [{"tag": "ctc-snips/test-slot_type_f1", "value": 0.8, "step": 0},
                             {"tag": "ctc-snips/test-slot_value_cer", "value": 0.3, "step": 0}]}
    assert pipeline.metrics_from_record(TASKS["sf"], sf_record, "test") == pytest.approx(
        {"SF_f1": 80.0, "SF_cer": 30.0})
    with pytest.raises(pipeline.TaskFailed, match="ctc-libriphone/test-per"):
        pipeline.metrics_from_record(TASKS["pr"], record, "test")
    assert pipeline.parse_mtwv("actTWV: 0.01 maxTWV: 0.0736 Threshold: 0.5") == pytest.approx(0.0736)


# ------------------------------------------------------------------------------ runner CLI

def test_runner_splits_invocations_and_local_rank_spellings():
    opts, groups = runner.split_invocations(
        ["--s3prl_root", "/s", "-m", "train", "--record", "/r1.json", "-u", "fbank", "--then",
         "-m", "evaluate", "--record=/r2.json", "--or_latest", "-e", "x.ckpt"])
    assert opts == {"s3prl_root": "/s", "probe": False}
    assert groups[0] == ({"record": "/r1.json", "or_latest": False}, ["-m", "train", "-u", "fbank"])
    assert groups[1] == ({"record": "/r2.json", "or_latest": True}, ["-m", "evaluate", "-e", "x.ckpt"])
    with pytest.raises(SystemExit):
        runner.split_invocations(["-m", "train", "--then"])
    env: dict = {}
    assert runner.normalize_local_rank(["-m", "train", "--local-rank=1"], env) == ["-m", "train", "--local_rank", "1"]
    assert runner.normalize_local_rank(["--local-rank", "2", "-m", "x"], env) == ["-m", "x", "--local_rank", "2"]
    assert runner.normalize_local_rank(["--local_rank=3"], env) == ["--local_rank", "3"]
    assert runner.normalize_local_rank(["-m", "x"], {"LOCAL_RANK": "1"}) == ["-m", "x", "--local_rank", "1"]
    assert runner.normalize_local_rank(["-m", "x"], {}) == ["-m", "x"]


def test_or_latest_falls_back_to_the_newest_states(tmp_path):
    for step in (5, 20, 100):
        (tmp_path / f"states-{step}.ckpt").write_bytes(b"")
    argv = runner.resolve_or_latest(["-m", "evaluate", "-e", str(tmp_path / "dev-best.ckpt")])
    assert argv[-1] == str(tmp_path / "states-100.ckpt")
    (tmp_path / "dev-best.ckpt").write_bytes(b"")
    assert runner.resolve_or_latest(["-e", str(tmp_path / "dev-best.ckpt")])[-1].endswith("dev-best.ckpt")
    with pytest.raises(SystemExit, match="no states"):
        runner.resolve_or_latest(["-e", str(tmp_path / "none" / "dev-best.ckpt")])


def test_catalyst_stand_in_shards_the_drawn_indices():
    import torch
    from torch.utils.data import WeightedRandomSampler

    s3prl_patches.install_catalyst_shim()
    from catalyst.data.sampler import DistributedSamplerWrapper

    torch.manual_seed(0)
    base = WeightedRandomSampler([1.0] * 10 + [5.0] * 10, 20)
    parts = []
    for rank in (0, 1):
        w = DistributedSamplerWrapper(base, num_replicas=2, rank=rank, shuffle=False)
        w.set_epoch(0)
        parts.append(list(w))
    assert len(parts[0]) == len(parts[1]) == 10
    assert all(0 <= i < 20 for p in parts for i in p)


# ------------------------------------------------------------------------------ layouts

def _mini_data_dirs(root: Path, seed: int = 0) -> dict[str, Path]:
    """train/dev/test data dirs of 3 speakers with keywords, intents and phone strings."""
    rng = np.random.default_rng(seed)
    intents = ["activate_lights_kitchen", "increase_volume_none", "bring_shoes_none"]
    dirs = {}
    for split, n in (("train", 12), ("dev", 6), ("test", 6)):
        folder = root / split
        (folder / "wav").mkdir(parents=True)
        wav, spk, kw, intent, phn, text = {}, {}, {}, {}, {}, {}
        for i in range(n):
            s = f"{100 + i % 3}"
            utt = f"{s}-{7 + ['train', 'dev', 'test'].index(split)}-{i:04d}"
            x = (0.1 * np.sin(2 * np.pi * (120 + 40 * (i % 3)) * np.arange(12000 + 800 * i) / 16000)
                 + 0.01 * rng.standard_normal(12000 + 800 * i)).astype(np.float32)
            path = folder / "wav" / f"{utt}.wav"
            sf.write(str(path), x, 16000)
            wav[utt], spk[utt] = str(path), s
            kind = i % 3
            kw[utt] = ["yes", "no", "up"][i % 3] if kind == 0 else "_none_"
            intent[utt] = intents[(i // 3) % 3] if kind == 1 else "_none_"
            phn[utt] = " ".join(["a#", "b", "@2", "t"][: 2 + i % 3])
            text[utt] = "HELLO"
        for name, m in (("wav.scp", wav), ("utt2spk", spk), ("utt2keyword", kw), ("utt2intent", intent),
                        ("phn", phn), ("text", text)):
            write_kaldi_map(folder / name, m)
        dirs[split] = folder
    # every intent in train, dev/test only use intents that train has
    return dirs


@pytest.fixture(scope="module")
def mini_layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("superb_layouts")
    dirs = _mini_data_dirs(root / "data")
    docs = layouts.build_mini_layouts(dirs, root / "superb_data")
    return root / "superb_data", docs, dirs


def test_layouts_are_reused_when_unchanged(mini_layouts):
    out, docs, dirs = mini_layouts
    marker = out / "ks" / "layout.json"
    before = marker.stat().st_mtime_ns
    again = layouts.build_mini_layouts(dirs, out, ["ks"])
    assert again["ks"]["signature"] == docs["ks"]["signature"] and marker.stat().st_mtime_ns == before


def test_speech_commands_layout_as_s3prl_splits_it(mini_layouts):
    out, docs, dirs = mini_layouts
    s3prl_patches.install_catalyst_shim()
    from s3prl.downstream.speech_commands.dataset import SpeechCommandsDataset, SpeechCommandsTestingDataset
    from s3prl.downstream.speech_commands.expert import split_dataset

    train, valid = split_dataset(out / "ks" / "train")
    assert len(train) == 4 and len(valid) == 2  # our train and dev keyword utterances, exactly
    assert {c for c, _ in train + valid} == {"yes"}
    ds = SpeechCommandsDataset(train, speech_commands_root=str(out / "ks" / "train"))
    labels = Counter(ds[i][1] for i in range(len(ds)))
    assert labels[0] == 4 and labels[11] == 3  # yes x4, _silence_ from 3 background files
    wav, label, _ = ds[len(ds) - 1]
    assert label == 11 and wav.shape == (16000,)  # silence: a 1 s crop of a longer noise file
    test = SpeechCommandsTestingDataset(speech_commands_test_root=str(out / "ks" / "test"))
    assert Counter(test[i][1] for i in range(len(test))) == {0: 2, 11: 4}
    assert docs["ks"]["test_classes"] == ["_silence_", "yes"]
    assert layouts.speech_commands_split("abc_nohash_0.wav") == layouts.speech_commands_split("abc_nohash_7.wav")


def test_fluent_commands_layout(mini_layouts):
    import pandas as pd

    out, docs, _ = mini_layouts
    train = pd.read_csv(out / "ic" / "data" / "train_data.csv")
    assert list(train.columns) == ["Unnamed: 0", "path", "speakerId", "transcription", "action",
                                   "object", "location"]
    assert set(train["action"]) <= {"activate", "increase", "bring"}
    assert all((out / "ic" / p).is_file() for p in train["path"])
    assert docs["ic"]["counts"] == {"train": 4, "dev": 2, "test": 2}


def test_fluent_commands_rejects_unseen_slot_values(tmp_path):
    utts = [layouts.Utt(f"a-1-{i}", "a", split, str(tmp_path / "x.wav"), intent=intent)
            for i, (split, intent) in enumerate([("train", "go_home_none"), ("dev", "go_home_none"),
                                                 ("test", "stop_home_none")])]
    with pytest.raises(layouts.LayoutError, match="never occurs in train"):
        layouts.build_ic_layout(utts, tmp_path / "ic")


def test_voxceleb_layout_read_by_s3prl(mini_layouts, tmp_path, monkeypatch):
    out, docs, _ = mini_layouts
    import s3prl.downstream.voxceleb1.dataset as vox

    monkeypatch.setattr(vox, "CACHE_PATH", str(tmp_path / "cache") + "/")
    meta = str(out / "sid" / "iden_split.txt")
    train = vox.SpeakerClassifiDataset("train", out / "sid", meta, 16000)
    test = vox.SpeakerClassifiDataset("test", out / "sid", meta)
    assert len(train) == 12 and len(test) == 6
    assert sorted(set(train.label)) == [0, 1, 2] and sorted(set(test.label)) == [0, 1, 2]
    wav, label, name = train[0]
    assert wav.ndim == 1 and wav.shape[0] <= 16000
    assert (out / "sid" / "speakers.tsv").read_text().startswith("id10001\t100\n")


def test_phone_layout_read_by_our_corpus_reader_and_s3prls_tokenizer(mini_layouts):
    out, docs, dirs = mini_layouts
    from s3prl.downstream.ctc.text import load_text_encoder

    from audio_compress.superb.ctc_corpus import LibriPhoneDataset

    tok = load_text_encoder("word", str(out / "pr" / "vocab.txt"))
    ds = LibriPhoneDataset(["test"], tok, 1, str(out / "pr" / "LibriSpeech"), [str(out / "pr" / "lexicon.txt")])
    assert len(ds) == 6
    from audio_compress.data.kaldi import read_kaldi_map

    phn = read_kaldi_map(dirs["test"] / "phn")
    for path, ids in (ds[i] for i in range(len(ds))):
        assert tok.decode(ids) == phn[Path(path).stem]
    lengths = [len(ds[i][1]) for i in range(len(ds))]
    assert lengths == sorted(lengths, reverse=True)
    bucketed = LibriPhoneDataset(["train"], tok, 4, str(out / "pr" / "LibriSpeech"), [str(out / "pr" / "lexicon.txt")])
    assert len(bucketed[len(bucketed) - 1]) == 4  # the last buckets are full
    assert docs["pr"]["num_phones"] == 4


def test_ctc_corpus_stand_in_is_importable_where_s3prl_expects_it():
    source = s3prl_patches.install_ctc_corpus(None)
    from s3prl.downstream.ctc.corpus.libriphone import LibriPhoneDataset

    assert source in ("s3prl", "audio_compress.superb.ctc_corpus")
    assert LibriPhoneDataset.__name__ == "LibriPhoneDataset"


def test_len_for_bucket_tables(tmp_path):
    import pandas as pd

    lib = tmp_path / "LibriSpeech"
    for n, name in ((800, "1-2-0000"), (1600, "1-2-0001")):
        (lib / "dev-clean" / "1" / "2").mkdir(parents=True, exist_ok=True)
        sf.write(str(lib / "dev-clean" / "1" / "2" / f"{name}.flac"), np.zeros(n, np.float32), 16000)
    out = layouts.write_len_for_bucket(lib, ["dev-clean"], tmp_path / "len")
    table = pd.read_csv(out / "dev-clean.csv")
    assert table["file_path"].tolist() == ["dev-clean/1/2/1-2-0001.flac", "dev-clean/1/2/1-2-0000.flac"]
    assert table["length"].tolist() == [1600, 800]


# ------------------------------------------------------------------------------ CLI + run

def test_cli_reports_missing_roots_and_checkout(tmp_path):
    proc = subprocess.run([PY, "-m", "audio_compress.bin.superb", "--upstream", "fbank", "--task", "ks", "sid",
                           "--out_root", str(tmp_path), "--s3prl_root", str(tmp_path / "none")],
                          capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1
    assert "SPEECH_COMMANDS" in proc.stderr and "VOXCELEB1" in proc.stderr
    proc = subprocess.run([PY, "-m", "audio_compress.bin.superb", "tools", "--dest", str(tmp_path / "s3prl"),
                           "--fetch", "false"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1 and "ec8064b5889f" in proc.stderr
    proc = subprocess.run([PY, "-m", "audio_compress.bin.superb", "tools", "--dest", str(tmp_path / "s3prl"),
                           "--fetch", "false", "--tasks", "ks,ic"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and "need no files" in proc.stdout


def test_short_keyword_spotting_run_through_s3prl(mini_layouts, tmp_path):
    """Train 4 steps (scheduler on), resume to 6 steps and evaluate in one process (device given
    again) -> metrics.json; a re-run is skipped."""
    out, docs, _ = mini_layouts
    lines: list[str] = []
    common = dict(mini=True, data_root=out, paper_deviations=True, log=lines.append)
    small = ["runner.eval_step=2", "runner.save_step=2", "runner.log_step=2",
             "downstream_expert.datarc.batch_size=3"]
    first = pipeline.run_task("fbank", "ks", tmp_path / "fbank" / "ks", mode="train",
                              overrides=["runner.total_steps=4", *small], **common)
    assert first["metrics"] == {} and (tmp_path / "fbank" / "ks" / "states-4.ckpt").is_file()
    assert not (tmp_path / "fbank" / "ks" / "metrics.json").exists()
    doc = pipeline.run_task("fbank", "ks", tmp_path / "fbank" / "ks",
                            overrides=["runner.total_steps=6", *small], **common)
    assert doc["upstream"] == "fbank" and doc["task"] == "ks"
    assert 0.0 <= doc["metrics"]["KS_acc"] <= 100.0
    assert doc["details"]["scheduler"]["name"] == "linear_schedule_with_warmup"
    log = "\n".join(lines)
    assert "Resume from" in log and "states-4.ckpt" in log  # the scheduler config survived resuming
    saved = json.loads((tmp_path / "fbank" / "ks" / "metrics.json").read_text())
    assert saved["metrics"] == doc["metrics"]
    train = json.loads((tmp_path / "fbank" / "ks" / "scalars-train.json").read_text())
    assert [s["step"] for s in train["scalars"] if s["tag"] == "speech_commands/dev-acc"] == [6]
    record = json.loads((tmp_path / "fbank" / "ks" / "scalars-evaluate-test.json").read_text())
    assert record["args"]["mode"] == "evaluate" and record["args"]["device"] == "cpu"
    assert record["args"]["upstream"] == "fbank"  # restored from the checkpoint
    assert any("registered s3prl upstreams" in ln for ln in lines)
    from audio_compress.superb.results import collect_metrics

    assert collect_metrics([tmp_path]) == {"fbank": doc["metrics"]}
    lines.clear()
    pipeline.run_task("fbank", "ks", tmp_path / "fbank" / "ks", mini=True, data_root=out, log=lines.append)
    assert len(lines) == 1 and "skipped" in lines[0]


def test_a_dataloader_without_batches_is_an_error_not_an_endless_loop(mini_layouts, tmp_path):
    out, _, _ = mini_layouts
    with pytest.raises(pipeline.TaskFailed, match="has no batch") as err:  # 7 items, batch 16
        pipeline.run_task("fbank", "ks", tmp_path / "ks", mini=True, data_root=out,
                          overrides=["runner.total_steps=4"], log=lambda s: None)
    assert "batch size 16" in str(err.value)


def test_full_recipe_superb_stage_names_what_is_missing(tmp_path):
    """Stage 6 of a full recipe without the datasets / the s3prl checkout stops with a message."""
    base = ["bash", str(ROOT / "egs/librispeech/star/run.sh"), "--stage", "6", "--stop_stage", "6",
            "--exp_root", str(tmp_path / "exp"), "--dumpdir", str(tmp_path / "dump"),
            "--s3prl_root", str(tmp_path / "s3prl"), "--s3prl_fetch", "false"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(base + ["--superb_tasks", "ks ic"], capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "the exported student" in proc.stderr and "rerun with --stage 5" in proc.stderr
    (tmp_path / "exp/star_starhubert").mkdir(parents=True, exist_ok=True)
    (tmp_path / "exp/star_starhubert/student.pt").touch()  # the SUPERB stage's own checks come next
    proc = subprocess.run(base + ["--superb_tasks", "ks ic"], capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "SPEECH_COMMANDS" in out and "FLUENT_COMMANDS" in out and "--superb_tasks" in out
    proc = subprocess.run(base + ["--superb_tasks", "pr"], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "ec8064b5889f" in proc.stdout + proc.stderr
    helptext = subprocess.run(["bash", str(ROOT / "egs/mini_speech/star/run.sh"), "--help"],
                              capture_output=True, text=True).stdout
    assert "--superb_paper_deviations" in helptext and '"pr ks sid ic"' in helptext


def test_runner_fixes_for_scheduler_ctc_loaders_and_voxceleb_cache(tmp_path, monkeypatch):
    import torch

    s3prl_patches.install_fixes(None)
    import s3prl.downstream.ctc.data as ctc_data
    import s3prl.downstream.runner as runner_mod
    import s3prl.downstream.voxceleb1.dataset as vox

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    cfg = {"name": "linear_schedule_with_warmup", "num_warmup_steps": 2}
    runner_mod.get_scheduler(opt, 10, cfg)
    assert cfg == {"name": "linear_schedule_with_warmup", "num_warmup_steps": 2}  # not consumed

    args = argparse.Namespace(downstream="ctc", expdir=str(tmp_path), local_rank=None, device="cpu")
    s3prl_patches.per_invocation_fixes(args, {}, runner_mod)
    seen = []
    # s3prl's load_dataset pops num_workers out of the dict it gets
    monkeypatch.setattr(ctc_data.load_dataset, "original",
                        lambda split, tok, corpus: seen.append(corpus.pop("num_workers", 12)))
    corpus = {"num_workers": 0}
    ctc_data.load_dataset("train", None, corpus)
    ctc_data.load_dataset("dev", None, corpus)
    assert seen == [0, 0] and corpus == {"num_workers": 0}

    args = argparse.Namespace(downstream="voxceleb1", expdir=str(tmp_path), local_rank=None, device="cpu")
    cfg_a = {"downstream_expert": {"datarc": {"file_path": "/a", "meta_data": "/a/m.txt"}}}
    cfg_b = {"downstream_expert": {"datarc": {"file_path": "/b", "meta_data": "/b/m.txt"}}}
    s3prl_patches.per_invocation_fixes(args, cfg_a, runner_mod)
    path_a = vox.CACHE_PATH
    s3prl_patches.per_invocation_fixes(args, cfg_b, runner_mod)
    assert path_a.startswith(str(tmp_path / ".voxceleb1_cache")) and vox.CACHE_PATH != path_a


def test_probe_counts_the_layers_qbe_scores():
    up = pipeline.parse_upstream("ssl_teacher_local=tiny_hubert")
    assert pipeline.probe_layers(up, "cpu") == 5  # CNN projection + 4 layers
