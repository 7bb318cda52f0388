"""Injected audio faults: truncated FLAC/WAV, stereo files, a .wav corpus, a data prep failing midway,
and the per-file check cache. Each fault must give its own error kind naming the file."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_compress.bin import prepare_librispeech as prep_cli
from audio_compress.data import librispeech
from audio_compress.data.dataset import MULTICHANNEL_FILE, SpeechDataset
from audio_compress.data.kaldi import validate_data_dir
from audio_compress.data.librispeech import (
    CHECK_CACHE_NAME,
    DOWNLOAD_HINT,
    BadAudioError,
    check_audio_file,
    prepare_librispeech,
    scan_subset,
)
from compact_ssl.audio import AudioError, load_audio, parse_wav_chunks, verify_audio, wav_truncation

N = 50000  # samples of the test signals


def _tone(n: int = N, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(np.arange(n) / 7.0)[:, None] + 0.01 * rng.standard_normal((n, channels))
    return (x[:, 0] if channels == 1 else x).astype(np.float32)


def _wav(path: Path, n: int = N, channels: int = 1) -> Path:
    sf.write(str(path), _tone(n, channels), 16000, subtype="PCM_16", format="WAV")
    return path


def _flac(path: Path, n: int = N, channels: int = 1, seed: int = 0) -> Path:
    sf.write(str(path), _tone(n, channels, seed), 16000, subtype="PCM_16", format="FLAC")
    return path


def _cut(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# ----------------------------------------------------------------------------- header parsing

def test_parse_wav_chunks_of_a_soundfile_wav(tmp_path):
    head = _wav(tmp_path / "a.wav").read_bytes()
    chunks = parse_wav_chunks(head)
    assert (chunks.data_offset, chunks.data_size, chunks.block_align) == (44, 2 * N, 2)
    assert chunks.riff_size + 8 == len(head)
    assert wav_truncation(head, len(head)) is None
    assert parse_wav_chunks(_flac(tmp_path / "a.flac").read_bytes()) is None
    assert parse_wav_chunks(head[:40]) is None  # the data chunk header is not within the bytes


def test_parse_wav_chunks_skips_padded_chunk_before_data():
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 2, 16000, 16000 * 4, 4, 16)
    junk = b"JUNK" + struct.pack("<I", 3) + b"abc\0"  # odd size: one pad byte
    data = b"data" + struct.pack("<I", 400) + bytes(400)
    body = b"WAVE" + fmt + junk + data
    head = b"RIFF" + struct.pack("<I", len(body)) + body
    chunks = parse_wav_chunks(head)
    assert (chunks.data_offset, chunks.data_size, chunks.block_align) == (len(head) - 400, 400, 4)
    assert wav_truncation(head, len(head)) is None
    assert "declares 400 bytes (100 samples) but only 200 bytes (50 samples)" in wav_truncation(head, len(head) - 200)
    # a streaming writer's unknown sizes are not taken for a truncation
    unknown = head[:4] + b"\xff\xff\xff\xff" + head[8:len(head) - 408] + b"data\xff\xff\xff\xff" + bytes(400)
    assert wav_truncation(unknown, 100) is None


def test_riff_size_beyond_file_end(tmp_path):
    """Audio complete but a trailing chunk cut: the file is still incomplete."""
    path = _wav(tmp_path / "tail.wav", n=1000)
    data = path.read_bytes()
    trailer = b"LIST" + struct.pack("<I", 100) + bytes(100)
    riff = struct.pack("<I", len(data) - 8 + len(trailer))
    path.write_bytes(data[:4] + riff + data[8:] + trailer[:50])
    problem = wav_truncation(path.read_bytes(), path.stat().st_size)
    assert problem is not None and f"declares {len(data) + len(trailer)} bytes but the file has {len(data) + 50}" in problem
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert err.value.kind == "truncated" and str(path) in str(err.value)


# ----------------------------------------------------------------------------- truncated files

@pytest.mark.parametrize("reader", ["load_audio", "verify_full", "verify_header", "check_full", "check_header"])
def test_half_cut_wav_data_chunk(tmp_path, reader):
    path = _wav(tmp_path / "cut.wav")
    path.write_bytes(path.read_bytes()[: 44 + N])  # half of the 2-byte samples
    assert sf.info(str(path)).frames == N // 2  # what libsndfile believes: the fault is silent there
    with pytest.raises(AudioError) as err:
        {"load_audio": lambda: load_audio(path),
         "verify_full": lambda: verify_audio(path, full=True),
         "verify_header": lambda: verify_audio(path, full=False),
         "check_full": lambda: check_audio_file(path, check="full"),
         "check_header": lambda: check_audio_file(path, check="header")}[reader]()
    msg = str(err.value)
    assert err.value.kind == "truncated" and msg.startswith(str(path))
    assert f"declares {2 * N} bytes ({N} samples) but only {N} bytes ({N // 2} samples)" in msg
    assert "re-download or re-extract" in msg and "--on_bad_audio skip" in msg


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.995])
@pytest.mark.parametrize("reader", ["load_audio", "verify_full", "verify_header"])
def test_truncated_flac(tmp_path, keep, reader):
    path = _cut(_flac(tmp_path / "cut.flac"), keep)
    assert sf.info(str(path)).frames == N  # STREAMINFO still declares the full length
    with pytest.raises(AudioError) as err:
        {"load_audio": lambda: load_audio(path),
         "verify_full": lambda: verify_audio(path, full=True),
         "verify_header": lambda: verify_audio(path, full=False)}[reader]()
    msg = str(err.value)
    assert err.value.kind == "truncated" and msg.startswith(str(path))
    assert f"the header declares {N} samples" in msg and "re-download or re-extract" in msg


def test_intact_files_pass_both_checks(tmp_path):
    for path in (_wav(tmp_path / "a.wav"), _flac(tmp_path / "a.flac")):
        for full in (True, False):
            info = verify_audio(path, full=full)
            assert (info.num_samples, info.sample_rate, info.channels) == (N, 16000, 1)
        assert load_audio(path).shape == (N,)


def test_flac_without_declared_length_is_refused(tmp_path):
    path = _flac(tmp_path / "stream.flac")
    data = bytearray(path.read_bytes())
    si = 8  # STREAMINFO payload after "fLaC" and its block header; total_samples: 36 bits from byte 13
    data[si + 13] &= 0xF0
    data[si + 14: si + 18] = bytes(4)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match="does not declare the number of samples") as err:
        load_audio(path)
    assert err.value.kind == "unreadable" and str(path) in str(err.value)


# ----------------------------------------------------------------------------- corpus helpers

def _make_subset(base: Path, subset: str, utts: dict[str, int], ext: str = ".flac",
                 channels: int = 1) -> dict[str, Path]:
    paths = {}
    lines: dict[Path, list[str]] = {}
    for i, (utt, n) in enumerate(sorted(utts.items())):
        spk, ch, _ = utt.split("-")
        d = base / "LibriSpeech" / subset / spk / ch
        d.mkdir(parents=True, exist_ok=True)
        sf.write(str(d / f"{utt}{ext}"), _tone(n, channels, i), 16000, subtype="PCM_16",
                 format="FLAC" if ext == ".flac" else "WAV")
        lines.setdefault(d, []).append(f"{utt} TEXT OF {utt}")
        paths[utt] = d / f"{utt}{ext}"
    for d, ls in lines.items():
        with open(d / f"{d.parent.name}-{d.name}.trans.txt", "a") as f:  # adds to an existing chapter
            f.write("\n".join(ls) + "\n")
    return paths


UTTS = {"1-1-0000": 8000, "1-1-0001": 9000, "2-2-0000": 10000}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _hidden_dirs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.startswith("."))


# ----------------------------------------------------------------------------- data prep faults

@pytest.mark.parametrize("check", ["full", "header"])
def test_prep_reports_truncated_flac(tmp_path, check):
    paths = _make_subset(tmp_path, "dev-clean", UTTS)
    _cut(paths["1-1-0001"], 0.6)
    with pytest.raises(BadAudioError) as err:
        prepare_librispeech(tmp_path, ["dev-clean"], tmp_path / "data", nj=1, check=check, progress=False)
    assert [(p.utt_id, p.kind) for p in err.value.problems] == [("1-1-0001", "truncated")]
    assert str(paths["1-1-0001"]) in str(err.value) and "declares 9000 samples" in str(err.value)


def test_cli_truncated_wav_exits_nonzero(tmp_path, capsys):
    paths = _make_subset(tmp_path, "dev-clean", UTTS, ext=".wav")
    wav = paths["2-2-0000"]
    wav.write_bytes(wav.read_bytes()[: 44 + 10000])
    rc = prep_cli.main(["--root", str(tmp_path), "--subsets", "dev-clean", "--out", str(tmp_path / "data"),
                        "--nj", "1", "--no_progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert str(wav) in err and "[truncated]" in err and "(5000 samples) are present" in err


def test_cli_defaults_are_full_check_and_refuse():
    args = prep_cli.build_parser().parse_args(["--root", "r", "--subsets", "s", "--out", "o"])
    assert args.check == "full" and args.multichannel == "refuse"


def test_stereo_refused_by_default_with_option_named(tmp_path, capsys):
    paths = _make_subset(tmp_path, "dev-clean", UTTS, channels=2)
    with pytest.raises(BadAudioError) as err:
        prepare_librispeech(tmp_path, ["dev-clean"], tmp_path / "data", nj=1, progress=False)
    assert {p.kind for p in err.value.problems} == {"multichannel"}
    msg = str(err.value)
    assert str(paths["1-1-0000"]) in msg and "has 2 channels" in msg and "--multichannel mean" in msg
    rc = prep_cli.main(["--root", str(tmp_path), "--subsets", "dev-clean", "--out", str(tmp_path / "data"),
                        "--nj", "1", "--no_progress"])
    err_text = capsys.readouterr().err
    assert rc == 1 and str(paths["2-2-0000"]) in err_text and "[multichannel]" in err_text


def test_multichannel_policy_recorded_and_honoured_by_dataset(tmp_path, capsys):
    _make_subset(tmp_path, "dev-clean", UTTS, channels=2)
    rc = prep_cli.main(["--root", str(tmp_path), "--subsets", "dev-clean", "--out", str(tmp_path / "data"),
                        "--nj", "1", "--no_progress", "--multichannel", "first"])
    assert rc == 0, capsys.readouterr().err
    data_dir = tmp_path / "data" / "dev_clean"
    assert (data_dir / MULTICHANNEL_FILE).read_text() == "first\n"
    dd = validate_data_dir(data_dir)  # multichannel.txt is not taken for a per-utterance file
    assert dd.utt2num_samples == UTTS
    item = SpeechDataset(data_dir)[0]
    expected = sf.read(dd.wav_scp[item["utt_id"]], dtype="float32")[0][:, 0]
    np.testing.assert_allclose(item["wav"].numpy(), expected, atol=1e-6)

    # no record: the dataset refuses, naming the file
    (data_dir / MULTICHANNEL_FILE).unlink()
    with pytest.raises(AudioError) as err:
        SpeechDataset(data_dir)[0]
    assert err.value.kind == "multichannel" and err.value.path == dd.wav_scp[item["utt_id"]]
    (data_dir / MULTICHANNEL_FILE).write_text("avg\n")
    with pytest.raises(ValueError, match=rf"{data_dir / MULTICHANNEL_FILE}: holds 'avg'"):
        SpeechDataset(data_dir)

    # the default (refuse) writes no file, also when re-preparing over a "mean" data dir
    prepare_librispeech(tmp_path, ["dev-clean"], tmp_path / "data", nj=1, multichannel="mean", progress=False)
    assert (data_dir / MULTICHANNEL_FILE).read_text() == "mean\n"
    _make_subset(tmp_path / "mono", "dev-clean", UTTS)
    prepare_librispeech(tmp_path / "mono", ["dev-clean"], tmp_path / "data", nj=1, progress=False)
    assert not (data_dir / MULTICHANNEL_FILE).exists()


def test_wav_tree_is_prepared_and_flac_preferred(tmp_path):
    wavs = _make_subset(tmp_path, "dev-clean", UTTS, ext=".wav")
    (s,) = prepare_librispeech(tmp_path, ["dev-clean"], tmp_path / "data", nj=1, progress=False)
    dd = validate_data_dir(s.path)
    assert dd.wav_scp == {u: str(p) for u, p in wavs.items()} and dd.utt2num_samples == UTTS
    flac = _flac(wavs["1-1-0000"].with_suffix(".flac"), n=UTTS["1-1-0000"])
    utts, problems = scan_subset(tmp_path / "LibriSpeech" / "dev-clean")
    assert problems == [] and {u.utt_id: u.path for u in utts}["1-1-0000"] == str(flac)


def test_missing_audio_names_extensions_and_hint_names_recipe_option(tmp_path):
    _make_subset(tmp_path, "dev-clean", UTTS)
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "1" / "1"
    (chapter / "1-1-0000.flac").unlink()
    _, problems = scan_subset(tmp_path / "LibriSpeech" / "dev-clean")
    assert [(p.utt_id, p.kind) for p in problems] == [("1-1-0000", "missing_audio")]
    assert "looked for 1-1-0000.flac or .wav" in problems[0].problem and str(chapter) in problems[0].problem
    assert "--corpus_root <folder>" in DOWNLOAD_HINT and "LIBRISPEECH=" in DOWNLOAD_HINT
    assert "--librispeech" not in DOWNLOAD_HINT


# ----------------------------------------------------------------------------- check cache

def _count_decodes(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = librispeech.verify_audio

    def counting(path, full=True):
        calls.append(f"{'full' if full else 'header'} {Path(path).name}")
        return real(path, full=full)

    monkeypatch.setattr(librispeech, "verify_audio", counting)
    return calls


def test_second_run_does_not_decode(tmp_path, monkeypatch):
    paths = _make_subset(tmp_path, "dev-clean", UTTS)
    calls = _count_decodes(monkeypatch)
    out = tmp_path / "data"
    first = prepare_librispeech(tmp_path, ["dev-clean"], out, nj=1, progress=False)
    assert sorted(calls) == sorted(f"full {p.name}" for p in paths.values())
    cache = json.loads((out / CHECK_CACHE_NAME).read_text())
    assert set(cache["files"]) == {str(p) for p in paths.values()}

    calls.clear()
    second = prepare_librispeech(tmp_path, ["dev-clean"], out, nj=1, progress=False)
    assert calls == [] and second == first
    # a full check covers the header check; a header check does not cover the full one
    prepare_librispeech(tmp_path, ["dev-clean"], out, nj=1, check="header", progress=False)
    assert calls == []

    # a changed file (new size and mtime) is decoded again, and only that one
    victim = paths["1-1-0001"]
    _cut(victim, 0.5)
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    with pytest.raises(BadAudioError, match="truncated"):
        prepare_librispeech(tmp_path, ["dev-clean"], out, nj=1, progress=False)
    assert calls == ["full 1-1-0001.flac"]


def test_header_entries_do_not_satisfy_full_check_and_bad_cache_is_rebuilt(tmp_path, monkeypatch, capsys):
    _make_subset(tmp_path, "dev-clean", UTTS)
    calls = _count_decodes(monkeypatch)
    out = tmp_path / "data"
    prepare_librispeech(tmp_path, ["dev-clean"], out, nj=1, check="header", progress=False)
    calls.clear()
    prepare_librispeech(tmp_path, ["dev-clean"], out, nj=1, progress=False)
    assert len(calls) == 3 and all(c.startswith("full ") for c in calls)

    (out / CHECK_CACHE_NAME).write_text("{not json")
    calls.clear()
    prepare_librispeech(tmp_path, ["dev-clean"], out, nj=1, progress=False)
    assert len(calls) == 3
    assert "ignoring the audio check cache" in capsys.readouterr().err
    assert json.loads((out / CHECK_CACHE_NAME).read_text())["version"] == librispeech.CHECK_CACHE_VERSION


# ----------------------------------------------------------------------------- failure midway

def test_failure_midway_keeps_earlier_data_dirs(tmp_path, monkeypatch):
    _make_subset(tmp_path, "dev-a", {"1-1-0000": 8000})
    _make_subset(tmp_path, "dev-b", {"2-2-0000": 9000})
    out = tmp_path / "data"
    prepare_librispeech(tmp_path, ["dev-a", "dev-b"], out, nj=1, progress=False)
    before = {name: _snapshot(out / name) for name in ("dev_a", "dev_b")}

    # the corpus changes, then writing the second data dir fails after the first was staged
    _make_subset(tmp_path, "dev-a", {"1-1-0001": 7000})
    real = librispeech.validate_data_dir
    seen = []

    def failing(path):
        seen.append(Path(path).name)
        if len(seen) == 2:
            raise OSError("disk full (injected)")
        return real(path)

    monkeypatch.setattr(librispeech, "validate_data_dir", failing)
    with pytest.raises(OSError, match="injected"):
        prepare_librispeech(tmp_path, ["dev-a", "dev-b"], out, nj=1, progress=False)
    assert seen == [f".dev_a.tmp{os.getpid()}", f".dev_b.tmp{os.getpid()}"]  # staged, not in place
    assert {name: _snapshot(out / name) for name in ("dev_a", "dev_b")} == before
    assert _hidden_dirs(out) == []


def test_bad_audio_failure_keeps_earlier_data_dir_and_success_replaces_it(tmp_path):
    paths = _make_subset(tmp_path, "dev-clean", UTTS)
    out = tmp_path / "data"
    _cut(paths["2-2-0000"], 0.5)
    prepare_librispeech(tmp_path, ["dev-clean"], out, nj=1, on_bad_audio="skip", progress=False)
    data_dir = out / "dev_clean"
    before = _snapshot(data_dir)
    assert "bad_audio.txt" in before

    _make_subset(tmp_path, "dev-clean", {"3-3-0000": 6000})
    with pytest.raises(BadAudioError):
        prepare_librispeech(tmp_path, ["dev-clean"], out, nj=1, progress=False)
    assert _snapshot(data_dir) == before and _hidden_dirs(out) == []

    _flac(paths["2-2-0000"], n=UTTS["2-2-0000"])  # re-extracted
    (s,) = prepare_librispeech(tmp_path, ["dev-clean"], out, nj=1, progress=False)
    assert s.num_utts == 4 and s.num_bad == 0
    assert not (data_dir / "bad_audio.txt").exists()  # nothing of the earlier data dir survives
    assert _hidden_dirs(out) == []
