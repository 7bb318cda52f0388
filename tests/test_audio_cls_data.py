"""ICBHI data layer: split parsing, annotations, file-name traps, class counts, cycle cut/pad."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SHARED_DATA

from audio_cls.data import (
    IcbhiError,
    RecordingName,
    cut_cycle,
    fade,
    load_recording,
    make_mini_icbhi,
    pad_or_trim,
    prepare_icbhi,
    read_annotations,
    read_manifest,
    read_split,
    write_manifest,
)
from compact_ssl.audio import AudioError

ICBHI_SAMPLES = SHARED_DATA / "icbhi_samples"
needs_icbhi = pytest.mark.skipif(not ICBHI_SAMPLES.is_dir(),
                                 reason=f"real ICBHI samples not found at {ICBHI_SAMPLES} (optional; `make test-data`)")


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return make_mini_icbhi(tmp_path_factory.mktemp("mini_icbhi"), seed=0)


def _copy_corpus(mini, tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    shutil.copytree(mini.root, root)
    return root


# ---------------------------------------------------------------- mini corpus: split and counts
def test_mini_split_and_class_counts(mini):
    entries = read_split(mini.split_file)
    assert len(entries) == 30
    assert [e.split for e in entries].count("train") == 18 and [e.split for e in entries].count("test") == 12
    assert not mini.split_file.read_text().endswith("\n")  # the distributed file has no final newline
    corpus = prepare_icbhi(mini.root)
    counts = corpus.counts()
    # ground truth of the generator (seed 0); every class is present in both splits
    assert counts == mini.counts == {"train": [30, 22, 15, 18], "test": [20, 15, 12, 10]}
    assert corpus.counts(num_classes=2) == {"train": [30, 55], "test": [20, 37]}
    # the renamed-file trap: split says _Meditron, the audio is stored under the zip's device name
    assert sorted(name for name, _ in corpus.renamed) == sorted(mini.renamed) and len(mini.renamed) == 10
    for name, stem in corpus.renamed:
        assert RecordingName.parse(name).device == "Meditron" and stem.rsplit("_", 1)[1] in ("AKGC417L", "LittC2SE")
    record = corpus.cycles["train"][0]
    assert Path(record.audio).is_file() and record.id.startswith(record.recording)


def test_mini_corpus_needs_both_splits(tmp_path):
    with pytest.raises(ValueError, match="at least 5 recordings"):
        make_mini_icbhi(tmp_path, num_recordings=3)


def test_manifest_round_trip(mini, tmp_path):
    corpus = prepare_icbhi(mini.root)
    write_manifest(corpus.cycles["test"], tmp_path / "test" / "cycles.tsv")
    assert read_manifest(tmp_path / "test" / "cycles.tsv") == corpus.cycles["test"]


def test_prepare_cli_prints_counts(mini, tmp_path, capsys):
    from audio_cls.bin.prepare_icbhi import main

    main(["--root", str(mini.root), "--out", str(tmp_path / "data")])
    out = capsys.readouterr().out
    assert "normal         30      20      50" in out and "total          85      57     142" in out
    assert (tmp_path / "data" / "train" / "cycles.tsv").is_file() and (tmp_path / "data" / "counts.json").is_file()


# ---------------------------------------------------------------- errors name the file and line
def test_split_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "split.txt"
    bad.write_text("101_1b1_Al_sc_Meditron\ttest\n101_1b1_Pr_sc_Meditron\tvalid\n")
    with pytest.raises(IcbhiError, match=r"split.txt:2: split must be one of"):
        read_split(bad)
    bad.write_text("101_1b1_Al_sc_Meditron\ttest\n\n101_1b1_Al_sc_Meditron test\n")
    with pytest.raises(IcbhiError, match=r"split.txt:3: recording 101_1b1_Al_sc_Meditron is listed twice"):
        read_split(bad)
    bad.write_text("101_1b1_Al_sc_Stethoscope\ttest\n")
    with pytest.raises(IcbhiError, match=r"split.txt:1: .*not an ICBHI recording name"):
        read_split(bad)


@pytest.mark.parametrize("line,problem", [
    ("0.5\t1.2\t0\n", "expected 4 fields"),
    ("0.5\tabc\t0\t1\n", "must be numbers"),
    ("0.5\t1.2\t2\t0\n", "flags must be 0 or 1"),
    ("1.5\t1.2\t0\t0\n", "0 <= start < end"),
])
def test_malformed_annotation(tmp_path, line, problem):
    path = tmp_path / "101_1b1_Al_sc_Meditron.txt"
    path.write_text("0.0\t0.5\t0\t0\r\n" + line)
    with pytest.raises(IcbhiError, match=rf"101_1b1_Al_sc_Meditron.txt:2: .*{problem}"):
        read_annotations(path)


def test_annotation_tolerates_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("0.036\t0.579\t0\t0\r\n\r\n0.579 2.45 1 1\r\n")
    cycles = read_annotations(path)
    assert [(c.start, c.end, c.label) for c in cycles] == [(0.036, 0.579, 0), (0.579, 2.45, 3)]


def test_split_entry_without_audio(mini, tmp_path):
    root = _copy_corpus(mini, tmp_path)
    victim = read_split(root / "official_split.txt")[4]
    for path in (root / "audio_and_txt_files").glob(victim.recording.rsplit("_", 1)[0] + "_*.wav"):
        path.unlink()
    with pytest.raises(IcbhiError, match=rf"official_split.txt:5: recording {victim.recording} has no audio"):
        prepare_icbhi(root)
    corpus = prepare_icbhi(root, missing_audio="skip")
    assert corpus.skipped == [victim.recording]


def test_cycle_outside_recording(mini, tmp_path):
    root = _copy_corpus(mini, tmp_path)
    wav = sorted((root / "audio_and_txt_files").glob("*.wav"))[0]
    duration = sf.info(str(wav)).duration
    txt = wav.with_suffix(".txt")
    line = len(txt.read_text().splitlines()) + 1
    start, end = round(duration + 1, 3), round(duration + 2, 3)
    txt.write_text(txt.read_text() + f"{start}\t{end}\t0\t0\n")
    with pytest.raises(IcbhiError, match=rf"{txt.name}:{line}: cycle {start}-{end} s starts at or after the end of "
                       rf"the recording \({duration:.3f} s"):
        prepare_icbhi(root)
    # a cycle that only ends late is kept and clipped when cut, as in the reference
    txt.write_text(txt.read_text().splitlines()[0] + f"\n{duration - 0.5:.3f}\t{duration + 0.5:.3f}\t0\t0\n")
    assert prepare_icbhi(root).clipped == 1


def test_unreadable_audio_and_missing_annotation(mini, tmp_path):
    root = _copy_corpus(mini, tmp_path)
    wavs = sorted((root / "audio_and_txt_files").glob("*.wav"))
    wavs[0].write_bytes(b"RIFF not really a wave file")
    with pytest.raises(AudioError, match=wavs[0].name):
        prepare_icbhi(root)
    with pytest.raises(AudioError, match=wavs[0].name):
        load_recording(wavs[0])
    shutil.copy(mini.root / "audio_and_txt_files" / wavs[0].name, wavs[0])  # repaired
    wavs[1].with_suffix(".txt").unlink()
    with pytest.raises(IcbhiError, match=rf"{wavs[1].stem}.txt: annotation file .* is missing"):
        prepare_icbhi(root)


def test_missing_root_says_what_to_download(tmp_path):
    with pytest.raises(IcbhiError, match="Download the ICBHI 2017 Respiratory Sound Database"):
        prepare_icbhi(tmp_path / "nowhere")


# ---------------------------------------------------------------- cycles: cut, pad, fade
def test_fade_is_linear_and_recording_fade_length():
    out = fade(np.ones(5000, dtype=np.float32), 1000, 1000)
    assert out[0] == 0 and out[999] == 1 and out[-1] == 0 and out[-1000] == 1
    np.testing.assert_allclose(out[:1000], np.linspace(0, 1, 1000), atol=1e-7)
    assert (out[1000:4000] == 1).all()


def test_cut_cycle_indices_and_clipping():
    wave = np.arange(16000 * 3, dtype=np.float32)
    cycle = cut_cycle(wave, 16000, 0.036, 0.579)
    assert cycle[0] == 576 and len(cycle) == 9264 - 576
    assert len(cut_cycle(wave, 16000, 2.5, 3.7)) == 48000 - 40000  # end clipped to the recording
    with pytest.raises(ValueError, match="starts at or after the end of the recording"):
        cut_cycle(wave, 16000, 3.2, 4.0)


def test_repeat_padding_lengths_and_fade():
    cycle = np.arange(1, 30001, dtype=np.float32)  # 1.875 s
    out = pad_or_trim(cycle, 128000, "repeat", 1000)
    assert out.shape == (128000,) and out.dtype == np.float32
    # tiled ceil(128000 / 30000) = 5 times and cut, then a 1000-sample linear fade-out only
    np.testing.assert_array_equal(out[:127000], np.tile(cycle, 5)[:127000])
    assert out[-1] == 0 and out[-1000] == np.tile(cycle, 5)[127000]
    np.testing.assert_allclose(out[-1000:], np.tile(cycle, 5)[127000:128000] * np.linspace(1, 0, 1000), rtol=1e-6)
    short = pad_or_trim(np.ones(300, dtype=np.float32), 128000, "repeat", 1000)  # shorter than the fade
    assert short.shape == (128000,) and short[:127000].min() == 1


def test_long_cycles_keep_first_samples_and_zero_padding_centres():
    long = np.arange(200000, dtype=np.float32)
    np.testing.assert_array_equal(pad_or_trim(long, 128000), long[:128000])  # no fade when trimmed
    out = pad_or_trim(np.ones(1001, dtype=np.float32), 4000, "zero")
    assert out.shape == (4000,) and out.sum() == 1001 and out[1499] == 1 and out[1498] == 0 and out[2499] == 1


# ---------------------------------------------------------------- real ICBHI recordings
@needs_icbhi
def test_official_split_file_facts():
    entries = read_split(ICBHI_SAMPLES / "lists" / "official_split.txt")
    splits = [e.split for e in entries]
    assert len(entries) == 920 and splits.count("train") == 539 and splits.count("test") == 381
    patients = {s: {RecordingName.parse(e.recording).patient for e in entries if e.split == s}
                for s in ("train", "test")}
    assert len(patients["train"]) == 79 and len(patients["test"]) == 49
    assert patients["train"] & patients["test"] == {156, 218}
    assert not any(RecordingName.parse(e.recording).device == "LittC2SE" for e in entries if e.split == "test")
    renames = (ICBHI_SAMPLES / "lists" / "filename_differences.txt").read_text().split()
    assert len(renames) == 91


@needs_icbhi
def test_real_icbhi_recordings_parse(tmp_path):
    corpus = prepare_icbhi(ICBHI_SAMPLES, ICBHI_SAMPLES / "lists" / "official_split.txt", missing_audio="skip")
    assert len(corpus.skipped) == 910 and corpus.clipped == 0 and not corpus.unlisted
    assert corpus.counts() == {"train": [2, 0, 4, 0], "test": [80, 1, 10, 0]}
    assert sum(len(c) for c in corpus.cycles.values()) == 97
    with pytest.raises(IcbhiError, match=r"official_split.txt:\d+: recording .* has no audio"):
        prepare_icbhi(ICBHI_SAMPLES, ICBHI_SAMPLES / "lists" / "official_split.txt")
    # 4 kHz Litt3200 and 44.1 kHz 32-bit Meditron recordings both come out at 16 kHz
    litt = ICBHI_SAMPLES / "audio_and_txt_files" / "104_1b1_Al_sc_Litt3200.wav"
    assert load_recording(litt).shape == (63424 * 4,)
    meditron = load_recording(ICBHI_SAMPLES / "audio_and_txt_files" / "101_1b1_Al_sc_Meditron.wav")
    assert meditron.shape == (320000,) and np.isfinite(meditron).all() and meditron[0] == 0
