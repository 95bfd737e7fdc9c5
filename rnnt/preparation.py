"""Common Voice prepared at scale: every clip converted once to FLAC, and a manifest.

Common Voice ships MP3 clips listed in per-split TSV files (`train.tsv`, `dev.tsv`,
`test.tsv`, `validated.tsv`: `path` and `sentence` columns among others). Decoding MP3 at
every epoch would cost more than the training step, so `prepare_common_voice` converts each
clip once, with ffmpeg in parallel workers, to 16 kHz mono FLAC (which libsndfile reads
fast), and writes a JSONL manifest. Each FLAC is written to a temporary name and renamed, and
clips already converted are skipped, so a killed run resumes where it stopped. A clip that
is missing or that ffmpeg cannot decode is skipped and counted, never fatal.
(TED-LIUM needs no conversion: `rnnt.corpus.read_tedlium` reads its SPHERE talks in place.)
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rnnt.audio import audio_duration
from rnnt.corpus import DataError, Utterance, write_manifest
from rnnt.text import normalize

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
CLIPS_DIR = "clips"  # Common Voice's folder of MP3 clips, beside the TSV files
FLAC_SUFFIX = ".flac"
PARTIAL_SUFFIX = ".partial.flac"  # a conversion in progress; renamed when complete
PROGRESS_EVERY = 10_000  # clips between progress lines in the log
REPORTED_FAILURES = 5  # failed clips named in the log (the rest are counted)


@dataclass
class PrepareReport:
    """What one split's preparation did."""

    manifest: Path
    utterances: int = 0  # in the manifest
    converted: int = 0  # clips converted by this run
    reused: int = 0  # clips converted by an earlier run
    failed: list[str] = field(default_factory=list)  # clips missing or undecodable
    no_text: int = 0  # rows without a sentence
    hours: float = 0.0


@dataclass(frozen=True)
class Clip:
    source: Path  # the MP3
    destination: Path  # its FLAC
    text: str
    speaker: str = ""  # Common Voice's client_id: one per contributor


def common_voice_clips(cv_dir: Path, split: str, output_dir: Path) -> tuple[list[Clip], int]:
    """The clips of `<cv_dir>/<split>.tsv` with their FLAC destinations, and the number of
    rows without a sentence (skipped)."""
    tsv = cv_dir / f"{split}.tsv"
    try:
        with tsv.open(encoding="utf-8", newline="") as file:
            rows = list(csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE))
    except OSError as error:
        raise DataError(f"{tsv}: cannot read ({error})") from error
    if rows and not {"path", "sentence"} <= rows[0].keys():
        raise DataError(f"{tsv}: needs 'path' and 'sentence' columns, has {sorted(rows[0].keys())}")
    clips, no_text = [], 0
    for row in rows:
        if not normalize(row["sentence"] or ""):
            no_text += 1
            continue
        name = Path(row["path"]).stem
        clips.append(
            Clip(
                cv_dir / CLIPS_DIR / row["path"],
                output_dir / CLIPS_DIR / f"{name}{FLAC_SUFFIX}",
                row["sentence"],
                row.get("client_id") or "",
            )
        )
    return clips, no_text


def convert_clip(clip: Clip, sample_rate: int = SAMPLE_RATE) -> str:
    """MP3 -> mono FLAC at `sample_rate`, atomically. Returns "reused", "converted" or an
    error message."""
    if clip.destination.is_file():
        return "reused"
    if not clip.source.is_file():
        return f"{clip.source.name}: missing"
    partial = clip.destination.with_name(clip.destination.stem + PARTIAL_SUFFIX)
    command = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(clip.source)]
    command += ["-vn", "-ac", "1", "-ar", str(sample_rate), "-sample_fmt", "s16", str(partial)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
        partial.unlink(missing_ok=True)
        reason = result.stderr.strip().splitlines()
        return f"{clip.source.name}: {reason[-1] if reason else 'no audio'}"
    os.replace(partial, clip.destination)
    return "converted"


def prepare_common_voice(
    cv_dir: str | Path, split: str, output_dir: str | Path, jobs: int = 0, max_clips: int = 0
) -> PrepareReport:
    """Convert one split's clips (`jobs` ffmpeg processes at once; 0: one per core) and write
    `<output_dir>/<split>.jsonl`. `max_clips` > 0 takes the split's first clips only."""
    if shutil.which("ffmpeg") is None:
        raise DataError("ffmpeg is not installed (tools/setup_system.sh installs it)")
    cv_dir, output_dir = Path(cv_dir), Path(output_dir)
    clips, no_text = common_voice_clips(cv_dir, split, output_dir)
    clips = clips[:max_clips] if max_clips > 0 else clips
    (output_dir / CLIPS_DIR).mkdir(parents=True, exist_ok=True)
    report = PrepareReport(output_dir / f"{split}.jsonl", no_text=no_text)
    outcomes = []
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        for done, outcome in enumerate(pool.map(convert_clip, clips), start=1):
            outcomes.append(outcome)
            if done % PROGRESS_EVERY == 0:
                log.info("%s: %d of %d clips", split, done, len(clips))
    utterances = []
    for clip, outcome in zip(clips, outcomes, strict=True):
        if outcome == "converted":
            report.converted += 1
        elif outcome == "reused":
            report.reused += 1
        else:  # an error message
            report.failed.append(outcome)
            continue
        relative = clip.destination.relative_to(output_dir)
        utterances.append(
            Utterance(
                clip.destination.stem,
                str(relative),
                clip.text,
                audio_duration(clip.destination),
                speaker=clip.speaker,
            )
        )
    for failure in report.failed[:REPORTED_FAILURES]:
        log.warning("skipped %s", failure)
    write_manifest(report.manifest, utterances)
    report.utterances = len(utterances)
    report.hours = sum(u.duration for u in utterances) / 3600
    return report


def summarize(reports: Sequence[PrepareReport]) -> str:
    """One line per split for the script's output."""
    return "\n".join(
        f"{r.manifest}: {r.utterances} utterances, {r.hours:.2f} h ({r.converted} converted, "
        f"{r.reused} already done, {len(r.failed)} failed, {r.no_text} without text)"
        for r in reports
    )
