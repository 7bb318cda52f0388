"""Mistyped config values are refused by the real entry points when the config is loaded: a
non-zero exit, a message naming the file, the key and the expected type, and nothing written in
the experiment folder (before the typed loader, ``trainer.max_steps=abc`` and
``loss.mask_length=ten`` failed deep in training with ``TypeError: '<' not supported`` and the
vision loader accepted ``trainer.max_epochs=ten``)."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = [
    # (entry point, config, override, message after "<config>.")
    ("audio_compress.bin.distill", "egs/mini_speech/star/conf/distill.yaml", "trainer.max_steps=abc",
     "trainer.max_steps: expected an integer, got 'abc'"),
    ("audio_compress.bin.distill", "egs/mini_speech/star/conf/distill.yaml", "trainer.max_steps=1.5",
     "trainer.max_steps: expected an integer, got 1.5"),
    ("audio_compress.bin.distill", "egs/mini_speech/armhubert/conf/distill.yaml", "loss.mask_length=ten",
     "loss.mask_length: expected an integer, got 'ten'"),
    ("audio_compress.bin.distill", "egs/mini_speech/distilhubert/conf/distill.yaml", "optim.lr=fast",
     "optim.lr: expected a number, got 'fast'"),
    ("audio_compress.bin.distill", "egs/mini_speech/star/conf/distill.yaml", "data.resample=maybe",
     "data.resample: expected true or false, got 'maybe'"),
    ("vision_ssl.bin.pretrain", "egs/mini_digits/mixco/conf/mixco.yaml", "trainer.max_epochs=ten",
     "trainer.max_epochs: expected an integer, got 'ten'"),
    ("audio_cls.bin.train", "egs/mini_icbhi/patchmix/conf/ce.yaml", "trainer.max_epochs=ten",
     "trainer.max_epochs: expected an integer, got 'ten'"),
]


def _nothing_written(expdir: Path) -> bool:
    return not expdir.exists() or not any(expdir.rglob("*"))


@pytest.mark.parametrize("module, config, override, message", CASES, ids=[f"{c[0]}:{c[2]}" for c in CASES])
def test_entry_point_refuses_a_mistyped_value_before_writing(module, config, override, message, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.chdir(ROOT)  # the configs are given relative to the repository, as the recipes do
    expdir = tmp_path / "exp"
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", config, "--expdir", str(expdir), "--set", override])
    assert exit_info.value.code not in (0, None)
    assert f"ERROR: {config}: {message}" in capsys.readouterr().err
    assert _nothing_written(expdir)


def test_command_line_exit_status_and_message(tmp_path):
    """The same through ``python -m`` (what the recipes run)."""
    expdir = tmp_path / "exp"
    proc = subprocess.run(
        [sys.executable, "-m", "audio_compress.bin.distill", "--config", "egs/mini_speech/star/conf/distill.yaml",
         "--expdir", str(expdir), "--set", "trainer.max_steps=abc"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert re.search(r"ERROR: egs/mini_speech/star/conf/distill\.yaml: trainer\.max_steps: expected an integer, "
                     r"got 'abc'", proc.stderr)
    assert "Traceback" not in proc.stderr
    assert _nothing_written(expdir)
