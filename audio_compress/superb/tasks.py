"""The SUPERB task table, as data.

One :class:`TaskSpec` per task says how our runner drives s3prl's legacy downstream runner
(``run_downstream.py``) for it:

* ``downstream``: the s3prl downstream (``-d``); ``config``: our own YAML under
  ``audio_compress/superb/configs/{full,mini}/`` (``-c``), written from the SUPERB protocol's
  hyperparameters (see the comments in each file);
* ``eval_split``: the split reported (``-t``); ``selection``: which checkpoint is evaluated
  (the best on dev for most tasks, every saved checkpoint for ASV, no training for QbE);
* ``metrics``: our metric keys (:mod:`audio_compress.superb.score`) and the s3prl scalar each is
  read from. Every downstream expert logs its metrics through ``logger.add_scalar(tag, value)``;
  the runner records those calls (:mod:`audio_compress.superb.runner`) and the metric is the
  recorded value of ``tag`` times ``scale`` (s3prl logs fractions; our accuracies and error
  rates are percentages);
* ``db_vars``: the dataset-root variables of ``recipes/db.sh`` the full task needs, and
  :meth:`TaskSpec.data_overrides` maps them (plus the files of the pinned s3prl clone,
  ``tool_files``) to ``-o`` overrides with absolute paths, so nothing depends on the CWD;
* ``protocol_lr`` / ``protocol_steps``: the SUPERB values (the per-task learning rate is
  overridable, ``--lr``);
* ``paper_warmup`` / ``paper_lr_scale``: the deviations the ARMHuBERT and STaR papers used,
  applied with ``paper_deviations=True`` (their READMEs: "uncomment the learning-rate
  scheduler" and "10x learning rate for SID"): the linear warm-up/decay scheduler with the
  warm-up that the s3prl configs give in their commented-out scheduler block, and SID's
  learning rate times 10. Off by default (plain SUPERB protocol).

The mini tasks (``mini_config``) run on the layouts :mod:`audio_compress.superb.layouts` builds
from the mini corpus (or FSDD); :meth:`TaskSpec.mini_overrides` points them at those folders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CONFIG_DIR",
    "MetricSpec",
    "TaskSpec",
    "TASKS",
    "SUPERB_TASKS",
    "MINI_TASKS",
    "S3PRL_COMMIT",
    "S3PRL_GIT_URL",
    "get_task",
    "MissingRootError",
    "MissingToolFileError",
]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

#: The s3prl commit whose downstream files (dictionaries, lexicons, speaker lists, scoring
#: scripts) the full tasks use; the PyPI package (0.4.18) does not ship them.
S3PRL_COMMIT = "ec8064b5889f"
S3PRL_GIT_URL = "https://github.com/s3prl/s3prl.git"


class MissingRootError(FileNotFoundError):
    """A dataset root a task needs is not set or does not exist."""


class MissingToolFileError(FileNotFoundError):
    """A file from the s3prl clone (``tools/s3prl``) that a task needs is missing."""


@dataclass(frozen=True)
class MetricSpec:
    """One reported metric: our key, the s3prl scalar tag (``{split}`` is replaced by the
    evaluated split) and the factor from s3prl's value to ours."""

    key: str
    tag: str
    scale: float = 100.0
    higher_is_better: bool = True

    def tag_for(self, split: str) -> str:
        return self.tag.format(split=split)


