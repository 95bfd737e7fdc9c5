"""The corpus plan: which speaker says which sentence, under which LibriSpeech id."""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from pathlib import Path

from rnnt.demo_corpus.config import DemoCorpusConfig
from rnnt.demo_corpus.voices import Speaker, make_speakers, split_combinations

SPLITS = ("train", "dev", "test")
# Chapter ids start per split, so that dev and test keep their ids (and so their seeded noise)
# whatever the train split holds.
FIRST_CHAPTER_ID = {"train": 10000, "dev": 1000, "test": 2000}
# Diagnostic sets that split the dev/test gap into unseen sentences and unseen voices:
# name -> (split whose sentences are spoken, split whose speakers speak them).
CROSS_DIR = "cross"
CROSS_SETS = {
    "train_sentences_train_speakers": ("train", "train"),
    "test_sentences_train_speakers": ("test", "train"),
    "train_sentences_test_speakers": ("train", "test"),
}
CROSS_CHAPTER_ID = 1
UTTERANCES_PER_CHAPTER = 50


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One audio file to render."""

    utt_id: str
    speaker: Speaker
    chapter_id: int
    text: str

    @property
    def relative_dir(self) -> Path:
        return Path(self.speaker.split, str(self.speaker.speaker_id), str(self.chapter_id))


def assign_speakers(
    split: str, sentences: list[str], speakers: list[Speaker], config: DemoCorpusConfig
) -> list[tuple]:
    """(speaker, sentence) pairs: train sentences get `renderings` distinct speakers, others one."""
    rng = random.Random(f"{config.seed}-assign-{split}")
    renderings = min(config.renderings, len(speakers)) if split == "train" else 1
    pairs = [(speaker, s) for s in sentences for speaker in rng.sample(speakers, renderings)]
    if split == "train" and config.max_train_utterances > 0:
        pairs = pairs[: config.max_train_utterances]
    return pairs


def group_into_chapters(pairs: list[tuple], first_chapter_id: int) -> list[Utterance]:
    """LibriSpeech-style ids: utterances of one speaker in chapters of UTTERANCES_PER_CHAPTER."""
    by_speaker: dict[Speaker, list[str]] = defaultdict(list)
    for speaker, sentence in pairs:
        by_speaker[speaker].append(sentence)
    utterances = []
    chapter_id = first_chapter_id
    for speaker in sorted(by_speaker, key=lambda s: s.speaker_id):
        texts = by_speaker[speaker]
        for start in range(0, len(texts), UTTERANCES_PER_CHAPTER):
            for index, text in enumerate(texts[start : start + UTTERANCES_PER_CHAPTER]):
                utterances.append(
                    Utterance(f"{speaker.speaker_id}-{chapter_id}-{index:04d}", speaker, chapter_id, text)
                )
            chapter_id += 1
    return utterances


def plan_corpus(
    sentence_sets: dict[str, list[str]], voice_pool: dict, config: DemoCorpusConfig
) -> tuple[list[Speaker], list[Utterance]]:
    """All speakers and utterances of the corpus, decided before any audio is rendered."""
    combinations = split_combinations(voice_pool, config.seed)
    counts = {
        "train": config.num_train_speakers,
        "dev": config.num_dev_speakers,
        "test": config.num_test_speakers,
    }
    speakers: list[Speaker] = []
    utterances: list[Utterance] = []
    for split in SPLITS:
        split_speakers = make_speakers(split, combinations[split], counts[split], config.seed)
        pairs = assign_speakers(split, sentence_sets[split], split_speakers, config)
        utterances += group_into_chapters(pairs, FIRST_CHAPTER_ID[split])
        speakers += split_speakers
    return speakers, utterances


def plan_cross_sets(
    utterances: list[Utterance], speakers: list[Speaker], count: int, seed: int
) -> list[Utterance]:
    """`count` seeded sentences of one split, each spoken by a random speaker of another (CROSS_SETS)."""
    planned = []
    for name, (text_split, speaker_split) in CROSS_SETS.items():
        rng = random.Random(f"{seed}-cross-{name}")
        texts = [u.text for u in utterances if u.speaker.split == text_split]
        pool = [s for s in speakers if s.split == speaker_split]
        for index, text in enumerate(rng.sample(texts, min(count, len(texts)))):
            speaker = dataclasses.replace(rng.choice(pool), split=f"{CROSS_DIR}/{name}")
            utt_id = f"{speaker.speaker_id}-{CROSS_CHAPTER_ID}-{index:04d}"
            planned.append(Utterance(utt_id, speaker, CROSS_CHAPTER_ID, text))
    return planned
