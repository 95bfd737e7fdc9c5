"""Corpus preparation for real: a Common Voice layout of MP3 clips converted by ffmpeg (bad clips
skipped, a killed run resumed), and a TED-LIUM layout read in place from SPHERE talks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from rnnt.audio import load_audio
from rnnt.corpus import DataError, read_corpus, stm_segment
from rnnt.preparation import CLIPS_DIR, PARTIAL_SUFFIX

from .conftest import REPO

RATE = 16000
SENTENCES = ["Hello there, my friend!", "The rain in Spain stays mainly in the plain.", "It's a lovely day."]
TSV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment"


def espeak(text: str, path: Path) -> None:
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True)


@pytest.fixture
def cv_dir(tmp_path: Path) -> Path:
    """Three good MP3 clips (48 kHz stereo), a corrupt one, a missing one, a row without text."""
    root = tmp_path / "cv" / "en"
    (root / CLIPS_DIR).mkdir(parents=True)
    rows = []
    for i, sentence in enumerate(SENTENCES):
        wav = tmp_path / f"{i}.wav"
        espeak(sentence, wav)
        mp3 = root / CLIPS_DIR / f"common_voice_en_{i}.mp3"
        command = ["ffmpeg", "-v", "error", "-i", str(wav), "-ac", "2", "-ar", "48000", str(mp3)]
        subprocess.run(command, check=True)
        rows.append(f"speaker{i}\t{mp3.name}\t{sentence}\t2\t0\t\t\t\ten\t")
    (root / CLIPS_DIR / "common_voice_en_bad.mp3").write_bytes(np.random.default_rng(0).bytes(3000))
    rows.append("speakerx\tcommon_voice_en_bad.mp3\tA corrupt clip.\t2\t0\t\t\t\ten\t")
    rows.append("speakerx\tcommon_voice_en_gone.mp3\tA missing clip.\t2\t0\t\t\t\ten\t")
    rows.append("speakerx\tcommon_voice_en_0.mp3\t\t2\t0\t\t\t\ten\t")
    (root / "train.tsv").write_text("\n".join([TSV_HEADER, *rows]) + "\n")
    return root


def preprocess(cv_dir: Path, output_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(REPO / "preprocess_common_voice.py"), f"--cv_dir={cv_dir}"]
    command += [f"--output_dir={output_dir}", "--splits=train", "--jobs=2"]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


def test_common_voice_clips_become_16k_mono_flac_with_a_manifest(cv_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "prepared"
    result = preprocess(cv_dir, output)
    assert result.returncode == 0, result.stderr
    assert "3 utterances" in result.stdout and "3 converted" in result.stdout
    assert "2 failed, 1 without text" in result.stdout
    assert "common_voice_en_bad.mp3" in result.stderr and "common_voice_en_gone.mp3: missing" in result.stderr
    utterances = read_corpus(output / "train.jsonl")
    assert [u.text for u in utterances] == [
        "hello there my friend",
        SENTENCES[1].lower()[:-1],
        "it's a lovely day",
    ]
    assert [u.speaker_id for u in utterances] == ["speaker0", "speaker1", "speaker2"]  # client_id
    for i, utterance in enumerate(utterances):
        info = soundfile.info(utterance.audio)
        assert (info.samplerate, info.channels, info.format) == (RATE, 1, "FLAC")
        assert utterance.duration == pytest.approx(info.duration)
        mp3 = load_audio(cv_dir / CLIPS_DIR / f"common_voice_en_{i}.mp3", RATE)
        flac = utterance.load(RATE)
        assert abs(len(flac) - len(mp3)) <= 1  # the manifest's duration in float seconds
        size = min(len(flac), len(mp3))
        # The same speech, resampled by ffmpeg here and by load_audio there: within 30 dB.
        noise = np.sum((flac[:size] - mp3[:size]) ** 2)
        assert 10 * np.log10(np.sum(mp3[:size] ** 2) / noise) > 30


def test_a_killed_run_resumes_without_redoing_clips(cv_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "prepared"
    assert preprocess(cv_dir, output).returncode == 0
    clips = output / CLIPS_DIR
    kept = clips / "common_voice_en_0.flac"
    kept_time = kept.stat().st_mtime_ns
    (clips / "common_voice_en_1.flac").unlink()  # as if killed while converting it:
    (clips / f"common_voice_en_1{PARTIAL_SUFFIX}").write_bytes(b"half a file")
    result = preprocess(cv_dir, output)
    assert result.returncode == 0, result.stderr
    assert "1 converted, 2 already done" in result.stdout
    assert kept.stat().st_mtime_ns == kept_time
    assert not (clips / f"common_voice_en_1{PARTIAL_SUFFIX}").exists()
    assert len(read_corpus(output / "train.jsonl")) == 3


def test_a_missing_split_is_one_line(cv_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "preprocess_common_voice.py"), f"--cv_dir={cv_dir}", "--splits=dev"]
    result = subprocess.run([*command, f"--output_dir={tmp_path}"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(f"dev.tsv: cannot read ([Errno 2] No such file or directory: '{cv_dir / 'dev.tsv'}')")
    )


@pytest.fixture
def tedlium(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A talk of two sentences with silence around them, as 16 kHz SPHERE, and its STM."""
    root = tmp_path / "tedlium"
    (root / "stm").mkdir(parents=True)
    (root / "sph").mkdir()
    parts = []
    for i, sentence in enumerate(SENTENCES[1:]):
        espeak(sentence, tmp_path / f"t{i}.wav")
        parts += [np.zeros(RATE, np.float32), load_audio(tmp_path / f"t{i}.wav", RATE)]
    talk = np.concatenate(parts)
    wav = tmp_path / "talk.wav"
    soundfile.write(wav, talk, RATE, subtype="PCM_16")
    subprocess.run(["sox", str(wav), str(root / "sph" / "Speaker_2010.sph")], check=True)
    first_end = 1 + len(parts[1]) / RATE
    lines = [
        "Speaker_2010 1 Speaker_2010 0.00 1.00 <o,f0,male> ignore_time_segment_in_scoring",
        f"Speaker_2010 1 Speaker_2010 1.00 {first_end:.2f} <o,f0,male> the rain in spain {{NOISE}} stays "
        "mainly in the plain",
        f"Speaker_2010 1 Speaker_2010 {first_end + 1:.2f} {len(talk) / RATE:.2f} <o,f0,male> "
        "it 's a <unk> lovely day",
    ]
    (root / "stm" / "Speaker_2010.stm").write_text("\n".join(lines) + "\n")
    return root, talk


