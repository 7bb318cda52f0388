"""Initialise a student from its teacher's weights (s3prl DistilHuBERT style).

DistilHuBERT (reference section 3.1; s3prl ``init_teacher_conv_layers`` /
``init_teacher_encoder_layers``) starts training with the student's CNN, projection,
positional convolution and its two Transformer layers copied from the teacher
(teacher layers 1-2). :func:`init_student_from_teacher` does that for any
:class:`~audio_compress.models.StudentModel` and a transformers HuBERT / WavLM /
wav2vec 2.0 teacher (or a :class:`~audio_compress.teachers.FrozenTeacher` around one).

The student <-> teacher name correspondence is written once, as data, in
:data:`PART_MODULES`: pairs of module paths, whose parameters are then paired by
their local names (``weight``, ``bias``, ``parametrizations.weight.original0`` ...).
Every shape is checked before anything is written; a mismatch raises one
``ValueError`` listing all of them and leaves the student untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from compact_ssl.nn import effective_weight, old_weight_norm, set_effective_weight

__all__ = ["PART_MODULES", "init_student_from_teacher"]

#: Student module path -> teacher (transformers) module path, per part. ``{i}`` is a CNN
#: block, ``{s}`` / ``{t}`` the 0-based student / teacher Transformer layer. Parameters
#: of a pair are matched by local name.
PART_MODULES: dict[str, tuple[tuple[str, str], ...]] = {
    "conv": (
        ("feature_extractor.conv_layers.{i}.conv", "feature_extractor.conv_layers.{i}.conv"),
        ("feature_extractor.conv_layers.{i}.norm", "feature_extractor.conv_layers.{i}.layer_norm"),
    ),
    "projection": (
        ("feature_layer_norm", "feature_projection.layer_norm"),
        ("post_extract_proj", "feature_projection.projection"),
    ),
    "pos_conv": (
        ("encoder.pos_conv.conv", "encoder.pos_conv_embed.conv"),
        ("encoder.layer_norm", "encoder.layer_norm"),
    ),
    "layer": (
        ("encoder.layers.{s}.self_attn.q_proj", "encoder.layers.{t}.attention.q_proj"),
        ("encoder.layers.{s}.self_attn.k_proj", "encoder.layers.{t}.attention.k_proj"),
        ("encoder.layers.{s}.self_attn.v_proj", "encoder.layers.{t}.attention.v_proj"),
        ("encoder.layers.{s}.self_attn.out_proj", "encoder.layers.{t}.attention.out_proj"),
        ("encoder.layers.{s}.self_attn_layer_norm", "encoder.layers.{t}.layer_norm"),
        ("encoder.layers.{s}.fc1", "encoder.layers.{t}.feed_forward.intermediate_dense"),
        ("encoder.layers.{s}.fc2", "encoder.layers.{t}.feed_forward.output_dense"),
        ("encoder.layers.{s}.final_layer_norm", "encoder.layers.{t}.final_layer_norm"),
    ),
}

#: Teacher parameter-name prefixes each part reads. Teacher parameters under them that
#: find no student counterpart are reported as ``teacher_only``.
_TEACHER_SCOPE: dict[str, tuple[str, ...]] = {
    "conv": ("feature_extractor.",),
    "projection": ("feature_projection.",),
    "pos_conv": ("encoder.pos_conv_embed.", "encoder.layer_norm."),
    "layer": ("encoder.layers.{t}.",),
}


@dataclass
class _Copy:
    """One planned copy: student parameters <- teacher parameters."""

    student: list[str]  # full student names written
    teacher: list[str]  # full teacher names read
    student_module: nn.Module
    teacher_module: nn.Module
    local: str | None  # local parameter name for a plain copy; None = effective-weight copy


def _submodule(root: nn.Module, path: str) -> nn.Module | None:
    module: object = root
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module if isinstance(module, nn.Module) else None


def _is_reparametrized(module: nn.Module) -> bool:
    return parametrize.is_parametrized(module, "weight") or old_weight_norm(module) is not None


def _is_weight_name(local: str) -> bool:
    return local in ("weight", "weight_g", "weight_v") or local.startswith("parametrizations.weight.")


def _plan_pair(student_path: str, teacher_path: str, student_mod: nn.Module, teacher_mod: nn.Module,
               plan: list[_Copy], errors: list[str]) -> set[str]:
    """Plan the copies of one module pair; return the teacher local names consumed."""
    s_params = dict(student_mod.named_parameters())
    t_params = dict(teacher_mod.named_parameters())
    used: set[str] = set()
    s_weight = {n: tuple(p.shape) for n, p in s_params.items() if _is_weight_name(n)}
    t_weight = {n: tuple(p.shape) for n, p in t_params.items() if _is_weight_name(n)}
    if not t_weight and isinstance(getattr(teacher_mod, "weight", None), Tensor):
        t_weight = {"weight": tuple(teacher_mod.weight.shape)}  # e.g. a weight kept as a buffer
    effective = (
        (_is_reparametrized(student_mod) or _is_reparametrized(teacher_mod)) and s_weight and t_weight
        and s_weight != t_weight
    )
    if effective:
        # Weight-norm layouts differ (plain weight, old-style weight_g/v, another dim):
        # copy the effective weight; the student's parametrization re-derives g and v.
        s_shape, t_shape = tuple(effective_weight(student_mod).shape), tuple(effective_weight(teacher_mod).shape)
        if s_shape != t_shape:
            errors.append(f"{student_path}.weight {s_shape} <- {teacher_path}.weight {t_shape}")
        plan.append(_Copy([f"{student_path}.{n}" for n in s_weight], [f"{teacher_path}.{n}" for n in t_weight],
                          student_mod, teacher_mod, None))
        used.update(t_weight)
    for local, s_param in s_params.items():
        if effective and local in s_weight:
            continue
        t_param = t_params.get(local)
        if t_param is None:
            continue  # stays as initialised; reported in student_not_initialised
        used.add(local)
        if s_param.shape != t_param.shape:
            errors.append(
                f"{student_path}.{local} {tuple(s_param.shape)} <- {teacher_path}.{local} {tuple(t_param.shape)}"
            )
        plan.append(_Copy([f"{student_path}.{local}"], [f"{teacher_path}.{local}"], student_mod, teacher_mod, local))
    return used


def _config_errors(student: nn.Module, config, parts: set[str], copy_layers: bool) -> list[str]:
    """Teacher settings under which copied modules would not compute the same function."""
    errors = []
    if "conv" in parts:
        if getattr(config, "feat_extract_norm", "group") != "group":
            errors.append(
                f"teacher feat_extract_norm={config.feat_extract_norm!r}; the student CNN has GroupNorm "
                "on block 0 only (wav2vec 2.0 'group' mode)"
            )
    if "conv" in parts or "pos_conv" in parts:
        if getattr(config, "feat_extract_activation", "gelu") != "gelu":
            errors.append(f"teacher feat_extract_activation={config.feat_extract_activation!r}; the student uses GELU")
    if "pos_conv" in parts or copy_layers:
        if getattr(config, "do_stable_layer_norm", False):
            errors.append("teacher is pre-LN (do_stable_layer_norm=True); the student encoder is post-LN")
    if copy_layers:
        if getattr(config, "hidden_act", "gelu") != "gelu":
            errors.append(f"teacher hidden_act={config.hidden_act!r}; the student FFN uses GELU")
        heads = getattr(config, "num_attention_heads", None)
        if heads is not None and heads != student.config.num_heads:
            errors.append(f"student has {student.config.num_heads} attention heads, teacher {heads}")
    return errors


def init_student_from_teacher(
    student: nn.Module,
    teacher: nn.Module,
    conv: bool = True,
    encoder_layers: list[int] | None = None,
    projection: bool = True,
    pos_conv: bool = True,
) -> dict[str, list[str]]:
    """Copy matching teacher weights into ``student`` in place (DistilHuBERT initialisation).

    Parts (all on by default, as in s3prl's DistilHuBERT):

    * ``conv``: every CNN block's conv weight and block 0's GroupNorm. The student and
      teacher must have the same number of blocks.
    * ``projection``: the post-extract Linear (teacher ``feature_projection.projection``);
      also the feature LayerNorm when both models have one.
    * ``pos_conv``: the positional convolution (weight-norm g and v, or the effective
      weight when the weight-norm layouts differ; bias) and the encoder LayerNorm that
      follows it (``LN(x + pos_conv(x))``).
    * ``encoder_layers``: 1-based teacher layer ids; student layer ``j`` (0-based) gets
      teacher layer ``encoder_layers[j]``: Q/K/V/out projections, self-attention
      LayerNorm, both FFN Linears and the final LayerNorm. ``None`` means ``[1, 2, ...,
      student depth]``; ``[]`` copies no layer; a shorter list leaves the last student
      layers as they are. Attention-reuse layers (no Q/K) get only V and out; the
      teacher's Q/K of that layer are reported as ``teacher_only``.

    Parameters that cannot map by construction are reported, never dropped silently.
    Notably, HuBERT's LayerNorm(512) on the CNN output (``feature_projection.layer_norm``)
    has no counterpart in the DistilHuBERT student, which has no feature LayerNorm
    (as in s3prl's DistilHuBERT): it is listed in ``teacher_only``, and the student's
    projection therefore sees un-normalised CNN features that the teacher's projection
    never saw. Other examples: conv biases of a ``conv_bias=True`` teacher, WavLM's
    relative-position parameters, Q/K of reuse layers.

    Args:
        student: a :class:`~audio_compress.models.StudentModel`.
        teacher: a :class:`~audio_compress.teachers.FrozenTeacher` or the transformers
            model itself (``HubertModel``, ``WavLMModel``, ``Wav2Vec2Model``).
        conv, projection, pos_conv: copy these parts.
        encoder_layers: teacher layers for the student layers (see above).

    Returns:
        ``{"copied": [...], "teacher_only": [...], "student_not_initialised": [...]}``:
        the student parameter names written; the teacher parameter names inside the
        requested parts (the CNN, ``feature_projection``, positional conv and encoder
        LayerNorm, the chosen layers) that have no student counterpart; every student
        parameter left as it was (e.g. the prediction heads).

    Raises:
        ValueError: listing every shape mismatch (e.g. a 432-wide student against a
            768-wide teacher), differing CNN depths, a head-count mismatch, teacher
            settings the student cannot reproduce (pre-LN encoder, LayerNorm-mode CNN,
            non-GELU activations) or invalid ``encoder_layers``. Nothing is written then.
    """
    model = getattr(teacher, "model", teacher)
    config = getattr(model, "config", None)
    s_layers = len(student.encoder.layers)
    t_layer_list = _submodule(model, "encoder.layers")
    t_layers = len(t_layer_list) if t_layer_list is not None else 0

    if encoder_layers is None:
        if s_layers > t_layers:
            raise ValueError(
                f"student has {s_layers} layers but the teacher only {t_layers}; pass encoder_layers explicitly"
            )
        encoder_layers = list(range(1, s_layers + 1))
    encoder_layers = [int(t) for t in encoder_layers]
    if len(encoder_layers) > s_layers:
        raise ValueError(f"encoder_layers has {len(encoder_layers)} entries but the student has {s_layers} layers")
    bad = [t for t in encoder_layers if not 1 <= t <= t_layers]
    if bad:
        raise ValueError(f"encoder_layers {bad} are not teacher layer ids (1..{t_layers})")

    parts = {name for name, on in (("conv", conv), ("projection", projection), ("pos_conv", pos_conv)) if on}
    errors = _config_errors(student, config, parts, bool(encoder_layers))

    # (part, formatting keys) for every module-pair group to plan.
    groups: list[tuple[str, dict[str, int]]] = []
    if conv:
        s_blocks = len(student.feature_extractor.conv_layers)
        t_block_list = _submodule(model, "feature_extractor.conv_layers")
        t_blocks = len(t_block_list) if t_block_list is not None else 0
        if s_blocks != t_blocks:
            errors.append(f"student CNN has {s_blocks} blocks, teacher CNN {t_blocks}")
        groups += [("conv", {"i": i}) for i in range(min(s_blocks, t_blocks))]
    if projection:
        groups.append(("projection", {}))
    if pos_conv:
        groups.append(("pos_conv", {}))
    groups += [("layer", {"s": s, "t": t - 1}) for s, t in enumerate(encoder_layers)]

    plan: list[_Copy] = []
    used_teacher: set[str] = set()
    scopes: list[str] = []
    for part, keys in groups:
        scopes += [prefix.format(**keys) for prefix in _TEACHER_SCOPE[part]]
        for s_template, t_template in PART_MODULES[part]:
            s_path, t_path = s_template.format(**keys), t_template.format(**keys)
            s_mod, t_mod = _submodule(student, s_path), _submodule(model, t_path)
            if s_mod is None or t_mod is None:
                continue  # one side lacks the module: reported through the two lists below
            used = _plan_pair(s_path, t_path, s_mod, t_mod, plan, errors)
            used_teacher.update(f"{t_path}.{local}" for local in used)

    if errors:
        raise ValueError(
            "cannot initialise the student from the teacher:\n  " + "\n  ".join(errors)
            + "\ngive the student the teacher's shapes (student_overrides: conv_layers, pos_conv_kernel, "
            "pos_conv_groups ...; the mini recipes' conf/distill_pretrained.yaml does this for the pretrained "
            "mini teacher) or set init_from_teacher: false"
        )

    with torch.no_grad():
        for op in plan:
            if op.local is None:
                set_effective_weight(op.student_module, effective_weight(op.teacher_module).detach())
            else:
                s_param = dict(op.student_module.named_parameters())[op.local]
                t_param = dict(op.teacher_module.named_parameters())[op.local]
                s_param.copy_(t_param)

    copied = [name for op in plan for name in op.student]
    copied_set = set(copied)
    teacher_only = [
        name for name, _ in model.named_parameters()
        if name not in used_teacher and any(name.startswith(prefix) for prefix in scopes)
    ]
    not_initialised = [name for name, _ in student.named_parameters() if name not in copied_set]
    return {"copied": copied, "teacher_only": teacher_only, "student_not_initialised": not_initialised}
