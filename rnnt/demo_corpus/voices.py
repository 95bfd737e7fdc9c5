"""Synthetic speakers: espeak-ng, flite, festival, MBROLA, Pico and RHVoice voices, held-out sets, prosody."""

from __future__ import annotations

import dataclasses
import logging
import random
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from rnnt.demo_corpus.config import DemoCorpusError
from rnnt.demo_corpus.festival import SYNTH_TIMEOUT_S, festival_process

log = logging.getLogger(__name__)

# Voices. A variant "" means the voice's own default.
_ESPEAK_VOICE_NAMES = "en-us en-gb en-gb-scotland en-gb-x-rp en-gb-x-gbclan en-gb-x-gbcwmd en-029 en-us-nyc"
# Natural-sounding variants only (no whisper, robot, demonic or announcer effects).
_ESPEAK_VARIANT_NAMES = """m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 klatt klatt2 klatt3 klatt4 klatt5 klatt6
    adam Alex Alicia Andrea Andy Annie aunty belinda benjamin boris caleb david ed edward edward2 Gene Gene2
    grandma grandpa gustave iven iven2 iven3 iven4 Jacky john Lee linda max Michael Mike norbert paul quincy
    rob robert shelby steph steph2 steph3 travis victor zac"""
ESPEAK_VOICES = tuple(_ESPEAK_VOICE_NAMES.split())
ESPEAK_VARIANTS = ("", *_ESPEAK_VARIANT_NAMES.split())
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
# One male flite voice is held out for dev and test. Never kal (kal and kal16 are one voice:
# never split them) and never slt: it is flite's only female voice, so without it training has
# no female flite speech and the held-out slt speakers scored 91% WER (generator version 1).
FLITE_HOLDOUT_CANDIDATES = ("awb", "rms")
# Festival voices (Debian festvox-kdlpc16k, festvox-us-slt-hts), training only: two more ways of
# making speech than espeak-ng's formants and flite's diphones and clustergen, for the held-out
# flite voice (76% WER while the unseen espeak-ng voices scored 20-34%, generator version 2).
# Festival's kal_diphone is left out: it is flite's kal. Voice -> its directory under
# FESTIVAL_VOICE_DIR/<language>/.
# Version 6 adds six more people from Debian's non-free component (tools/setup_system.sh): the
# diphone voices don (festvox-don) and rab (festvox-rablpc16k) and the MBROLA databases us1
# (female), us2, us3 and en1 (festvox-us1..3, festvox-en1), for the held-out flite voice (~50% WER
# while the other unseen voices scored ~16%, generator version 5: a model that has heard a few
# people does not generalise to another; each added person so far made the next one less foreign).
FESTIVAL_VOICES = {
    "ked_diphone": "english",
    "cmu_us_slt_arctic_hts": "us",
    "don_diphone": "english",
    "rab_diphone": "english",
    "us1_mbrola": "english",
    "us2_mbrola": "english",
    "us3_mbrola": "english",
    "en1_mbrola": "english",
}
FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")
# Festival's HTS engine ignores a pitch setting (-fm), so HTS speakers keep the voice's own F0.
_MALE_F0_HZ, _FEMALE_F0_HZ = (85.0, 140.0), (150.0, 210.0)
FESTIVAL_F0_HZ = {
    "ked_diphone": _MALE_F0_HZ,
    "don_diphone": _MALE_F0_HZ,
    "rab_diphone": _MALE_F0_HZ,
    "us1_mbrola": _FEMALE_F0_HZ,
    "us2_mbrola": _MALE_F0_HZ,
    "us3_mbrola": _MALE_F0_HZ,
    "en1_mbrola": _MALE_F0_HZ,
}
# The same MBROLA databases behind espeak-ng's front end (its own phonemes and intonation):
# training only, with espeak-ng's speed and pitch ranges and no variants (those shape formants).
MBROLA_VOICES = ("mb-us1", "mb-us2", "mb-us3", "mb-en1")
# SVOX Pico's two English voices (PyPI ttspico, which ships the engine and its voice files),
# training only: HMM voices of two more people, and the most foreign voices to a model trained
# without them (86-91% WER at their own pitch with the model trained on version 2).
PICO_VOICES = ("en-US", "en-GB")
PICO_PITCH_PERCENT = (55.0, 115.0)  # of the voice's own F0 (both are female): male to female
PICO_SAMPLE_RATE = 16000
# RHVoice's English voices (Debian non-free rhvoice-english), training only, version 8: HTS
# models of CMU ARCTIC's bdl (US male) and clb (US female), the corpus of the held-out flite
# voice rms, of two Russian-accented speakers, and of awb (alan) and slt again. 35 minutes of
# fine-tuning with them moved rms 8-11 points of WER against 35 minutes without them, where
# six more diphone people (version 6) had moved it by none (docs/experiments.md).
RHVOICE_VOICES = ("bdl", "clb", "evgeniy-eng", "lyubov", "alan", "slt")
RHVOICE_VOICE_DIR = Path("/usr/share/RHVoice/voices")
RHVOICE_RATE_PERCENT = 80.0  # `RHVoice-test -r` at duration stretch 1 (its speech time ~ 1 / rate)
# `RHVoice-test -t`: 50 is the voice's own pitch, higher raises it; lower leaves it at 50.
RHVOICE_PITCH_PERCENT = (50.0, 75.0)
# The engines whose speakers' pitch is a percentage of the voice's own.
PITCH_PERCENT = {"pico": PICO_PITCH_PERCENT, "rhvoice": RHVOICE_PITCH_PERCENT}
TRAIN_ONLY_ENGINES = ("festival", "pico", "mbrola", "rhvoice")
# Each engine's share of a split's speakers (of those it has voices for); espeak-ng has the rest.
# Dev and test have flite and espeak-ng voices only, so their speakers stay those of version 2.
SPEAKER_FRACTIONS = {"flite": 0.25, "festival": 0.15, "pico": 0.1, "mbrola": 0.05, "rhvoice": 0.15}
# The rest of a diphone voice's intonation parameters, as ked_diphone's own definition sets them.
FESTIVAL_F0_MODEL = "(target_f0_std 15) (model_f0_mean 170) (model_f0_std 34)"
PROBE_TEXT = "This is a test."
HOLDOUT_FRACTION = 0.15  # of espeak (voice, variant) combinations, reserved for dev and test
ESPEAK_SPEED_WPM = (130, 210)
ESPEAK_PITCH = (25, 75)
FLITE_DURATION_STRETCH = (0.8, 1.25)
FLITE_F0_HZ = {"slt": (140.0, 200.0)}
FLITE_DEFAULT_F0_HZ = (90.0, 145.0)
NOISE_KINDS = ("white", "brown")
FIRST_SPEAKER_ID = {"train": 1000, "dev": 5000, "test": 7000}


