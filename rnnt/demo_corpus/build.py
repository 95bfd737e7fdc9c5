"""Build the demo corpus on disk: plan, render, transcripts, speakers and stamp files.

Re-running is cheap: a finished corpus is recognised by its stamp file, and an interrupted
run renders only the missing audio files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from rnnt import atomic
from rnnt.demo_corpus.config import DemoCorpusConfig, DemoCorpusError
from rnnt.demo_corpus.plan import CROSS_DIR, CROSS_SETS, SPLITS, Utterance, plan_corpus, plan_cross_sets
from rnnt.demo_corpus.render import TMP_SUFFIX, render_all
from rnnt.demo_corpus.text import load_sentences, split_sentence_sets
from rnnt.demo_corpus.voices import Speaker, build_voice_pool
from rnnt.text import normalize

log = logging.getLogger(__name__)

REQUIRED_TOOLS = ("espeak-ng", "flite", "festival", "sox")
STAMP_FILE = ".complete.json"
PARAMS_FILE = ".params.json"
SPEAKERS_FILE = "speakers.tsv"
SPEAKER_COLUMNS = (
    "speaker_id",
    "split",
    "engine",
    "voice",
    "variant",
    "rate",
    "pitch",
    "noise_kind",
    "noise_prob",
    "min_snr_db",
    "max_snr_db",
)
SECONDS_PER_HOUR = 3600.0
KEPT = ("ok", "cached")  # render statuses of the files the corpus lists


@dataclasses.dataclass(frozen=True)
class BuildReport:
    """What `build_demo_corpus` did."""

    up_to_date: bool  # the corpus was already there and was left alone
    num_sentences: int = 0  # usable sentences found (0 if up to date without cross sets)
    summary: dict[str, dict] = dataclasses.field(default_factory=dict)  # per split, if built
    elapsed_s: float = 0.0
    cross_dirs: tuple[Path, ...] = ()


def read_json(path: Path) -> dict | None:
    """Parsed JSON file, or None if missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_up_to_date(output_dir: Path, params: dict) -> bool:
    """True if a finished corpus with these parameters is already there."""
    stamp = read_json(output_dir / STAMP_FILE)
    return stamp is not None and stamp.get("params") == params


