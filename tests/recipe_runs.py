"""Mini recipes run side by side, for the slow tests whose recipes are pinned to one thread.

The digit recipes run with ``OMP_NUM_THREADS=1``: one at a time, they leave a core idle whenever their test
runs alone (plain ``pytest``, or the last file of ``make test``'s per-core workers). :func:`run_side_by_side`
starts several at once and waits for all of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def run_side_by_side(commands: dict[str, list[str]], env: dict[str, str], logs: Path,
                     timeout: float) -> dict[str, subprocess.CompletedProcess]:
    """Run every command of ``commands`` at once; their output goes to ``logs/<name>.{out,err}``.

    Returns each command's :class:`subprocess.CompletedProcess` (output as text). If they are not all
    done within ``timeout`` seconds, every one still running is killed with its children and
    :class:`subprocess.TimeoutExpired` is raised.
    """
    logs.mkdir(parents=True, exist_ok=True)
    procs = {}
    for name, command in commands.items():
        with open(logs / f"{name}.out", "w") as out, open(logs / f"{name}.err", "w") as err:
            procs[name] = subprocess.Popen(command, stdout=out, stderr=err, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        for proc in procs.values():
            proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
    except subprocess.TimeoutExpired:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        raise
    return {name: subprocess.CompletedProcess(commands[name], proc.returncode, (logs / f"{name}.out").read_text(),
                                              (logs / f"{name}.err").read_text())
            for name, proc in procs.items()}
