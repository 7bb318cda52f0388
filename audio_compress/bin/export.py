"""Export a distilled student: a standalone checkpoint checked as an s3prl upstream, and/or a
shareable pretrained folder with a model card.

``python -m audio_compress.bin.export --ckpt_dir EXP/checkpoints --which best --out EXP/student.pt``
writes a standalone checkpoint (config + weights, loadable with
``audio_compress.models.load_student``), then loads it through ``s3prl.nn.S3PRLUpstream``
with the method's entry (``star_local``, ``armhubert_local``, ``distilhubert_local``).

``--pretrained EXP/pretrained`` (with or without ``--out``) writes ``model.safetensors``,
``config.json`` and a ``README.md`` card filled from the run (teacher, data, method, steps, resolved
config, and the SUPERB table of ``EXP/superb/results.json`` when it exists or ``--results`` names one);
``StudentModel.from_pretrained(FOLDER_OR_REPO_ID)`` loads it. ``--push_to_hub true`` then uploads the
folder to ``--repo_id`` (network and a write token needed).

Checkpoints are read without running code from them; ``--trust true`` unpickles fully, only for a
checkpoint from a source you trust.
"""

from __future__ import annotations

import argparse
import json

from audio_compress.export import (
    UPSTREAM_FOR_METHOD,
    check_upstream,
    export_pretrained,
    export_student,
    select_checkpoint,
    sha256,
)
from audio_compress.models import read_student_checkpoint
from compact_ssl.pretrained import push_to_hub


def main(argv: list[str] | None = None) -> None:
    """Run the export (see the module docstring); errors about the inputs end it with ``ERROR:``."""
    try:
        _export(argv)
    except (OSError, ValueError) as err:  # unreadable, unsafe or unfitting inputs; offline hub
        raise SystemExit(f"ERROR: {err}") from err


def _export(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_dir", required=True, help="folder with the distillation checkpoints")
    parser.add_argument("--which", default="best", help="best | last | a checkpoint file name")
    parser.add_argument("--out", help="standalone student checkpoint to write")
    parser.add_argument("--check", default="true", choices=["true", "false"], help="load --out through s3prl")
    parser.add_argument("--pretrained", help="shareable pretrained folder to write (weights, config.json, card)")
    parser.add_argument("--results", help="SUPERB results.json for the card (default: <expdir>/superb/results.json)")
    parser.add_argument("--upstream", help="the row of the results that is this student (default: the only "
                                           "row that is not a baseline)")
    parser.add_argument("--teacher_id", help="hub id of the teacher, for the card (e.g. facebook/hubert-base-ls960)")
    parser.add_argument("--datasets", nargs="*", default=[], help="hub dataset ids of the training data, for the card")
    parser.add_argument("--license", default="other", help="license of the weights, for the card")
    parser.add_argument("--repo_id", help="hub repo id (owner/name): named in the card; the target of --push_to_hub")
    parser.add_argument("--push_to_hub", default="false", choices=["true", "false"],
                        help="upload the --pretrained folder to --repo_id")
    parser.add_argument("--private", default="false", choices=["true", "false"], help="create the hub repo private")
    parser.add_argument("--trust", default="false", choices=["true", "false"],
                        help="unpickle the checkpoint fully (can run code): only for a file from a trusted source")
    args = parser.parse_args(argv)
    if not args.out and not args.pretrained:
        parser.error("give --out (standalone checkpoint) and/or --pretrained (shareable folder)")
    if args.push_to_hub == "true" and not (args.pretrained and args.repo_id):
        parser.error("--push_to_hub true needs --pretrained and --repo_id")
    trust = args.trust == "true"

    source = select_checkpoint(args.ckpt_dir, args.which)
    if args.out:
        out = export_student(source, args.out, trust=trust)
        meta = read_student_checkpoint(out)["extra"]
        print(f"Exported {source} -> {out} (sha256 {sha256(out)[:16]}...)")
        if args.check == "true":
            entry = UPSTREAM_FOR_METHOD[meta["method"]]
            shapes = check_upstream(entry, out)
            print(json.dumps({"upstream": entry, "path": str(out), "hidden_states": [list(s) for s in shapes]}))
            print(f"s3prl: S3PRLUpstream('{entry}', '{out}') gives {len(shapes)} hidden states of {shapes[0]}")
    if args.pretrained:
        folder = export_pretrained(source, args.pretrained, results=args.results, upstream=args.upstream,
                                   teacher_id=args.teacher_id, datasets=tuple(args.datasets), license=args.license,
                                   repo_id=args.repo_id, trust=trust)
        print(f"Wrote the pretrained folder {folder} (StudentModel.from_pretrained('{folder}'))")
        if args.push_to_hub == "true":
            url = push_to_hub(folder, args.repo_id, private=args.private == "true")
            print(f"Pushed {folder} to {args.repo_id}: {url}")


if __name__ == "__main__":
    main()
