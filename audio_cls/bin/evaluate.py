"""Evaluate trained checkpoints on the test set.

``python -m audio_cls.bin.evaluate --expdir exp/<tag>/<method> [...] --which best last`` evaluates
``seed*/checkpoints/<which>.ckpt`` of every seed of every method folder; ``--ckpt C --out O`` evaluates one checkpoint.
Each evaluation writes ``<seed>/eval/<which>/`` (or ``O``): ``scores.json`` (4-class Sp/Se/Score,
the 2-class evaluation, the confusion matrix, the checkpoint's epoch; for a clean-protocol run
also ``validation``, the scores on the held-out training patients), ``confusion.png`` and
``predictions.tsv`` (cycle id, label, prediction, class probabilities). An evaluation newer than
its checkpoint is not repeated.

``best`` is the epoch chosen among those whose sensitivity passes ``trainer.min_sensitivity``: on
the test set for a paper-protocol run, on the held-out training patients for a clean-protocol run
(``data.val_fraction > 0``); ``scores.json`` records which (``selected_on``: ``test`` or
``validation``; null for ``last``). ``last`` is the fixed final epoch, which involves no selection.
When no epoch passed that gate, ``best.ckpt`` is only the fallback epoch Lightning kept:
the evaluation of ``best`` records the gate check in ``scores.json`` (``gate``: ``passed``, the
gate, the highest Se, from the run's ``csv/metrics.csv``), prints a warning naming the run folder,
and the results table (:mod:`audio_cls.bin.results`) flags the seed. ``--ckpt`` treats a file named
``best.ckpt`` as such a selection.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from audio_cls.data.dataset import CycleFeatureDataset
from audio_cls.features import build_feature_cache, load_feature_cache
from audio_cls.metrics import (
    GateCheck,
    check_gate,
    confusion_matrix,
    epoch_sensitivities,
    plot_confusion_matrix,
    scores_from_confusion,
)
from audio_cls.tasks.datamodule import split_training_cycles
from audio_cls.tasks.icbhi import IcbhiTask, read_lightning_checkpoint, task_from_checkpoint
from compact_ssl.io import write_json


def run_gate(checkpoint: Path, min_sensitivity: float, selected_sensitivity: float) -> GateCheck:
    """Gate check of the run that selected ``checkpoint`` (``<run>/checkpoints/best.ckpt``): from the
    per-epoch Se of the selection set in ``<run>/csv/metrics.csv``, or, without that history, from the selected
    epoch's own Se on that set (a selection failing the gate means no epoch passed it)."""
    history = checkpoint.parent.parent / "csv" / "metrics.csv"
    sensitivities = epoch_sensitivities(history) if history.is_file() else []
    if sensitivities:
        return check_gate(sensitivities, min_sensitivity, str(history))
    return check_gate([selected_sensitivity], min_sensitivity,
                      f"{checkpoint} (its own Se; no metric history at {history})")