# A function (roots, s3prl_root, work) -> overrides for the full task; roots maps db.sh variable
# names to existing folders, s3prl_root is the pinned clone (or None), work is a writable folder
# for metadata the runner derives from the corpus (ASR length tables, IEMOCAP fold lists).
FullOverrides = Callable[[Mapping[str, Path], "Path | None", Path], dict[str, object]]
# A function (layout_root) -> overrides for the mini task.
MiniOverrides = Callable[[Path], dict[str, object]]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    downstream: str
    config: str
    mini_config: str | None
    eval_split: str
    metrics: tuple[MetricSpec, ...]
    db_vars: tuple[str, ...]
    protocol_lr: float
    protocol_steps: int
    paper_warmup: int | None
    full_overrides: FullOverrides
    mini_overrides_fn: MiniOverrides | None = None
    dev_split: str = "dev"
    best_ckpt: str = "dev-best.ckpt"
    #: ``dev-best``: evaluate the best-on-dev checkpoint; ``all-states``: evaluate every saved
    #: ``states-*.ckpt`` and keep the best value (ASV has no dev set); ``no-train``: evaluate
    #: the upstream directly per layer, pick the layer on dev (QbE).
    selection: str = "dev-best"
    paper_lr_scale: float = 1.0
    #: Folds, each trained and tested separately; the metric is their mean (ER: 5 sessions).
    folds: tuple[str, ...] = ()
    fold_override: str | None = None
    #: Files from the s3prl clone this task needs (relative to the clone root).
    tool_files: tuple[str, ...] = ()
    #: Whether the task needs s3prl's ``downstream/ctc/corpus`` package (missing on PyPI).
    needs_ctc_corpus: bool = False
    #: Python modules the s3prl expert imports that are not dependencies of this toolkit:
    #: (module, pip package).
    python_deps: tuple[tuple[str, str], ...] = ()
    #: Expected wall time on one GPU at the protocol's step count (an estimate; README).
    gpu_time: str = ""
    notes: str = ""

    @property
    def trains(self) -> bool:
        return self.selection != "no-train"

    def config_path(self, mini: bool = False) -> Path:
        """Absolute path of our config file for the task."""
        name = self.mini_config if mini else self.config
        if name is None:
            raise ValueError(f"task {self.name!r} has no mini configuration; mini SUPERB covers "
                             f"{', '.join(MINI_TASKS)}")
        return CONFIG_DIR / name

    def missing_python_deps(self) -> list[str]:
        """pip packages this task's s3prl expert needs that are not installed."""
        import importlib.util

        return [pip for module, pip in self.python_deps if importlib.util.find_spec(module) is None]

    def metric_keys(self) -> list[str]:
        return [m.key for m in self.metrics]

    def data_overrides(self, roots: Mapping[str, str | Path | None],
                       s3prl_root: str | Path | None = None,
                       work: str | Path = "superb_data") -> dict[str, object]:
        """``-o`` overrides that point the task at its datasets and the clone's files.

        ``roots`` maps db.sh variable names (``SPEECH_COMMANDS``, ...) to folders; ``work`` is
        where derived metadata goes (see :func:`audio_compress.superb.layouts.prepare_full_task`).
        Missing or
        non-existent roots raise :class:`MissingRootError`; missing clone files raise
        :class:`MissingToolFileError`, each with a message saying what to provide.
        """
        resolved: dict[str, Path] = {}
        for var in self.db_vars:
            value = roots.get(var)
            if not value:
                raise MissingRootError(
                    f"task {self.name} ({self.title}) needs the dataset root {var}: set {var}=<folder> "
                    f"in recipes/db.sh (or the environment) or pass --root {var}=<folder>. "
                    f"{DATASET_HELP.get(var, '')}")
            path = Path(value).expanduser().resolve()
            if not path.is_dir():
                raise MissingRootError(f"task {self.name}: {var}={value} is not a folder. "
                                       f"{DATASET_HELP.get(var, '')}")
            resolved[var] = path
        clone = None
        if self.tool_files or self.needs_ctc_corpus:
            clone = check_tool_files(self, s3prl_root)
        return self.full_overrides(resolved, clone, Path(work).resolve())

    def resolve_roots(self, roots: Mapping[str, str | Path | None]) -> dict[str, Path]:
        """The task's dataset roots as absolute paths (no existence check)."""
        return {v: Path(roots[v]).expanduser().resolve() for v in self.db_vars if roots.get(v)}

    def mini_overrides(self, layout_root: str | Path) -> dict[str, object]:
        if self.mini_overrides_fn is None:
            raise ValueError(f"task {self.name!r} has no mini version")
        return self.mini_overrides_fn(Path(layout_root).resolve())


