"""Linear evaluation of pretrained encoders over seeds:
``python -m vision_ssl.bin.linear_eval --config C --expdir D [--seeds 0 1 2] [--set key=value ...]``.

For each seed, loads ``D/seed<N>/checkpoints/last.ckpt`` (from ``vision_ssl.bin.pretrain``),
freezes it and trains the classifiers of the config's ``linear`` section on ``data.train_split``,
testing on ``data.test_split`` every epoch. Writes ``D/seed<N>/linear/`` (checkpoints, logs) and
``D/seed<N>/linear/result.json`` with the best top-1 over epochs (the reported figure), its
epoch, and the last epoch's top-1 / top-5 for every head (``backbone``, ``subnet``,
``ensemble``). Re-running skips finished seeds and resumes interrupted ones.
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import replace
from pathlib import Path

import lightning as L

from vision_ssl.bin.common import make_trainer
from vision_ssl.io import write_json
from vision_ssl.config import ExperimentConfig, load_config, save_config
from vision_ssl.datamodule import LinearDataModule
from vision_ssl.eval import LinearProbe
from vision_ssl.methods import load_pretrained


def linear_eval(config: ExperimentConfig, expdir: str | Path, resume: bool = True) -> dict:
    """Linear evaluation of the encoder pretrained in ``expdir`` (one seed); returns ``result.json``."""
    expdir = Path(expdir)
    outdir = expdir / "linear"
    done = outdir / "result.json"
    if done.is_file():
        print(f"{outdir}: linear evaluation already finished; skipping (delete {done} to redo)")
        return json.loads(done.read_text())
    encoder = load_pretrained(expdir / "checkpoints" / "last.ckpt")
    outdir.mkdir(parents=True, exist_ok=True)
    save_config(config, outdir / "config.yaml")
    L.seed_everything(config.seed, workers=True)
    data = LinearDataModule(config.data, config.linear)
    probe = LinearProbe(encoder, data.num_classes, config.linear)
    trainer = make_trainer(config.trainer, outdir, config.linear.epochs, config.linear.precision)
    last = outdir / "checkpoints" / "last.ckpt"
    ckpt_path = str(last) if resume and last.is_file() else None
    if ckpt_path:
        print(f"Resuming from {ckpt_path}")
    with warnings.catch_warnings():  # the frozen encoder is in eval mode on purpose
        warnings.filterwarnings("ignore", r"Found \d+ module\(s\) in eval mode")
        trainer.fit(probe, datamodule=data, ckpt_path=ckpt_path)
    if not probe.last_accuracy:  # resumed after the last epoch had finished: evaluate once more
        trainer.validate(probe, datamodule=data)
    result = {
        "seed": config.seed, "method": config.method, "mixco": config.mixco.enabled, "dataset": config.data.dataset,
        "epochs": config.linear.epochs,
        "best_top1": {h: probe.best_top1[i].item() for i, h in enumerate(probe.heads)},
        "best_epoch": {h: int(probe.best_epoch[i]) for i, h in enumerate(probe.heads)},
        "last_top1": {h: acc[0] for h, acc in probe.last_accuracy.items()},
        "last_top5": {h: acc[1] for h, acc in probe.last_accuracy.items()},
    }
    if trainer.global_rank == 0:
        write_json(done, result)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML (its data and linear sections are used)")
    parser.add_argument("--expdir", required=True, help="experiment folder holding seed<N>/ from pretraining")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the config's seed)")
    parser.add_argument("--resume", default="true", choices=["true", "false"], help="continue from last.ckpt")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry, e.g. --set linear.epochs=10 (repeatable)")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    for seed in args.seeds or [config.seed]:
        seed_dir = Path(args.expdir) / f"seed{seed}"
        result = linear_eval(replace(config, seed=seed), seed_dir, resume=args.resume == "true")
        print(f"seed {seed}: best top-1 {result['best_top1']}")


if __name__ == "__main__":
    main()