def _predict(task: IcbhiTask, dataset: Dataset, batch_size: int, device: str, desc: str) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, classes) and labels (N,) of ``dataset`` in order."""
    probs, labels = [], []
    with torch.no_grad():
        for spec, label, _ in tqdm(DataLoader(dataset, batch_size=batch_size, shuffle=False), desc=desc, unit="batch"):
            probs.append(torch.softmax(task(spec.to(device)).float(), dim=1).cpu())
            labels.append(label)
    return torch.cat(probs).numpy(), torch.cat(labels).numpy()


def evaluate_checkpoint(checkpoint: str | Path, out: str | Path, test_manifest: str | None = None,
                        device: str = "auto", batch_size: int | None = None, gated: bool = False) -> dict:
    """Evaluate one checkpoint on ``test_manifest`` (default: the training config's test set).

    ``gated``: the checkpoint is the best-epoch selection under the sensitivity gate; the result
    then holds the gate check (``gate``, see :func:`run_gate`) and says where the epoch was chosen
    (``selected_on``).
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    ckpt = read_lightning_checkpoint(checkpoint)
    task = task_from_checkpoint(ckpt).to(device)
    config = task.config
    manifest = test_manifest or config.data.test
    cache = load_feature_cache(build_feature_cache(manifest, config.features, config.data.cache_dir))
    num_classes, batch_size = config.data.num_classes, batch_size or config.data.eval_batch_size
    prob, y_true = _predict(task, CycleFeatureDataset(cache.feats, cache.labels, num_classes), batch_size, device,
                            f"eval {checkpoint.name}")
    y_pred = prob.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    four, two = scores_from_confusion(cm), scores_from_confusion(cm, two_class_eval=True)
    result = {
        "checkpoint": str(checkpoint), "epoch": int(ckpt.get("epoch", -1)) + 1, "method": config.method,
        "seed": config.seed, "test_manifest": str(manifest), "num_cycles": int(len(y_true)),
        **four.to_dict(), "two_class": two.to_dict(), "confusion": cm.tolist(),
        "selected_on": config.data.selected_on if gated else None,
    }
    selection_se = four.sensitivity
    if config.data.selected_on == "validation":
        train = load_feature_cache(build_feature_cache(config.data.train, config.features, config.data.cache_dir))
        held_out = Subset(CycleFeatureDataset(train.feats, train.labels, num_classes), split_training_cycles(config)[1])
        val_prob, val_true = _predict(task, held_out, batch_size, device, f"validation {checkpoint.name}")
        val = scores_from_confusion(confusion_matrix(val_true, val_prob.argmax(axis=1), num_classes))
        result["validation"] = {**val.to_dict(), "num_cycles": int(len(val_true))}
        selection_se = val.sensitivity
    if gated:
        result["gate"] = run_gate(checkpoint, config.trainer.min_sensitivity, selection_se).to_dict()
    out.mkdir(parents=True, exist_ok=True)
    plot_confusion_matrix(cm, out / "confusion.png", title=f"{config.method} seed {config.seed} {checkpoint.stem} "
                          f"(epoch {result['epoch']}): Sp {four.specificity:.1f} Se {four.sensitivity:.1f} "
                          f"Score {four.score:.1f}")
    with open(out / "predictions.tsv", "w") as f:
        f.write("id\tlabel\tprediction\t" + "\t".join(f"p{c}" for c in range(prob.shape[1])) + "\n")
        for cycle_id, label, pred, p in zip(cache.ids, y_true, y_pred, prob, strict=True):
            f.write(f"{cycle_id}\t{label}\t{pred}\t" + "\t".join(f"{v:.5f}" for v in p) + "\n")
    write_json(out / "scores.json", result)  # written last: its presence means the evaluation finished
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--expdir", nargs="+", help="method folder(s) holding seed*/checkpoints/")
    parser.add_argument("--which", nargs="+", default=["best", "last"], choices=["best", "last"])
    parser.add_argument("--ckpt", help="evaluate this checkpoint only (with --out)")
    parser.add_argument("--out", help="output folder for --ckpt")
    parser.add_argument("--test", default=None, help="test manifest (default: the training config's)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    args = parser.parse_args(argv)
    if args.ckpt:
        if not args.out:
            parser.error("--ckpt needs --out")
        jobs = [(Path(args.ckpt), Path(args.out))]
    elif args.expdir:
        jobs = []
        for expdir in args.expdir:
            seeds = sorted(Path(expdir).glob("seed*/checkpoints"))
            if not seeds:
                parser.error(f"no seed*/checkpoints under {expdir}; run training (stage 3) first")
            jobs += [(ckpts / f"{which}.ckpt", ckpts.parent / "eval" / which)
                     for ckpts in seeds for which in args.which]
    else:
        parser.error("give --expdir or --ckpt/--out")
    for ckpt, out in jobs:
        if not ckpt.is_file():
            raise SystemExit(f"ERROR: {ckpt} not found; is training of this seed finished?")
        gated = ckpt.stem == "best"
        scores = out / "scores.json"
        result = json.loads(scores.read_text()) if scores.is_file() else None
        # an evaluation older than its checkpoint, or of a best.ckpt from before gate checks, is repeated
        if result is None or scores.stat().st_mtime < ckpt.stat().st_mtime or (gated and "gate" not in result):
            result = evaluate_checkpoint(ckpt, out, args.test, args.device, gated=gated)
        print(f"{ckpt}: epoch {result['epoch']} Sp {result['specificity']:.2f} Se {result['sensitivity']:.2f} "
              f"Score {result['score']:.2f} | 2-class Se {result['two_class']['sensitivity']:.2f} "
              f"Score {result['two_class']['score']:.2f} -> {out}")
        if gated and not result["gate"]["passed"]:
            gate = GateCheck(**result["gate"])
            print(f"WARNING: {gate.explain(ckpt.parent.parent, result['epoch'])}. The results table flags this seed; "
                  "retrain it (more epochs, another learning rate) or leave it out before reporting.", file=sys.stderr)


if __name__ == "__main__":
    main()
