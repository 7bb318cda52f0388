"""The Kaldi-style option parser and stage runner of recipes/."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "s.sh"
    path.write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        'alpha=1          # first option\nflag=false       # a boolean\nname="a b"       # spaced value\n'
        f". {ROOT}/recipes/parse_options.sh\n" + body
    )
    return path


def _run(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(path), *args], capture_output=True, text=True)


def test_overrides_and_dash_names(tmp_path):
    p = _script(tmp_path, 'echo "$alpha|$flag|$name|$*"\n')
    r = _run(p, "--alpha", "7", "--flag", "true", "--name", "x y")
    assert r.returncode == 0 and r.stdout.strip() == "7|true|x y|"
    assert _run(p, "--alpha", "2", "rest", "args").stdout.strip() == "2|false|a b|rest args"


def test_errors(tmp_path):
    p = _script(tmp_path, "echo ok\n")
    r = _run(p, "--nope", "1")
    assert r.returncode != 0 and "invalid option '--nope'" in r.stderr
    r = _run(p, "--flag", "maybe")
    assert r.returncode != 0 and "takes true or false" in r.stderr
    r = _run(p, "--alpha=3")
    assert r.returncode != 0 and "--name value" in r.stderr
    r = _run(p, "--alpha")
    assert r.returncode != 0 and "needs a value" in r.stderr


def test_help_lists_options_with_current_values(tmp_path):
    p = _script(tmp_path, "echo never\n")
    r = _run(p, "--alpha", "5", "--help")
    assert r.returncode == 0 and "never" not in r.stdout
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip().startswith("--")}
    assert set(lines) == {"--alpha", "--flag", "--name"}
    assert '"5"' in lines["--alpha"] and "first option" in lines["--alpha"]


def test_config_file_then_flags_win(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("alpha=10\nname=fromconf\n")
    p = _script(tmp_path, 'echo "$alpha|$name"\n')
    assert _run(p, "--config", str(conf), "--alpha", "11").stdout.strip() == "11|fromconf"


def test_run_stage_logs_and_fails_loudly(tmp_path):
    body = (
        f". {ROOT}/recipes/utils.sh\nstage=0\nstop_stage=1\nexpdir={tmp_path}/exp\n"
        'ok() { echo "hello from stage"; }\nbad() { echo "boom detail"; return 3; }\n'
        'run_stage 0 "greeting" ok\nrun_stage 1 "failing" bad\nrun_stage 2 "skipped" ok\n'
    )
    r = _run(_script(tmp_path, body))
    assert r.returncode != 0
    assert "Stage 0: greeting" in r.stdout and "Stage 1 FAILED (failing), exit status 3: boom detail" in r.stderr
    assert r.returncode == 3  # the stage's own status
    assert "hello from stage" in (tmp_path / "exp/logs/stage0.log").read_text()
    assert "boom detail" in (tmp_path / "exp/logs/stage1.log").read_text()
    assert "boom detail" in r.stderr  # the tail of the failed log is printed
    assert not (tmp_path / "exp/logs/stage2.log").exists()


@pytest.mark.parametrize("method", ["star", "armhubert", "distilhubert"])
def test_mini_recipe_help(method):
    r = subprocess.run(["bash", str(ROOT / f"egs/mini_speech/{method}/run.sh"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"Usage: bash egs/mini_speech/{method}/run.sh [options]\n")  # what the user ran
    assert f'"{method}"' in r.stdout and "--stop_stage" in r.stdout and "--teacher" in r.stdout


def test_full_recipe_names_missing_dataset_root(tmp_path):
    r = subprocess.run(
        ["bash", str(ROOT / "egs/librispeech/star/run.sh"), "--stop_stage", "0", "--corpus_root", str(tmp_path / "nope"),
         "--exp_root", str(tmp_path / "exp")],
        capture_output=True, text=True,
    )
    assert r.returncode != 0
    assert "Download LibriSpeech" in r.stderr and "LIBRISPEECH=" in r.stderr
    assert (tmp_path / "exp/star_starhubert/logs/stage0.log").is_file()


def test_full_recipe_data_stage_on_real_librispeech_samples(tmp_path):
    samples = SHARED_DATA / "librispeech_samples"
    if not samples.is_dir():
        pytest.skip(f"{samples} is absent (run `make test-data`, or put the shared test data beside the checkout)")
    r = subprocess.run(
        ["bash", str(ROOT / "egs/librispeech/armhubert/run.sh"), "--stop_stage", "1", "--corpus_root", str(samples),
         "--train_sets", "dev-clean", "--dev_set", "dev-clean", "--test_sets", "dev-clean",
         "--exp_root", str(tmp_path / "exp"), "--datadir", str(tmp_path / "data"), "--nj", "1"],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    lines = (tmp_path / "data/train/utt2num_samples").read_text().splitlines()
    assert "1272-128104-0000 77040" in lines and len(lines) == 2
    text = (tmp_path / "data/dev_clean/text").read_text()
    assert text.startswith("1272-128104-0000 MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES")