@dataclasses.dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: one TTS voice with fixed rate, pitch and noise environment."""

    speaker_id: int
    split: str
    engine: str
    voice: str
    variant: str
    rate: float  # espeak words per minute, or flite/festival/pico/rhvoice duration stretch
    pitch: float  # espeak pitch 0-99, flite/festival mean F0 in Hz (0: the voice's own), pico/rhvoice percent
    noise_kind: str


def synthesize(
    engine: str, voice: str, variant: str, rate: float, pitch: float, text_file: Path, wav: Path
) -> None:
    """Runs one TTS engine on a text file; raises on failure."""
    if engine == "pico":
        synthesize_pico(voice, rate, pitch, text_file.read_text(), wav)
    elif engine == "festival":
        festival_process().synthesize(
            [f"(voice_{voice})", *festival_prosody(voice, rate, pitch)], text_file, wav
        )
    else:
        cmd = command_line(engine, voice, variant, rate, pitch, text_file, wav)
        subprocess.run(cmd, check=True, capture_output=True, timeout=SYNTH_TIMEOUT_S)


def command_line(
    engine: str, voice: str, variant: str, rate: float, pitch: float, text_file: Path, wav: Path
) -> list[str]:
    """The espeak-ng, flite or RHVoice command that speaks `text_file` into `wav`."""
    if engine == "rhvoice":
        rate_percent = RHVOICE_RATE_PERCENT / rate
        cmd = ["RHVoice-test", "-p", voice, "-r", f"{rate_percent:.0f}", "-t", f"{pitch:.0f}"]
        return [*cmd, "-i", str(text_file), "-o", str(wav)]
    if engine in ("espeak-ng", "mbrola"):
        name = f"{voice}+{variant}" if variant else voice
        cmd = ["espeak-ng", "-v", name, "-s", str(round(rate)), "-p", str(round(pitch)), "-f", str(text_file)]
        return [*cmd, "-w", str(wav)]
    cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={rate:.3f}"]
    return [*cmd, "--setf", f"int_f0_target_mean={pitch:.1f}", "-f", str(text_file), "-o", str(wav)]


def _pico_engine(voice: str) -> Any:
    """A fresh engine: one kept across utterances renders each according to those before it
    (an internal state advances), which made the audio depend on how render workers shared out
    the utterances. A new engine costs ~5 ms against ~23 ms for a sentence."""
    import ttspico

    return ttspico.TtsEngine(voice)


def synthesize_pico(voice: str, stretch: float, pitch_percent: float, text: str, wav: Path) -> None:
    """SVOX Pico in this process (its Python binding); raises RuntimeError on failure."""
    engine = _pico_engine(voice)
    engine.rate = round(100 / stretch)
    engine.pitch = round(pitch_percent)
    pcm = engine.speak(text)
    if not pcm:
        raise RuntimeError(f"pico {voice} produced no audio")
    sf.write(wav, np.frombuffer(pcm, dtype=np.int16), PICO_SAMPLE_RATE)


def festival_prosody(voice: str, stretch: float, f0_hz: float) -> list[str]:
    """Festival expressions that set a voice's duration stretch and mean F0 (after selecting it)."""
    if voice.endswith("_hts"):  # the HTS engine's own speed option; Duration_Stretch does not reach it
        return [f'(set! hts_engine_params (append hts_engine_params \'(("-r" {1 / stretch:.3f}))))']
    expressions = [f"(Parameter.set 'Duration_Stretch {stretch:.3f})"]
    if f0_hz:
        expressions.append(f"(set! int_lr_params '((target_f0_mean {f0_hz:.1f}) {FESTIVAL_F0_MODEL}))")
    return expressions


