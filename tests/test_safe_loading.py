"""compact_ssl.unpickle: what the restricted reader admits, what it refuses, and that the loaders of
files a user did not make go through it (code-executing payloads never run)."""

from __future__ import annotations

import argparse
import collections
import pathlib
import pickle

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from pickle_payloads import CodeRunner, write_payload_checkpoint

from compact_ssl.unpickle import LIGHTNING, Placeholder, UnsafePickleError, load_untrusted, to_plain


def test_plain_checkpoint_contents_round_trip(tmp_path):
    """Everything checkpoints are made of is read back for real, legacy pickle protocols included."""
    payload = {
        "half": torch.arange(3, dtype=torch.float16), "param": torch.nn.Parameter(torch.ones(2)),
        "ns": argparse.Namespace(lr=0.1), "od": collections.OrderedDict(a=1), "dd": collections.defaultdict(list),
        "cfg": OmegaConf.create({"model": {"layers": [1, 2]}}), "path": pathlib.Path("/data/x"),
        "dtype": torch.bfloat16, "size": torch.Size([2, 3]), "array": np.arange(4), "scalar": np.float64(2.5),
        "misc": (1, 2.0, "s", b"b", {3}, frozenset({4}), None, True, 1j),
    }
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"ok{protocol}.pt"
        torch.save(payload, path, pickle_protocol=protocol)
        got = load_untrusted(path, mmap=True)
        assert torch.equal(got["half"], payload["half"]) and got["half"].dtype == torch.float16
        assert isinstance(got["param"], torch.nn.Parameter)
        assert got["ns"] == payload["ns"] and got["od"] == payload["od"] and got["path"] == payload["path"]
        assert got["cfg"].model.layers == [1, 2] and to_plain(got["cfg"]) == {"model": {"layers": [1, 2]}}
        assert got["dtype"] is torch.bfloat16 and got["size"] == torch.Size([2, 3])
        assert np.array_equal(got["array"], np.arange(4)) and got["scalar"] == 2.5
        assert got["misc"] == payload["misc"]


def test_placeholders_keep_state_and_items(tmp_path):
    from lightning.fabric.utilities.data import AttributeDict  # what Lightning stores hyperparameters in

    path = tmp_path / "pl.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "hyper_parameters": AttributeDict(lr=0.5, layers=[1, 2])}, path)
    with pytest.raises(UnsafePickleError, match=r"lightning\.fabric\.utilities\.data\.AttributeDict"):
        load_untrusted(path)
    got = load_untrusted(path, placeholders=LIGHTNING)
    assert isinstance(got["hyper_parameters"], Placeholder)
    assert to_plain(got["hyper_parameters"]) == {"lr": 0.5, "layers": [1, 2]}


@pytest.mark.parametrize("target", [
    ("os", "makedirs"), ("builtins", "eval"), ("builtins", "getattr"), ("torch._utils", "_import_dotted_name"),
    ("torch.storage", "_load_from_bytes"), ("typing", "get_type_hints"), ("collections", "namedtuple"),
    ("pathlib", "Path.write_text"), ("torch", "load"),
])
def test_globals_that_run_code_are_refused(tmp_path, target):
    module, name = target
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x01\x00\x00\x00a\x85R.")
    with pytest.raises(UnsafePickleError, match=rf"evil\.pkl: refuses to unpickle {module}\.{name}.*trust=True"):
        load_untrusted(path)


def test_payload_refused_and_trust_runs_it(tmp_path):
    marker = tmp_path / "ran"
    path = write_payload_checkpoint(tmp_path / "evil.pt", marker, {"state_dict": {"w": torch.ones(2)}})
    with pytest.raises(UnsafePickleError):
        load_untrusted(path, placeholders=LIGHTNING, what="released checkpoint")
    assert not marker.exists()
    assert load_untrusted(path, trust=True)["payload"] is None  # full unpickling is what runs the payload
    assert marker.is_dir()


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pt: no such fairseq checkpoint file"):
        load_untrusted(tmp_path / "absent.pt", what="fairseq checkpoint")
    good = tmp_path / "good.pt"
    torch.save({"w": torch.randn(64, 64)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"cut\.pt: cannot be read as a student checkpoint"):
        load_untrusted(cut, what="student checkpoint")


def _vision_loaders(tmp_path):
    from vision_ssl.config import load_config
    from vision_ssl.methods import build_method, init_from_checkpoint, load_pretrained

    def first_stage(path):
        config = load_config("egs/mini_digits/cdfsl/conf/simclr.yaml")
        init_from_checkpoint(build_method(config), path)

    return {"vision load_pretrained": load_pretrained, "cdfsl init_from_checkpoint": first_stage}


def test_vision_checkpoint_loaders_refuse_payloads(tmp_path):
    marker = tmp_path / "ran"
    path = write_payload_checkpoint(tmp_path / "shared.ckpt", marker, {"state_dict": {}, "hyper_parameters": {}})
    for name, load in _vision_loaders(tmp_path).items():
        with pytest.raises(UnsafePickleError, match="shared.ckpt: refuses to unpickle os.makedirs"):
            load(path)
        assert not marker.exists(), name
    run, args = CodeRunner(marker).__reduce__()  # the payload is live: calling it makes the marker
    run(*args)
    assert marker.is_dir()