def check_tool_files(task: TaskSpec, s3prl_root: str | Path | None) -> Path:
    """The s3prl clone, after checking that every file ``task`` needs is in it."""
    hint = ("The PyPI s3prl package lacks the downstream configs, dictionaries, lexicons, speaker "
            "lists and scoring scripts; the recipe's SUPERB stage clones s3prl at commit "
            f"{S3PRL_COMMIT} into tools/s3prl (python -m audio_compress.bin.superb tools --dest "
            "tools/s3prl), which needs internet access once.")
    if s3prl_root is None:
        raise MissingToolFileError(f"task {task.name} needs files from an s3prl clone "
                                   f"(--s3prl_root). {hint}")
    root = Path(s3prl_root).expanduser().resolve()
    missing = [rel for rel in task.tool_files if not (root / rel).exists()]
    if task.needs_ctc_corpus and not (root / CTC_CORPUS_DIR / "__init__.py").exists() \
            and not (root / CTC_CORPUS_DIR).is_dir():
        missing.append(CTC_CORPUS_DIR)
    if missing:
        raise MissingToolFileError(f"task {task.name}: missing in the s3prl clone {root}: "
                                   f"{', '.join(missing)}. {hint}")
    return root


CTC_CORPUS_DIR = "s3prl/downstream/ctc/corpus"

DATASET_HELP = {
    "LIBRISPEECH": "Download LibriSpeech train-clean-100, dev-clean and test-clean (openslr.org/12); "
                   "the root is the folder holding LibriSpeech/.",
    "SPEECH_COMMANDS": "Unpack speech_commands_v0.01.tar.gz into its own folder (label folders, "
                       "_background_noise_/).",
    "SPEECH_COMMANDS_TEST": "Unpack speech_commands_test_set_v0.01.tar.gz into a separate folder.",
    "FLUENT_COMMANDS": "Fluent Speech Commands: the folder with wavs/speakers/ and data/*.csv.",
    "VOXCELEB1": "VoxCeleb1 with dev/wav/<spk>/... and test/wav/<spk>/... (the vox1 dev and test zips).",
    "IEMOCAP": "IEMOCAP_full_release (Session1..Session5).",
    "SNIPS": "Audio SNIPS converted to wav (s3prl's preprocessed archive) with slots.txt.",
    "QUESST14": "quesst14Database (with its scoring/ folder).",
    "LIBRIMIX": "Libri2Mix diarization data prepared as Kaldi dirs {train,dev,test} "
                "(s3prl's LibriMix fork: generate_librimix_sd.sh + prepare_diarization.py).",
}


# ----------------------------------------------------------------- per-task overrides (full)

def _pr_full(roots, clone, work):
    lib = roots["LIBRISPEECH"]
    lib = lib / "LibriSpeech" if (lib / "LibriSpeech").is_dir() else lib
    ctc = clone / "s3prl/downstream/ctc"
    return {
        "config.downstream_expert.corpus.path": str(lib),
        "config.downstream_expert.corpus.lexicon": [
            str(ctc / "lexicon/librispeech-lexicon-200k-g2p.txt"),
            str(ctc / "lexicon/librispeech-lexicon-allothers-g2p.txt")],
        "config.downstream_expert.text.vocab_file": str(ctc / "vocab/phoneme.txt"),
    }


def _asr_full(roots, clone, work):
    lib = roots["LIBRISPEECH"]
    lib = lib / "LibriSpeech" if (lib / "LibriSpeech").is_dir() else lib
    return {
        "config.downstream_expert.datarc.libri_root": str(lib),
        # written by audio_compress.superb.layouts.prepare_full_task (s3prl's own script for it
        # is interactive)
        "config.downstream_expert.datarc.bucket_file": str(work / "asr" / "len_for_bucket"),
        "config.downstream_expert.datarc.dict_path": str(clone / "s3prl/downstream/asr/char.dict"),
    }


