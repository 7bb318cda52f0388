"""Experiment configs (strict loading, the published hyperparameters of every recipe YAML) and
the learning-rate schedules of section 10 of the vision reference."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from vision_ssl.config import load_config
from vision_ssl.data.cdfsl import CDFSL_LAYOUTS
from vision_ssl.schedules import cosine_lr, learning_rate, lr_lambda

ROOT = Path(__file__).resolve().parents[1]
_VISION_YAML = sorted(p for corpus in ("cifar10", "cifar100", "tinyimagenet", "imagenet", "mini_digits", "cdfsl",
                                       "simcore", "fsl_update", "mini_omniglot")
                      for p in (ROOT / "egs" / corpus).glob("**/conf/*.yaml"))
# pretraining experiments have a ``data`` section; the rest are few-shot study tables
# (vision_ssl.fewshot.study) and SimCore coreset settings (vision_ssl.simcore.config)
VISION_CONFS = [p for p in _VISION_YAML if "data" in (yaml.safe_load(p.read_text()) or {})]
OTHER_CONFS = [p for p in _VISION_YAML if p not in VISION_CONFS]


def test_selfcon_warmup_cosine_values():
    kw = dict(base_lr=0.5, total_epochs=1000, schedule="cosine", eta_min=0.5 * 1e-3, warmup_epochs=10,
              warmup="linear", warmup_from=0.01)
    assert learning_rate(10.0, **kw) == pytest.approx(0.4998768, abs=1e-7)
    assert learning_rate(0.0, **kw) == pytest.approx(0.01)
    assert learning_rate(5.0, **kw) == pytest.approx(0.01 + 0.5 * (0.4998768 - 0.01), abs=1e-7)
    assert learning_rate(999.5, **kw) == pytest.approx(cosine_lr(0.5, 999, 1000, 5e-4))
    assert cosine_lr(0.5, 1000, 1000, 5e-4) == pytest.approx(5e-4)
    # per-step LambdaLR of the methods: 100 steps per epoch, step 1000 = epoch 10
    assert lr_lambda(0.5, 1000, 100, eta_min=5e-4, warmup_epochs=10, warmup_from=0.01)(1000) * 0.5 == \
        pytest.approx(0.4998768, abs=1e-7)
    assert lr_lambda(0.5, 1000, 100, eta_min=5e-4, warmup_epochs=10, warmup_from=0.01)(50) * 0.5 == \
        pytest.approx(0.01 + 0.05 * (0.4998768 - 0.01), abs=1e-7)


def test_moco_cosine_and_linear_steps():
    for e in (0, 25, 50, 99):
        expected = 0.015 * 0.5 * (1 + math.cos(math.pi * e / 100))
        assert learning_rate(e + 0.7, 0.015, 100) == pytest.approx(expected)
    assert learning_rate(50, 0.015, 100) == pytest.approx(0.0075)
    step = dict(base_lr=3.0, total_epochs=100, schedule="multistep", milestones=[60, 80], gamma=0.1)
    lrs = [learning_rate(e, **step) for e in (0, 59.9, 60, 79, 80, 99)]
    assert lrs == pytest.approx([3.0, 3.0, 0.3, 0.3, 0.03, 0.03])


def test_simclr_constant_warmup_then_cosine():
    kw = dict(base_lr=0.15, total_epochs=100, warmup_epochs=10, warmup="constant")
    assert [learning_rate(e, **kw) for e in (0, 5, 9.9, 10)] == pytest.approx([0.15] * 4)
    assert learning_rate(55, **kw) == pytest.approx(0.075)
    assert lr_lambda(0.0, 100, 10)(55) == 0.0
    with pytest.raises(ValueError, match="unknown lr schedule"):
        learning_rate(0, 0.1, 10, schedule="poly")


@pytest.mark.parametrize("path", VISION_CONFS, ids=lambda p: str(p.relative_to(ROOT / "egs")))
def test_every_recipe_config_loads(path):
    corpus = path.relative_to(ROOT / "egs").parts[0]
    # mini digits: ImageFolder trees, or the class-folder CD-FSL target ("folder") of mini_digits/cdfsl;
    # CD-FSL sources and SimCore target + coreset lists
    expected = {"mini_digits": ("imagefolder", "folder"), "cdfsl": tuple(CDFSL_LAYOUTS),
                "simcore": ("filelist", "imagefolder"), "mini_omniglot": ("imagefolder",)}.get(corpus, (corpus,))
    assert load_config(path).data.dataset in expected


@pytest.mark.parametrize("path", OTHER_CONFS, ids=lambda p: str(p.relative_to(ROOT / "egs")))
def test_study_and_coreset_configs_load(path):
    from vision_ssl.fewshot.study import load_study
    from vision_ssl.simcore.config import load_coreset_config

    if path.parent.parent.name == "simcore":
        assert load_coreset_config(path).k > 0
    else:
        assert load_study(path).episodes > 0


def _fields(obj, names: str) -> tuple:
    """``(obj.a.b, obj.c, ...)`` for ``names = "a.b c"``."""
    out = []
    for name in names.split():
        value = obj
        for part in name.split("."):
            value = getattr(value, part)
        out.append(value)
    return tuple(out)


@pytest.mark.parametrize("name,method,views", [
    ("selfcon/conf/selfcon_s_r18", "selfcon", 1), ("selfcon/conf/selfcon_m_r18", "selfcon", 2),
    ("supcon/conf/supcon_r18", "supcon", 2), ("supcon/conf/supcon_s_r18", "supcon", 1),
])
def test_published_selfcon_supcon_settings(name, method, views):
    c = load_config(ROOT / "egs" / "cifar100" / f"{name}.yaml")
    assert _fields(c, "method data.num_views data.dataset data.image_size data.train_aug") == \
        (method, views, "cifar100", 32, "supcon")
    assert _fields(c, "model.backbone model.head_hidden model.proj_dim model.head_bn") == \
        ("resnet18_cifar", 512, 128, False)
    assert _fields(c, "data.batch_size trainer.max_epochs trainer.precision") == (1024, 1000, "16-mixed")
    assert _fields(c, "optim.lr optim.momentum optim.weight_decay optim.schedule") == (0.5, 0.9, 1e-4, "cosine")
    assert c.optim.lr * c.optim.eta_min_ratio == pytest.approx(5e-4)
    assert _fields(c, "optim.warmup_epochs optim.warmup optim.warmup_from") == (10, "linear", 0.01)
    assert _fields(c, "contrast.temperature contrast.base_temperature contrast.supervised") == (0.1, 0.07, True)
    assert _fields(c, "selfcon.exits selfcon.subnet") == ([2], "fc")
    assert _fields(c, "linear.batch_size linear.lr linear.weight_decay linear.epochs linear.milestones linear.gamma") \
        == (512, 3.0, 0.0, 100, [60, 80], 0.1)
    assert c.linear.features == (["backbone", "subnet"] if method == "selfcon" else ["backbone"])


def test_published_mixco_settings():
    tiny = ROOT / "egs" / "tinyimagenet" / "mixco" / "conf"
    c = load_config(tiny / "mixco_moco_r18.yaml")
    assert _fields(c, "method mixco.enabled mixco.beta mixco.tau_mix mixco.lambda_dist") == \
        ("mocov2", True, 1.0, 0.05, "uniform")
    assert _fields(c, "data.batch_size data.image_size data.train_aug data.test_split") == (128, 224, "mocov2", "val")
    assert _fields(c, "optim.lr optim.weight_decay optim.schedule optim.eta_min_ratio trainer.max_epochs") == \
        (0.015, 1e-4, "cosine", 0.0, 100)
    assert _fields(c, "contrast.temperature moco.queue_size moco.momentum") == (0.2, 65536, 0.999)
    assert _fields(c, "model.backbone model.head_hidden model.proj_dim") == ("resnet18", 512, 128)
    assert _fields(c, "linear.lr linear.batch_size linear.weight_decay linear.milestones linear.test_aug") == \
        (3.0, 256, 0.0, [60, 80], "resize_crop")
    base = load_config(tiny / "moco_r18.yaml")
    assert not base.mixco.enabled and base.optim == c.optim and base.linear == c.linear
    s = load_config(tiny / "mixco_simclr_r18.yaml")
    assert _fields(s, "method mixco.enabled contrast.temperature mixco.tau_mix mixco.beta") == \
        ("simclr", True, 0.5, 0.5, 1.0)
    assert _fields(s, "optim.lr optim.weight_decay optim.warmup_epochs optim.warmup data.train_aug") == \
        (0.15, 1e-6, 10, "constant", "simclr")
    assert not load_config(tiny / "simclr_r18.yaml").mixco.enabled
    r50 = load_config(ROOT / "egs" / "imagenet" / "mixco" / "conf" / "mixco_moco_r50.yaml")
    assert _fields(r50, "model.backbone model.head_hidden optim.lr trainer.max_epochs mixco.tau_mix linear.lr") == \
        ("resnet50", 2048, 0.03, 200, 1.0, 30.0)
    assert r50.data.batch_size * r50.trainer.devices == 256
    for corpus in ("cifar10", "cifar100"):
        cc = load_config(ROOT / "egs" / corpus / "mixco" / "conf" / "mixco_moco_r18.yaml")
        assert cc.data.dataset == corpus and cc.optim == c.optim and cc.mixco == c.mixco and cc.data.image_size == 224


def test_strict_loading_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: selfcon\noptim:\n  learning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"bad.yaml: optim: unknown keys \['learning_rate'\]"):
        load_config(bad)
    with pytest.raises(ValueError, match="method must be one of"):
        load_config(None, ["method=swav"])
    with pytest.raises(ValueError, match="mixco.enabled applies to simclr and mocov2"):
        load_config(None, ["method=supcon", "mixco.enabled=true"])
    with pytest.raises(ValueError, match="selfcon.exits must be distinct stages"):
        load_config(None, ["selfcon.exits=[4]"])
    with pytest.raises(ValueError, match="data.train_aug must be one of"):
        load_config(None, ["data.train_aug=randaug"])
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    assert load_config(None, ["optim.weight_decay=1e-6"]).optim.weight_decay == 1e-6
