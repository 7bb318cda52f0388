"""Fixture writers for the released speech-student layouts, at random init (no weights are available
offline), built from the published key lists and file structures.

Stable API (also used by the recipes' SUPERB stage test; keep signatures):

* :func:`release_model` ``(student_name, seed=0, **overrides) -> StudentModel``: the student a
  release of that name holds, in eval mode (ARMHuBERT family: ``arm_release_compat=True``).
* :func:`write_lightning_release` ``(student_name, folder, model=None, seed=0, stem=None)
  -> (ckpt_path, yaml_path)``: a PyTorch Lightning 1.7.7 ``.ckpt`` (fp16 native AMP) of the
  ARMHuBERT code base with ``student_model.*`` weights (plus a few teacher weights, and STaR's
  ``final_proj``), and beside it the training YAML whose ``distiller:`` section describes the
  student. ``student_name``: ``starhubert``, ``starhubert_l``, ``armhubert``, ``armhubert_s``,
  ``maskhubert``, or the tiny ``tiny_star`` / ``tiny_arm`` (``tiny_mask``: ``tiny_arm`` without
  reuse or gradient scaling, like MaskHuBERT). The family follows the model: projection heads
  make an ARMHuBERT-family file, none a STaR file.
* :func:`write_release_yaml` ``(config, path) -> Path``: only the YAML (enough for shape checks).
* :func:`s3prl_distiller_config` ``(config) -> dict``: only the ``Config`` of such a file.
* :func:`write_s3prl_distiller` ``(folder, student_name="tiny_distil", model=None, seed=0,
  name=None) -> Path``: an s3prl DistilHuBERT pre-training checkpoint (``Distiller``, ``Config``
  with ``distiller``/``teacher``/``task``/``audio``, ``Optimizer``, ``Step``, ``Args``, ``Runner``).

The released names are produced here by explicit per-key rules, written independently of
``audio_compress.models.released_keys`` so that a bug in one cannot cancel out in the other.
"""

from __future__ import annotations

import argparse
from collections import OrderedDict
from pathlib import Path

import torch
import yaml
from pytorch_lightning.utilities.parsing import AttributeDict
from torch import Tensor

from audio_compress.models import StudentConfig, StudentModel, get_student_config

#: Released Lightning files of each kind and what they are built from.
LIGHTNING_RELEASES = ("starhubert", "starhubert_l", "armhubert", "armhubert_s", "maskhubert", "tiny_star", "tiny_arm",
                      "tiny_mask")
_TINY_MASK = dict(reuse_pattern=[True] * 4, layer_grad_scale=False)
_STAR_FINAL_DIM = 768

# Project name -> released name, for the names that are not renamed by a pattern below.
_EXACT = {
    "feature_extractor.conv_layers.0.norm.weight": "feature_extractor.conv_layers.0.2.weight",
    "feature_extractor.conv_layers.0.norm.bias": "feature_extractor.conv_layers.0.2.bias",
    "encoder.pos_conv.conv.bias": "encoder.pos_conv.0.bias",
    "encoder.pos_conv.conv.parametrizations.weight.original0": "encoder.pos_conv.0.weight_g",
    "encoder.pos_conv.conv.parametrizations.weight.original1": "encoder.pos_conv.0.weight_v",
}
_EXACT_LIGHTNING = {
    **_EXACT,
    "mask_emb.weight": "mask_emb",
    "feature_layer_norm.weight": "layer_norm.weight",
    "feature_layer_norm.bias": "layer_norm.bias",
}


def release_model(student_name: str, seed: int = 0, **overrides) -> StudentModel:
    """The student a release called ``student_name`` holds (random weights from ``seed``)."""
    base, name = (student_name, None) if student_name != "tiny_mask" else ("tiny_arm", "custom")
    if student_name == "tiny_mask":
        overrides = {**_TINY_MASK, **overrides}
    if get_student_config(base).upstream_outputs == "projections":
        overrides.setdefault("arm_release_compat", True)
    config = get_student_config(base, **overrides)
    # tiny_mask is no registered architecture: the registry's catch-all name
    config.name = name or config.name
    torch.manual_seed(seed)
    return StudentModel(config).eval()


