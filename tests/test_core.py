"""compact_ssl's config builder, atomic writes and nn utilities, on hand-computed values."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compact_ssl.config import (
    ConfigError,
    apply_overrides,
    build_dataclass,
    config_diff,
    config_to_dict,
    load_yaml_config,
    replace_key,
    save_yaml_config,
)
from compact_ssl.io import atomic_path, atomic_write_text, read_json, write_json
from compact_ssl.nn import (
    cosine_lr,
    count_parameters,
    effective_weight,
    ema_update,
    mixed_label_cross_entropy,
    old_weight_norm,
    set_effective_weight,
)


@dataclass
class Inner:
    steps: int = 10
    rate: float = 0.5
    name: str = "x"
    flag: bool = False


@dataclass
class Outer:
    betas: tuple[float, float] = (0.9, 0.98)
    layers: list[int] | None = None
    weights: dict[str, float] = field(default_factory=dict)
    mode: Literal["a", "b"] = "a"
    anything: Any = None
    inner: Inner = field(default_factory=Inner)
    inners: list[Inner] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.inner.steps < 0:
            raise ValueError("inner.steps must be >= 0")


@pytest.mark.parametrize("values,expected", [
    ({"inner": {"steps": "1e3"}}, ("inner", "steps", 1000)),
    ({"inner": {"steps": 4.0}}, ("inner", "steps", 4)),
    ({"inner": {"rate": "1e-3"}}, ("inner", "rate", 1e-3)),
    ({"inner": {"rate": 2}}, ("inner", "rate", 2.0)),
    ({"inner": {"name": 32}}, ("inner", "name", "32")),
])
def test_values_are_coerced_by_field_type(values, expected):
    section, key, value = expected
    built = getattr(build_dataclass(Outer, values), section)
    assert getattr(built, key) == value and type(getattr(built, key)) is type(value)


def test_containers_and_nested_dataclasses():
    c = build_dataclass(Outer, {"betas": ["0.8", 1], "layers": [1, "2"], "weights": {"a": 1}, "mode": "b",
                                "inners": [{"steps": 2}], "anything": {"k": [1]}})
    assert c.betas == (0.8, 1.0) and c.layers == [1, 2] and c.weights == {"a": 1.0} and c.mode == "b"
    assert c.inners == [Inner(steps=2)] and c.anything == {"k": [1]}
    assert build_dataclass(Outer, {"layers": None}).layers is None


@pytest.mark.parametrize("values,message", [
    ({"inner": {"steps": "abc"}}, "config.inner.steps: expected an integer, got 'abc'"),
    ({"inner": {"steps": "ten"}}, "config.inner.steps: expected an integer, got 'ten'"),
    ({"inner": {"steps": 2.5}}, "config.inner.steps: expected an integer, got 2.5"),
    ({"inner": {"steps": True}}, "config.inner.steps: expected an integer, got True"),
    ({"inner": {"rate": "fast"}}, "config.inner.rate: expected a number, got 'fast'"),
    ({"inner": {"flag": "yes"}}, "config.inner.flag: expected true or false, got 'yes'"),
    ({"inner": {"name": [1]}}, "config.inner.name: expected a string"),
    ({"betas": [0.9]}, "config.betas: expected 2 values, got 1"),
    ({"layers": [1, "x"]}, "config.layers[1]: expected an integer"),
    ({"mode": "c"}, "config.mode: expected one of ['a', 'b'], got 'c'"),
    ({"inner": {"stepz": 1}}, "config.inner: unknown keys ['stepz']; valid keys: ['flag', 'name', 'rate', 'steps']"),
    ({"inner": 3}, "config.inner: expected a mapping"),
    ({"inner": {"steps": -1}}, "config: inner.steps must be >= 0"),
])
def test_wrong_values_fail_at_load_naming_the_key(values, message):
    with pytest.raises(ConfigError) as info:
        build_dataclass(Outer, values)
    assert message in str(info.value)


def test_yaml_file_overrides_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  steps: 3\n")
    c = load_yaml_config(Outer, path, ["inner.rate=0.25", "betas=[0.5, 0.6]"])
    assert (c.inner.steps, c.inner.rate, c.betas) == (3, 0.25, (0.5, 0.6))
    with pytest.raises(ConfigError, match=f"{path}: inner.steps: expected an integer, got 'x'"):
        load_yaml_config(Outer, path, ["inner.steps=x"])
    save_yaml_config(c, tmp_path / "saved.yaml")
    assert load_yaml_config(Outer, tmp_path / "saved.yaml") == c
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_yaml_config(Outer, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        apply_overrides({}, ["inner.steps"])
    with pytest.raises(ConfigError, match="steps is a value, not a section"):
        apply_overrides({"inner": {"steps": 1}}, ["inner.steps.x=1"])


def test_config_diff_and_replace_key():
    a = config_to_dict(Outer())
    b = config_to_dict(replace_key(Outer(), "inner.steps", 7))
    assert config_diff(a, b) == {"inner.steps": (10, 7)}
    assert config_diff({"x": 1}, {"y": 1}) == {"x": (1, "<absent>"), "y": ("<absent>", 1)}
    assert a["betas"] == [0.9, 0.98]  # tuples become YAML lists


def test_atomic_writes_leave_no_partial_file(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "one")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "one" and sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]
    write_json(tmp_path / "a.json", {"b": [1, 2]})
    assert read_json(tmp_path / "a.json") == {"b": [1, 2]}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_count_parameters_trainable_and_excluded():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))  # 16 + 10 parameters
    model[1].weight.requires_grad_(False)
    assert count_parameters(model) == 26
    assert count_parameters(model, trainable_only=True) == 18
    assert count_parameters(model, exclude=("1.",)) == 16


def test_ema_update_values():
    target, online = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        target.weight.fill_(1.0), online.weight.fill_(3.0)
    ema_update(target, online, 0.75)
    assert target.weight.item() == pytest.approx(0.75 * 1.0 + 0.25 * 3.0)


def test_cosine_lr_values():
    assert cosine_lr(1.0, 0, 10) == 1.0
    assert cosine_lr(1.0, 5, 10, eta_min=0.2) == pytest.approx(0.6)
    assert cosine_lr(1.0, 10, 10, eta_min=0.2) == pytest.approx(0.2)
    assert cosine_lr(0.5, 1, 4) == pytest.approx(0.25 * (1 + math.cos(math.pi / 4)))


def test_mixed_label_cross_entropy_is_the_weighted_sum():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    a, b = torch.tensor([0, 1]), torch.tensor([1, 0])
    expected = 0.3 * F.cross_entropy(logits, a) + 0.7 * F.cross_entropy(logits, b)
    assert mixed_label_cross_entropy(logits, a, b, 0.3).item() == pytest.approx(expected.item())
    assert mixed_label_cross_entropy(logits, a, a, 0.3).item() == pytest.approx(F.cross_entropy(logits, a).item())


@pytest.mark.filterwarnings("ignore:.*weight_norm.*deprecated:FutureWarning")  # the old layout is the point
@pytest.mark.parametrize("layout", ["plain", "parametrized", "old"])
def test_set_effective_weight_in_every_weight_norm_layout(layout):
    conv = nn.Conv1d(4, 4, 3, groups=2)
    if layout == "parametrized":
        conv = nn.utils.parametrizations.weight_norm(conv, dim=2)
    elif layout == "old":
        conv = nn.utils.weight_norm(conv, dim=2)
    assert (old_weight_norm(conv) is not None) == (layout == "old")
    weight = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        set_effective_weight(conv, weight.double())  # converted to the layer's dtype
    assert effective_weight(conv).dtype == torch.float32
    assert torch.allclose(effective_weight(conv), weight, atol=1e-6)
    x = torch.randn(1, 4, 8)
    assert torch.allclose(conv(x), F.conv1d(x, weight, conv.bias, groups=2), atol=1e-5)
    if layout != "plain":  # g holds each tap's norm over the other dimensions (dim=2 is kept)
        g = conv.parametrizations.weight.original0 if layout == "parametrized" else conv.weight_g
        assert torch.allclose(g.flatten(), weight.norm(dim=(0, 1)), atol=1e-6)
