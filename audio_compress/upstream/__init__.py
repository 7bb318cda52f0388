"""s3prl integration: a compatibility layer and run-time registration of our upstreams.

``register()`` attaches factory functions to the ``s3prl.hub`` module, so that s3prl's legacy
SUPERB runner (``-u <name> -k <path>``), ``s3prl.nn.S3PRLUpstream(name, path)`` and ESPnet's
s3prl frontend all find them, without editing s3prl's files. Registration is per process: call
it in every process that builds an upstream (training, evaluation, every DDP worker).

Registered names:

* ``ssl_teacher_local``: a teacher (HuBERT / WavLM / wav2vec 2.0) from a local transformers
  folder, an original fairseq checkpoint, or a named random architecture; all L+1 hidden states.
* ``star_local``, ``armhubert_local``, ``distilhubert_local``: a student checkpoint of this
  toolkit (``audio_compress.models.save_student`` / recipe export stage), or a released one as
  published: a STaR / ARMHuBERT-family Lightning ``.ckpt`` with its training YAML as
  ``model_config`` (s3prl ``-g``, or ``extra_conf={"model_config": yaml}``; found beside the
  checkpoint when left out), or an s3prl DistilHuBERT checkpoint. Hidden states as the papers'
  upstreams expose them: STaR the L layer outputs, ARMHuBERT the L projections to 768,
  DistilHuBERT the projected CNN features, the layer outputs and the head predictions.
  All have downsample rate 320. A released file must come through its family's entry.
  Files are read without running code from them; ``extra_conf={"trust": True}`` unpickles
  fully, only for a file from a trusted source.
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
def ssl_teacher_local(ckpt: str, model_config: str | None = None, refresh: bool = False, trust: bool = False,
                      **kwargs) -> UpstreamExpert:
    """Teacher upstream. ``ckpt``: a transformers folder, a fairseq ``.pt`` file or a named
    architecture (``hubert_base``, ``tiny_hubert``, ...). Returns the L+1 hidden states.
    ``trust=True`` unpickles a fairseq file fully (only for a trusted source)."""
    from audio_compress.teachers import load_teacher

    if ckpt is None:
        raise ValueError("ssl_teacher_local needs a checkpoint: pass -k PATH (s3prl runner) or path_or_url")
    return UpstreamExpert(load_teacher(ckpt, trust=trust), _teacher_states)


def _student_states(model, wavs, padding_mask):
    return model.upstream_hidden_states(model(wavs, padding_mask=padding_mask))


def _student_upstream(entry: str, ckpt: str | None, model_config: str | None, trust: bool) -> UpstreamExpert:
    from audio_compress.models.released import check_entry, open_student

    if ckpt is None:
        raise ValueError(f"{entry} needs an exported student checkpoint or a released one: pass -k PATH (s3prl runner) "
                         "or path_or_url")
    loaded = open_student(ckpt, model_config=model_config, trust=trust)
    check_entry(loaded, entry)
    loaded.model.eval()
    return UpstreamExpert(loaded.model, _student_states)


@_factory("star_local")
def star_local(ckpt: str, model_config: str | None = None, refresh: bool = False, trust: bool = False,
               **kwargs) -> UpstreamExpert:
    """STaR student (STaRHuBERT, -L, STaRWavLM): a released Lightning checkpoint with its YAML, or
    any student checkpoint of this toolkit. Hidden states: the L layer outputs, (B, T, d) each;
    ``last_hidden_state`` is the last of them, also (B, T, d) (the official STaR upstream returns
    it as (T, B, d))."""
    return _student_upstream("star_local", ckpt, model_config, trust)


@_factory("armhubert_local")
def armhubert_local(ckpt: str, model_config: str | None = None, refresh: bool = False, trust: bool = False,
                    **kwargs) -> UpstreamExpert:
    """ARMHuBERT / ARMHuBERT-S / ARMwavLM-S / MaskHuBERT student: a released Lightning checkpoint
    with its YAML, or a student checkpoint of this toolkit. Hidden states: the L projections."""
    return _student_upstream("armhubert_local", ckpt, model_config, trust)


@_factory("distilhubert_local")
def distilhubert_local(ckpt: str, model_config: str | None = None, refresh: bool = False, trust: bool = False,
                       **kwargs) -> UpstreamExpert:
    """DistilHuBERT student: an s3prl distiller checkpoint as released (``Distiller`` and ``Config``
    inside), or a student checkpoint of this toolkit."""
    return _student_upstream("distilhubert_local", ckpt, model_config, trust)


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
