"""ICBHI 2017 data: reader, official split, cycle cutting/padding, manifests, mini corpus, dataset."""

from audio_cls.data.cycles import cut_cycle, cycle_problem, cycle_waves, fade, load_recording, pad_or_trim
from audio_cls.data.dataset import CycleFeatureDataset
from audio_cls.data.icbhi import CLASS_NAMES, Cycle, IcbhiError, RecordingName, read_annotations, resolve_recording
from audio_cls.data.manifest import CycleRecord, class_counts, map_label, read_manifest, write_manifest
from audio_cls.data.mini_corpus import MiniCorpus, make_mini_icbhi
from audio_cls.data.prepare import PreparedCorpus, SkippedCycle, format_counts, prepare_icbhi
from audio_cls.data.split import SplitEntry, read_split

__all__ = [
    "CLASS_NAMES", "Cycle", "CycleFeatureDataset", "CycleRecord", "IcbhiError", "MiniCorpus", "PreparedCorpus",
    "RecordingName", "SkippedCycle", "SplitEntry", "class_counts", "cut_cycle", "cycle_problem", "cycle_waves", "fade",
    "format_counts", "load_recording", "make_mini_icbhi", "map_label", "pad_or_trim", "prepare_icbhi",
    "read_annotations", "read_manifest", "read_split", "resolve_recording", "write_manifest",
]
