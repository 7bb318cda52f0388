"""The one experiment runner (in the spirit of ESPnet's ``AbsTask.main``).

A training entry point subclasses :class:`Experiment`, says how to build its LightningModule,
data and checkpoints (:meth:`Experiment.setup`) and what to report (:meth:`Experiment.summarize`),
and calls :meth:`Experiment.main`. The runner owns everything else, once:

* the CLI: ``--config --expdir --set KEY=VALUE --seeds N [N ...] --resume auto|never|force``;
* seeds: one run per seed in ``<expdir>/seed<N>/`` (or ``<expdir>`` itself for experiments
  without seed folders, unless ``--seeds`` is given);
* the trainer (:func:`compact_ssl.training.trainer.build_trainer`);
* done markers: a finished run is skipped on rerun, its results untouched;
* a lock: two processes never train into one run folder at once (``run.lock``, released when
  the process ends, however it ends);
* ``--check``: a dry run that validates the config, the trainer settings and every run folder
  (a rerun that would be refused is reported) without writing anything; recipes call it before
  their first stage;
* resume semantics:

  - ``auto`` (default): continue from ``checkpoints/last.ckpt`` when there is one, with the
    metric history and every random state of the interrupted run;
  - the saved ``config.yaml`` always describes the weights: a rerun whose config differs
    (apart from :attr:`Experiment.volatile_keys`, such as device counts) is refused with the
    differing keys listed;
  - ``force``: continue anyway and record the change (old and new values, time) in
    ``config_changes.yaml``; a finished run continues training (e.g. more epochs);
  - ``never``: start from scratch; the previous run's files move to ``archive/<time>/``.
"""

from __future__ import annotations

import abc
import argparse
import inspect
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from compact_ssl.config import (
    ABSENT,
    ConfigError,
    add_override_argument,
    config_diff,
    config_to_dict,
    get_key,
    load_yaml_config,
    replace_key,
    save_yaml_config,
)
from compact_ssl.io import atomic_write_text, read_json, write_json
from compact_ssl.lock import LockHeldError, exclusive_lock
from compact_ssl.training.trainer import TrainerConfig, build_trainer, check_trainer_config

RESUME_MODES = ("auto", "never", "force")
#: ``--resume true/false`` of earlier versions.
_LEGACY_RESUME = {"true": "auto", "false": "never"}
CONFIG = "config.yaml"
#: a key the config class does not have
_MISSING = object()
CHANGES = "config_changes.yaml"
LOCK = "run.lock"
ARCHIVE = "archive"
#: Run files that belong to one training run (moved together by ``--resume never``).
RUN_FILES = ("checkpoints", "csv", "tensorboard", CONFIG, CHANGES)


class ConfigDriftError(RuntimeError):
    """A rerun whose config differs from the one the run's weights were trained with."""


@dataclass
class Setup:
    """What an experiment trains: the module, its data, checkpoints and extra trainer settings."""

    module: L.LightningModule
    datamodule: L.LightningDataModule | None
    checkpoints: list[ModelCheckpoint]
    callbacks: list[Callback] = field(default_factory=list)
    #: further ``L.Trainer`` arguments (``val_check_interval``, ``use_distributed_sampler`` ...)
    trainer_kwargs: dict[str, Any] = field(default_factory=dict)
    #: how often the learning rate is logged: "step" or "epoch"
    lr_interval: str = "epoch"


