"""Kaldi data dirs (read/write/validate) and LibriSpeech preparation with bad-audio handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SHARED_DATA

from audio_compress.bin import prepare_librispeech as prep_cli
from audio_compress.data.kaldi import (
    DataDir,
    DataDirError,
    KaldiFormatError,
    read_kaldi_lists,
    read_kaldi_map,
    spk2utt_from_utt2spk,
    validate_data_dir,
    write_kaldi_map,
)
from audio_compress.data.librispeech import (
    BadAudioError,
    CorpusNotFoundError,
    check_audio_file,
    prepare_librispeech,
    resampled_length,
)

SHARED_SAMPLES = SHARED_DATA / "librispeech_samples"


# ----------------------------------------------------------------------------- kaldi files

def test_write_map_sorted_c_locale_exact_bytes(tmp_path):
    path = tmp_path / "text"
    mapping = {"b": "two words", "B": "upper", "a_1": "x", "a1": "y", "a-1": "z  two spaces",
               "A": "é ü"}
    write_kaldi_map(path, mapping)
    # byte order: uppercase < '-' ... digits < '_' < lowercase; '-' (0x2d) < '1' (0x31) < '_' (0x5f)
    expected = "A é ü\nB upper\na-1 z  two spaces\na1 y\na_1 x\nb two words\n"
    assert path.read_bytes() == expected.encode("utf-8")
    back = read_kaldi_map(path, check_sorted=True)
    assert back == mapping
    assert list(back) == ["A", "B", "a-1", "a1", "a_1", "b"]
    # rewriting what was read gives the same bytes; no temp files left behind
    write_kaldi_map(tmp_path / "text2", back)
    assert (tmp_path / "text2").read_bytes() == path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text", "text2"]


def test_write_map_rejects_bad_keys_and_values(tmp_path):
    with pytest.raises(KaldiFormatError, match="whitespace"):
        write_kaldi_map(tmp_path / "f", {"a b": "v"})
    with pytest.raises(KaldiFormatError, match="line break"):
        write_kaldi_map(tmp_path / "f", {"a": "v\nw"})
    with pytest.raises(KaldiFormatError, match="empty key"):
        write_kaldi_map(tmp_path / "f", {"": "v"})
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("content,line,what", [
    ("a 1\nb\nc 3\n", 2, "no value after key 'b'"),
    ("a 1\nb 2\na 3\n", 3, "duplicate key 'a' (first on line 1)"),
    ("a 1\n\nb 2\n", 2, "blank line"),
    ("a 1\n b 2\n", 2, "starts with whitespace"),
    ("a 1\nb\t2\n", 2, "contains a tab"),
    ("a 1\r\n", 1, "Windows line ending"),
])
def test_malformed_lines_name_file_and_line(tmp_path, content, line, what):
    path = tmp_path / "utt2spk"
    path.write_bytes(content.encode())
    with pytest.raises(KaldiFormatError) as err:
        read_kaldi_map(path)
    assert f"{path}:{line}:" in str(err.value)
    assert what in str(err.value)
    assert err.value.line == line


def test_unsorted_and_empty_values(tmp_path):
    path = tmp_path / "text"
    path.write_text("b 1\na 2\n")
    assert read_kaldi_map(path) == {"b": "1", "a": "2"}
    with pytest.raises(KaldiFormatError, match=rf"{path}:2: key 'a' comes after 'b'"):
        read_kaldi_map(path, check_sorted=True)
    path.write_text("a \nb x\n")
    assert read_kaldi_map(path, allow_empty=True) == {"a": "", "b": "x"}
    with pytest.raises(KaldiFormatError, match=":1:"):
        read_kaldi_map(path)


def test_spk2utt_derivation(tmp_path):
    utt2spk = {"s2-u1": "s2", "s10-u1": "s10", "s1-u2": "s1", "s1-u1": "s1"}
    assert spk2utt_from_utt2spk(utt2spk) == {"s1": ["s1-u1", "s1-u2"], "s10": ["s10-u1"],
                                             "s2": ["s2-u1"]}
    dd = DataDir(wav_scp={u: f"/a/{u}.flac" for u in utt2spk}, utt2spk=utt2spk)
    dd.write(tmp_path)
    assert (tmp_path / "spk2utt").read_text() == "s1 s1-u1 s1-u2\ns10 s10-u1\ns2 s2-u1\n"
    assert read_kaldi_lists(tmp_path / "spk2utt")["s1"] == ["s1-u1", "s1-u2"]


def _example_datadir() -> DataDir:
    utts = ["103-1240-0001", "103-1240-0000", "1034-121119-0000", "19-198-0002"]
    return DataDir(
        wav_scp={u: f"/data/path with space/{u}.flac" for u in utts},
        utt2spk={u: u.split("-")[0] for u in utts},
        text={u: f"HELLO WORLD {i}" for i, u in enumerate(utts)},
        utt2num_samples={u: 16000 + i for i, u in enumerate(utts)},
        extra={"phn": {u: "h @ l oU" for u in utts}, "utt2intent": {u: "_none_" for u in utts}},
    )


def test_datadir_roundtrip_exact(tmp_path):
    dd = _example_datadir()
    dd.write(tmp_path / "a")
    back = DataDir.read(tmp_path / "a")
    assert back == dd
    assert (tmp_path / "a" / "utt2spk").read_text() == (
        "103-1240-0000 103\n103-1240-0001 103\n1034-121119-0000 1034\n19-198-0002 19\n")
    assert (tmp_path / "a" / "spk2utt").read_text() == (
        "103 103-1240-0000 103-1240-0001\n1034 1034-121119-0000\n19 19-198-0002\n")
    back.write(tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["phn", "spk2utt", "text", "utt2intent", "utt2num_samples", "utt2spk",
                     "wav.scp"]
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
    assert validate_data_dir(tmp_path / "a") == dd


def test_rewrite_removes_stale_files(tmp_path):
    dd = _example_datadir()
    dd.write(tmp_path)
    (tmp_path / "bad_audio.txt").write_text("not a kaldi file\n")
    dd.extra = {}
    dd.write(tmp_path)
    assert not (tmp_path / "phn").exists() and not (tmp_path / "utt2intent").exists()
    assert (tmp_path / "bad_audio.txt").exists()  # not a per-utterance map: left alone
    assert validate_data_dir(tmp_path).extra == {}


def test_validate_reports_offending_keys(tmp_path):
    dd = _example_datadir()
    dd.write(tmp_path)
    # text misses one utterance and has one extra
    text = read_kaldi_map(tmp_path / "text")
    del text["19-198-0002"]
    text["2-2-2"] = "EXTRA"
    write_kaldi_map(tmp_path / "text", text)
    with pytest.raises(DataDirError) as err:
        validate_data_dir(tmp_path)
    msg = str(err.value)
    assert "missing from text: 19-198-0002" in msg and "in text but not in wav.scp: 2-2-2" in msg

    dd.write(tmp_path)
    u2s = dict(dd.utt2spk)
    u2s["19-198-0002"] = "7"
    write_kaldi_map(tmp_path / "utt2spk", u2s)
    with pytest.raises(DataDirError) as err:
        validate_data_dir(tmp_path)
    assert "19-198-0002 (speaker 7)" in str(err.value)
    assert "spk2utt does not match utt2spk" in str(err.value)

    dd.write(tmp_path)
    (tmp_path / "utt2num_samples").write_text(
        "103-1240-0001 1\n103-1240-0000 1\n1034-121119-0000 1\n19-198-0002 1\n")
    with pytest.raises(KaldiFormatError, match="utt2num_samples:2: key '103-1240-0000' comes after"):
        validate_data_dir(tmp_path)

    dd.write(tmp_path)
    (tmp_path / "spk2utt").unlink()
    with pytest.raises(DataDirError, match="spk2utt is missing"):
        validate_data_dir(tmp_path)


# ----------------------------------------------------------------------------- LibriSpeech

def _tone(n: int, sr: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def _make_subset(base: Path, subset: str, utts: dict[str, int], sr: int = 16000) -> dict[str, Path]:
    """Write good 16 kHz FLACs ``{utt_id: num_samples}`` and their trans.txt; return paths."""
    paths = {}
    chapters: dict[Path, list[str]] = {}
    for i, (utt, n) in enumerate(sorted(utts.items())):
        spk, ch, _ = utt.split("-")
        d = base / "LibriSpeech" / subset / spk / ch
        d.mkdir(parents=True, exist_ok=True)
        sf.write(str(d / f"{utt}.flac"), _tone(n, sr, i), sr, subtype="PCM_16", format="FLAC")
        chapters.setdefault(d, []).append(f"{utt} TRANSCRIPT OF {utt}")
        paths[utt] = d / f"{utt}.flac"
    for d, lines in chapters.items():
        spk, ch = d.parent.name, d.name
        with open(d / f"{spk}-{ch}.trans.txt", "a") as f:
            f.write("\n".join(lines) + "\n")
    return paths


GOOD = {"100-10-0000": 8000, "100-10-0001": 12345, "200-20-0000": 16000, "200-21-0000": 4000}


def test_prepare_good_subset_both_root_forms(tmp_path):
    paths = _make_subset(tmp_path / "corpus", "dev-clean", GOOD)
    for root in (tmp_path / "corpus", tmp_path / "corpus" / "LibriSpeech"):
        out = tmp_path / f"data_{root.name}"
        (summary,) = prepare_librispeech(root, ["dev-clean"], out, nj=1, progress=False)
        dd = validate_data_dir(out / "dev_clean")
        assert summary.name == "dev_clean" and summary.num_utts == 4 and summary.num_speakers == 2
        assert summary.num_samples == sum(GOOD.values()) and summary.num_bad == 0
        assert dd.utt2num_samples == GOOD
        assert dd.wav_scp == {u: str(p.absolute()) for u, p in paths.items()}
        assert all(Path(p).is_absolute() for p in dd.wav_scp.values())
        assert dd.utt2spk == {u: u.split("-")[0] for u in GOOD}
        assert dd.text["100-10-0001"] == "TRANSCRIPT OF 100-10-0001"
        assert dd.extra == {}
        assert not (out / "dev_clean" / "bad_audio.txt").exists()


def test_prepare_subsets_separately_and_combined(tmp_path):
    _make_subset(tmp_path, "train-a", {"1-1-0000": 1000, "1-1-0001": 2000})
    _make_subset(tmp_path, "train-b", {"2-5-0000": 3000})
    sums = prepare_librispeech(tmp_path, ["train-a", "train-b"], tmp_path / "data", nj=1,
                               check="header", progress=False)
    assert [(s.name, s.num_utts) for s in sums] == [("train_a", 2), ("train_b", 1)]
    (comb,) = prepare_librispeech(tmp_path, ["train-a", "train-b"], tmp_path / "data",
                                  combine_as="train_all", nj=2, progress=False)
    dd = validate_data_dir(tmp_path / "data" / "train_all")
    assert comb.subsets == ["train-a", "train-b"] and comb.num_speakers == 2
    assert dd.utt2num_samples == {"1-1-0000": 1000, "1-1-0001": 2000, "2-5-0000": 3000}


def _make_bad_corpus(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """dev-bad: two good utterances plus one of every problem; returns root and {utt: kind}."""
    root = tmp_path / "corpus"
    _make_subset(root, "dev-bad", {"300-30-0000": 6000, "300-30-0001": 7000})
    d = root / "LibriSpeech" / "dev-bad" / "300" / "30"
    extra_lines = []

    def add(utt, writer):
        writer(d / f"{utt}.flac")
        extra_lines.append(f"{utt} TEXT {utt}")

    add("300-30-0002", lambda p: p.write_bytes(b"this is not audio" * 20))   # unreadable
    add("300-30-0003", lambda p: p.write_bytes(b""))                         # empty file
    add("300-30-0004", lambda p: sf.write(str(p), np.zeros(0, np.float32), 16000,
                                          format="WAV", subtype="PCM_16"))  # zero samples

    def nan_writer(p):
        x = _tone(6000)
        x[1000:1010] = np.nan
        sf.write(str(p), x, 16000, format="WAV", subtype="FLOAT")
    add("300-30-0005", nan_writer)                                           # NaN samples
    add("300-30-0006", lambda p: sf.write(str(p), _tone(300), 16000, format="FLAC",
                                          subtype="PCM_16"))               # 300 samples
    add("300-30-0007", lambda p: sf.write(str(p), _tone(4000, 8000), 8000, format="FLAC",
                                          subtype="PCM_16"))               # 8 kHz
    # transcript line without audio, audio without transcript line
    extra_lines.append("300-30-0008 NO AUDIO FOR THIS LINE")
    sf.write(str(d / "300-30-0009.flac"), _tone(5000), 16000, format="FLAC", subtype="PCM_16")
    with open(d / "300-30.trans.txt", "a") as f:
        f.write("\n".join(extra_lines) + "\n")
    kinds = {"300-30-0002": "unreadable", "300-30-0003": "unreadable", "300-30-0004": "empty",
             "300-30-0005": "non_finite", "300-30-0006": "too_short", "300-30-0007": "sample_rate",
             "300-30-0008": "missing_audio", "300-30-0009": "missing_transcript"}
    return root, kinds


@pytest.mark.parametrize("nj", [1, 2])
def test_bad_audio_fail_lists_every_problem(tmp_path, nj):
    root, kinds = _make_bad_corpus(tmp_path)
    with pytest.raises(BadAudioError) as err:
        prepare_librispeech(root, ["dev-bad"], tmp_path / "data", nj=nj, progress=False)
    got = {p.utt_id: p.kind for p in err.value.problems}
    assert got == kinds
    msg = str(err.value)
    assert msg.startswith("8 bad utterance(s)")
    for utt, kind in kinds.items():
        assert f"{utt}.flac" in msg and f"[{kind}]" in msg
    assert "only 300 samples at 16000 Hz" in msg
    assert "sample rate is 8000 Hz" in msg and "10 samples are NaN or Inf" in msg
    assert "on_bad_audio='skip'" in msg
    # no data dir; only the check cache, so that the rerun after fixing the files is quick
    assert [p.name for p in (tmp_path / "data").iterdir()] == [".audio_check_cache.json"]


def test_bad_audio_skip_writes_list_and_warns(tmp_path, capsys):
    root, kinds = _make_bad_corpus(tmp_path)
    (s,) = prepare_librispeech(root, ["dev-bad"], tmp_path / "data", nj=1,
                               on_bad_audio="skip", progress=False)
    dd = validate_data_dir(tmp_path / "data" / "dev_bad")
    assert sorted(dd.wav_scp) == ["300-30-0000", "300-30-0001"]
    assert s.num_bad == 8 and s.bad_audio_path == tmp_path / "data" / "dev_bad" / "bad_audio.txt"
    lines = s.bad_audio_path.read_text().splitlines()
    assert lines[0] == "utt_id\tpath\tkind\tproblem"
    rows = {ln.split("\t")[0]: ln.split("\t") for ln in lines[1:]}
    assert {u: r[2] for u, r in rows.items()} == kinds
    assert rows["300-30-0006"][1].endswith("300-30-0006.flac")
    assert "at least 400 are needed" in rows["300-30-0006"][3]
    err = capsys.readouterr().err
    assert "WARNING: dev_bad: skipped 8 bad utterance(s)" in err and str(s.bad_audio_path) in err

    # resample=True: the 8 kHz file is kept with its 16 kHz length; utt2sr records the rate
    (s,) = prepare_librispeech(root, ["dev-bad"], tmp_path / "data", nj=1,
                               on_bad_audio="skip", resample=True, progress=False)
    dd = validate_data_dir(tmp_path / "data" / "dev_bad")
    assert dd.utt2num_samples["300-30-0007"] == 8000 == resampled_length(4000, 8000)
    assert dd.extra["utt2sr"] == {"300-30-0000": "16000", "300-30-0001": "16000",
                                  "300-30-0007": "8000"}
    assert s.num_bad == 7


def test_header_check_is_fast_path_without_nan_detection(tmp_path):
    root, kinds = _make_bad_corpus(tmp_path)
    (s,) = prepare_librispeech(root, ["dev-bad"], tmp_path / "data", nj=1, check="header",
                               on_bad_audio="skip", progress=False)
    rows = [ln.split("\t") for ln in s.bad_audio_path.read_text().splitlines()[1:]]
    expected = {u: k for u, k in kinds.items() if k != "non_finite"}
    assert {r[0]: r[2] for r in rows} == expected
    dd = DataDir.read(tmp_path / "data" / "dev_bad")
    assert "300-30-0005" in dd.wav_scp  # NaN samples are only seen when decoding


def test_check_audio_file_resampled_length(tmp_path):
    p = tmp_path / "a.flac"
    sf.write(str(p), _tone(22050 + 7, 22050), 22050, format="FLAC", subtype="PCM_16")
    n_full, sr = check_audio_file(p, resample=True, check="full")
    n_head, _ = check_audio_file(p, resample=True, check="header")
    assert sr == 22050 and n_full == n_head == resampled_length(22057, 22050)


def test_missing_root_and_subset_messages(tmp_path):
    with pytest.raises(CorpusNotFoundError) as err:
        prepare_librispeech(tmp_path / "nowhere", ["dev-clean"], tmp_path / "data")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "does not exist" in msg
    assert "openslr.org/12" in msg and "SLR12" in msg and "LIBRISPEECH=" in msg and "db.sh" in msg
    _make_subset(tmp_path / "c", "dev-clean", {"1-1-0000": 1000})
    with pytest.raises(CorpusNotFoundError) as err:
        prepare_librispeech(tmp_path / "c", ["dev-clean", "test-other"], tmp_path / "data")
    msg = str(err.value)
    assert "test-other not found" in msg and "present: dev-clean" in msg and "SLR12" in msg
    with pytest.raises(CorpusNotFoundError, match="make_mini_corpus"):
        prepare_librispeech(tmp_path / "c", ["train-mini"], tmp_path / "data")


def test_malformed_transcript_names_file_and_line(tmp_path):
    _make_subset(tmp_path, "dev-clean", {"1-1-0000": 1000, "1-1-0001": 1000})
    trans = tmp_path / "LibriSpeech" / "dev-clean" / "1" / "1" / "1-1.trans.txt"
    trans.write_text("1-1-0000 HELLO\n1-1-0001\n")
    with pytest.raises(KaldiFormatError, match=rf"{trans}:2: expected"):
        prepare_librispeech(tmp_path, ["dev-clean"], tmp_path / "data", nj=1, progress=False)


def test_cli_summary_and_errors(tmp_path, capsys):
    _make_subset(tmp_path, "dev-clean", GOOD)
    rc = prep_cli.main(["--root", str(tmp_path), "--subsets", "dev-clean", "--out",
                        str(tmp_path / "data"), "--nj", "1", "--check", "header",
                        "--resample", "false", "--no_progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"dev_clean: 4 utterances, 2 speakers, {sum(GOOD.values()) / 16000 / 3600:.3f} h" in out
    assert str(tmp_path / "data" / "dev_clean") in out
    rc = prep_cli.main(["--root", str(tmp_path / "missing"), "--subsets", "dev-clean",
                        "--out", str(tmp_path / "data")])
    assert rc == 1 and "SLR12" in capsys.readouterr().err


def test_shared_librispeech_samples(tmp_path):
    if not (SHARED_SAMPLES / "LibriSpeech" / "dev-clean").is_dir():
        pytest.skip(f"shared LibriSpeech samples not found at {SHARED_SAMPLES} (only in the "
                    "project workspace)")
    (s,) = prepare_librispeech(SHARED_SAMPLES, ["dev-clean"], tmp_path / "data", nj=1,
                               progress=False)
    dd = validate_data_dir(tmp_path / "data" / "dev_clean")
    assert sorted(dd.wav_scp) == ["1272-128104-0000", "2412-153948-0000"]
    assert dd.utt2num_samples["1272-128104-0000"] == 77040
    assert dd.utt2spk == {"1272-128104-0000": "1272", "2412-153948-0000": "2412"}
    assert dd.text["1272-128104-0000"].startswith("MISTER QUILTER IS THE APOSTLE")
    assert dd.wav_scp["1272-128104-0000"] == str(
        (SHARED_SAMPLES / "LibriSpeech/dev-clean/1272/128104/1272-128104-0000.flac").absolute())
    assert s.num_speakers == 2 and s.num_bad == 0
