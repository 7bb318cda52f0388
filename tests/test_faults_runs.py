"""Faults injected into one run: a kill in the middle of a checkpoint write, two runs in one
folder (the runner's lock and the recipes' lock), a stage that fails in its middle, trainer
settings this machine cannot run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from test_runner import Toy, ToyConfig

from compact_ssl.config import ConfigError
from compact_ssl.lock import LockHeldError, exclusive_lock
from compact_ssl.training.trainer import TrainerConfig, check_trainer_config

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _dying_run(rundir: Path, kill_at_save: int) -> subprocess.CompletedProcess:
    """Train the toy run in a subprocess that SIGKILLs itself halfway through its N-th checkpoint write."""
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        from lightning.fabric.plugins.io import torch_io
        from test_runner import Toy, ToyConfig
        saves = []
        def dying_save(checkpoint, path):
            saves.append(path)
            if len(saves) == {kill_at_save}:
                with open(path, "wb") as f:
                    f.write(b"PK\\x03\\x04" + bytes(1000))  # the first bytes of a zip, then nothing
                    f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            real_save(checkpoint, path)
        real_save, torch_io._atomic_save = torch_io._atomic_save, dying_save
        Toy().run(ToyConfig(), {str(rundir)!r})
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_kill_during_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    reference = tmp_path / "reference"
    Toy().run(ToyConfig(), reference)
    rundir = tmp_path / "killed"
    proc = _dying_run(rundir, kill_at_save=4)  # saves: step 4 (last), 6 (last, best), 8 (last) <- killed
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    last = rundir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)  # loads: the half-written file never replaced it
    assert ckpt["global_step"] == 6
    assert (rundir / "checkpoints" / "last.ckpt.tmp").stat().st_size == 1004  # the torn write stayed aside
    summary = Toy().run(ToyConfig(), rundir)  # the rerun resumes from step 6 and ends where the reference did
    assert summary == {"steps": 18, "epochs": 3}
    done = torch.load(last, weights_only=False)["state_dict"]
    ref = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(done[k], ref[k]) for k in ref)


def _hold_lock(path: Path) -> subprocess.Popen:
    code = (f"import sys, time; sys.path.insert(0, {str(ROOT)!r})\n"
            f"from compact_ssl.lock import exclusive_lock\n"
            f"with exclusive_lock({str(path)!r}, 'x'):\n    print('locked', flush=True); time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_in_one_folder_is_refused_until_the_first_dies(tmp_path):
    rundir = tmp_path / "run"
    holder = _hold_lock(rundir / "run.lock")
    try:
        with pytest.raises(LockHeldError, match=rf"{rundir} is in use by another run \(pid {holder.pid} on "):
            Toy().run(ToyConfig(), rundir)
        assert not (rundir / "checkpoints").exists()  # refused before writing anything
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert Toy().run(ToyConfig(), rundir) == {"steps": 18, "epochs": 3}  # a dead holder holds nothing
    with exclusive_lock(rundir / "run.lock", "x"):  # and the finished run released it
        pass


def test_cli_exits_1_with_the_lock_message(tmp_path, capsys):
    holder = _hold_lock(tmp_path / "run.lock")
    try:
        conf = tmp_path / "toy.yaml"
        conf.write_text("lr: 0.1\n")
        with pytest.raises(SystemExit) as exit_info:
            Toy().main(["--config", str(conf), "--expdir", str(tmp_path)])
        assert exit_info.value.code == 1
        assert f"is in use by another run (pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


def test_check_is_a_dry_run_that_reports_what_would_happen(tmp_path, capsys):
    conf = tmp_path / "toy.yaml"
    conf.write_text("lr: 0.1\n")
    rundir = tmp_path / "exp"
    Toy().main(["--config", str(conf), "--expdir", str(rundir), "--check"])
    assert capsys.readouterr().out.strip() == f"check: {rundir}: would start"
    assert not rundir.exists()
    Toy().main(["--config", str(conf), "--expdir", str(rundir)])
    capsys.readouterr()
    Toy().main(["--config", str(conf), "--expdir", str(rundir), "--check"])
    assert capsys.readouterr().out.strip() == f"check: {rundir}: finished; would be skipped"
    before = {p: p.stat().st_mtime_ns for p in rundir.rglob("*")}
    with pytest.raises(SystemExit):
        Toy().main(["--config", str(conf), "--expdir", str(rundir), "--check", "--set", "lr=0.5"])
    assert "lr: 0.1 -> 0.5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        Toy().main(["--config", str(conf), "--expdir", str(rundir), "--check", "--set", "trainer.max_epochs=ten"])
    assert "trainer.max_epochs" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in rundir.rglob("*")} == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given on a machine without a GPU")
def test_gpu_settings_on_a_cpu_machine_name_the_override():
    with pytest.raises(ConfigError, match=r"trainer.accelerator is 'gpu' .* --set trainer.accelerator=cpu"):
        check_trainer_config(TrainerConfig(accelerator="gpu"))
    with pytest.raises(ConfigError, match=r"trainer.precision is '16-mixed', .* --set trainer.precision=32-true"):
        check_trainer_config(TrainerConfig(precision="16-mixed"))
    check_trainer_config(TrainerConfig(accelerator="cpu", precision="bf16-mixed"))


def _bash(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "recipe.sh"
    script.write_text(f"#!/usr/bin/env bash\nset -euo pipefail\n. {ROOT}/recipes/utils.sh\n"
                      f"stage=0\nstop_stage=9\nexpdir={tmp_path}/exp\n" + body)
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=120)


def test_a_command_failing_in_the_middle_of_a_stage_fails_it_with_its_cause_first(tmp_path):
    body = ('make_expdir\n'
            'one() { echo written > "${expdir}/one.txt"; }\n'
            'two() { echo start; python3 -c "raise FileNotFoundError(\'corpus/a.flac: no such file\')"; '
            'echo "after the failure" > "${expdir}/two.txt"; }\n'
            'run_stage 0 "first" one\nrun_stage 1 "second" two\nrun_stage 2 "third" one\n')
    proc = _bash(tmp_path, body)
    assert proc.returncode == 1
    assert not (tmp_path / "exp/two.txt").exists()  # the stage stopped at its failing command
    assert (tmp_path / "exp/one.txt").read_text() == "written\n"
    first = [line for line in proc.stderr.splitlines() if "FAILED" in line][0]
    assert first.endswith("Stage 1 FAILED (second), exit status 1: FileNotFoundError: corpus/a.flac: no such file")
    assert proc.stderr.index("Stage 1 FAILED (second)") < proc.stderr.index("Traceback")  # cause before the tail
    assert "Stage 2" not in proc.stdout + proc.stderr


def test_recipe_lock_refuses_a_second_run_and_dies_with_its_holder(tmp_path):
    (tmp_path / "exp/logs").mkdir(parents=True)
    holder = subprocess.Popen(["flock", str(tmp_path / "exp/logs/recipe.lock"), "sleep", "120"], start_new_session=True)
    try:
        for _ in range(100):  # wait until the holder has the lock
            if subprocess.run(["flock", "-n", str(tmp_path / "exp/logs/recipe.lock"), "true"]).returncode:
                break
            time.sleep(0.05)
        proc = _bash(tmp_path, "make_expdir\necho ran\n")
        assert proc.returncode == 1 and "ran" not in proc.stdout
        assert f"ERROR: {tmp_path}/exp is in use by another run" in proc.stderr
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # flock and the sleep that inherited the lock
        holder.wait()
    proc = _bash(tmp_path, "make_expdir\necho ran\n")
    assert proc.returncode == 0 and proc.stdout.strip() == "ran"
    assert (tmp_path / "exp/logs/recipe.lock").read_text().startswith("pid ")


def test_failure_cause_joins_a_list_heading_with_its_first_item(tmp_path):
    log = tmp_path / "stage1.log"
    log.write_text("checking audio:  50%|#####\rchecking audio: 100%|##########\n"
                   "ERROR: 2 bad utterance(s) in dev-clean:\n\n  u1 corpus/u1.flac: [truncated] 10 of 35011 samples\n"
                   "  u2 corpus/u2.wav: [multichannel] 2 channels\nFix or remove these files.\n")
    proc = subprocess.run(["bash", "-c", f". {ROOT}/recipes/utils.sh; failure_cause {log}"], capture_output=True, text=True)
    assert proc.stdout == "ERROR: 2 bad utterance(s) in dev-clean: u1 corpus/u1.flac: [truncated] 10 of 35011 samples\n"
    log.write_text("step 1\nstep 2 done\n\n")  # no error line: the last words of the log
    proc = subprocess.run(["bash", "-c", f". {ROOT}/recipes/utils.sh; failure_cause {log}"], capture_output=True, text=True)
    assert proc.stdout == "step 2 done\n"
