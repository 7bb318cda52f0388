"""The mini speech benchmark: probe-mode mini SUPERB (features, probes, chance) and the results contract
(rows, seeds, retention, checks)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audio_compress.bin import mini_benchmark
from audio_compress.superb import benchmark as benchmark_module
from audio_compress.superb.benchmark import TASKS, beats, render_markdown, retention, run_probes, summarise
from audio_compress.superb.commands import parse_upstream
from audio_compress.superb.probe import (
    Features,
    ProbeConfig,
    UtteranceProbe,
    chance_levels,
    error_rate,
    extract_features,
    greedy_ctc,
    layer_stats,
)
from audio_compress.teachers import load_teacher
from audio_compress.teachers.filterbank import FILTERBANK_LAYOUT

ROWS = ("fbank", "teacher_random", "teacher", "star", "armhubert", "distilhubert")
STUDENTS = ("star", "armhubert", "distilhubert")
# per row: KS acc, SID acc, IC acc, PR PER of seed 1; seed 2 adds 2 to every value
SEED1 = {"fbank": (40, 30, 20, 80), "teacher_random": (35, 25, 15, 90), "teacher": (80, 70, 60, 40),
         "star": (70, 50, 40, 50), "armhubert": (60, 50, 30, 60), "distilhubert": (40, 30, 20, 80)}
CHANCE = {"ks": 10.0, "sid": 6.25, "ic": 12.5, "pr": 100.0}


def _values(offsets=(0, 2)) -> dict:
    return {row: {task: [v + o for o in offsets] for task, v in zip(TASKS, vals)} for row, vals in SEED1.items()}


def test_contract_means_stds_retention_and_checks():
    result = summarise(_values(), STUDENTS, CHANCE)
    assert result["tasks"] == {"ks": {"metric": "acc", "higher_is_better": True, "chance": 10.0},
                               "sid": {"metric": "acc", "higher_is_better": True, "chance": 6.25},
                               "ic": {"metric": "acc", "higher_is_better": True, "chance": 12.5},
                               "pr": {"metric": "per", "higher_is_better": False, "chance": 100.0}}
    assert list(result["rows"]) == list(ROWS) and result["seeds"] == 2
    star_ks = result["rows"]["star"]["ks"]
    assert star_ks["values"] == [70.0, 72.0] and star_ks["mean"] == 71.0
    assert star_ks["std"] == pytest.approx(statistics.stdev([70, 72]))  # sqrt(2)
    # star: KS (71-41)/(81-41) = 0.75, SID 20/40 = 0.5, IC 20/40 = 0.5, PR (82-52)/(82-42) = 0.75
    assert result["retention"]["star"] == pytest.approx((0.75 + 0.5 + 0.5 + 0.75) / 4)
    # armhubert: 0.5, 0.5, 0.25, 0.5; distilhubert equals fbank: 0
    assert result["retention"]["armhubert"] == pytest.approx(0.4375)
    assert result["retention"]["distilhubert"] == 0.0
    # an error rate's sign cancels in the ratio: recomputing on negated PER gives the same
    assert retention(result["rows"], "star") == result["retention"]["star"]
    # transfer: the random teacher as the baseline. star: KS (71-36)/(81-36) = 7/9, SID 25/45, IC 25/45,
    # PR (91-51)/(91-41) = 0.8; distilhubert sits 5 points above the random teacher everywhere
    assert result["transfer"]["star"] == pytest.approx((7 / 9 + 5 / 9 + 5 / 9 + 0.8) / 4)
    assert result["transfer"]["distilhubert"] == pytest.approx((5 / 45 + 5 / 45 + 5 / 45 + 10 / 50) / 4)
    assert retention(result["rows"], "star", "teacher_random") == result["transfer"]["star"]
    assert "| star | 71.0 ± 1.4 | 51.0 ± 1.4 | 41.0 ± 1.4 | 51.0 ± 1.4 | 0.62 | 0.67 |" in render_markdown(result)
    found = result["checks"]
    # the teacher is 40 points above fbank with stds of 1.41: far beyond 2 std; 45+ above the random teacher
    assert found["teacher_beats_fbank_2std"] == {t: True for t in TASKS}
    assert found["teacher_beats_random_2std"] == {t: True for t in TASKS}
    assert found["student_beats_fbank"]["star"] == {t: True for t in TASKS}
    assert found["student_beats_fbank"]["distilhubert"] == {t: False for t in TASKS}  # a tie is no win
    assert found["retention_reached"] == {"star": False, "armhubert": False, "distilhubert": False}
    assert result["notes"] == []
    # a student that keeps 0.9 of the gain reaches the goal, but not once the teacher falls below fbank on a task
    values = _values()
    values["star"] = {t: [f + 0.9 * (te - f) for f, te in zip(values["fbank"][t], values["teacher"][t])] for t in TASKS}
    assert summarise(values, STUDENTS, CHANCE)["checks"]["retention_reached"]["star"] is True
    values["teacher"]["ks"], values["star"]["ks"] = [30.0, 32.0], [35.0, 37.0]
    worse = summarise(values, STUDENTS, CHANCE)
    assert worse["checks"]["retention_reached"]["star"] is False and "not above fbank on KS" in worse["notes"][0]


def test_beats_uses_the_larger_std_and_the_metric_direction():
    a, b = {"mean": 50.0, "std": 1.0}, {"mean": 46.0, "std": 2.5}
    assert beats(a, b, True) and not beats(a, b, True, sigmas=2.0)  # 4 < 2 x 2.5
    assert beats(a, b, True, sigmas=1.5)
    assert beats(b, a, False, sigmas=1.5) and not beats(a, b, False)  # error rates: lower wins


def test_flat_teacher_gives_null_retention_with_a_note_and_uneven_seeds_are_refused():
    values = _values()
    values["teacher"]["sid"] = list(values["fbank"]["sid"])
    result = summarise(values, STUDENTS, CHANCE)
    assert result["retention"] == {"star": None, "armhubert": None, "distilhubert": None}
    assert all(r is not None for r in result["transfer"].values())  # the random teacher is still below
    assert len(result["notes"]) == 4 and "teacher equals fbank on sid" in result["notes"][0]
    assert result["notes"][3].startswith("the teacher is not above fbank on SID")
    md = render_markdown(result)
    assert "Students by retention: undefined" in md and "| star | 71.0 ± 1.4 |" in md and "| undefined |" in md
    assert "- teacher above fbank: no on SID" in md
    values["star"]["pr"] = [50.0]
    with pytest.raises(ValueError, match="same number of seeds"):
        summarise(values, STUDENTS, CHANCE)


def test_greedy_ctc_and_error_rate_by_hand():
    # frames: blank a a blank b b a (ids 0 1 1 0 2 2 1); the last two frames are padding
    logits = torch.nn.functional.one_hot(torch.tensor([[0, 1, 1, 0, 2, 2, 1, 2, 2]]), 3).float()
    assert greedy_ctc(logits, torch.tensor([7])) == [[1, 2, 1]]
    # one substitution + one deletion over 4 + 1 insertion over 2 -> 3 / 6
    assert error_rate([[1, 9, 3], [5, 6, 7]], [[1, 2, 3, 4], [5, 6]]) == pytest.approx(50.0)


def test_layer_stats_and_cmvn_features_still_separate_through_the_relu():
    feats = Features(["a", "b"], [torch.tensor([[[1.0, 2.0], [3.0, 2.0]]]), torch.tensor([[[5.0, 2.0]]])])
    mean, std = layer_stats(feats.states)
    assert mean.tolist() == [[3.0, 2.0]]
    assert std[0, 0].item() == pytest.approx((8 / 3) ** 0.5, rel=1e-5) and std[0, 1].item() == pytest.approx(1e-5)
    # two utterances with zero mean per dimension (per-utterance CMVN) but different shapes: a linear map
    # then mean pooling gives both the same output (its bias); with the ReLU in between they differ
    x = torch.tensor([[[[1.0], [-1.0], [1.0], [-1.0]]], [[[3.0], [-1.0], [-1.0], [-1.0]]]])
    probe = UtteranceProbe(1, 1, 1, 2)
    with torch.no_grad():
        probe.proj.weight.fill_(1.0)
        probe.proj.bias.zero_()
        probe.out.weight.fill_(1.0)
        probe.out.bias.zero_()
        out = probe(x, torch.tensor([4, 4]))
    assert out[:, 0].tolist() == pytest.approx([0.5, 0.75])  # mean of relu: 2/4 and 3/4


def _tone_corpus(root: Path) -> Path:
    """Kaldi dirs of 0.4 s clips of two tone bursts between silences (per-utterance CMVN would erase a steady
    tone): keyword = the first burst's frequency, speaker = the second's, intent = the keyword, phones = the
    keyword then the speaker. Separable from fbank, so a working probe reaches 100 %."""
    rng = np.random.default_rng(0)
    freqs = {"yes": 500.0, "no": 2000.0}
    speakers = {"s1": 3000.0, "s2": 5000.0}
    t = np.arange(6400) / 16000
    for split, n in (("train", 6), ("dev_mini", 2), ("test_mini", 2)):
        d = root / split
        d.mkdir(parents=True)
        files = {name: [] for name in ("wav.scp", "utt2spk", "utt2keyword", "utt2intent", "phn")}
        for spk, sf_hz in speakers.items():
            for word, hz in freqs.items():
                for i in range(n):
                    utt = f"{spk}-{word}-{split}-{i}"
                    first, second = (t > 0.05) & (t < 0.15), (t > 0.25) & (t < 0.35)
                    wav = 0.3 * (first * np.sin(2 * np.pi * hz * t) + second * np.sin(2 * np.pi * sf_hz * t))
                    path = root / "wav" / f"{utt}.wav"
                    path.parent.mkdir(exist_ok=True)
                    sf.write(path, (wav + 0.01 * rng.standard_normal(t.size)).astype(np.float32), 16000)
                    files["wav.scp"].append(f"{utt} {path}")
                    files["utt2spk"].append(f"{utt} {spk}")
                    files["utt2keyword"].append(f"{utt} {word}")
                    files["utt2intent"].append(f"{utt} {'_none_' if i == 0 else 'ask_' + word}")
                    files["phn"].append(f"{utt} {word} {spk}")
        for name, lines in files.items():
            (d / name).write_text("".join(f"{line}\n" for line in sorted(lines)))
    return root


@pytest.fixture(scope="module")
def tone_corpus(tmp_path_factory):
    return _tone_corpus(tmp_path_factory.mktemp("tones"))


def test_fbank_probes_learn_the_tone_corpus_and_results_are_reused(tone_corpus, tmp_path):
    dirs = {"train": tone_corpus / "train", "dev": tone_corpus / "dev_mini", "test": tone_corpus / "test_mini"}
    assert chance_levels(dirs) == {"ks": 50.0, "sid": 50.0, "ic": 50.0, "pr": 100.0}
    fbank = parse_upstream("fbank")
    feats = extract_features(fbank, dirs["train"], tmp_path / "features")
    assert len(feats.utt_ids) == 24 and feats.num_layers == 1 and feats.dim == 240
    assert feats.states[0].shape == (1, 40, 240)  # 0.4 s at 100 frames per second
    config = ProbeConfig(epochs=20, pr_epochs=40, batch_size=8, hidden_dim=32, lr=1e-2)
    values = run_probes({"fbank": fbank}, dirs, [1], tmp_path, config)
    assert values["fbank"]["ks"] == [100.0] and values["fbank"]["sid"] == [100.0] and values["fbank"]["ic"] == [100.0]
    assert values["fbank"]["pr"][0] < 60.0  # 16 phones: at least 7 right
    record = json.loads((tmp_path / "probes" / "fbank" / "ks" / "seed1.json").read_text())
    assert record["test"] == 100.0 and record["layer_weights"] == [1.0] and record["metric"] == "acc"
    # a rerun finds every result (a changed file would be recomputed: its key differs)
    sid_file = tmp_path / "probes" / "fbank" / "sid" / "seed1.json"
    sid_file.write_text(json.dumps(json.loads(sid_file.read_text()) | {"test": 12.0}))
    assert run_probes({"fbank": fbank}, dirs, [1], tmp_path, config)["fbank"]["sid"] == [12.0]
    assert run_probes({"fbank": fbank}, dirs, [1], tmp_path, ProbeConfig(epochs=1, pr_epochs=1))["fbank"]["sid"] != [12.0]


def test_cli_checks_its_inputs(tone_corpus, tmp_path, capsys):
    base = ["--data", str(tone_corpus), "--out", str(tmp_path)]
    assert mini_benchmark.main([*base, "--upstream", "fbank", "--students", "star"]) == 1
    assert "rows ['teacher_random', 'teacher', 'star'] are needed" in capsys.readouterr().err
    assert mini_benchmark.main([*base, "--upstream", "fbank", "fbank", "--set", "epochs=1"]) == 1
    assert "row fbank is given twice" in capsys.readouterr().err
    assert mini_benchmark.main([*base, "--upstream", "fbank", "--set", "epoch=1"]) == 1
    assert "unknown keys ['epoch']" in capsys.readouterr().err
    refs = ["fbank", "teacher_random:ssl_teacher_local=tiny_hubert", "teacher:ssl_teacher_local=tiny_hubert"]
    assert mini_benchmark.main(["--data", str(tmp_path), "--out", str(tmp_path), "--upstream", *refs]) == 1
    assert "no wav.scp, utt2keyword, utt2spk, utt2intent, phn; the train split" in capsys.readouterr().err
    # a missing label file is refused before any upstream runs (nothing cached)
    broken = tmp_path / "broken"
    for split in ("train", "dev_mini", "test_mini"):
        (broken / split).mkdir(parents=True)
        for f in (tone_corpus / split).iterdir():
            (broken / split / f.name).write_text(f.read_text())
    (broken / "test_mini" / "utt2intent").unlink()
    assert mini_benchmark.main(["--data", str(broken), "--out", str(tmp_path / "o"), "--upstream", *refs]) == 1
    assert "test_mini: no utt2intent; the test split" in capsys.readouterr().err
    assert not (tmp_path / "o" / "features").exists()


def test_probes_only_keeps_the_rows_probes_for_the_full_call(tone_corpus, tmp_path, capsys, monkeypatch):
    """A recipe trains the reference rows' probes early (--probes_only: no table, no other rows needed); the full
    call then finds them and trains only the others."""
    base = ["--data", str(tone_corpus), "--out", str(tmp_path), "--seeds", "1", "--set", "epochs=2", "--set", "pr_epochs=2"]
    assert mini_benchmark.main([*base, "--upstream", "fbank", "--probes_only"]) == 0
    assert f"Probes of fbank (1 seeds) in {tmp_path / 'probes'}" in capsys.readouterr().out
    assert sorted(p.parent.name for p in (tmp_path / "probes" / "fbank").rglob("seed1.json")) == sorted(TASKS)
    assert not (tmp_path / "results.json").exists()
    fitted = []
    real_fit = benchmark_module.fit_probe
    monkeypatch.setattr(benchmark_module, "fit_probe", lambda task, *a, **k: fitted.append(task) or real_fit(task, *a, **k))
    refs = ["fbank", "teacher_random:ssl_teacher_local=tiny_hubert", "teacher:ssl_teacher_local=tiny_wavlm"]
    assert mini_benchmark.main([*base, "--upstream", *refs]) == 0
    assert len(fitted) == 2 * len(TASKS)  # the two teacher rows only
    assert json.loads((tmp_path / "results.json").read_text())["rows"]["fbank"]["ks"]["values"] == [
        json.loads((tmp_path / "probes" / "fbank" / "ks" / "seed1.json").read_text())["test"]]


def test_cli_writes_json_md_png(tone_corpus, tmp_path):
    ups = ["fbank", "teacher_random:ssl_teacher_local=tiny_hubert", "teacher:ssl_teacher_local=tiny_wavlm"]
    rc = mini_benchmark.main(["--data", str(tone_corpus), "--out", str(tmp_path), "--upstream", *ups, "--seeds", "1", "2",
                              "--set", "epochs=2", "--set", "pr_epochs=2", "--nj", "2"])
    assert rc == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert list(doc["rows"]) == ["fbank", "teacher_random", "teacher"] and doc["seeds"] == 2
    for cells in doc["rows"].values():
        for cell in cells.values():
            assert len(cell["values"]) == 2 and cell["mean"] == pytest.approx(statistics.fmean(cell["values"]))
    assert doc["tasks"]["pr"] == {"metric": "per", "higher_is_better": False, "chance": 100.0}
    assert "| chance | 50.0 | 50.0 | 50.0 | 100.0 | |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_benchmark_recipe_end_to_end_writes_the_contract(tmp_path):
    """The whole recipe, shortened (a small corpus, a few steps of every training, two probe epochs, two seeds):
    corpus -> pretrained teacher -> three students -> random teacher -> probes -> results.{json,md,png}."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    cmd = ["bash", str(root / "egs/mini_speech/benchmark/run.sh"), "--workdir", str(tmp_path),
           "--corpus_args", "--preset rich --num_speakers 4 --utts_per_speaker 30,10,10",
           "--teacher_args", "trainer.max_steps=12 trainer.val_every_n_steps=6 trainer.ckpt_every_n_steps=6",
           "--train_args", "trainer.max_steps=6 trainer.val_every_n_steps=3 trainer.ckpt_every_n_steps=3",
           "--probe_args", "--set epochs=2 --set pr_epochs=2", "--seeds", "1 2", "--probe_nj", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert {t: (v["metric"], v["higher_is_better"]) for t, v in doc["tasks"].items()} == {
        "ks": ("acc", True), "sid": ("acc", True), "ic": ("acc", True), "pr": ("per", False)}
    assert list(doc["rows"]) == list(ROWS)
    for cells in doc["rows"].values():
        assert set(cells) == set(TASKS)
        for cell in cells.values():
            assert len(cell["values"]) == 2 and cell["mean"] == pytest.approx(statistics.fmean(cell["values"]))
            assert cell["std"] == pytest.approx(statistics.stdev(cell["values"]))
    assert set(doc["retention"]) == set(STUDENTS) == set(doc["transfer"])
    # every student distilled from the pretrained teacher, which starts from the filterbank front end
    for method, student in (("star", "tiny_star"), ("armhubert", "tiny_arm"), ("distilhubert", "tiny_distil")):
        assert (tmp_path / "exp" / f"{method}_{student}" / "student.pt").is_file()
    teacher_conf = json.loads((tmp_path / "exp" / "star_tiny_star" / "teacher" / "config.json").read_text())
    assert (teacher_conf["conv_dim"], teacher_conf["conv_kernel"]) == (list(FILTERBANK_LAYOUT["conv_dim"]),
                                                                list(FILTERBANK_LAYOUT["conv_kernel"]))
    assert (teacher_conf["hidden_size"], teacher_conf["intermediate_size"]) == (128, 512)  # the wide teacher
    # the random teacher is the teacher before its first step: same architecture and frozen front end
    random_conf = json.loads((tmp_path / "exp" / "teacher_random" / "config.json").read_text())
    assert random_conf == teacher_conf
    teacher = load_teacher(tmp_path / "exp" / "star_tiny_star" / "teacher").model.state_dict()
    random = load_teacher(tmp_path / "exp" / "teacher_random").model.state_dict()
    assert all(torch.equal(random[k], teacher[k]) for k in teacher if k.startswith("feature_extractor."))
    assert not torch.equal(random["encoder.layers.0.attention.k_proj.weight"],
                           teacher["encoder.layers.0.attention.k_proj.weight"])
    assert (tmp_path / "exp" / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert "| fbank |" in (tmp_path / "exp" / "results.md").read_text()


def test_benchmark_recipe_refuses_missing_confs_before_any_stage(tmp_path):
    import subprocess

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "confs").mkdir()
    (tmp_path / "confs" / "star.yaml").write_text("method: star\n")
    proc = subprocess.run(["bash", str(root / "egs/mini_speech/benchmark/run.sh"), "--workdir", str(tmp_path / "w"),
                           "--student_confs", str(tmp_path / "confs")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert f"{tmp_path / 'confs'}/armhubert.yaml is missing" in proc.stderr
    assert not (tmp_path / "w").exists()  # refused before anything was made
    proc = subprocess.run(["bash", str(root / "egs/mini_speech/benchmark/run.sh"), "--workdir", str(tmp_path / "w"),
                           "--teacher_conf", "nope/x.yaml"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "--teacher_conf nope/x.yaml is missing" in proc.stderr
    assert not (tmp_path / "w").exists()


def test_benchmark_preflight_names_missing_inputs_and_a_bad_teacher_override(tmp_path):
    """Before any stage works: a run that starts after stage 0 (or 1) without its products is told which stage
    makes them, and a teacher override out of range is refused before the corpus is made."""
    import subprocess

    root = Path(__file__).resolve().parents[1]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(root / "egs/mini_speech/benchmark/run.sh"), "--workdir", str(tmp_path),
                               *args], capture_output=True, text=True, timeout=120)

    proc = run("--stage", "2")
    assert proc.returncode == 1 and "Preflight check FAILED" in proc.stderr
    assert (f"the train data dir ({tmp_path}/data/train/wav.scp) is missing. Stage 0 makes it, and this run starts "
            "at stage 2: rerun with --stage 0.") in proc.stderr
    for split in ("train", "dev_mini", "test_mini"):
        (tmp_path / "data" / split).mkdir(parents=True)
        (tmp_path / "data" / split / "wav.scp").write_text("")
    proc = run("--stage", "2")
    assert proc.returncode == 1
    assert f"the random teacher ({tmp_path}/exp/teacher_random/config.json) is missing. Stage 1 makes it" in proc.stderr
    proc = run("--teacher_args", "architecture_overrides.hidden_dropout=2")
    assert proc.returncode == 1 and "hidden_dropout=2: a probability, it must be a number from 0 to 1" in proc.stderr
    assert "Preflight check FAILED" in proc.stderr and not (tmp_path / "corpus").exists()


@pytest.mark.slow
def test_benchmark_stage_1_failure_stops_the_reference_probes_and_keeps_the_data(tmp_path):
    """Fault injected in stage 1: the students' recipe refuses its training overrides while the reference rows'
    probes (made endless) train beside it. The recipe fails naming the stage, the background probes are killed
    with it, and stage 0's corpus and data stay for the resumed run."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    cmd = ["bash", str(root / "egs/mini_speech/benchmark/run.sh"), "--workdir", str(tmp_path),
           "--corpus_args", "--preset rich --num_speakers 4 --utts_per_speaker 30,10,10",
           "--train_args", "trainer.max_steps=many", "--probe_args", "--set epochs=100000 --set pr_epochs=100000"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    try:
        assert proc.returncode != 0
        assert "Stage 1 FAILED" in proc.stderr and "trainer.max_steps" in proc.stdout + proc.stderr
        assert (tmp_path / "data" / "train" / "wav.scp").is_file() and any((tmp_path / "corpus").iterdir())
        assert (tmp_path / "exp" / "logs" / "reference_probes.log").is_file()
        left = subprocess.run(["pgrep", "-f", f"mini_benchmark --data {tmp_path}/data"], capture_output=True, text=True)
        assert left.stdout == ""  # the endless probes went with the failed stage
    finally:
        subprocess.run(["pkill", "-f", f"mini_benchmark --data {tmp_path}/data"])