def _ks_full(roots, clone, work):
    return {
        "config.downstream_expert.datarc.speech_commands_root": str(roots["SPEECH_COMMANDS"]),
        "config.downstream_expert.datarc.speech_commands_test_root": str(roots["SPEECH_COMMANDS_TEST"]),
    }


def _ic_full(roots, clone, work):
    return {"config.downstream_expert.datarc.file_path": str(roots["FLUENT_COMMANDS"])}


def _sid_full(roots, clone, work):
    return {
        "config.downstream_expert.datarc.file_path": str(roots["VOXCELEB1"]),
        "config.downstream_expert.datarc.meta_data": str(clone / "s3prl/downstream/voxceleb1/veri_test_class.txt"),
    }


def _asv_full(roots, clone, work):
    sv = clone / "s3prl/downstream/sv_voxceleb1"
    return {
        "config.downstream_expert.datarc.file_path": str(roots["VOXCELEB1"]),
        "config.downstream_expert.datarc.train_meta_data": str(sv / "dev_meta_data/dev_speaker_ids.txt"),
        "config.downstream_expert.datarc.dev_meta_data": str(sv / "dev_meta_data/dev_meta_data.txt"),
        "config.downstream_expert.datarc.test_meta_data": str(sv / "voxceleb1_test_v2.txt"),
    }


def _er_full(roots, clone, work):
    return {
        "config.downstream_expert.datarc.root": str(roots["IEMOCAP"]),
        # written by audio_compress.superb.layouts.prepare_full_task with s3prl's
        # IEMOCAP_preprocess functions (per-session train/test lists), outside the corpus folder
        "config.downstream_expert.datarc.meta_data": str(work / "er" / "meta_data"),
    }


def _sf_full(roots, clone, work):
    return {
        "config.downstream_expert.corpus.path": str(roots["SNIPS"]),
        "config.downstream_expert.text.slots_file": str(roots["SNIPS"] / "slots.txt"),
        "config.downstream_expert.text.vocab_file": str(clone / "s3prl/downstream/ctc/vocab/character.txt"),
    }


def _sd_full(roots, clone, work):
    mix = roots["LIBRIMIX"]
    return {f"config.downstream_expert.loaderrc.{s}_dir": str(mix / s) for s in ("train", "dev", "test")}


def _qbe_full(roots, clone, work):
    return {"config.downstream_expert.datarc.dataset_root": str(roots["QUESST14"])}


# ----------------------------------------------------------------- per-task overrides (mini)

def _pr_mini(root):
    pr = root / "pr"
    return {
        "config.downstream_expert.corpus.path": str(pr / "LibriSpeech"),
        "config.downstream_expert.corpus.lexicon": [str(pr / "lexicon.txt")],
        "config.downstream_expert.text.vocab_file": str(pr / "vocab.txt"),
    }


def _ks_mini(root):
    return {
        "config.downstream_expert.datarc.speech_commands_root": str(root / "ks" / "train"),
        "config.downstream_expert.datarc.speech_commands_test_root": str(root / "ks" / "test"),
    }


def _ic_mini(root):
    return {"config.downstream_expert.datarc.file_path": str(root / "ic")}


def _sid_mini(root):
    return {
        "config.downstream_expert.datarc.file_path": str(root / "sid"),
        "config.downstream_expert.datarc.meta_data": str(root / "sid" / "iden_split.txt"),
    }


_ACC = "{split}-acc"