def _released_name(key: str, exact: dict[str, str]) -> str:
    if key in exact:
        return exact[key]
    parts = key.split(".")
    if parts[:2] == ["feature_extractor", "conv_layers"] and parts[3:] == ["conv", "weight"]:
        return f"feature_extractor.conv_layers.{parts[2]}.0.weight"
    if parts[0] == "proj_heads" and len(parts) == 3:
        return f"proj_head.{parts[1]}.lin_proj.{parts[2]}"
    if parts[0] in ("encoder", "post_extract_proj"):
        return key
    raise KeyError(f"the released layout has no name for {key}")


def conv_spec(conv_layers: list[tuple[int, int, int]]) -> str:
    """fairseq-style spec, runs of equal blocks written ``[(c, k, s)] * n`` as the released YAMLs do."""
    terms: list[list] = []
    for block in conv_layers:
        if terms and terms[-1][0] == tuple(block):
            terms[-1][1] += 1
        else:
            terms.append([tuple(block), 1])
    return " + ".join(f"[{block}]" + (f" * {n}" if n > 1 else "") for block, n in terms)


def _distiller_section(config: StudentConfig) -> dict:
    # The student dataclass as the training code dumps it (ARMHuBERT code base, fairseq keys).
    arm = config.proj_dim is not None
    section = {
        "extractor_mode": "default", "conv_feature_layers": conv_spec(config.conv_layers),
        "feature_grad_mult": config.feature_grad_mult, "conv_bias": False, "conv_pos": config.pos_conv_kernel,
        "conv_pos_groups": config.pos_conv_groups, "pos_conv_depth": 1, "max_positions": 100000,
        "layer_type": "transformer", "encoder_layers": config.num_layers, "encoder_embed_dim": config.embed_dim,
        "encoder_ffn_embed_dim": config.ffn_dim, "encoder_attention_heads": config.num_heads, "activation_fn": "gelu",
        "layer_norm_first": False, "layer_grad_scale": config.layer_grad_scale, "dropout": config.dropout,
        "attention_dropout": config.attention_dropout, "activation_dropout": config.activation_dropout,
        "encoder_layerdrop": 0.0, "dropout_input": config.input_dropout, "final_dim": 256 if arm else _STAR_FINAL_DIM,
        "init_conv_layers": False, "init_encoder_layers": 0, "checkpoint_activations": False,
        "required_seq_len_multiple": 1, "crop_seq_to_multiple": 1, "_teacher_task_agnostic": True, "_cnn_weight": 0.0,
    }
    if arm:
        section.update({
            "depthwise_conv_kernel_size": 31, "attn_type": "", "pos_enc_type": "abs", "fp16": True,
            "pred_head_final_dim": config.proj_dim, "pred_head_inter_dim": 0, "layerwise_proj": True,
            "pred_layer_id": "[11]", "enable_tr_layer": False, "tr_conv1d_kernel": 2, "tr_layer_index": 0,
            "tr_reduce_factor": 1, "tr_layer_type": "conv1d", "freeze_student_mask": False, "update_teacher_mask": False,
        })
        if not all(config.reuse_pattern):
            section["reuse_pattern"] = str(list(config.reuse_pattern))
    return section


def _training_yaml(config: StudentConfig) -> dict:
    return {
        "teacher": {"teacher_model": "./hubert_base_ls960.pt", "mask_length": 10, "mask_prob": 0.8,
                    "mask_selection": "uniform", "mask_other": 0.0, "no_mask_overlap": True, "mask_min_space": 1},
        "train": {"base_dir": "./", "output_dir": f"{config.name}-960h", "checkpoint": None, "num_epochs": 200,
                  "gpus": 2, "batch_size": 18, "accumulate_grad_batches": 4, "use_fp16": True, "use_apex": False,
                  "monitor_losses": True, "rec_loss_weight": 1.0, "rec_loss_type": "mse", "distil_random_layer": 11,
                  "random_layer_weight": 0.1, "delete_projections": False, "specaug": False, "mask_prob_schedule": ""},
        "distiller": _distiller_section(config),
        "optimizer": {"name": "AdamW_with_schedule", "lr": 5.0e-3, "warmup_proportion": 0.05, "betas": [0.9, 0.98],
                      "eps": 1.0e-6, "weight_decay": 1.0e-6},
        "data": {"bucketing_path": "./data/len_for_bucket", "libri_root": "/db/LibriSpeech",
                 "train_set": ["train-clean-100", "train-clean-360", "train-other-500"], "test_set": ["test-clean"]},
        "specaug": {"adaptive": False, "apply_time_warp": False, "apply_time_mask": True, "apply_freq_mask": True,
                    "num_freq_mask": 2, "num_time_mask": 2},
    }


