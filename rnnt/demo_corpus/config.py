"""What determines the demo corpus's content (its parameters stamp)."""

from __future__ import annotations

import dataclasses

GENERATOR_VERSION = 2  # 2: slt (flite's only female voice) is never held out


class DemoCorpusError(Exception):
    """The corpus cannot be built as asked (missing program or voice, too few sentences, foreign files)."""


@dataclasses.dataclass(frozen=True)
class DemoCorpusConfig:
    """Corpus parameters; the same values give the same corpus, byte for byte."""

    seed: int = 0  # every random choice
    num_dev_sentences: int = 300  # sentences held out for dev
    num_test_sentences: int = 300  # sentences held out for test
    num_train_speakers: int = 120
    num_dev_speakers: int = 10
    num_test_speakers: int = 10
    renderings: int = 1  # renderings of each train sentence by different speakers
    max_train_utterances: int = 0  # cap on train utterances (0: none)
    noise_prob: float = 0.3  # probability that an utterance gets additive noise
    min_snr_db: float = 10.0  # lowest SNR of that noise, dB
    max_snr_db: float = 30.0  # highest SNR of that noise, dB
    max_gain_db: float = 6.0  # random gain in [-max_gain_db, +max_gain_db], dB
    fortunes_dir: str = "/usr/share/games/fortunes"  # fortune text files

    def params(self) -> dict:
        """The stamp that tells a finished corpus with these parameters (and generator)."""
        return {"generator_version": GENERATOR_VERSION, **dataclasses.asdict(self)}
