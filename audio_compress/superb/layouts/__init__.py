"""On-disk layouts that s3prl's SUPERB task datasets read, built from our own corpora.

s3prl's downstream datasets read their corpora in fixed layouts; instead of changing s3prl we
write small copies of our data in those layouts (16 kHz audio), so the mini SUPERB tasks run
through exactly the same s3prl code as the full ones. Sources: the mini corpus's Kaldi data
dirs (``data/{train,dev_mini,test_mini}`` with ``utt2keyword``, ``utt2intent``, ``phn``) via
:func:`build_mini_layouts`, and the Free Spoken Digit Dataset via :func:`build_fsdd_layouts`.

Layouts (``<out>/<task>/``), each as s3prl 0.4.18's dataset code reads it:

* ``ks`` (``speech_commands``, Speech Commands v0.01): ``train/<keyword>/<name>_nohash_<k>.wav``
  plus ``train/_background_noise_/*.wav`` (the ``_silence_`` class: s3prl crops random 1 s
  windows, so each file is longer than 1 s) and a separate test root
  ``test/<keyword>/*.wav`` + ``test/_silence_/*.wav``. s3prl does not read
  ``validation_list.txt``: it assigns a training-root file to validation when the SHA-1 hash of
  the part of its name before ``_nohash_`` falls in the first 10 % (10-20 % is discarded as the
  official test part, the rest is training). File names are therefore chosen so that our train
  utterances hash to training and our dev utterances to validation; ``validation_list.txt`` and
  ``testing_list.txt`` are written too (for other tools). Class folders must be among the 12
  SUPERB classes (other names become ``_unknown_`` in training and fail at test); FSDD digit
  ``d`` is stored in the folder of the ``d``-th keyword (label slots).
* ``ic`` (``fluent_commands``): ``wavs/speakers/<spk>/<utt>.wav`` and
  ``data/{train,valid,test}_data.csv`` with the columns of Fluent Speech Commands (an unnamed
  index, ``path, speakerId, transcription, action, object, location``). Our intent label
  ``action_object_location`` gives the three slots; every slot value of valid/test must occur
  in train (s3prl builds its label set from train).
* ``sid`` (``voxceleb1``): ``{dev,test}/wav/<speaker id>/<video>/<utt>.wav`` and
  ``iden_split.txt`` (``1|2|3 <id>/<video>/<utt>.wav`` = train/dev/test). s3prl derives the
  class from the speaker folder name (``id10001`` -> 0), so speakers are renamed
  ``id10001, id10002, ...`` in sorted order (``speakers.tsv`` keeps the mapping).
* ``pr`` (``ctc`` with the ``libriphone`` corpus): ``LibriSpeech/<split>/<spk>/<chapter>/
  <utt>.flac`` with ``<spk>-<chapter>.trans.txt`` whose "words" are the utterance's phone
  tokens (the espeak phoneme strings of the mini corpus), an identity ``lexicon.txt`` (each
  phone pronounced as itself) and ``vocab.txt`` (one phone per line). s3prl's libriphone
  reader maps words to phones through the lexicon, so it yields exactly our phone strings.

For the full tasks, :func:`prepare_full_task` writes what s3prl would otherwise need an
interactive script or a write into the corpus folder for: ASR's length tables
(``len_for_bucket/<subset>.csv``) and IEMOCAP's per-session train/test lists.

Every builder writes ``layout.json`` (what it was built from); a layout whose sources and
options are unchanged is kept, so re-running a recipe stage is cheap and safe.

One module per layout (:mod:`.ks`, :mod:`.ic`, :mod:`.sid`, :mod:`.pr`) on the shared helpers
of :mod:`.common`; the sources are read by :mod:`.sources`, :mod:`.build` builds several layouts
at once and :mod:`.full` holds the full tasks' metadata.
"""

from audio_compress.superb.layouts.build import BUILDERS, build_fsdd_layouts, build_layouts, build_mini_layouts
from audio_compress.superb.layouts.common import KS_CLASSES, LAYOUT_VERSION, LayoutError, Utt
from audio_compress.superb.layouts.full import prepare_full_task, prepare_iemocap_meta, write_len_for_bucket
from audio_compress.superb.layouts.ic import build_ic_layout
from audio_compress.superb.layouts.ks import build_ks_layout, speech_commands_split
from audio_compress.superb.layouts.pr import build_pr_layout
from audio_compress.superb.layouts.sid import build_sid_layout
from audio_compress.superb.layouts.sources import fsdd_utterances, utterances_from_data_dirs

__all__ = [
    "BUILDERS",
    "LAYOUT_VERSION",
    "KS_CLASSES",
    "Utt",
    "LayoutError",
    "speech_commands_split",
    "utterances_from_data_dirs",
    "fsdd_utterances",
    "build_ks_layout",
    "build_ic_layout",
    "build_sid_layout",
    "build_pr_layout",
    "build_layouts",
    "build_mini_layouts",
    "build_fsdd_layouts",
    "write_len_for_bucket",
    "prepare_iemocap_meta",
    "prepare_full_task",
]