TASKS: dict[str, TaskSpec] = {t.name: t for t in [
    TaskSpec(
        name="pr", title="phoneme recognition (LibriSpeech, CTC)", downstream="ctc",
        config="full/pr.yaml", mini_config="mini/pr.yaml", eval_split="test",
        metrics=(MetricSpec("PR_per", "ctc-libriphone/{split}-per", 100.0, False),),
        db_vars=("LIBRISPEECH",), protocol_lr=1e-2, protocol_steps=100_000, paper_warmup=1400,
        full_overrides=_pr_full, mini_overrides_fn=_pr_mini,
        tool_files=("s3prl/downstream/ctc/lexicon/librispeech-lexicon-200k-g2p.txt",
                    "s3prl/downstream/ctc/lexicon/librispeech-lexicon-allothers-g2p.txt",
                    "s3prl/downstream/ctc/vocab/phoneme.txt"),
        needs_ctc_corpus=True, gpu_time="~10-15 h",
    ),
    TaskSpec(
        name="asr", title="speech recognition (LibriSpeech train-clean-100)", downstream="asr",
        config="full/asr.yaml", mini_config=None, eval_split="test-clean", dev_split="dev-clean",
        best_ckpt="dev-clean-best.ckpt",
        metrics=(MetricSpec("ASR_wer", "asr/{split}-wer", 100.0, False),),
        db_vars=("LIBRISPEECH",), protocol_lr=1e-4, protocol_steps=200_000, paper_warmup=1400,
        full_overrides=_asr_full, tool_files=("s3prl/downstream/asr/char.dict",),
        gpu_time="~2-3 days",
    ),
    TaskSpec(
        name="ks", title="keyword spotting (Speech Commands v0.01, 12 classes)",
        downstream="speech_commands", config="full/ks.yaml", mini_config="mini/ks.yaml",
        eval_split="test", metrics=(MetricSpec("KS_acc", "speech_commands/" + _ACC),),
        db_vars=("SPEECH_COMMANDS", "SPEECH_COMMANDS_TEST"), protocol_lr=1e-4,
        protocol_steps=200_000, paper_warmup=1400, full_overrides=_ks_full,
        mini_overrides_fn=_ks_mini, gpu_time="~6-10 h",
    ),
    TaskSpec(
        name="qbe", title="query-by-example spoken term detection (QUESST14, DTW)",
        downstream="quesst14_dtw", config="full/qbe.yaml", mini_config=None, eval_split="test",
        metrics=(MetricSpec("QbE_mtwv", "maxTWV", 1.0),),
        db_vars=("QUESST14",), protocol_lr=0.0, protocol_steps=0, paper_warmup=None,
        full_overrides=_qbe_full, selection="no-train",
        python_deps=(("dtw", "dtw-python"), ("lxml", "lxml")),
        gpu_time="~1-2 h per layer (DTW runs on CPU), all layers x dev+test",
        notes="no training: every layer is scored on dev with the corpus's scoring script "
              "(score-TWV-Cnxe.sh), the best layer's test MTWV is reported",
    ),
    TaskSpec(
        name="ic", title="intent classification (Fluent Speech Commands)",
        downstream="fluent_commands", config="full/ic.yaml", mini_config="mini/ic.yaml",
        eval_split="test", metrics=(MetricSpec("IC_acc", "fluent_commands/" + _ACC),),
        db_vars=("FLUENT_COMMANDS",), protocol_lr=1e-4, protocol_steps=200_000,
        paper_warmup=1000, full_overrides=_ic_full, mini_overrides_fn=_ic_mini,
        gpu_time="~10-15 h",
    ),
    TaskSpec(
        name="sid", title="speaker identification (VoxCeleb1, 1251 speakers)",
        downstream="voxceleb1", config="full/sid.yaml", mini_config="mini/sid.yaml",
        eval_split="test", metrics=(MetricSpec("SID_acc", "voxceleb1/" + _ACC),),
        db_vars=("VOXCELEB1",), protocol_lr=1e-4, protocol_steps=200_000, paper_warmup=5000,
        paper_lr_scale=10.0, full_overrides=_sid_full, mini_overrides_fn=_sid_mini,
        tool_files=("s3prl/downstream/voxceleb1/veri_test_class.txt",),
        gpu_time="~1-1.5 days",
    ),
    TaskSpec(
        name="asv", title="speaker verification (VoxCeleb1)", downstream="sv_voxceleb1",
        config="full/asv.yaml", mini_config=None, eval_split="test",
        metrics=(MetricSpec("ASV_eer", "sv-voxceleb1/{split}-EER", 100.0, False),),
        db_vars=("VOXCELEB1",), protocol_lr=1e-4, protocol_steps=200_000, paper_warmup=6000,
        full_overrides=_asv_full, selection="all-states", python_deps=(("sox", "sox"),),
        tool_files=("s3prl/downstream/sv_voxceleb1/voxceleb1_test_v2.txt",
                    "s3prl/downstream/sv_voxceleb1/dev_meta_data/dev_meta_data.txt"),
        gpu_time="~1.5-2 days training + ~1 h per saved checkpoint for testing",
        notes="no dev set: every saved checkpoint is tested and the lowest EER is reported",
    ),
    TaskSpec(
        name="sd", title="speaker diarization (Libri2Mix)", downstream="diarization",
        config="full/sd.yaml", mini_config=None, eval_split="test", best_ckpt="best-states-dev.ckpt",
        metrics=(MetricSpec("SD_der", "diarization/{split}-der", 100.0, False),),
        db_vars=("LIBRIMIX",), protocol_lr=1e-4, protocol_steps=30_000, paper_warmup=None,
        full_overrides=_sd_full, gpu_time="~4-6 h", python_deps=(("h5py", "h5py"),),
        notes="SD_der is the frame-level DER s3prl's diarization expert logs on the test split; "
              "the official SUPERB number comes from downstream/diarization/score.sh with dscore "
              "(collar 0, lowest DER over median-filter sizes) and is not computed here",
    ),
    TaskSpec(
        name="er", title="emotion recognition (IEMOCAP, 4 classes, 5-fold)", downstream="emotion",
        config="full/er.yaml", mini_config=None, eval_split="test",
        metrics=(MetricSpec("ER_acc", "emotion/" + _ACC),),
        db_vars=("IEMOCAP",), protocol_lr=1e-4, protocol_steps=30_000, paper_warmup=1400,
        full_overrides=_er_full, folds=tuple(f"fold{i}" for i in range(1, 6)),
        fold_override="config.downstream_expert.datarc.test_fold",
        gpu_time="~2-4 h per fold (x5)",
    ),
    TaskSpec(
        name="sf", title="slot filling (Audio SNIPS, CTC)", downstream="ctc",
        config="full/sf.yaml", mini_config=None, eval_split="test",
        metrics=(MetricSpec("SF_f1", "ctc-snips/{split}-slot_type_f1", 100.0, True),
                 MetricSpec("SF_cer", "ctc-snips/{split}-slot_value_cer", 100.0, False)),
        db_vars=("SNIPS",), protocol_lr=1e-4, protocol_steps=200_000, paper_warmup=1400,
        full_overrides=_sf_full, tool_files=("s3prl/downstream/ctc/vocab/character.txt",),
        needs_ctc_corpus=True, gpu_time="~1.5-2 days",
    ),
]}

#: The ten tasks of the SUPERB paper, in the papers' column order.
SUPERB_TASKS: tuple[str, ...] = ("pr", "asr", "ks", "qbe", "sid", "asv", "sd", "ic", "sf", "er")
#: Tasks with a mini version (mini corpus or FSDD layouts, CPU).
MINI_TASKS: tuple[str, ...] = tuple(n for n, t in TASKS.items() if t.mini_config)


def get_task(name: str) -> TaskSpec:
    """The spec of task ``name`` (case-insensitive); a clear error for unknown names."""
    key = name.strip().lower()
    if key not in TASKS:
        raise KeyError(f"unknown SUPERB task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[key]
