"""Export a distilled student and check its s3prl upstream.

``python -m audio_compress.bin.export --ckpt_dir EXP/checkpoints --which best --out EXP/student.pt``
writes a standalone checkpoint (config + weights, loadable with
``audio_compress.models.load_student``), then loads it through ``s3prl.nn.S3PRLUpstream``
with the method's entry (``star_local``, ``armhubert_local``, ``distilhubert_local``).
"""

from __future__ import annotations

import argparse
import json

from audio_compress.export import UPSTREAM_FOR_METHOD, check_upstream, export_student, select_checkpoint, sha256
from audio_compress.models import read_student_checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_dir", required=True, help="folder with the distillation checkpoints")
    parser.add_argument("--which", default="best", help="best | last | a checkpoint file name")
    parser.add_argument("--out", required=True, help="standalone student checkpoint to write")
    parser.add_argument("--check", default="true", choices=["true", "false"], help="load it through s3prl")
    args = parser.parse_args(argv)

    try:
        source = select_checkpoint(args.ckpt_dir, args.which)
    except FileNotFoundError as err:
        raise SystemExit(f"ERROR: {err}") from err
    out = export_student(source, args.out)
    meta = read_student_checkpoint(out)["extra"]
    print(f"Exported {source} -> {out} (sha256 {sha256(out)[:16]}...)")
    if args.check == "true":
        entry = UPSTREAM_FOR_METHOD[meta["method"]]
        shapes = check_upstream(entry, out)
        print(json.dumps({"upstream": entry, "path": str(out), "hidden_states": [list(s) for s in shapes]}))
        print(f"s3prl: S3PRLUpstream('{entry}', '{out}') gives {len(shapes)} hidden states of {shapes[0]}")


if __name__ == "__main__":
    main()
