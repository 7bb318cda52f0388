"""Prepare a teacher for distillation and check it on real data.

``python -m audio_compress.bin.prepare_teacher --teacher SPEC --out DIR [--check_data DATA_DIR]``

SPEC is a named architecture (random weights, e.g. ``hubert_base``, ``tiny_hubert``), a local
transformers folder, or an original fairseq checkpoint (``hubert_base_ls960.pt``). The teacher is
saved as a local transformers folder ``DIR`` (what training loads), then run on a few utterances of
``DATA_DIR``: the frame count of every layer must follow ``T = floor((L - 400) / 320) + 1``.
A JSON report goes to ``DIR/check.json``.

Everything is written into a temporary sibling of ``DIR`` and moved onto ``DIR`` only after the
check passed and the report is written, so ``DIR`` is never a half-written or unchecked teacher:
a previous ``DIR`` is replaced only then and stays as it was when any step fails.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from audio_compress.data.dataset import SpeechDataset, collate_waveforms
from audio_compress.frames import num_frames
from audio_compress.teachers import FrozenTeacher, load_teacher, write_teacher
from compact_ssl.io import staged_folder


def check_teacher(teacher: FrozenTeacher, data_dir: str | Path, num_utts: int = 4, resample: bool = False) -> dict:
    """Run ``teacher`` on the first ``num_utts`` utterances of ``data_dir`` (one padded batch) and
    verify frame counts and finiteness of every hidden state; returns a report, raises on failure.
    ``resample``: resample audio that is not 16 kHz instead of refusing it (as the data prep did)."""
    dataset = SpeechDataset(data_dir, resample=resample)
    items = [dataset[i] for i in range(min(num_utts, len(dataset)))]
    batch = collate_waveforms(items)
    with torch.no_grad():
        out = teacher(batch.wavs, padding_mask=batch.padding_mask)
    expected_total = num_frames(batch.wavs.shape[1])
    for layer, state in enumerate(out.hidden_states):
        if state.shape[1] != expected_total:
            raise RuntimeError(f"teacher layer {layer} gives {state.shape[1]} frames, expected {expected_total}")
        if not torch.isfinite(state).all():
            raise RuntimeError(f"teacher layer {layer} produced NaN/Inf on {batch.utt_ids}")
    valid = (~out.padding_mask).sum(dim=1).tolist()
    expected_valid = [num_frames(int(n)) for n in batch.lengths]
    if valid != expected_valid:
        raise RuntimeError(f"valid frames per utterance {valid} differ from the formula {expected_valid}")
    return {
        "utterances": batch.utt_ids,
        "samples": batch.lengths.tolist(),
        "frames": valid,
        "num_hidden_states": len(out.hidden_states),
        "hidden_size": int(out.hidden_states[0].shape[-1]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="named architecture, transformers folder or fairseq .pt")
    parser.add_argument("--out", required=True, help="folder for the local transformers copy")
    parser.add_argument("--seed", type=int, default=0, help="seed for a randomly initialised named teacher")
    parser.add_argument("--trust", default="false", choices=["true", "false"],
                        help="unpickle a checkpoint file fully, which can run code in it: only for a file from a "
                             "trusted source that the safe reader refuses")
    parser.add_argument("--check_data", default=None, help="Kaldi data dir to run the teacher on")
    parser.add_argument("--resample", default="false", choices=["true", "false"],
                        help="resample --check_data audio that is not 16 kHz instead of refusing it")
    args = parser.parse_args(argv)

    teacher = load_teacher(args.teacher, seed=args.seed, trust=args.trust == "true")
    out = Path(args.out)
    report = {
        "source": args.teacher,
        "saved_to": str(out),
        "model_type": teacher.model_type,
        "num_layers": teacher.num_layers,
        "hidden_size": teacher.hidden_size,
        "num_heads": teacher.num_heads,
        "parameters": sum(p.numel() for p in teacher.parameters()),
    }
    with staged_folder(out) as staging:
        write_teacher(teacher, staging)
        if args.check_data:
            # the saved copy is what training loads, so that is what gets checked
            report["check"] = check_teacher(load_teacher(staging), args.check_data,
                                            resample=args.resample == "true")
        (staging / "check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"Teacher ready: {out} (report: {out / 'check.json'})")


if __name__ == "__main__":
    main()
