"""Frozen HuBERT / WavLM / wav2vec 2.0 teachers and how to load them.

:class:`FrozenTeacher` wraps a transformers encoder (``HubertModel``, ``WavLMModel``,
``Wav2Vec2Model``) so that it can only ever run as a distillation target: parameters
never require grad, the module stays in eval mode whatever ``train()`` is called with,
LayerDrop is 0 and the forward runs under :func:`torch.no_grad`.

(:func:`torch.no_grad` rather than :func:`torch.inference_mode`: inference tensors
cannot be saved for backward, and the teacher outputs are used as targets in losses
whose backward saves them.)
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from audio_compress.frames import RECEPTIVE_FIELD, frame_padding_mask, num_frames
from audio_compress.teachers.configs import MODEL_CLASSES, architecture_names, get_config, model_class_for
from audio_compress.teachers.fairseq import build_model_from_fairseq, load_fairseq_checkpoint
from compact_ssl.io import staged_folder

__all__ = ["FrozenTeacher", "TeacherOutput", "load_teacher", "save_teacher", "write_teacher"]


@dataclass
class TeacherOutput:
    """What a teacher forward returns.

    * ``hidden_states``: ``num_layers + 1`` tensors ``(B, T, D)``. Index 0 is the input
      of the first Transformer layer (post-LN models: CNN -> feature LayerNorm ->
      projection -> [mask embedding] -> + positional conv -> encoder LayerNorm); index
      ``i`` is the output of layer ``i`` (for post-LN models, after its final LayerNorm).
    * ``attentions``: per layer ``(B, H, T, T)`` post-softmax maps (rows sum to 1 over
      the valid keys), or ``None`` when not requested.
    * ``padding_mask``: frame-level ``(B, T)``, True at padded frames. A frame is valid when its
      whole 400-sample receptive field lies in the row's ``n`` valid samples: the first
      ``num_frames(n) = floor((n - 400) / 320) + 1`` frames (:func:`~audio_compress.frames.frame_padding_mask`,
      transformers' own rule for the attention mask, and the rule of the students and losses).
      fairseq 0.12's ``HubertModel.forward_padding_mask`` differs on padded rows: it drops the last
      ``L % T`` samples of the sample mask, splits the rest into ``T`` chunks of ``c = L // T``
      samples (``c = 320`` whenever the padded length ``L`` exceeds 128,079 samples) and counts a
      frame valid when any sample of its chunk is: ``min(T, ceil(n / c))`` frames, which is 0 to 2
      more than ours (for ``c = 320``: 1 more, 2 when ``0 < n mod 320 < 80``) and depends on the
      batch's padded length. Those extra frames read zeros past the row's end; fairseq's
      Transformer attends to them, this teacher masks them. Unpadded rows, and so the feature
      dump (one utterance per batch), are not affected.
    * ``last_hidden_state``: the model's final output; equal to ``hidden_states[-1]``
      for post-LN models, the encoder-LayerNorm'ed version of it for pre-LN ones.
    """

    hidden_states: list[Tensor]
    attentions: list[Tensor] | None
    padding_mask: Tensor
    last_hidden_state: Tensor


class FrozenTeacher(nn.Module):
    """A frozen, always-eval transformers speech encoder returning every layer.

    Args:
        model: a ``HubertModel``, ``WavLMModel`` or ``Wav2Vec2Model``.
        name: a label for logs (architecture name or source path).
        normalize_waveform: normalise each utterance to zero mean and unit variance over
            its valid samples before the CNN (fairseq ``normalize=True``, used by the
            Large models; the Base teachers take raw waveforms). ``None`` reads
            ``config.teacher_normalize_waveform`` (written by :func:`save_teacher`), else False.
    """

    def __init__(self, model: PreTrainedModel, name: str | None = None, normalize_waveform: bool | None = None):
        super().__init__()
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type not in MODEL_CLASSES or not isinstance(model, MODEL_CLASSES[model_type][1]):
            raise TypeError(
                f"FrozenTeacher needs one of {[c[1].__name__ for c in MODEL_CLASSES.values()]}, "
                f"got {type(model).__name__}"
            )
        self.model = model
        self.name = name or model_type
        config = model.config
        if normalize_waveform is None:
            normalize_waveform = bool(getattr(config, "teacher_normalize_waveform", False))
        self.normalize_waveform = bool(normalize_waveform)
        config.layerdrop = 0.0
        # mask_time_indices is applied only when apply_spec_augment is on; random masking
        # additionally needs training mode, which this wrapper never enters.
        config.apply_spec_augment = True
        for param in self.model.parameters():
            param.requires_grad_(False)
        self._wavlm_maps: list[Tensor] | None = None
        if model_type == "wavlm":
            # transformers' WavLM attention returns head-averaged maps; recompute per-head ones.
            for layer in self.model.encoder.layers:
                layer.attention.register_forward_hook(self._wavlm_attention_hook, with_kwargs=True)
        super().train(False)

    # ------------------------------------------------------------------ properties
    @property
    def config(self):
        return self.model.config

    @property
    def model_type(self) -> str:
        return self.model.config.model_type

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def num_heads(self) -> int:
        return int(self.model.config.num_attention_heads)

    @property
    def downsample_rate(self) -> int:
        rate = 1
        for stride in self.model.config.conv_stride:
            rate *= int(stride)
        return rate

    @property
    def has_mask_embedding(self) -> bool:
        return hasattr(self.model, "masked_spec_embed")

    # ------------------------------------------------------------------ frozen behaviour
    def train(self, mode: bool = True) -> FrozenTeacher:
        """Ignore ``mode``: a teacher is always in eval mode (Lightning calls ``train()``)."""
        return super().train(False)

    def requires_grad_(self, requires_grad: bool = True) -> FrozenTeacher:
        """Ignore requests to unfreeze."""
        return super().requires_grad_(False)

    # ------------------------------------------------------------------ forward
    def _wavlm_attention_hook(self, module, args, kwargs, output):
        if self._wavlm_maps is None:
            return
        hidden = args[0] if args else kwargs["hidden_states"]
        attention_mask = kwargs.get("attention_mask")
        position_bias = output[2]  # (B*H, T, T), before the gate
        bsz, length, _ = hidden.shape
        heads, head_dim = module.num_heads, module.head_dim
        per_head = hidden.view(bsz, length, heads, head_dim).permute(0, 2, 1, 3)
        proj = module.gru_rel_pos_linear(per_head).view(bsz, heads, length, 2, 4).sum(-1)
        gate_a, gate_b = torch.sigmoid(proj).chunk(2, dim=-1)
        gate = gate_a * (gate_b * module.gru_rel_pos_const - 1.0) + 2.0  # (B, H, T, 1)
        bias = gate * position_bias.view(bsz, heads, length, length)
        q = module.q_proj(hidden).view(bsz, length, heads, head_dim).transpose(1, 2) * module.scaling
        k = module.k_proj(hidden).view(bsz, length, heads, head_dim).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) + bias
        if attention_mask is not None:
            pad = attention_mask.ne(1)[:, None, None, :]
            scores = scores.masked_fill(pad, float("-inf"))
        self._wavlm_maps.append(torch.softmax(scores, dim=-1))

    def forward(
        self,
        wavs: Tensor,
        padding_mask: Tensor | None = None,
        frame_mask: Tensor | None = None,
        output_attentions: bool = False,
    ) -> TeacherOutput:
        """Run the teacher.

        One function on purpose: it follows fairseq's forward pass in order (CNN, feature
        masking, projection, positional convolution, layers), to be read against it step by step.

        Args:
            wavs: ``(B, L)`` float waveforms at 16 kHz (``(L,)`` is taken as ``B = 1``).
            padding_mask: ``(B, L)`` bool, True at padded samples (right padding). Padded
                samples are zeroed before the CNN.
            frame_mask: ``(B, T)`` bool, True where the teacher's own mask embedding
                replaces the projected CNN features (as in HuBERT pre-training).
            output_attentions: also return per-layer ``(B, H, T, T)`` attention maps
                (uses eager attention for that call).
        """
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
            if padding_mask is not None and padding_mask.dim() == 1:
                padding_mask = padding_mask.unsqueeze(0)
        if wavs.dim() != 2:
            raise ValueError(f"wavs must be (B, L) or (L,), got shape {tuple(wavs.shape)}")
        batch, length = wavs.shape
        if length < RECEPTIVE_FIELD:
            raise ValueError(
                f"input of {length} samples is shorter than the {RECEPTIVE_FIELD}-sample receptive field"
            )
        frames = num_frames(length)
        param = next(self.model.parameters())
        wavs = wavs.to(device=param.device, dtype=param.dtype)

        attention_mask = None
        if padding_mask is not None:
            if padding_mask.shape != wavs.shape:
                raise ValueError(
                    f"padding_mask shape {tuple(padding_mask.shape)} != wavs shape {tuple(wavs.shape)}"
                )
            padding_mask = padding_mask.to(device=wavs.device, dtype=torch.bool)
            lengths = (~padding_mask).sum(dim=1)
            if bool((lengths < RECEPTIVE_FIELD).any()):
                raise ValueError(
                    f"a row has {int(lengths.min())} valid samples, fewer than the "
                    f"{RECEPTIVE_FIELD}-sample receptive field"
                )
            wavs = wavs.masked_fill(padding_mask, 0.0)
            frame_pad = frame_padding_mask(padding_mask, frames)
            if bool(padding_mask.any()):
                attention_mask = (~padding_mask).long()
        else:
            frame_pad = torch.zeros(batch, frames, dtype=torch.bool, device=wavs.device)
        if self.normalize_waveform:
            wavs = _normalize_rows(wavs, padding_mask)

        if frame_mask is not None:
            if not self.has_mask_embedding:
                raise ValueError(
                    f"teacher {self.name!r} has no mask embedding (masked_spec_embed); "
                    "it cannot run on masked input"
                )
            if tuple(frame_mask.shape) != (batch, frames):
                raise ValueError(
                    f"frame_mask must be (B, T) = {(batch, frames)}, got {tuple(frame_mask.shape)}"
                )
            frame_mask = frame_mask.to(device=wavs.device, dtype=torch.bool)

        config = self.model.config
        wavlm = self.model_type == "wavlm"
        previous_impl = config._attn_implementation
        with torch.no_grad():
            try:
                if output_attentions and wavlm:
                    self._wavlm_maps = []
                elif output_attentions:
                    config._attn_implementation = "eager"
                with warnings.catch_warnings():
                    # WavLM passes a bool key padding mask with a float position bias to torch MHA
                    warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
                    out = self.model(
                        input_values=wavs,
                        attention_mask=attention_mask,
                        mask_time_indices=frame_mask,
                        output_hidden_states=True,
                        output_attentions=output_attentions and not wavlm,
                        return_dict=True,
                    )
                attentions = None
                if output_attentions:
                    attentions = list(self._wavlm_maps) if wavlm else list(out.attentions)
            finally:
                self._wavlm_maps = None
                config._attn_implementation = previous_impl

        hidden_states = list(out.hidden_states)
        if len(hidden_states) != self.num_layers + 1 or hidden_states[0].shape[1] != frames:
            raise RuntimeError(
                f"teacher returned {len(hidden_states)} hidden states of {hidden_states[0].shape[1]} "
                f"frames; expected {self.num_layers + 1} of {frames}"
            )
        return TeacherOutput(
            hidden_states=hidden_states,
            attentions=attentions,
            padding_mask=frame_pad,
            last_hidden_state=out.last_hidden_state,
        )

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, type={self.model_type}, layers={self.num_layers}, "
            f"hidden={self.hidden_size}, heads={self.num_heads}"
        )


def _normalize_rows(wavs: Tensor, padding_mask: Tensor | None, eps: float = 1e-5) -> Tensor:
    """Per-row zero mean / unit variance over the valid samples (as ``F.layer_norm(wav, wav.shape)``)."""
    valid = torch.ones_like(wavs) if padding_mask is None else (~padding_mask).to(wavs.dtype)
    count = valid.sum(dim=1, keepdim=True)
    mean = (wavs * valid).sum(dim=1, keepdim=True) / count
    var = (((wavs - mean) * valid) ** 2).sum(dim=1, keepdim=True) / count
    return (wavs - mean) / torch.sqrt(var + eps) * valid


# ---------------------------------------------------------------------- loading


def _options_message() -> str:
    return (
        "a teacher source is one of: a local transformers folder (config.json + weights), "
        "an original fairseq checkpoint file (e.g. hubert_base_ls960.pt), or a named "
        f"architecture with random weights: {architecture_names()}"
    )


def _check_kind(kind: str | None, model_type: str, source) -> None:
    if kind is not None and kind != model_type:
        raise ValueError(f"{source}: kind={kind!r} requested but the teacher is a {model_type!r} model")


def load_teacher(
    source: str | Path,
    kind: str | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    normalize_waveform: bool | None = None,
    trust: bool = False,
) -> FrozenTeacher:
    """Load a frozen teacher.

    Args:
        source: a local transformers folder (``config.json`` + weights; the model type
            comes from the config), an original fairseq / unilm checkpoint file
            (converted by :mod:`audio_compress.teachers.fairseq`), or the name of an
            architecture in :mod:`audio_compress.teachers.configs` (random weights).
        kind: model type, ``"hubert"``, ``"wavlm"`` or ``"wav2vec2"``. Needed only for a
            fairseq checkpoint whose type cannot be detected; otherwise checked.
        device: where to put the model.
        seed: seed of the random initialisation of a named architecture (the global
            RNG state is left untouched).
        normalize_waveform: per-utterance input normalisation (see :class:`FrozenTeacher`).
            ``None``: from the fairseq cfg (``normalize``, model or task section), from
            ``teacher_normalize_waveform`` in a folder's config.json (a hub folder lacks it:
            pass True for models trained on normalised input), False for named architectures.
        trust: unpickle a checkpoint file fully (it can run code): only for files from a trusted
            source whose extra objects the safe reader refuses.
    """
    if kind is not None and kind not in MODEL_CLASSES:
        raise ValueError(f"kind must be one of {sorted(MODEL_CLASSES)} or None, got {kind!r}")
    path = Path(source)
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{path}: folder has no config.json; {_options_message()}")
        model_type = json.loads(config_file.read_text()).get("model_type")
        if model_type not in MODEL_CLASSES:
            raise ValueError(
                f"{config_file}: model_type {model_type!r} is not a supported teacher {sorted(MODEL_CLASSES)}"
            )
        _check_kind(kind, model_type, path)
        model = MODEL_CLASSES[model_type][1].from_pretrained(str(path), local_files_only=True)
        name = str(path)
    elif path.is_file():
        ckpt = load_fairseq_checkpoint(path, trust=trust)
        model = build_model_from_fairseq(ckpt, kind)
        if normalize_waveform is None:
            normalize_waveform = ckpt.normalize
        name = str(path)
    elif isinstance(source, str) and source in architecture_names():
        config = get_config(source)
        _check_kind(kind, config.model_type, source)
        devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            model = model_class_for(config)(config)
        name = source
    else:
        raise FileNotFoundError(
            f"teacher {str(source)!r} is neither an existing file or folder nor a named architecture "
            f"(there are no hub downloads at run time: download the model to a folder first); "
            f"{_options_message()}"
        )
    return FrozenTeacher(model, name=name, normalize_waveform=normalize_waveform).to(device)


def save_teacher(teacher: FrozenTeacher | PreTrainedModel, folder: str | Path) -> Path:
    """Save a teacher as a transformers folder (``save_pretrained``) that :func:`load_teacher` reads.

    Writes into a temporary sibling folder first and moves it into place
    (:func:`compact_ssl.io.staged_folder`), so an interrupted save never leaves
    a half-written teacher behind and a previous teacher in ``folder`` is replaced only on success.
    """
    with staged_folder(folder) as tmp:
        write_teacher(teacher, tmp)
    return Path(folder)


def write_teacher(teacher: FrozenTeacher | PreTrainedModel, folder: str | Path) -> Path:
    """Write a teacher's transformers files into ``folder`` as it is, with no staging (for a
    caller that stages the folder itself to add more files; otherwise use :func:`save_teacher`).

    A :class:`FrozenTeacher`'s ``normalize_waveform`` is stored as ``teacher_normalize_waveform``
    in ``config.json``; the model's own config object is left as it was.
    """
    model = teacher.model if isinstance(teacher, FrozenTeacher) else teacher
    config = model.config
    had_flag = hasattr(config, "teacher_normalize_waveform")
    previous = getattr(config, "teacher_normalize_waveform", None)
    try:
        if isinstance(teacher, FrozenTeacher):
            config.teacher_normalize_waveform = teacher.normalize_waveform
        model.save_pretrained(str(folder))
    finally:
        if had_flag:
            config.teacher_normalize_waveform = previous
        elif hasattr(config, "teacher_normalize_waveform"):
            delattr(config, "teacher_normalize_waveform")
    return Path(folder)