def prepare_output_dir(output_dir: Path, params: dict) -> None:
    """Clears output of a run with other parameters and records `params` for the next run."""
    previous = read_json(output_dir / PARAMS_FILE)
    existing = [output_dir / d for d in (*SPLITS, CROSS_DIR) if (output_dir / d).exists()]
    if previous is None and existing:
        raise DemoCorpusError(f"{output_dir} has corpus directories but no {PARAMS_FILE}; remove them first")
    if previous is not None and previous != params:
        log.info("parameters changed: removing old corpus in %s", output_dir)
        for path in existing:
            shutil.rmtree(path)
    (output_dir / STAMP_FILE).unlink(missing_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(output_dir / PARAMS_FILE, json.dumps(params, indent=1, sort_keys=True))


def remove_temporary_files(output_dir: Path) -> None:
    """Deletes leftovers of a killed run, in the corpus and in the cross sets."""
    for split in (*SPLITS, CROSS_DIR):
        for path in (output_dir / split).rglob(f"*{TMP_SUFFIX}"):
            path.unlink()


def write_speakers(output_dir: Path, speakers: Iterable[Speaker], config: DemoCorpusConfig) -> None:
    """speakers.tsv with the TTS and noise settings of every speaker."""
    rows = ["\t".join(SPEAKER_COLUMNS)]
    for s in speakers:
        fields = (s.speaker_id, s.split, s.engine, s.voice, s.variant or "-", s.rate, s.pitch, s.noise_kind)
        rows.append("\t".join(map(str, (*fields, config.noise_prob, config.min_snr_db, config.max_snr_db))))
    atomic.write_text(output_dir / SPEAKERS_FILE, "\n".join(rows) + "\n")


def write_transcripts(output_dir: Path, utterances: Iterable[Utterance]) -> None:
    """One <speaker>-<chapter>.trans.txt per chapter listing the rendered utterances."""
    chapters: dict[Path, list[str]] = defaultdict(list)
    for utt in utterances:
        chapters[utt.relative_dir].append(f"{utt.utt_id} {normalize(utt.text).upper()}")
    for relative_dir, lines in chapters.items():
        speaker_id, chapter_id = relative_dir.parts[-2:]
        atomic.write_text(
            output_dir / relative_dir / f"{speaker_id}-{chapter_id}.trans.txt", "\n".join(lines) + "\n"
        )


def summarize(utterances: list[Utterance], results: dict) -> dict[str, dict]:
    """Per-split statistics of the rendered corpus."""
    summary = {}
    for split in SPLITS:
        split_utts = [u for u in utterances if u.speaker.split == split]
        kept = [u for u in split_utts if results[u.utt_id][0] in KEPT]
        statuses = Counter(results[u.utt_id][0] for u in split_utts)
        summary[split] = {
            "utterances": len(kept),
            "hours": round(sum(results[u.utt_id][1] for u in kept) / SECONDS_PER_HOUR, 3),
            "speakers": len({u.speaker.speaker_id for u in kept}),
            "unique_sentences": len({normalize(u.text) for u in kept}),
            "skipped_bad_length": statuses["bad_length"],
            "skipped_too_fast": statuses["too_fast"],
            "failed": statuses["failed"],
        }
    return summary


def check_tools() -> None:
    """Raises `DemoCorpusError` if a required program is missing."""
    for tool in REQUIRED_TOOLS:
        if shutil.which(tool) is None:
            raise DemoCorpusError(f"{tool} not found: run tools/setup_system.sh")


@dataclasses.dataclass(frozen=True)
class CorpusPlan:
    """Everything the corpus will hold, decided before any audio is rendered."""

    sentences: list[str]  # every usable sentence found
    voice_pool: dict[str, list[str]]  # the voices that work here
    speakers: list[Speaker]
    utterances: list[Utterance]


def plan_demo_corpus(config: DemoCorpusConfig) -> CorpusPlan:
    """The sentences, voices, speakers and utterances `config` gives on this machine."""
    sentences = load_sentences(Path(config.fortunes_dir))
    if len(sentences) <= config.num_dev_sentences + config.num_test_sentences:
        raise DemoCorpusError(f"{len(sentences)} sentences are not enough for the requested dev/test sizes")
    voice_pool = build_voice_pool()
    sentence_sets = split_sentence_sets(
        sentences, config.num_dev_sentences, config.num_test_sentences, config.seed
    )
    speakers, utterances = plan_corpus(sentence_sets, voice_pool, config)
    return CorpusPlan(sentences, voice_pool, speakers, utterances)


def build_demo_corpus(
    config: DemoCorpusConfig, output_dir: Path, workers: int = 2, cross_utterances: int = 0
) -> BuildReport:
    """The corpus under `output_dir` (skipped if up to date), plus `cross_utterances` per cross set."""
    start = time.monotonic()
    params = config.params()
    up_to_date = is_up_to_date(output_dir, params)
    if up_to_date and not cross_utterances:
        return BuildReport(up_to_date=True)
    check_tools()
    remove_temporary_files(output_dir)
    plan = plan_demo_corpus(config)
    summary = {}
    if not up_to_date:
        prepare_output_dir(output_dir, params)
        results = render_all(output_dir, plan.utterances, config, workers)
        write_speakers(output_dir, plan.speakers, config)
        write_transcripts(output_dir, (u for u in plan.utterances if results[u.utt_id][0] in KEPT))
        summary = summarize(plan.utterances, results)
        stamp = {
            "params": params,
            "voice_pool": plan.voice_pool,
            "num_sentences": len(plan.sentences),
            "sentences_sha1": hashlib.sha1("\n".join(plan.sentences).encode()).hexdigest(),
            "summary": summary,
        }
        atomic.write_text(output_dir / STAMP_FILE, json.dumps(stamp, indent=1, sort_keys=True))
    cross_dirs: tuple[Path, ...] = ()
    if cross_utterances:
        cross = plan_cross_sets(plan.utterances, plan.speakers, cross_utterances, config.seed)
        results = render_all(output_dir, cross, config, workers)
        write_transcripts(output_dir, (u for u in cross if results[u.utt_id][0] in KEPT))
        cross_dirs = tuple(output_dir / CROSS_DIR / name for name in CROSS_SETS)
    return BuildReport(up_to_date, len(plan.sentences), summary, time.monotonic() - start, cross_dirs)
