"""Fault injection into every stage of every recipe template, through its mini twin (slow).

For each template a failing ``python`` command is injected into each stage in turn (see
tests/recipe_faults.py): the recipe must exit with the command's status, name the stage and the
cause, start no later stage, keep every file written before, and a rerun from the failed stage
must complete it. The last run, with no fault, must finish the recipe.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED_DATA
from recipe_faults import walk_stages_with_faults

pytestmark = pytest.mark.slow


def _speech(w: Path) -> list[str]:
    return ["--corpus_root", str(w / "corpus"), "--datadir", str(w / "data"), "--exp_root", str(w / "exp"),
            "--dumpdir", str(w / "dump"), "--use_dump", "true",
            "--train_args", "trainer.max_steps=6 trainer.val_every_n_steps=3",
            "--superb_upstreams", "fbank", "--superb_tasks", "ks",
            "--superb_args", "--override runner.total_steps=6 runner.eval_step=3 runner.save_step=3"]


def _icbhi(w: Path) -> list[str]:
    return ["--corpus_root", str(w / "corpus"), "--datadir", str(w / "data"), "--exp_root", str(w / "exp"),
            "--dumpdir", str(w / "dump"), "--confs", "conf/ce.yaml", "--seeds", "1", "--train_args",
            "trainer.max_epochs=1", "--real_samples", ""]


def _vision(w: Path) -> list[str]:
    return ["--exp_root", str(w / "exp"), "--data_root", str(w / "data"), "--seeds", "0",
            "--pretrain_args", "trainer.max_epochs=1", "--linear_args", "linear.epochs=1", "--baselines", ""]


def _cdfsl(w: Path) -> list[str]:
    data = w / "data"
    return ["--exp_root", str(w / "exp"), "--schemes", "sl", "--source_root", str(data / "source"),
            "--digits_target_dir", str(data / "target"), "--target_roots", f"folder={data / 'target' / 'train'}",
            "--episodes", "3", "--shots", "1", "--pretrain_args", "trainer.max_epochs=1", "--baselines", ""]


def _fewshot(w: Path) -> list[str]:
    return ["--exp_root", str(w / "exp"), "--data_root", str(w / "data"), "--study_args", "episodes=2", "--baselines", ""]


def _simcore(w: Path) -> list[str]:
    return ["--exp_root", str(w / "exp"), "--data_dir", str(w / "data"), "--omniglot", "",
            "--pretrain_args", "trainer.max_epochs=2", "--linear_args", "linear.epochs=1", "--samplers", "simcore",
            "--baselines", ""]


def _diffblender(w: Path) -> list[str]:
    return ["--exp_root", str(w / "exp"), "--base_args", "--steps 4 --vae_steps 4 --count 16 --eval_samples 4 "
            "--num_inference_steps 2",
            "--train_args", "trainer.max_steps=2 data.batch_size=4 data.shapes_count=8 data.shapes_val_count=4",
            "--sample_args", "sample.num_inference_steps=2", "--sample_sets", "all", "--num_eval", "4"]


def _fixed_episodes(w: Path) -> list[str]:
    return ["--exp_root", str(w / "exp"), "--data_root", str(w / "data"), "--eval_args", "epochs=2", "--baselines", ""]


#: template -> (mini twin, its stages, the options that keep each stage small and in tmp)
CASES = {
    "distill": ("mini_speech/distilhubert", [0, 1, 2, 3, 4, 5, 6, 7], _speech),
    "icbhi": ("mini_icbhi/patchmix", [0, 1, 2, 3, 4], _icbhi),
    "vision_ssl": ("mini_digits/mixco", [0, 1, 2, 3], _vision),
    "cdfsl": ("mini_digits/cdfsl", [0, 1, 2, 3], _cdfsl),
    "fewshot": ("mini_digits/fsl_update", [0, 1, 2, 3], _fewshot),
    "simcore": ("mini_digits/simcore", [0, 1, 2, 3, 4, 5, 6], _simcore),
    "diffblender": ("mini_shapes/diffblender", [0, 1, 2, 3, 4], _diffblender),
    "fixed_episodes": ("mini_omniglot/fewshot", [0, 1, 2, 3], _fixed_episodes),
}


@pytest.mark.parametrize("template", sorted(CASES))
def test_fault_in_each_stage_fails_the_recipe_and_the_rerun_completes(tmp_path, template):
    recipe, stages, args = CASES[template]
    if template == "fixed_episodes" and not (SHARED_DATA / "omniglot" / "all_runs.zip").is_file():
        pytest.skip(f"{SHARED_DATA}/omniglot/all_runs.zip absent: the mini Omniglot recipe needs it (`make test-data`)")
    work = tmp_path / "work"
    records = walk_stages_with_faults(recipe, args(work), stages, tmp_path, [work])
    assert [r["stage"] for r in records] == stages