def probe(voice: str, variant: str, engine: str = "espeak-ng") -> bytes:
    """Audio espeak-ng makes for a short phrase, with its own voice or an MBROLA one (empty on failure)."""
    with tempfile.TemporaryDirectory() as tmp:
        text_file, wav = Path(tmp, "text.txt"), Path(tmp, "out.wav")
        text_file.write_text(PROBE_TEXT)
        try:
            synthesize(
                engine, voice, variant, sum(ESPEAK_SPEED_WPM) / 2, sum(ESPEAK_PITCH) / 2, text_file, wav
            )
            data, _ = sf.read(wav, dtype="float32")
        except (subprocess.SubprocessError, OSError, RuntimeError):
            return b""
        return data.tobytes() if data.size and np.abs(data).max() > 0 else b""


def working_espeak_voices() -> tuple[list[str], list[str]]:
    """Voices that speak, and variants that audibly change the default voice (espeak ignores unknown ones)."""
    voices = [v for v in ESPEAK_VOICES if probe(v, "")]
    if not voices:
        return [], []
    reference = probe(voices[0], "")
    variants = [""] + [v for v in ESPEAK_VARIANTS if v and probe(voices[0], v) not in (b"", reference)]
    return voices, variants


def working_flite_voices() -> list[str]:
    """Flite voices compiled into the installed flite binary."""
    listing = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=False).stdout
    available = set(listing.split(":", 1)[-1].split())
    return [v for v in FLITE_VOICES if v in available]


def installed_festival_voices() -> list[str]:
    """FESTIVAL_VOICES whose Debian packages (and festival) are installed."""
    if shutil.which("festival") is None:
        return []
    return [v for v, language in FESTIVAL_VOICES.items() if (FESTIVAL_VOICE_DIR / language / v).is_dir()]


def working_mbrola_voices() -> list[str]:
    """MBROLA_VOICES that espeak-ng speaks (their databases, Debian mbrola-*, are installed)."""
    return [v for v in MBROLA_VOICES if probe(v, "", "mbrola")]


def installed_pico_voices() -> list[str]:
    """PICO_VOICES if ttspico (engine and voice files) is installed."""
    try:
        _pico_engine(PICO_VOICES[0])
    except (ImportError, RuntimeError):
        return []
    return list(PICO_VOICES)


def installed_rhvoice_voices() -> list[str]:
    """RHVOICE_VOICES whose files are installed (RHVoice speaks an unknown voice's name with
    another voice, without an error)."""
    if shutil.which("RHVoice-test") is None:
        return []
    return [v for v in RHVOICE_VOICES if (RHVOICE_VOICE_DIR / v).is_dir()]