def write_release_yaml(config: StudentConfig, path: str | Path) -> Path:
    """The training YAML of a release of ``config`` (a dumped ARMHuBERT-code-base config)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(_training_yaml(config), sort_keys=False))
    return path


def _lightning_state(model: StudentModel) -> OrderedDict[str, Tensor]:
    state: OrderedDict[str, Tensor] = OrderedDict()
    for key, value in model.state_dict().items():
        state["student_model." + _released_name(key, _EXACT_LIGHTNING)] = value.clone()
    if model.config.proj_dim is None:  # STaR's training-time projection, deleted by its upstream
        generator = torch.Generator().manual_seed(1)
        state["student_model.final_proj.weight"] = torch.randn(_STAR_FINAL_DIM, model.config.cnn_dim, generator=generator)
        state["student_model.final_proj.bias"] = torch.zeros(_STAR_FINAL_DIM)
    # The Lightning module also holds the frozen teacher.
    state["teacher_model.model.mask_emb"] = torch.zeros(8)
    state["teacher_model.model.feature_extractor.conv_layers.0.0.weight"] = torch.zeros(4, 1, 10)
    return state


def _lightning_checkpoint(model: StudentModel, yaml_dict: dict) -> dict:
    state = _lightning_state(model)
    step = 390600
    return {
        "epoch": 199,
        "global_step": step,
        "pytorch-lightning_version": "1.7.7",
        "state_dict": state,
        "loops": {
            "fit_loop": {
                "state_dict": {},
                "epoch_loop.state_dict": {"_batches_that_stepped": step},
                "epoch_loop.batch_progress": {"total": {"ready": step * 4, "completed": step * 4, "started": step * 4,
                                                        "processed": step * 4},
                                              "current": {"ready": 7812, "completed": 7812, "started": 7812,
                                                          "processed": 7812},
                                              "is_last_batch": True},
                "epoch_progress": {"total": {"ready": 200, "completed": 199, "started": 200, "processed": 200},
                                   "current": {"ready": 200, "completed": 199, "started": 200, "processed": 200}},
            },
            "validate_loop": {"state_dict": {}, "dataloader_progress": {"total": {"ready": 200, "completed": 200}}},
            "test_loop": {"state_dict": {}},
            "predict_loop": {"state_dict": {}},
        },
        "callbacks": {
            "ModelCheckpoint{'monitor': 'v_loss', 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, "
            "'train_time_interval': None, 'save_on_train_epoch_end': True}": {
                "monitor": "v_loss", "best_model_score": torch.tensor(0.1234), "best_model_path":
                "results/pretrain/run/checkpoint-epoch=199.ckpt", "current_score": torch.tensor(0.1234),
                "dirpath": "results/pretrain/run", "best_k_models": {}, "kth_best_model_path": "",
                "kth_value": torch.tensor(float("inf")), "last_model_path": "results/pretrain/run/last.ckpt",
            },
        },
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}},
                              "param_groups": [{"lr": 0.0, "betas": (0.9, 0.98), "eps": 1e-6, "weight_decay": 0.01,
                                                "params": [0]}]}],
        "lr_schedulers": [{"base_lrs": [5e-3], "last_epoch": step, "_step_count": step + 1, "verbose": False,
                           "_get_lr_called_within_step": False, "_last_lr": [0.0]}],
        "native_amp_scaling_state": {"scale": 32768.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                     "growth_interval": 2000, "_growth_tracker": 1234},
        "hparams_name": "kwargs",
        "hyper_parameters": AttributeDict(cfg=yaml_dict),
    }


def write_lightning_release(student_name: str, folder: str | Path, model: StudentModel | None = None, seed: int = 0,
                            stem: str | None = None) -> tuple[Path, Path]:
    """Write ``<folder>/<stem>.ckpt`` and ``<folder>/<stem>.yaml`` (stem: ``student_name``) as released.

    ``model`` (default :func:`release_model`) gives the weights and architecture.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model if model is not None else release_model(student_name, seed)
    stem = stem or student_name
    yaml_path = write_release_yaml(model.config, folder / f"{stem}.yaml")
    ckpt_path = folder / f"{stem}.ckpt"
    torch.save(_lightning_checkpoint(model, _training_yaml(model.config)), ckpt_path)
    return ckpt_path, yaml_path


