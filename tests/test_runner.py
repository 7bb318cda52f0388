"""The experiment runner of compact_ssl: resume semantics, tested by injecting faults into a toy
experiment (a kill mid-epoch, a changed config, a NaN validation loss, a rerun of a finished run)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from compact_ssl.training import (
    ConfigDriftError,
    Experiment,
    NonFiniteLossError,
    ResumableDataLoader,
    ResumableShuffleSampler,
    Setup,
    TrainerConfig,
    last_checkpoint,
)

NUM_ITEMS, BATCH = 24, 4  # 6 batches per epoch


@dataclass
class ToyTrainer(TrainerConfig):
    max_epochs: int = 3
    accelerator: str = "cpu"
    devices: int = 1
    log_every_n_steps: int = 1
    seed: int = 0
    ckpt_every_n_steps: int = 4


@dataclass
class ToyConfig:
    lr: float = 0.1
    nan_val_at_epoch: int = -1  #: make the validation loss NaN from this epoch on (-1: never)
    trainer: ToyTrainer = field(default_factory=ToyTrainer)


class ToyModule(L.LightningModule):
    """Uses three kinds of randomness a real method uses: dropout and input noise from the
    global generator, and a mask from its own generator (like a span-mask generator)."""

    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.3), nn.Linear(16, 1))
        self.mask_generator = torch.Generator().manual_seed(123)

    def training_step(self, batch, batch_idx):
        x, y = batch
        x = x + 0.1 * torch.randn_like(x)
        keep = (torch.rand(x.shape, generator=self.mask_generator) > 0.2).float()
        loss = nn.functional.mse_loss(self.net(x * keep).squeeze(-1), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x).squeeze(-1), y)
        if 0 <= self.config.nan_val_at_epoch <= self.current_epoch:
            loss = loss * float("nan")
        self.log("val_loss", loss)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.config.lr)


class ToyData(L.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        x = torch.randn(NUM_ITEMS, 4, generator=g)
        self.dataset = TensorDataset(x, x.sum(dim=1))

    def train_dataloader(self):
        return ResumableDataLoader(self.dataset, batch_size=BATCH, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.dataset, batch_size=8)


class Toy(Experiment):
    config_class = ToyConfig
    seed_dirs = False

    def setup(self, config: ToyConfig, rundir: Path) -> Setup:
        ckpt_dir = rundir / "checkpoints"
        best = ModelCheckpoint(dirpath=ckpt_dir, filename="best-{val_loss:.4f}", monitor="val_loss", mode="min")
        return Setup(ToyModule(config), ToyData(),
                     [last_checkpoint(ckpt_dir), last_checkpoint(ckpt_dir, config.trainer.ckpt_every_n_steps), best])

    def summarize(self, config, setup, trainer, rundir):
        return {"steps": trainer.global_step, "epochs": trainer.current_epoch}


class Kill(L.Callback):
    """Simulates a kill right after training step ``at_step`` (before any checkpoint of that step)."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at_step:
            raise RuntimeError("simulated kill")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _weights(rundir: Path) -> dict[str, torch.Tensor]:
    return torch.load(rundir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


@pytest.fixture
def uninterrupted(tmp_path):
    rundir = tmp_path / "reference"
    summary = Toy().run(ToyConfig(), rundir)
    assert summary == {"steps": 18, "epochs": 3}
    return rundir


@pytest.mark.parametrize("kill_at,saved_at", [(10, 8), (14, 12), (7, 6)])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted, kill_at, saved_at):
    """Killed mid-epoch (10: last saved at step 8), after an epoch's last step but before its
    validation (14: saved at 12), and right after an epoch end (7: saved at 6)."""
    rundir = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="simulated kill"):
        Toy().run(ToyConfig(), rundir, callbacks=[Kill(at_step=kill_at)])
    before = _rows(rundir / "csv" / "metrics.csv")
    assert torch.load(rundir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == saved_at
    assert not (rundir / "done.json").exists()

    assert Toy().run(ToyConfig(), rundir) == {"steps": 18, "epochs": 3}
    # same weights as the run that was never interrupted: data order, dropout, noise and the
    # module's own generator all continued where they were
    reference = _weights(uninterrupted)
    for key, value in _weights(rundir).items():
        assert torch.equal(value, reference[key]), key
    after = _rows(rundir / "csv" / "metrics.csv")
    assert after == _rows(uninterrupted / "csv" / "metrics.csv")
    # every row written before the kill is kept: those up to the checkpoint in the history,
    # those logged after it (and logged again by the resumed run) in replayed.csv
    replayed = _rows(rundir / "csv" / "replayed.csv")
    assert before == after[:len(before) - len(replayed)] + replayed
    assert replayed and all(int(r["step"]) >= saved_at for r in replayed)


def test_finished_run_is_skipped_and_keeps_its_history(uninterrupted, capsys):
    history = (uninterrupted / "csv" / "metrics.csv").read_text()
    weights = _weights(uninterrupted)
    assert Toy().run(ToyConfig(), uninterrupted) == {"steps": 18, "epochs": 3}
    assert "already finished; skipping" in capsys.readouterr().out
    assert (uninterrupted / "csv" / "metrics.csv").read_text() == history
    assert all(torch.equal(v, weights[k]) for k, v in _weights(uninterrupted).items())


def test_changed_config_is_refused_with_the_differing_keys(uninterrupted):
    config_before = (uninterrupted / "config.yaml").read_text()
    changed = replace(ToyConfig(lr=0.2), trainer=ToyTrainer(max_epochs=4))
    with pytest.raises(ConfigDriftError) as info:
        Toy().run(changed, uninterrupted)
    message = str(info.value)
    assert "lr: 0.1 -> 0.2" in message and "trainer.max_epochs: 3 -> 4" in message
    assert "--resume never" in message and "--resume force" in message
    assert (uninterrupted / "config.yaml").read_text() == config_before
    # device settings do not change the weights: not drift
    assert Toy().run(replace(ToyConfig(), trainer=ToyTrainer(devices="auto")), uninterrupted)["steps"] == 18


def test_a_field_added_to_the_config_class_at_its_default_is_not_drift(uninterrupted):
    """A run written before a config field existed followed its default: a newer toolkit reuses the run, and
    refuses it when the field is set to anything else."""
    saved = yaml.safe_load((uninterrupted / "config.yaml").read_text())
    del saved["nan_val_at_epoch"], saved["trainer"]["ckpt_every_n_steps"]
    (uninterrupted / "config.yaml").write_text(yaml.safe_dump(saved))
    assert Toy().run(ToyConfig(), uninterrupted) == {"steps": 18, "epochs": 3}
    with pytest.raises(ConfigDriftError, match=r"nan_val_at_epoch: '<absent>' -> 2"):
        Toy().run(ToyConfig(nan_val_at_epoch=2), uninterrupted)


def test_a_run_that_never_saved_a_checkpoint_takes_a_changed_config(tmp_path):
    rundir = tmp_path / "failed_start"
    rundir.mkdir()
    (rundir / "config.yaml").write_text("lr: 0.3\n")  # written by a run that failed before training
    assert Toy().run(ToyConfig(), rundir) == {"steps": 18, "epochs": 3}


def test_resume_force_continues_and_records_the_change(uninterrupted):
    changed = replace(ToyConfig(), trainer=ToyTrainer(max_epochs=4))
    assert Toy().run(changed, uninterrupted, resume="force") == {"steps": 24, "epochs": 4}
    record = yaml.safe_load((uninterrupted / "config_changes.yaml").read_text())
    assert record[0]["changes"] == {"trainer.max_epochs": {"old": 3, "new": 4}} and record[0]["step"] == 18
    assert yaml.safe_load((uninterrupted / "config.yaml").read_text())["trainer"]["max_epochs"] == 4
    steps = [int(r["step"]) for r in _rows(uninterrupted / "csv" / "metrics.csv") if r["train/loss"]]
    assert steps == sorted(steps) and len(steps) == 24  # the history goes on, nothing lost


def test_resume_never_archives_the_previous_run(uninterrupted):
    old_history = (uninterrupted / "csv" / "metrics.csv").read_text()
    changed = ToyConfig(lr=0.05)
    assert Toy().run(changed, uninterrupted, resume="never") == {"steps": 18, "epochs": 3}
    (archive,) = (uninterrupted / "archive").iterdir()
    assert (archive / "csv" / "metrics.csv").read_text() == old_history
    assert yaml.safe_load((archive / "config.yaml").read_text())["lr"] == 0.1
    assert yaml.safe_load((uninterrupted / "config.yaml").read_text())["lr"] == 0.05


def test_cli_refuses_drift_with_exit_status_1(uninterrupted, tmp_path, capsys):
    conf = tmp_path / "changed.yaml"
    conf.write_text("lr: 0.3\n")
    with pytest.raises(SystemExit) as info:
        Toy().main(["--config", str(conf), "--expdir", str(uninterrupted)])
    assert info.value.code == 1
    assert "lr: 0.1 -> 0.3" in capsys.readouterr().err
    conf.write_text("trainer: {max_epochs: ten}\n")
    with pytest.raises(SystemExit):
        Toy().main(["--config", str(conf), "--expdir", str(tmp_path / "new")])
    assert "trainer.max_epochs: expected an integer, got 'ten'" in capsys.readouterr().err


def test_nan_validation_loss_stops_the_run_without_a_checkpoint(tmp_path):
    rundir = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"non-finite validation metrics \{'val_loss': nan\} at step 12"):
        Toy().run(ToyConfig(nan_val_at_epoch=1), rundir)
    names = sorted(p.name for p in (rundir / "checkpoints").iterdir())
    assert not any("nan" in n for n in names)
    assert len([n for n in names if n.startswith("best-")]) == 1  # epoch 0's, finite
    assert torch.load(rundir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] <= 12
    assert not (rundir / "done.json").exists()