def build_voice_pool() -> dict[str, list[str]]:
    """The configured voices and variants that work here; reports the others."""
    espeak_voices, espeak_variants = working_espeak_voices()
    flite_voices = working_flite_voices()
    festival_voices = installed_festival_voices()
    pico_voices = installed_pico_voices()
    mbrola_voices = working_mbrola_voices()
    rhvoice_voices = installed_rhvoice_voices()
    unusable = [v for v in ESPEAK_VOICES if v not in espeak_voices]
    unusable += [f"+{v}" for v in ESPEAK_VARIANTS if v not in espeak_variants]
    unusable += [f"flite:{v}" for v in FLITE_VOICES if v not in flite_voices]
    unusable += [f"festival:{v}" for v in FESTIVAL_VOICES if v not in festival_voices]
    unusable += [f"pico:{v}" for v in PICO_VOICES if v not in pico_voices]
    unusable += [f"mbrola:{v}" for v in MBROLA_VOICES if v not in mbrola_voices]
    unusable += [f"rhvoice:{v}" for v in RHVOICE_VOICES if v not in rhvoice_voices]
    if unusable:
        log.warning("unusable voices skipped: %s", " ".join(unusable))
    if not espeak_voices:
        raise DemoCorpusError("no espeak-ng English voice works")
    return {
        "espeak_voices": espeak_voices,
        "espeak_variants": espeak_variants,
        "flite_voices": flite_voices,
        "festival_voices": festival_voices,
        "pico_voices": pico_voices,
        "mbrola_voices": mbrola_voices,
        "rhvoice_voices": rhvoice_voices,
    }


def split_combinations(voice_pool: dict[str, list[str]], seed: int) -> dict[str, list[tuple[str, str, str]]]:
    """(engine, voice, variant) combinations per split: dev and test get unseen ones.

    Festival's, Pico's, MBROLA's and RHVoice's voices speak in training only, so that dev and test stay
    those of the corpus before them (version 2).
    """
    espeak_voices, espeak_variants = voice_pool["espeak_voices"], voice_pool["espeak_variants"]
    flite_voices = voice_pool["flite_voices"]
    train_only = [
        (engine, v, "") for engine in TRAIN_ONLY_ENGINES for v in voice_pool.get(f"{engine}_voices", [])
    ]
    rng = random.Random(f"{seed}-combinations")
    espeak = [("espeak-ng", v, var) for v in espeak_voices for var in espeak_variants]
    rng.shuffle(espeak)
    num_held = max(2, round(HOLDOUT_FRACTION * len(espeak)))
    held_flite = rng.choice([v for v in FLITE_HOLDOUT_CANDIDATES if v in flite_voices] or [None])
    flite_train = [("flite", v, "") for v in flite_voices if v != held_flite]
    flite_held = [("flite", held_flite, "")] if held_flite else []
    return {
        "train": espeak[num_held:] + flite_train + train_only,
        "dev": espeak[: num_held // 2] + flite_held,
        "test": espeak[num_held // 2 : num_held] + flite_held,
    }


def make_speakers(split: str, combinations: list[tuple], count: int, seed: int) -> list[Speaker]:
    """`count` speakers cycling through the split's shuffled combinations, with random prosody."""
    rng = random.Random(f"{seed}-speakers-{split}")
    espeak = [c for c in combinations if c[0] == "espeak-ng"]
    rng.shuffle(espeak)
    chosen = []
    for engine, fraction in SPEAKER_FRACTIONS.items():
        voices = [c for c in combinations if c[0] == engine]
        chosen += [voices[i % len(voices)] for i in range(round(fraction * count) if voices else 0)]
    chosen += [espeak[i % len(espeak)] for i in range(count - len(chosen))]
    speakers = []
    for index, (engine, voice, variant) in enumerate(chosen):
        if engine in ("espeak-ng", "mbrola"):
            rate, pitch = rng.uniform(*ESPEAK_SPEED_WPM), rng.uniform(*ESPEAK_PITCH)
        elif engine == "flite":
            rate, pitch = (
                rng.uniform(*FLITE_DURATION_STRETCH),
                rng.uniform(*FLITE_F0_HZ.get(voice, FLITE_DEFAULT_F0_HZ)),
            )
        elif engine == "festival":
            f0_range = FESTIVAL_F0_HZ.get(voice)
            rate, pitch = rng.uniform(*FLITE_DURATION_STRETCH), rng.uniform(*f0_range) if f0_range else 0.0
        else:
            rate, pitch = rng.uniform(*FLITE_DURATION_STRETCH), rng.uniform(*PITCH_PERCENT[engine])
        speaker_id = FIRST_SPEAKER_ID[split] + index
        noise_kind = rng.choice(NOISE_KINDS)
        speakers.append(
            Speaker(speaker_id, split, engine, voice, variant, round(rate, 3), round(pitch, 1), noise_kind)
        )
    return speakers
