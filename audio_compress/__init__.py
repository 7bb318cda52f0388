"""Speech SSL compression: STaR, ARMHuBERT and DistilHuBERT students distilled from
HuBERT / WavLM / wav2vec 2.0 teachers, with s3prl upstream registration for SUPERB.

Conventions used across the package:

* waveforms are float32, mono, 16 kHz; a padded batch is ``(B, L)``;
* ``padding_mask`` is a bool tensor that is **True at padded positions**
  (sample level ``(B, L)`` or frame level ``(B, T)``), as in fairseq;
* frames follow the wav2vec 2.0 CNN: ``T = floor((L - 400) / 320) + 1``
  (see :func:`audio_compress.frames.num_frames`).
"""

__version__ = "0.1.0"
