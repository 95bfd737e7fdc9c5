"""End-to-end test of tools/make_demo_corpus.py on a tiny corpus."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "tools/make_demo_corpus.py"
TINY_ARGS = (
    "--max_train_utterances=6",
    "--num_dev_sentences=2",
    "--num_test_sentences=2",
    "--num_train_speakers=3",
    "--num_dev_speakers=2",
    "--num_test_speakers=2",
    "--jobs=1",
)
SAMPLE_RATE = 16000
MIN_SECONDS, MAX_SECONDS = 0.3, 14.0
MIN_RMS = 1e-3
SPLITS = ("train", "dev", "test")

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("flite") is None,
    reason="espeak-ng or flite not installed (run tools/setup_system.sh)",
)


def run_generator(output_dir: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, SCRIPT, f"--output_dir={output_dir}", *TINY_ARGS, *extra]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=env, check=False)


def transcripts(corpus: Path, split: str) -> dict[Path, str]:
    """flac path -> transcript for every line of every trans.txt of a split."""
    result = {}
    for trans in sorted((corpus / split).glob("*/*/*.trans.txt")):
        for line in trans.read_text().splitlines():
            utt_id, text = line.split(" ", 1)
            result[trans.parent / f"{utt_id}.flac"] = text
    return result


def speaker_rows(corpus: Path) -> list[dict[str, str]]:
    with open(corpus / "speakers.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def snapshot(corpus: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every transcript, audio file and speakers.tsv."""
    files = [*corpus.rglob("*.trans.txt"), *corpus.rglob("*.flac"), corpus / "speakers.tsv"]
    return {str(p.relative_to(corpus)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output_dir = tmp_path_factory.mktemp("demo")
    result = run_generator(output_dir)
    assert result.returncode == 0, result.stderr
    assert "unique sentences" in result.stdout
    return output_dir


def test_layout_and_audio(corpus: Path) -> None:
    for split in SPLITS:
        entries = transcripts(corpus, split)
        assert entries, f"no utterances in {split}"
        for flac, text in entries.items():
            speaker_id, chapter_id = flac.parent.parent.name, flac.parent.name
            assert flac.name.startswith(f"{speaker_id}-{chapter_id}-")
            assert text == text.upper() and text.strip()
            audio, rate = sf.read(flac, dtype="float32")
            assert rate == SAMPLE_RATE and audio.ndim == 1
            assert MIN_SECONDS <= len(audio) / rate <= MAX_SECONDS
            assert float(np.sqrt(np.mean(audio**2))) > MIN_RMS
    assert len(transcripts(corpus, "train")) == 6


def test_dev_test_unseen_in_train(corpus: Path) -> None:
    train_text = set(transcripts(corpus, "train").values())
    rows = speaker_rows(corpus)
    train_voices = {(r["engine"], r["voice"], r["variant"]) for r in rows if r["split"] == "train"}
    for split in ("dev", "test"):
        assert not train_text & set(transcripts(corpus, split).values())
        voices = {(r["engine"], r["voice"], r["variant"]) for r in rows if r["split"] == split}
        assert voices and not voices & train_voices


def test_rerun_is_up_to_date_and_deterministic(corpus: Path, tmp_path: Path) -> None:
    rerun = run_generator(corpus)
    assert rerun.returncode == 0 and rerun.stdout.strip() == "corpus up to date"
    fresh = tmp_path / "again"
    assert run_generator(fresh, "--jobs=2").returncode == 0
    assert snapshot(fresh) == snapshot(corpus)


def test_resume_regenerates_only_missing_files(corpus: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    (copy / ".complete.json").unlink()
    victim = min(copy.rglob("*.flac"))
    victim.unlink()
    kept = min(copy.rglob("*.flac"))
    mtime = kept.stat().st_mtime_ns
    assert run_generator(copy).returncode == 0
    assert victim.exists() and kept.stat().st_mtime_ns == mtime
    assert snapshot(copy) == snapshot(corpus)


def test_missing_engine_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_generator(tmp_path / "out", env={"PATH": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.strip() == "espeak-ng not found: run tools/setup_system.sh"
    assert not (tmp_path / "out").exists()


def test_cross_sets_speak_one_splits_sentences_with_anothers_speakers(corpus: Path) -> None:
    result = run_generator(corpus, "--cross_utterances=2")
    assert result.returncode == 0, result.stderr
    assert "corpus up to date" in result.stdout
    speaker_split = {row["speaker_id"]: row["split"] for row in speaker_rows(corpus)}
    for name, text_split, voice_split in (
        ("train_sentences_train_speakers", "train", "train"),
        ("test_sentences_train_speakers", "test", "train"),
        ("train_sentences_test_speakers", "train", "test"),
    ):
        entries = transcripts(corpus, f"cross/{name}")
        assert len(entries) == 2
        assert set(entries.values()) <= set(transcripts(corpus, text_split).values())
        for flac in entries:
            assert speaker_split[flac.parent.parent.name] == voice_split
            audio, rate = sf.read(flac, dtype="float32")
            assert rate == SAMPLE_RATE and np.sqrt(np.mean(audio**2)) > MIN_RMS


# (engine, voice) -> its rate and pitch settings, fast then slow then slow at another pitch:
# flite/festival/pico duration stretch and F0 in Hz or percent, espeak-ng words per minute and pitch.
VOICE_SETTINGS = {
    "festival": ((0.8, 110.0), (1.25, 110.0), (1.25, 180.0)),
    "mbrola": ((210, 50), (130, 50), (130, 25)),
    "pico": ((0.8, 100.0), (1.25, 100.0), (1.25, 55.0)),
    "rhvoice": ((0.8, 50.0), (1.25, 50.0), (1.25, 75.0)),
}
FESTIVAL_TEST_VOICES = ("ked_diphone", "cmu_us_slt_arctic_hts", "don_diphone", "rab_diphone", "us1_mbrola")


def installed(engine: str, voice: str) -> bool:
    from rnnt.demo_corpus import voices

    if engine == "festival":
        return voice in voices.installed_festival_voices()
    if engine == "mbrola":
        return voice in voices.working_mbrola_voices()
    if engine == "rhvoice":
        return voice in voices.installed_rhvoice_voices()
    return voice in voices.installed_pico_voices()


@pytest.mark.parametrize(
    ("engine", "voice"),
    [
        *(("festival", v) for v in FESTIVAL_TEST_VOICES),
        ("mbrola", "mb-us2"),
        ("mbrola", "mb-en1"),
        ("pico", "en-US"),
        ("pico", "en-GB"),
        ("rhvoice", "bdl"),
        ("rhvoice", "lyubov"),
    ],
)
def test_voice_speaks_at_the_asked_speed_and_pitch(engine: str, voice: str, tmp_path: Path) -> None:
    from rnnt.demo_corpus.voices import FESTIVAL_F0_HZ, synthesize

    if not installed(engine, voice):
        pytest.skip(f"{engine} voice {voice} not installed (run tools/setup_system.sh)")
    text = tmp_path / "text.txt"
    text.write_text("The heart has its reasons which reason knows nothing of.\n")
    outputs = []
    for rate, pitch in VOICE_SETTINGS[engine]:
        wav = tmp_path / f"{rate}-{pitch}.wav"
        synthesize(engine, voice, "", rate, pitch, text, wav)
        audio, sample_rate = sf.read(wav, dtype="float32")
        assert sample_rate >= 8000  # don_diphone speaks at 10 kHz; the corpus resamples to 16
        assert float(np.sqrt(np.mean(audio**2))) > MIN_RMS
        outputs.append(audio)
    assert len(outputs[1]) > 1.3 * len(outputs[0])
    if engine != "festival" or voice in FESTIVAL_F0_HZ:  # festival's HTS voice keeps its own F0
        assert not np.array_equal(outputs[1], outputs[2])


@pytest.mark.skipif(
    shutil.which("text2wave") is None, reason="festival not installed (run tools/setup_system.sh)"
)
def test_festival_process_writes_what_text2wave_writes_and_survives_a_bad_voice(tmp_path: Path) -> None:
    from rnnt.demo_corpus.festival import festival_process
    from rnnt.demo_corpus.voices import festival_prosody

    text = tmp_path / "text.txt"
    text.write_text("Proof no cat has eight tails. Then the design will never be completed, he said.\n")
    for voice, stretch, f0_hz in (("ked_diphone", 0.9, 120.0), ("cmu_us_slt_arctic_hts", 1.2, 0.0)):
        setup = [f"(voice_{voice})", *festival_prosody(voice, stretch, f0_hz)]
        reference, ours = tmp_path / f"{voice}.text2wave.wav", tmp_path / f"{voice}.wav"
        cmd = [
            "text2wave",
            *(arg for expr in setup for arg in ("-eval", expr)),
            str(text),
            "-o",
            str(reference),
        ]
        subprocess.run(cmd, check=True, capture_output=True)
        festival_process().synthesize(setup, text, ours)
        assert ours.read_bytes() == reference.read_bytes()
    with pytest.raises(RuntimeError, match="unbound variable"):
        festival_process().synthesize(["(voice_no_such_voice)"], text, tmp_path / "bad.wav")
    assert not (tmp_path / "bad.wav").exists()
    festival_process().synthesize(["(voice_ked_diphone)"], text, tmp_path / "after.wav")
    assert sf.info(tmp_path / "after.wav").duration > 1.0


def test_a_rendering_mbrola_cuts_short_is_an_error(tmp_path: Path) -> None:
    """us3 lacks the ax-ax diphone: MBROLA stops after ~0.8 s of this 6 s sentence."""
    from rnnt.demo_corpus.festival import festival_process

    if not installed("festival", "us3_mbrola") or not installed("festival", "us2_mbrola"):
        pytest.skip("festival's MBROLA voices not installed (run tools/setup_system.sh)")

    text = tmp_path / "text.txt"
    text.write_text("I would like to electrocute everyone who uses the word fair about income tax.\n")
    with pytest.raises(RuntimeError, match="Fatal error: Unknown recovery for ax-ax"):
        festival_process().synthesize(["(voice_us3_mbrola)"], text, tmp_path / "cut.wav")
    assert not (tmp_path / "cut.wav").exists()
    festival_process().synthesize(["(voice_us2_mbrola)"], text, tmp_path / "whole.wav")
    assert sf.info(tmp_path / "whole.wav").duration > 4.0


def test_audio_too_short_for_its_transcript_is_left_out() -> None:
    from rnnt.demo_corpus.render import length_status

    sentence = "Are you still alive?"  # 19 characters normalised
    assert length_status(sentence, 1.0) == "ok"
    assert length_status(sentence, 0.6) == "ok"  # 32 a second; the fastest voice here reached 30
    assert length_status(sentence, 0.52) == "too_fast"
    assert length_status(sentence, 0.4) == "bad_length"
    assert length_status(sentence, 15.0) == "bad_length"


def test_pico_audio_does_not_depend_on_what_was_spoken_before(tmp_path: Path) -> None:
    pytest.importorskip("ttspico")
    from rnnt.demo_corpus.voices import synthesize

    text, other = tmp_path / "text.txt", tmp_path / "other.txt"
    text.write_text("The heart has its reasons which reason knows nothing of.\n")
    other.write_text("Something else entirely, at another speed.\n")
    synthesize("pico", "en-US", "", 1.0, 100.0, text, tmp_path / "first.wav")
    synthesize("pico", "en-US", "", 0.9, 70.0, other, tmp_path / "between.wav")
    synthesize("pico", "en-US", "", 1.0, 100.0, text, tmp_path / "again.wav")
    assert (tmp_path / "again.wav").read_bytes() == (tmp_path / "first.wav").read_bytes()


FULL_POOL = {
    "espeak_voices": ["en-us", "en-gb"],
    "espeak_variants": ["", *(f"m{i}" for i in range(1, 8))],
    "flite_voices": ["kal", "awb", "rms", "slt"],
    "festival_voices": ["ked_diphone", "cmu_us_slt_arctic_hts", "don_diphone", "us1_mbrola"],
    "pico_voices": ["en-US", "en-GB"],
    "mbrola_voices": ["mb-us1", "mb-en1"],
    "rhvoice_voices": ["bdl", "clb"],
}


def test_train_only_engines_speak_in_train_only() -> None:
    from rnnt.demo_corpus.voices import make_speakers, split_combinations

    combinations = split_combinations(FULL_POOL, seed=0)
    engines = {split: {engine for engine, _, _ in combos} for split, combos in combinations.items()}
    assert engines == {
        "train": {"espeak-ng", "flite", "festival", "pico", "mbrola", "rhvoice"},
        "dev": {"espeak-ng", "flite"},
        "test": {"espeak-ng", "flite"},
    }
    speakers = make_speakers("train", combinations["train"], 80, seed=0)
    counts = {
        e: sum(s.engine == e for s in speakers) for e in ("flite", "festival", "pico", "mbrola", "rhvoice")
    }
    assert counts == {"flite": 20, "festival": 12, "pico": 8, "mbrola": 4, "rhvoice": 12}
    assert {s.voice for s in speakers if s.engine == "festival"} == set(FULL_POOL["festival_voices"])


def test_dev_and_test_do_not_depend_on_the_train_only_voices() -> None:
    """Adding training voices (corpus versions 3, 4, 6 and 8) keeps dev and test as they were, so
    that models trained on different versions compare on the same audio."""
    from rnnt.demo_corpus.config import DemoCorpusConfig
    from rnnt.demo_corpus.plan import plan_corpus

    config = DemoCorpusConfig(num_train_speakers=40)
    sentences = {
        "train": [f"train sentence {i}" for i in range(50)],
        "dev": [f"dev sentence {i}" for i in range(12)],
        "test": [f"test sentence {i}" for i in range(12)],
    }
    fewer = {
        **FULL_POOL,
        "festival_voices": ["ked_diphone"],
        "pico_voices": [],
        "mbrola_voices": [],
        "rhvoice_voices": [],
    }
    plans = [plan_corpus(sentences, pool, config)[1] for pool in (FULL_POOL, fewer)]
    held_out = [[u for u in plan if u.speaker.split != "train"] for plan in plans]
    assert len(held_out[0]) == 24 and held_out[0] == held_out[1]
    assert plans[0] != plans[1]


def test_make_demo_captions_a_recording_the_corpus_plans_for_test() -> None:
    """`make demo` streams $(HELD_OUT): the default corpus must plan it, as a test utterance
    (an id that the corpus no longer makes fails only at the end of a half-hour `make demo`)."""
    from rnnt.demo_corpus.build import plan_demo_corpus
    from rnnt.demo_corpus.config import DemoCorpusConfig

    makefile = (REPO_ROOT / "Makefile").read_text()
    match = re.search(r"^HELD_OUT := \$\(DEMO_CORPUS\)/(\S+)$", makefile, re.MULTILINE)
    assert match, "Makefile: no HELD_OUT := $(DEMO_CORPUS)/... line"
    utterances = plan_demo_corpus(DemoCorpusConfig()).utterances
    planned = {str(u.relative_dir / f"{u.utt_id}.flac"): u for u in utterances}
    assert match.group(1) in planned
    assert planned[match.group(1)].speaker.split == "test"