def test_seeds_give_one_folder_each(tmp_path):
    conf = tmp_path / "toy.yaml"
    conf.write_text("trainer: {max_epochs: 1}\n")
    summaries = Toy().main(["--config", str(conf), "--expdir", str(tmp_path / "exp"), "--seeds", "3", "4"])
    assert summaries == [{"steps": 6, "epochs": 1}] * 2
    for seed in (3, 4):
        saved = yaml.safe_load((tmp_path / "exp" / f"seed{seed}" / "config.yaml").read_text())
        assert saved["trainer"]["seed"] == seed
    first = _weights(tmp_path / "exp" / "seed3")
    assert not all(torch.equal(v, first[k]) for k, v in _weights(tmp_path / "exp" / "seed4").items())


def test_resumable_loader_skips_through_the_sampler():
    class Batches:
        def __init__(self):
            self.epoch, self.skipped = 0, 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def skip(self, n):
            self.skipped = n

        def __iter__(self):
            n, self.skipped = self.skipped, 0
            return iter([[i] for i in range(5)][n:])

        def __len__(self):
            return 5

    sampler = Batches()
    loader = ResumableDataLoader(list(range(5)), batch_sampler=sampler)
    sampler.set_epoch(2)
    loader.load_state_dict({"epoch": 2, "batches_served": 3})
    assert [b.tolist() for b in loader] == [[3], [4]]
    assert loader.state_dict() == {"epoch": 2, "batches_served": 5, "sampler_seed": None}
    assert len(list(loader)) == 5  # the skip applies to one epoch only
    loader.load_state_dict({"epoch": 1, "batches_served": 3})  # saved in an earlier epoch: no skip
    assert len(list(loader)) == 5


def test_shuffle_sampler_draws_what_random_sampler_draws():
    """Same order and same global random state afterwards as ``DataLoader(shuffle=True)``: seeded
    results do not change by making a loader resumable."""
    data = list(range(10))
    torch.manual_seed(5)
    plain = [b.tolist() for b in DataLoader(data, batch_size=3, shuffle=True)]
    after_plain = torch.rand(1)
    torch.manual_seed(5)
    resumable = ResumableDataLoader(data, batch_size=3, shuffle=True)
    assert [b.tolist() for b in resumable] == plain and torch.equal(torch.rand(1), after_plain)
    state = resumable.state_dict()
    assert state["batches_served"] == 4 and isinstance(state["sampler_seed"], int)
    # resumed after two batches of that epoch: the rest of the same permutation, and no draw
    resumable.load_state_dict({**state, "batches_served": 2})
    before = torch.get_rng_state()
    assert [b.tolist() for b in resumable] == plain[2:]
    assert torch.equal(torch.get_rng_state(), before)


def test_resumable_sampler_is_a_random_sampler_for_lightning():
    # Lightning swaps RandomSampler (and subclasses) for a DistributedSampler under DDP
    assert isinstance(ResumableShuffleSampler(list(range(4))), RandomSampler)
