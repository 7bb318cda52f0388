"""The side-by-side runner of the slow recipe tests (tests/recipe_runs.py): results per command, and a
timeout kills every command with its children."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from recipe_runs import run_side_by_side


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_each_command_gets_its_own_status_and_output(tmp_path):
    runs = run_side_by_side({"ok": ["bash", "-c", "echo out; echo err >&2"], "bad": ["bash", "-c", "exit 3"]},
                            dict(os.environ), tmp_path / "logs", timeout=60)
    assert (runs["ok"].returncode, runs["ok"].stdout, runs["ok"].stderr) == (0, "out\n", "err\n")
    assert runs["bad"].returncode == 3
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["bad.err", "bad.out", "ok.err", "ok.out"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_timeout_kills_every_command_and_its_children(tmp_path):
    marker = tmp_path / "child.pid"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_side_by_side({"slow": ["bash", "-c", f"sleep 60 & echo $! > {marker}; wait"],
                          "quick": ["true"]}, dict(os.environ), tmp_path / "logs", timeout=2)
    assert time.monotonic() - started < 30
    child = int(marker.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)  # the backgrounded grandchild went with its process group
