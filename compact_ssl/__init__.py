"""compact_ssl: the core the method packages build on.

Nothing here is specific to a method. :mod:`compact_ssl.config` builds typed config
dataclasses from YAML and ``--set`` overrides; :mod:`compact_ssl.io` writes files atomically;
:mod:`compact_ssl.nn` holds small nn utilities (parameter counts, EMA, cosine schedule, mixed-label
cross-entropy); :mod:`compact_ssl.audio` reads and checks audio files; :mod:`compact_ssl.training`
is the one experiment runner and trainer factory every training entry point goes through;
:mod:`compact_ssl.pretrained` writes and reads shareable model folders (safetensors, config.json and a
model card; hub fetch and push).

``audio_compress``, ``audio_cls`` and ``vision_ssl`` import this package and never each other.
"""

__version__ = "0.1.0"
