"""Fault injection into recipe stages, for tests/test_faults*.py.

A recipe runs under ``BASH_ENV`` pointing at a small file that defines a ``python`` shell
function: inside stage ``FAULT_STAGE`` (``run_stage`` exports ``RECIPE_STAGE``) the
``FAULT_CALL``-th ``python`` command exits 42 with an ``ERROR: injected fault`` line, and every
other call runs the real interpreter. The recipe files stay untouched: the fault is a failing
command in the middle of the real stage function, as a crash of any tool would be.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAULT_BASH_ENV = r"""
python() {
  if [ -n "${FAULT_STAGE:-}" ] && [ "${RECIPE_STAGE:-}" = "${FAULT_STAGE}" ]; then
    local n=0
    if [ -f "${FAULT_COUNTER}" ]; then n=$(cat "${FAULT_COUNTER}"); fi
    n=$((n + 1))
    echo "${n}" > "${FAULT_COUNTER}"
    if [ "${n}" -eq "${FAULT_CALL:-1}" ]; then
      echo "ERROR: injected fault in stage ${RECIPE_STAGE} (python $*)" >&2
      return 42
    fi
  fi
  command python "$@"
}
"""

#: Files a failed run may write even though its stage fails at once: its own stage log and the lock.
_VOLATILE = ("recipe.lock",)


def fault_env(tmp: Path, stage: int | None, call: int = 1) -> dict[str, str]:
    """Environment that makes the ``call``-th python command of ``stage`` fail (none: no fault)."""
    bash_env = tmp / "fault_bash_env.sh"
    bash_env.write_text(FAULT_BASH_ENV)
    counter = tmp / "fault_counter"
    counter.unlink(missing_ok=True)
    env = dict(os.environ, BASH_ENV=str(bash_env), FAULT_COUNTER=str(counter), FAULT_CALL=str(call))
    env.pop("FAULT_STAGE", None)
    if stage is not None:
        env["FAULT_STAGE"] = str(stage)
    return env


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under ``folders``, the recipe lock excluded."""
    out = {}
    for folder in folders:
        if not folder.exists():
            continue
        for path in folder.rglob("*"):
            if path.is_file() and path.name not in _VOLATILE:
                st = path.stat()
                out[str(path)] = (st.st_size, st.st_mtime_ns)
    return out


def run_recipe(recipe: str, args: list[str], env: dict[str, str], timeout: int = 1200) -> subprocess.CompletedProcess:
    """``bash egs/<recipe>/run.sh args...``, output captured."""
    return subprocess.run(["bash", str(ROOT / "egs" / recipe / "run.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def walk_stages_with_faults(recipe: str, args: list[str], stages: list[int], tmp: Path, watched: list[Path]) -> list[dict]:
    """Run ``recipe`` through ``stages``, each once with a fault injected into it, then without.

    Run k starts at the stage that failed in run k-1 with the fault moved to the next stage, so
    every stage first fails, then completes on the rerun that follows (the recipe resumes from the
    failed stage). After each failure: the exit status is 42, the stage is named with the injected
    cause, the stages after it did not start, and every file under ``watched`` that existed
    before the run is still there unchanged (the logs of the stages this run started aside). Returns one record
    per fault: stage, exit status and the first ``FAILED`` line, for the README table.
    """
    records = []
    start = stages[0]
    for stage in [*stages, None]:
        before = snapshot(*watched)
        proc = run_recipe(recipe, [*args, "--stage", str(start)], fault_env(tmp, stage))
        out = proc.stdout + proc.stderr
        if stage is None:
            assert proc.returncode == 0, f"{recipe} from stage {start} without a fault failed:\n{out[-4000:]}"
            assert f"Stage {start} done" in out
            break
        assert proc.returncode == 42, f"{recipe}: fault in stage {stage} gave exit {proc.returncode}:\n{out[-4000:]}"
        failed = [line for line in out.splitlines() if f"Stage {stage} FAILED" in line]
        assert failed and "injected fault" in failed[0], out[-4000:]
        if stage != start:
            assert f"Stage {start} done" in out, out[-4000:]  # the rerun completed the stage that failed before
        later = [s for s in stages if s > stage]
        assert not any(f"==== Stage {s}:" in out for s in later), out[-4000:]
        after = snapshot(*watched)
        lost = {p: v for p, v in before.items()
                if after.get(p) != v and not p.endswith((f"logs/stage{stage}.log", f"logs/stage{start}.log"))}
        assert not lost, f"{recipe}: files written before the fault in stage {stage} changed or vanished: {sorted(lost)[:10]}"
        records.append({"recipe": recipe, "stage": stage, "exit": proc.returncode, "line": failed[0].split(") ", 1)[-1]})
        start = stage
    return records
