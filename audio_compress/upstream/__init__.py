"""s3prl integration: a compatibility layer and run-time registration of our upstreams.

``register()`` attaches factory functions to the ``s3prl.hub`` module, so that s3prl's legacy
SUPERB runner (``-u <name> -k <path>``), ``s3prl.nn.S3PRLUpstream(name, path)`` and ESPnet's
s3prl frontend all find them, without editing s3prl's files. Registration is per process: call
it in every process that builds an upstream (training, evaluation, every DDP worker).

Registered names:

* ``ssl_teacher_local``: a teacher (HuBERT / WavLM / wav2vec 2.0) from a local transformers
  folder, an original fairseq checkpoint, or a named random architecture; all L+1 hidden states.
* ``star_local``, ``armhubert_local``, ``distilhubert_local``: an exported student checkpoint
  (``audio_compress.models.save_student`` / recipe export stage). Hidden states as the papers'
  upstreams expose them: STaR the L layer outputs, ARMHuBERT the L projections to 768,
  DistilHuBERT the projected CNN features, the layer outputs and the head predictions.
  All have downsample rate 320.
"""

from __future__ import annotations

from collections.abc import Callable

from audio_compress.upstream import compat
from audio_compress.upstream.expert import UpstreamExpert

_FACTORIES: dict[str, Callable[..., UpstreamExpert]] = {}


def _factory(name: str):
    def deco(fn: Callable[..., UpstreamExpert]) -> Callable[..., UpstreamExpert]:
        fn.__name__ = name
        _FACTORIES[name] = fn
        return fn

    return deco


def _teacher_states(model, wavs, padding_mask):
    return model(wavs, padding_mask=padding_mask).hidden_states


@_factory("ssl_teacher_local")
def ssl_teacher_local(ckpt: str, model_config: str | None = None, refresh: bool = False, **kwargs) -> UpstreamExpert:
    """Teacher upstream. ``ckpt``: a transformers folder, a fairseq ``.pt`` file or a named
    architecture (``hubert_base``, ``tiny_hubert``, ...). Returns the L+1 hidden states."""
    from audio_compress.teachers import load_teacher

    if ckpt is None:
        raise ValueError("ssl_teacher_local needs a checkpoint: pass -k PATH (s3prl runner) or path_or_url")
    return UpstreamExpert(load_teacher(ckpt), _teacher_states)


def _student_states(model, wavs, padding_mask):
    return model.upstream_hidden_states(model(wavs, padding_mask=padding_mask))


def _student_upstream(ckpt: str | None, entry: str) -> UpstreamExpert:
    from audio_compress.models import load_student

    if ckpt is None:
        raise ValueError(f"{entry} needs an exported student checkpoint: pass -k PATH (s3prl runner) or path_or_url")
    model = load_student(ckpt)
    model.eval()
    return UpstreamExpert(model, _student_states)


@_factory("star_local")
def star_local(ckpt: str, model_config: str | None = None, refresh: bool = False, **kwargs) -> UpstreamExpert:
    """STaR student (STaRHuBERT, -L, or any student checkpoint) from an exported checkpoint."""
    return _student_upstream(ckpt, "star_local")


@_factory("armhubert_local")
def armhubert_local(ckpt: str, model_config: str | None = None, refresh: bool = False, **kwargs) -> UpstreamExpert:
    """ARMHuBERT / ARMHuBERT-S / MaskHuBERT student from an exported checkpoint."""
    return _student_upstream(ckpt, "armhubert_local")


@_factory("distilhubert_local")
def distilhubert_local(ckpt: str, model_config: str | None = None, refresh: bool = False, **kwargs) -> UpstreamExpert:
    """DistilHuBERT student from an exported checkpoint."""
    return _student_upstream(ckpt, "distilhubert_local")


def register() -> list[str]:
    """Apply the s3prl compatibility layer and attach our factories to ``s3prl.hub``.

    Returns the registered names. Safe to call more than once.
    """
    compat.apply()
    import s3prl.hub as hub

    for name, fn in _FACTORIES.items():
        setattr(hub, name, fn)
    return sorted(_FACTORIES)


def registered_names() -> list[str]:
    """Names that :func:`register` adds to ``s3prl.hub``."""
    return sorted(_FACTORIES)


__all__ = ["register", "registered_names", "UpstreamExpert", "compat"]