def _distiller_state(model: StudentModel) -> OrderedDict[str, Tensor]:
    state: OrderedDict[str, Tensor] = OrderedDict()
    weights, biases = [], []
    for key, value in model.state_dict().items():
        if key.startswith("pred_head.split."):
            n, kind = key.split(".")[2:]
            (weights if kind == "weight" else biases).append((int(n), value))
        elif key.startswith("pred_head.expand."):
            state["output_layer.0." + key.split(".")[-1]] = value.clone()
        else:
            state[_released_name(key, _EXACT)] = value.clone()
    # s3prl's split linear computes x @ W[n] + b[n]: W[n] is the transposed Linear weight.
    state["output_layer.2.weight"] = torch.stack([w.t() for _, w in sorted(weights, key=lambda t: t[0])])
    state["output_layer.2.bias"] = torch.stack([b for _, b in sorted(biases, key=lambda t: t[0])])[None, None]
    return state


def s3prl_distiller_config(config: StudentConfig) -> dict:
    """The ``Config`` an s3prl DistilHuBERT checkpoint of ``config`` carries."""
    return {
        "distiller": {
            "extractor_mode": "default", "extractor_conv_feature_layers": conv_spec(config.conv_layers),
            "extractor_dropout": 0.0, "feature_grad_mult": config.feature_grad_mult, "conv_pos": config.pos_conv_kernel,
            "conv_pos_groups": config.pos_conv_groups, "encoder_layers": config.num_layers,
            "encoder_embed_dim": config.embed_dim, "encoder_ffn_embed_dim": config.ffn_dim,
            "encoder_attention_heads": config.num_heads, "activation_fn": "gelu", "layer_norm_first": False,
            "dropout": config.dropout, "attention_dropout": config.attention_dropout,
            "activation_dropout": config.activation_dropout, "encoder_layerdrop": 0.0,
            "final_dim": config.embed_dim, "out_layer_type": "expand-last", "out_layer_inter_dim": -1,
            "n_tasks": len(config.pred_layers), "task_emb_type": "expand-last", "task_emb_size": 0, "layer_emb_size": 0,
            "loss_type": "l1", "feat_pen_loss": 0.0, "cosine_loss": 1.0, "pred_layer_id": list(config.pred_layers),
            "init_teacher_conv_layers": True, "init_teacher_encoder_layers": True,
        },
        "teacher": {"model": "hubert_base", "n_layers": 12},
        "task": {"sequence_length": 250000},
        "audio": {"target_level": None},
    }


def write_s3prl_distiller(folder: str | Path, student_name: str = "tiny_distil", model: StudentModel | None = None,
                          seed: int = 0, name: str | None = None) -> Path:
    """Write an s3prl DistilHuBERT checkpoint ``<folder>/<name>`` (default ``<student_name>.ckpt``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model if model is not None else release_model(student_name, seed)
    step = 200000
    payload = {
        "Distiller": _distiller_state(model),
        "Config": s3prl_distiller_config(model.config),
        "Optimizer": {"state": {}, "param_groups": [{"lr": 2e-4, "betas": (0.9, 0.999), "eps": 1e-6,
                                                     "weight_decay": 0.01, "params": [0, 1]}]},
        "Step": step,
        "Args": argparse.Namespace(upstream="distiller", config="pretrain/distiller/config_runner.yaml",
                                   upstream_config="pretrain/distiller/config_model.yaml", expdir="result/pretrain/run",
                                   seed=1337, device="cuda", multi_gpu=False, init_ckpt=None),
        "Runner": {"n_epochs": -1, "total_steps": step, "gradient_clipping": 5.0, "gradient_accumulate_steps": 1,
                   "log_step": 50, "save_step": 50000, "max_keep": 20, "fp16": True},
    }
    path = folder / (name or f"{student_name}.ckpt")
    torch.save(payload, path)
    return path