class Experiment(abc.ABC):
    """One kind of training run. Subclasses set the class attributes and implement :meth:`setup`."""

    #: the config dataclass (built from the YAML with :func:`compact_ssl.config.build_dataclass`)
    config_class: type
    #: dotted config key of the seed
    seed_key: str = "trainer.seed"
    #: dotted config key of the trainer section
    trainer_key: str = "trainer"
    #: file written when a run finishes (its summary as JSON)
    done_name: str = "done.json"
    #: run folder below the seed folder (e.g. "linear" for a probe of a pretrained encoder)
    subdir: str = ""
    #: seed<N>/ folders even for a single seed (False: the expdir itself unless --seeds is given)
    seed_dirs: bool = True
    #: config keys (or sections) that may change between a run and its resume: they do not affect
    #: the weights
    volatile_keys: tuple[str, ...] = ("trainer.devices", "trainer.num_nodes", "trainer.accelerator",
                                      "trainer.strategy", "trainer.log_every_n_steps", "data.num_workers")
    #: further files of a run, moved with it by ``--resume never``
    run_outputs: tuple[str, ...] = ()
    #: text of ``--help`` (default: the docstring of the module defining the experiment)
    description: str = ""
    #: the module holds frozen submodules that stay in eval mode on purpose (a frozen encoder, a previous
    #: model giving targets): Lightning's warning about eval-mode modules at the start of fit is not shown
    frozen_eval_modules: bool = False

    # ------------------------------------------------------------------ to implement
    @abc.abstractmethod
    def setup(self, config: Any, rundir: Path) -> Setup:
        """Build the module, data and checkpoints of one run (called on every process)."""

    def summarize(self, config: Any, setup: Setup, trainer: L.Trainer, rundir: Path) -> dict:
        """The run's summary, written as the done marker (called on every process after fit)."""
        return {"steps": trainer.global_step, "epochs": trainer.current_epoch}

    def export(self, config: Any, setup: Setup, trainer: L.Trainer, rundir: Path, summary: dict) -> None:
        """Write the run's products (rank 0 only, before the done marker)."""

    def describe(self, seed: int, summary: dict) -> str:
        """One line printed per finished seed."""
        return f"seed {seed}: {summary}"

    def check(self, config: Any, rundir: Path) -> None:
        """Refuse a config or a run folder that cannot work, before anything is written."""

    # ------------------------------------------------------------------ config
    def load_config(self, path: str | Path | None, overrides: Sequence[str] = ()) -> Any:
        """The config from YAML plus ``--set`` overrides."""
        return load_yaml_config(self.config_class, path, list(overrides))

    def trainer_config(self, config: Any) -> TrainerConfig:
        """The trainer section of ``config`` (experiments may adapt it, e.g. a probe's own epochs)."""
        return get_key(config, self.trainer_key)

    # ------------------------------------------------------------------ one run
    def run(self, config: Any, rundir: str | Path, resume: str = "auto",
            callbacks: list[Callback] | None = None) -> dict:
        """Train (resume, or skip when finished) one run in ``rundir``; returns its summary.

        ``callbacks`` are added to the experiment's own (tests inject faults this way).
        """
        resume = _LEGACY_RESUME.get(resume, resume)
        if resume not in RESUME_MODES:
            raise ValueError(f"resume must be one of {RESUME_MODES}, got {resume!r}")
        rundir = Path(rundir)
        self.check(config, rundir)
        check_trainer_config(self.trainer_config(config), self.trainer_key)
        main_process = rank_zero_only.rank == 0
        with exclusive_lock(rundir / LOCK, str(rundir)) if main_process else nullcontext():
            return self._run_locked(config, rundir, resume, callbacks or [], main_process)

    def dry_run(self, config: Any, rundir: str | Path, resume: str = "auto") -> str:
        """What :meth:`run` would do in ``rundir``, as one line, writing nothing.

        Raises:
            ConfigError: the config or the trainer settings cannot work here.
            ConfigDriftError: the rerun would be refused (``resume="auto"`` and a changed config).
        """
        resume = _LEGACY_RESUME.get(resume, resume)
        rundir = Path(rundir)
        self.check(config, rundir)
        check_trainer_config(self.trainer_config(config), self.trainer_key)
        last, done = rundir / "checkpoints" / "last.ckpt", rundir / self.done_name
        if resume == "never":
            return f"{rundir}: would start afresh" + (" (the previous run is archived)" if rundir.exists() else "")
        changes = self._drift(config, rundir, last, done)
        if changes and resume != "force":
            raise ConfigDriftError(self._drift_message(rundir, changes))
        if done.is_file() and not changes:
            return f"{rundir}: finished; would be skipped"
        if last.is_file():
            return f"{rundir}: would resume from step {_checkpoint_step(last)}"
        return f"{rundir}: would start"

    def _run_locked(self, config: Any, rundir: Path, resume: str, callbacks: list[Callback],
                    main_process: bool) -> dict:
        done = rundir / self.done_name
        last = rundir / "checkpoints" / "last.ckpt"
        if resume == "never":
            if main_process:
                self._archive(rundir)
        else:
            changes = self._drift(config, rundir, last, done)
            if changes and resume == "force" and main_process:
                self._record_changes(rundir, changes)
                if done.is_file():
                    done.unlink()
            elif changes and resume != "force":
                raise ConfigDriftError(self._drift_message(rundir, changes))
            if done.is_file():
                print(f"{rundir}: already finished; skipping (delete {done} or pass --resume never to retrain)")
                return read_json(done)
        rundir.mkdir(parents=True, exist_ok=True)
        if main_process:
            save_yaml_config(config, rundir / CONFIG)
        L.seed_everything(get_key(config, self.seed_key), workers=True)
        setup = self.setup(config, rundir)
        ckpt_path = last if resume != "never" and last.is_file() else None
        trainer = build_trainer(self.trainer_config(config), rundir, setup.checkpoints,
                                [*setup.callbacks, *callbacks],
                                resume_step=_checkpoint_step(ckpt_path) if ckpt_path else None,
                                lr_interval=setup.lr_interval, **setup.trainer_kwargs)
        if ckpt_path:
            print(f"Resuming from {ckpt_path}")
        with warnings.catch_warnings():
            if self.frozen_eval_modules:
                warnings.filterwarnings("ignore", r"Found \d+ module\(s\) in eval mode")
            trainer.fit(setup.module, datamodule=setup.datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
        summary = self.summarize(config, setup, trainer, rundir)
        if trainer.global_rank == 0:
            self.export(config, setup, trainer, rundir, summary)
            write_json(done, summary)
        return summary

    def _drift(self, config: Any, rundir: Path, last: Path, done: Path) -> dict[str, tuple[Any, Any]]:
        saved = rundir / CONFIG
        if not (last.is_file() or done.is_file()):
            return {}  # nothing trained yet (e.g. a run that failed while starting): any config may start
        if not saved.is_file():
            return {"<config.yaml>": ("missing: the run's config is unknown", "the config of this run")}
        old = yaml.safe_load(saved.read_text()) or {}
        changes = config_diff(old, config_to_dict(config))
        added = self._added_at_default(changes)
        return {k: v for k, v in changes.items()
                if k not in added and not any(k == key or k.startswith(key + ".") for key in self.volatile_keys)}

    def _added_at_default(self, changes: dict[str, tuple[Any, Any]]) -> set[str]:
        """Keys absent from the saved config whose new value is the config class's default: fields added to the
        class after the run was written, which a run written before them already followed (a newer toolkit
        must not refuse an older finished run for them)."""
        try:
            defaults = config_to_dict(self.config_class())
        except TypeError:  # a config class without defaults for every field: no key can be told apart
            return set()
        added = set()
        for key, (old, new) in changes.items():
            node: Any = defaults
            for part in key.split("."):
                node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
            if old == ABSENT and node is not _MISSING and node == new:
                added.add(key)
        return added

    def _drift_message(self, rundir: Path, changes: dict[str, tuple[Any, Any]]) -> str:
        lines = [f"  {key}: {old!r} -> {new!r}" for key, (old, new) in changes.items()]
        return (f"{rundir / CONFIG}: the config differs from the one this run was trained with, so its "
                f"checkpoints would no longer match it:\n" + "\n".join(lines) + "\n"
                f"To start a fresh run, pass --resume never (the old run moves to {rundir / ARCHIVE}/) or use a "
                f"new --expdir; to continue this run with the new values deliberately, pass --resume force "
                f"(the change is recorded in {rundir / CHANGES}).")

    def _record_changes(self, rundir: Path, changes: dict[str, tuple[Any, Any]]) -> None:
        path = rundir / CHANGES
        history = (yaml.safe_load(path.read_text()) or []) if path.is_file() else []
        history.append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "step": _checkpoint_step(rundir / "checkpoints" / "last.ckpt"),
                        "changes": {k: {"old": old, "new": new} for k, (old, new) in changes.items()}})
        atomic_write_text(path, yaml.safe_dump(history, sort_keys=False))
        print(f"{rundir}: continuing with a changed config (--resume force); recorded in {path}")

    def _archive(self, rundir: Path) -> None:
        names = (*RUN_FILES, self.done_name, *self.run_outputs)
        present = [rundir / name for name in names if (rundir / name).exists()]
        if not present:
            return
        target = rundir / ARCHIVE / time.strftime("%Y%m%d-%H%M%S")
        while target.exists():
            target = target.with_name(target.name + "+")
        target.mkdir(parents=True)
        for path in present:
            shutil.move(str(path), str(target / path.name))
        print(f"{rundir}: --resume never: the previous run moved to {target}")

    # ------------------------------------------------------------------ CLI
    def parser(self) -> argparse.ArgumentParser:
        description = inspect.cleandoc(self.description or sys.modules[type(self).__module__].__doc__ or "")
        parser = argparse.ArgumentParser(description=description,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--config", required=True, help="experiment YAML (egs/*/*/conf/*.yaml)")
        parser.add_argument("--expdir", required=True, help="experiment folder")
        add_override_argument(parser)
        parser.add_argument("--seeds", nargs="+", type=int, default=None,
                            help="seeds to train, one run each (default: the config's seed)")
        parser.add_argument("--resume", default="auto", choices=[*RESUME_MODES, *_LEGACY_RESUME],
                            help="auto: continue from last.ckpt, refusing a changed config; never: start afresh "
                                 "(the old run is archived); force: continue with the changed config, recorded")
        parser.add_argument("--check", action="store_true",
                            help="dry run: validate the config, the trainer settings and the run folders, print what "
                                 "each run would do, write nothing")
        return parser

    def rundirs(self, expdir: Path, config: Any, seeds: list[int] | None) -> list[tuple[int, Path]]:
        """(seed, run folder) of every run of one invocation."""
        if seeds is None and not self.seed_dirs:
            return [(get_key(config, self.seed_key), expdir / self.subdir if self.subdir else expdir)]
        seeds = seeds if seeds is not None else [get_key(config, self.seed_key)]
        return [(s, expdir / f"seed{s}" / self.subdir if self.subdir else expdir / f"seed{s}") for s in seeds]

    def main(self, argv: list[str] | None = None) -> list[dict]:
        """Entry point: parse the CLI and run every seed; errors exit with status 1 and a message."""
        args = self.parser().parse_args(argv)
        try:
            config = self.load_config(args.config, args.overrides)
        except (ConfigError, FileNotFoundError) as err:
            _fail(err)
        summaries = []
        for seed, rundir in self.rundirs(Path(args.expdir), config, args.seeds):
            try:
                if args.check:
                    print(f"check: {self.dry_run(replace_key(config, self.seed_key, seed), rundir, args.resume)}")
                    continue
                summary = self.run(replace_key(config, self.seed_key, seed), rundir, args.resume)
            except (ConfigDriftError, ConfigError, LockHeldError) as err:
                _fail(err)
            print(self.describe(seed, summary))
            summaries.append(summary)
        return summaries


def _fail(err: Exception) -> None:
    print(f"ERROR: {err}", file=sys.stderr)
    raise SystemExit(1) from err


def _checkpoint_step(path: Path) -> int | None:
    """Global step stored in a Lightning checkpoint (memory-mapped: the weights are not read)."""
    if not path.is_file():
        return None
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False, mmap=True)
    return int(ckpt.get("global_step", 0))

