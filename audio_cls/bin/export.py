"""Export a trained ICBHI classifier as a shareable pretrained folder with a model card.

``python -m audio_cls.bin.export --ckpt EXP/<method>/seed1/checkpoints/best.ckpt --out FOLDER`` writes
``model.safetensors``, ``config.json`` (AST and feature settings, class names) and a ``README.md`` card
(architecture, parameter count, training data, recipe and resolved config, the ICBHI table, how to load
it). The table comes from ``--results`` (a ``scores.json`` of :mod:`audio_cls.bin.evaluate` or a
``results.json`` of :mod:`audio_cls.bin.results`), by default from the checkpoint's own evaluation
``<seed>/eval/<best|last>/scores.json`` when it exists. ``audio_cls.from_pretrained(FOLDER_OR_REPO_ID)``
loads it; its logits equal the checkpoint's. ``--push_to_hub true`` uploads the folder to ``--repo_id``.

The checkpoint is read without running code from it; ``--trust true`` unpickles fully, only for a
checkpoint from a source you trust.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from audio_cls.pretrained import IcbhiClassifier
from audio_cls.tasks.icbhi import read_lightning_checkpoint, task_from_checkpoint
from compact_ssl.pretrained import push_to_hub


def evaluation_of(ckpt_path: str | Path) -> Path | None:
    """``<seed>/eval/<stem>/scores.json`` of ``<seed>/checkpoints/<stem>.ckpt``, if it exists."""
    ckpt_path = Path(ckpt_path)
    scores = ckpt_path.parent.parent / "eval" / ckpt_path.stem / "scores.json"
    return scores if scores.is_file() else None


def export_classifier(ckpt_path: str | Path, out_folder: str | Path, *, results: str | Path | None = None,
                      datasets: tuple[str, ...] = (), license: str = "other", repo_id: str | None = None,
                      trust: bool = False) -> Path:
    """Write the classifier of the Lightning checkpoint ``ckpt_path`` as a pretrained folder with a card
    filled from the run (method, initial weights, data, epochs, resolved config, results)."""
    ckpt = read_lightning_checkpoint(ckpt_path, trust=trust)
    try:
        task = task_from_checkpoint(ckpt)
    except ValueError as err:
        raise ValueError(f"{ckpt_path}: {err}") from err
    config = task.config
    counts = task.hparams.get("class_counts")
    epoch = int(ckpt.get("epoch", -1)) + 1
    selection = ("the best epoch is chosen on the test set (the paper protocol)" if config.data.selected_on == "test"
                 else f"the best epoch is chosen on {config.data.val_fraction:.0%} of the training patients, held out")
    training_data = (f"ICBHI 2017 respiratory sound database, official 60/40 patient split: training cycles "
                     f"`{config.data.train}`" + (f" ({sum(counts)} cycles; per class {counts})" if counts else "")
                     + f", test cycles `{config.data.test}`; {selection}.")
    recipe = (f"`method: {config.method}`, seed {config.seed}, {config.trainer.max_epochs} epochs; exported from "
              f"`{ckpt_path}` (epoch {epoch}, step {int(ckpt.get('global_step', -1))}). The recipe is "
              "`recipes/icbhi.sh` (e.g. `egs/icbhi/patchmix/run.sh`) with the config below.")
    model = IcbhiClassifier.from_task(task)
    return model.save_pretrained(
        out_folder, info={"method": config.method, "seed": config.seed, "epoch": epoch, "source": str(ckpt_path)},
        method=config.method, init=config.model.init, training_data=training_data, recipe=recipe,
        config_text=yaml.safe_dump(config.to_dict(), sort_keys=False), results=results or evaluation_of(ckpt_path),
        datasets=datasets, license=license, repo_id=repo_id)


def main(argv: list[str] | None = None) -> None:
    """Run the export (see the module docstring); errors about the inputs end it with ``ERROR:``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="Lightning checkpoint of a training run (best.ckpt, last.ckpt)")
    parser.add_argument("--out", required=True, help="pretrained folder to write")
    parser.add_argument("--results", help="scores.json or results.json for the card's ICBHI table "
                                          "(default: <seed>/eval/<checkpoint name>/scores.json if present)")
    parser.add_argument("--datasets", nargs="*", default=[], help="hub dataset ids of the training data, for the card")
    parser.add_argument("--license", default="other", help="license of the weights, for the card")
    parser.add_argument("--repo_id", help="hub repo id (owner/name): named in the card; the target of --push_to_hub")
    parser.add_argument("--push_to_hub", default="false", choices=["true", "false"], help="upload the folder to --repo_id")
    parser.add_argument("--private", default="false", choices=["true", "false"], help="create the hub repo private")
    parser.add_argument("--trust", default="false", choices=["true", "false"],
                        help="unpickle the checkpoint fully (can run code): only for a file from a trusted source")
    args = parser.parse_args(argv)
    if args.push_to_hub == "true" and not args.repo_id:
        parser.error("--push_to_hub true needs --repo_id")
    try:
        folder = export_classifier(args.ckpt, args.out, results=args.results, datasets=tuple(args.datasets),
                                   license=args.license, repo_id=args.repo_id, trust=args.trust == "true")
        print(f"Wrote the pretrained folder {folder} (audio_cls.from_pretrained('{folder}'))")
        if args.push_to_hub == "true":
            print(f"Pushed {folder} to {args.repo_id}: {push_to_hub(folder, args.repo_id, private=args.private == 'true')}")
    except (OSError, ValueError) as err:  # unreadable, unsafe or unfitting inputs; offline hub
        raise SystemExit(f"ERROR: {err}") from err


if __name__ == "__main__":
    main()