def test_tedlium_segments_are_read_in_place(tedlium: tuple[Path, np.ndarray]) -> None:
    root, talk = tedlium
    utterances = read_corpus(root)
    assert [u.text for u in utterances] == [
        "the rain in spain stays mainly in the plain",
        "it's a lovely day",
    ]
    assert {u.speaker for u in utterances} == {"Speaker_2010"}  # the STM's speaker field, whatever it holds
    for utterance in utterances:
        start = round(utterance.offset * RATE)
        expected = talk[start : start + round(utterance.duration * RATE)]
        np.testing.assert_allclose(utterance.load(RATE), expected, atol=1e-4)


def test_tedlium_without_its_audio_names_the_line(tedlium: tuple[Path, np.ndarray]) -> None:
    root, _ = tedlium
    (root / "sph" / "Speaker_2010.sph").unlink()
    with pytest.raises(DataError, match=r"Speaker_2010\.stm:2: missing audio Speaker_2010\.sph"):
        read_corpus(root)


def test_stm_lines_keep_their_words_and_lose_their_marks(tmp_path: Path) -> None:
    """<sil> and a release-1 utterance key are not words; a line without its optional label keeps
    its first word; a segment ending before it starts is refused."""
    (tmp_path / "sph").mkdir()
    (tmp_path / "sph" / "talk.sph").write_bytes(b"")  # only looked up, not read
    stm = tmp_path / "talk.stm"
    labelled = stm_segment(
        tmp_path, stm, 1, "talk 1 spk 7.00 8.00 <o,f0,male> hello <sil> world (talk-7.00-8.00-male)"
    )
    assert labelled is not None and labelled.text == "hello world"
    assert labelled.speaker_id == "spk"  # the line's speaker field, not the talk
    unlabelled = stm_segment(tmp_path, stm, 2, "talk 1 spk 1.00 2.50 first word kept")
    assert unlabelled is not None and (unlabelled.text, unlabelled.duration) == ("first word kept", 1.5)
    with pytest.raises(DataError, match=r"talk\.stm:3: a segment must start at 0 or later and end after it"):
        stm_segment(tmp_path, stm, 3, "talk 1 spk 2.00 1.50 <o,f0,male> backwards")
