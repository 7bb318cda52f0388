"""The espeak-ng mini corpus: layout, transcripts, metadata, phonemes, labels, determinism,
reuse, and its preparation into Kaldi data dirs."""

from __future__ import annotations

import json
import random
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from audio_compress.bin import make_mini_corpus as mini_cli
from audio_compress.data.kaldi import validate_data_dir
from audio_compress.data.librispeech import prepare_librispeech
from audio_compress.data.mini_corpus import (
    INTENTS,
    KEYWORDS,
    RICH,
    EspeakNotFoundError,
    Variation,
    _coloured_noise,
    _room_response,
    make_mini_corpus,
    make_sentence,
    phoneme_tokens,
    read_metadata,
)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng / "
                                         "make sysdeps)")
SMALL = {"train-mini": 6, "dev-mini": 3, "test-mini": 3}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    root = tmp_path_factory.mktemp("mini")
    return make_mini_corpus(root, seed=3, num_speakers=2, utts_per_speaker=SMALL)


def test_make_sentence_grammar_is_deterministic_and_varied():
    a = [make_sentence(random.Random(5)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = random.Random(0)
    sents = [make_sentence(rng) for _ in range(300)]
    assert all(5 <= len(s.split()) <= 12 for s in sents)
    assert all(re.fullmatch(r"[a-z]+( [a-z]+)*", s) for s in sents)
    assert len(set(sents)) > 280
    assert not any(" a a" in f" {s}" or " a o" in f" {s}" for s in sents)  # "an" before vowels


def test_phoneme_tokens_rules():
    out = "D I2 ;  'oU l d  s 'oU l dZ 3\n_:  ,E v r i  %a# _\n"
    assert phoneme_tokens(out) == "D I2 oU l d s oU l dZ 3 E v r i a#"


def test_missing_espeak_message(tmp_path):
    with pytest.raises(EspeakNotFoundError) as err:
        make_mini_corpus(tmp_path, espeak="espeak-ng-not-installed-here")
    assert "apt-get install espeak-ng" in str(err.value) and "make sysdeps" in str(err.value)


@needs_espeak
def test_small_corpus_layout_and_transcripts(small):
    ls = small.librispeech_dir
    assert ls == small.root / "LibriSpeech" and (ls / "corpus.json").is_file()
    speakers = [s["speaker"] for s in small.summary["speakers"]]
    assert len(speakers) == 2 and len({s["voice"] for s in small.summary["speakers"]}) == 2
    for split, n in SMALL.items():
        assert sorted(p.name for p in (ls / split).iterdir() if p.is_dir()) == sorted(speakers)
        flacs = sorted((ls / split).glob("*/*/*.flac"))
        assert len(flacs) == n * 2
        chapters = set()
        for f in flacs:
            spk, ch = f.parent.parent.name, f.parent.name
            assert re.fullmatch(rf"{spk}-{ch}-\d{{4}}\.flac", f.name)
            chapters.add(ch)
            info = sf.info(str(f))
            assert (info.samplerate, info.channels, info.format, info.subtype) == (
                16000, 1, "FLAC", "PCM_16")
            assert info.frames > 0.3 * 16000
            wav, _ = sf.read(str(f), dtype="float32")
            assert np.isfinite(wav).all() and np.abs(wav).max() > 0.05  # real speech, not silence
        assert len(chapters) == 2  # one chapter per speaker and split
        meta = {r["utt_id"]: r for r in read_metadata(ls / split / "metadata.tsv")}
        assert sorted(meta) == [f.name[:-5] for f in flacs]
        for trans in (ls / split).glob("*/*/*.trans.txt"):
            spk, ch = trans.parent.parent.name, trans.parent.name
            assert trans.name == f"{spk}-{ch}.trans.txt"
            for line in trans.read_text().splitlines():
                utt, text = line.split(" ", 1)
                assert utt.startswith(f"{spk}-{ch}-") and text == text.upper()
                assert meta[utt]["text"] == text


@needs_espeak
def test_small_corpus_metadata_labels_and_phonemes(small):
    ls = small.librispeech_dir
    rows = [r for split in SMALL for r in read_metadata(ls / split / "metadata.tsv")]
    assert (ls / "train-mini" / "metadata.tsv").read_text().splitlines()[0].split("\t") == [
        "utt_id", "speaker", "kind", "text", "phonemes", "keyword", "intent"]
    kinds = {r["kind"] for r in read_metadata(ls / "train-mini" / "metadata.tsv")}
    assert kinds == {"sentence", "keyword", "intent"}
    phone_re = re.compile(r"[^\s',%=_;]+( [^\s',%=_;]+)*")
    for r in rows:
        assert phone_re.fullmatch(r["phonemes"]), r
        if r["kind"] == "keyword":
            assert r["keyword"] in KEYWORDS and r["text"] == r["keyword"].upper()
            assert r["intent"] == "_none_"
        elif r["kind"] == "intent":
            assert r["text"].lower() in INTENTS[r["intent"]] and r["keyword"] == "_none_"
            assert re.fullmatch(r"[a-z]+_[a-z]+_[a-z]+", r["intent"])
        else:
            assert r["kind"] == "sentence" and 5 <= len(r["text"].split()) <= 12
            assert r["keyword"] == r["intent"] == "_none_"
            assert len(r["phonemes"].split()) >= 10
    yes = [r for r in rows if r["keyword"] == "yes"]
    for r in yes:
        assert r["phonemes"] == "j E s"
    counts = small.summary["counts"]
    assert counts["per_split"] == {k: 2 * v for k, v in SMALL.items()}
    assert small.summary["config"]["espeak_ng_version"] and small.summary["config"]["seed"] == 3


@needs_espeak
def test_determinism_and_seed(small, tmp_path):
    again = make_mini_corpus(tmp_path / "again", seed=3, num_speakers=2, utts_per_speaker=SMALL)
    assert not again.reused
    a, b = small.librispeech_dir, again.librispeech_dir
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        if rel.suffix == ".flac":
            wa, _ = sf.read(str(a / rel), dtype="int16")
            wb, _ = sf.read(str(b / rel), dtype="int16")
            assert np.array_equal(wa, wb), rel
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    other = make_mini_corpus(tmp_path / "other", seed=4, num_speakers=2, utts_per_speaker=SMALL)
    assert ((other.librispeech_dir / "train-mini" / "metadata.tsv").read_bytes()
            != (a / "train-mini" / "metadata.tsv").read_bytes())


def _flacs(ls_dir):
    return {p.relative_to(ls_dir): sf.read(str(p), dtype="int16")[0] for p in sorted(ls_dir.rglob("*.flac"))}


def test_rich_variation_keeps_labels_and_is_deterministic(small, tmp_path):
    rich = make_mini_corpus(tmp_path / "rich", seed=3, num_speakers=2, utts_per_speaker=SMALL, variation=RICH)
    assert rich.summary["config"]["variation"]["noise_prob"] == RICH.noise_prob
    assert small.summary["config"]["variation"] == {"pitch_jitter": 0, "rate_jitter": 0.0, "noise_prob": 0.0,
                                                    "snr_db": [10.0, 30.0], "reverb_prob": 0.0, "rt60": [0.15, 0.6]}
    for split in SMALL:  # same texts and labels (phonemes come from the voice, not the pitch or rate)
        assert ((rich.librispeech_dir / split / "metadata.tsv").read_bytes()
                == (small.librispeech_dir / split / "metadata.tsv").read_bytes())
    plain, varied = _flacs(small.librispeech_dir), _flacs(rich.librispeech_dir)
    assert plain.keys() == varied.keys()
    differs = [rel for rel in plain if plain[rel].shape != varied[rel].shape or not np.array_equal(plain[rel], varied[rel])]
    assert len(differs) == len(plain)  # every utterance got a pitch or a rate of its own
    again = make_mini_corpus(tmp_path / "again", seed=3, num_speakers=2, utts_per_speaker=SMALL, variation=RICH)
    assert all(np.array_equal(a, b) for a, b in zip(varied.values(), _flacs(again.librispeech_dir).values()))
    assert make_mini_corpus(tmp_path / "rich", seed=3, num_speakers=2, utts_per_speaker=SMALL, variation=RICH).reused
    assert not make_mini_corpus(tmp_path / "rich", seed=3, num_speakers=2, utts_per_speaker=SMALL).reused


def test_room_response_and_noise_levels():
    rng = np.random.default_rng(0)
    response = _room_response(rng, 0.25)
    assert response.shape == (4000,) and np.sum(response**2) == pytest.approx(1.0)
    assert np.argmax(np.abs(response)) == 0  # the direct path leads
    tail = np.abs(response[3000:]).max() / np.abs(response[1:1000]).max()
    assert tail < 0.05  # decays (-60 dB over RT60)
    noise = _coloured_noise(rng, 32000, 1.0)
    assert np.std(noise) == pytest.approx(1.0, abs=1e-6)
    spectrum = np.abs(np.fft.rfft(noise)) ** 2
    assert spectrum[10:100].mean() > 10 * spectrum[10000:].mean()  # 1/f: low frequencies dominate
    with pytest.raises(ValueError, match="noise_prob"):
        Variation(noise_prob=1.5)


@needs_espeak
def test_reuse_and_regenerate(tmp_path):
    cfg = {"train-mini": 2, "dev-mini": 1, "test-mini": 1}
    first = make_mini_corpus(tmp_path, seed=0, num_speakers=2, utts_per_speaker=cfg)
    flac = next(first.librispeech_dir.glob("train-mini/*/*/*.flac"))
    mtime = flac.stat().st_mtime_ns
    second = make_mini_corpus(tmp_path, seed=0, num_speakers=2, utts_per_speaker=cfg)
    assert second.reused and flac.stat().st_mtime_ns == mtime
    assert second.summary == first.summary
    # another config regenerates and leaves no stale files
    third = make_mini_corpus(tmp_path, seed=0, num_speakers=2,
                             utts_per_speaker={"train-mini": 3, "dev-mini": 1, "test-mini": 1})
    assert not third.reused
    assert len(list(third.librispeech_dir.glob("train-mini/*/*/*.flac"))) == 6
    assert json.loads((third.librispeech_dir / "corpus.json").read_text())["config"][
        "utts_per_speaker"]["train-mini"] == 3
    # an incomplete corpus (deleted file) is regenerated, not reused
    victim = next(third.librispeech_dir.glob("dev-mini/*/*/*.flac"))
    victim.unlink()
    fourth = make_mini_corpus(tmp_path, seed=0, num_speakers=2,
                              utts_per_speaker={"train-mini": 3, "dev-mini": 1, "test-mini": 1})
    assert not fourth.reused and victim.is_file()


@needs_espeak
def test_refuses_to_overwrite_foreign_folder(tmp_path):
    foreign = tmp_path / "LibriSpeech" / "dev-mini" / "123"
    foreign.mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not written by make_mini_corpus"):
        make_mini_corpus(tmp_path, seed=0, num_speakers=1,
                         utts_per_speaker={"train-mini": 1, "dev-mini": 1, "test-mini": 1})
    assert foreign.is_dir()


@needs_espeak
def test_prepare_mini_corpus_extra_files(small, tmp_path):
    sums = prepare_librispeech(small.root, list(SMALL), tmp_path / "data", nj=1, progress=False)
    assert [s.name for s in sums] == ["train_mini", "dev_mini", "test_mini"]
    for split, s in zip(SMALL, sums):
        dd = validate_data_dir(s.path)
        meta = {r["utt_id"]: r for r in read_metadata(small.librispeech_dir / split / "metadata.tsv")}
        assert sorted(dd.extra) == ["phn", "utt2intent", "utt2keyword", "utt2kind"]
        assert dd.extra["phn"] == {u: r["phonemes"] for u, r in meta.items()}
        assert dd.extra["utt2keyword"] == {u: r["keyword"] for u, r in meta.items()}
        assert dd.extra["utt2intent"] == {u: r["intent"] for u, r in meta.items()}
        assert dd.extra["utt2kind"] == {u: r["kind"] for u, r in meta.items()}
        assert dd.text == {u: r["text"] for u, r in meta.items()}
        assert set(dd.utt2spk.values()) == {s["speaker"] for s in small.summary["speakers"]}
        for u, n in dd.utt2num_samples.items():
            assert n == sf.info(dd.wav_scp[u]).frames
    (comb,) = prepare_librispeech(small.root, list(SMALL), tmp_path / "data", combine_as="all",
                                  nj=1, progress=False, check="header")
    assert comb.num_utts == 2 * sum(SMALL.values())
    assert len(validate_data_dir(comb.path).extra["phn"]) == comb.num_utts


@needs_espeak
def test_cli(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--seed", "1", "--num_speakers", "2",
            "--utts_per_speaker", "2,1,1"]
    assert mini_cli.main(args) == 0
    out = capsys.readouterr().out
    assert "mini corpus generated" in out and "train-mini: 4 utterances" in out
    assert "total: 8 utterances" in out
    assert mini_cli.main(args) == 0
    assert "up to date, kept" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        mini_cli.main(["--out", str(tmp_path), "--utts_per_speaker", "2,1"])
    # a preset with one value overridden: recorded in corpus.json, so the corpus is regenerated
    assert mini_cli.main([*args, "--preset", "rich", "--noise_prob", "1", "--snr_db", "20,25"]) == 0
    assert "mini corpus generated" in capsys.readouterr().out
    variation = json.loads((tmp_path / "LibriSpeech" / "corpus.json").read_text())["config"]["variation"]
    assert variation == {**variation, "pitch_jitter": RICH.pitch_jitter, "noise_prob": 1.0, "snr_db": [20.0, 25.0]}
    assert mini_cli.main([*args, "--reverb_prob", "2"]) == 1


@pytest.mark.slow
@needs_espeak
def test_full_default_corpus(tmp_path):
    corpus = make_mini_corpus(tmp_path)
    s = corpus.summary
    assert s["total_utterances"] >= 300 and len(s["speakers"]) >= 8
    assert len({sp["voice"] for sp in s["speakers"]}) == len(s["speakers"])
    assert len({(sp["pitch"], sp["rate"]) for sp in s["speakers"]}) == len(s["speakers"])
    sums = prepare_librispeech(corpus.root, corpus.splits, tmp_path / "data", nj=2, progress=False)
    spk_sets = []
    for summ in sums:
        dd = validate_data_dir(summ.path)
        assert summ.num_bad == 0
        kinds = set(dd.extra["utt2kind"].values())
        assert kinds == {"sentence", "keyword", "intent"}
        spk_sets.append(set(dd.utt2spk.values()))
        if summ.name == "train_mini":
            assert set(dd.extra["utt2keyword"].values()) - {"_none_"} == set(KEYWORDS)
            assert set(dd.extra["utt2intent"].values()) - {"_none_"} == set(INTENTS)
            assert summ.num_utts >= 200
        else:
            assert summ.num_utts >= 50
    assert spk_sets[0] == spk_sets[1] == spk_sets[2] and len(spk_sets[0]) >= 8
    assert sum(summ.hours for summ in sums) > 0.2
