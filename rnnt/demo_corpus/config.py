"""What determines the demo corpus's content (its parameters stamp)."""

from __future__ import annotations

import dataclasses

from rnnt.config import FRACTION, NON_NEGATIVE, POSITIVE, Checked, described

# 2: slt (flite's only female voice) is never held out; 3: festival voices in train, chapter ids
# counted per split, 800 train speakers; 4: SVOX Pico voices in train, 900 train speakers, each
# train sentence spoken by two of them; 5: a fresh Pico engine per utterance (4's Pico audio
# depended on which utterances the same render worker had spoken before); 6: six more people in
# train (Debian's MBROLA, don and rab voices), more festival speakers, fewer espeak-ng ones;
# 7: renderings cut short (MBROLA's errors in festival, over 35 characters a second) left out;
# 8: RHVoice's six English voices in train, fewer festival and MBROLA speakers.
GENERATOR_VERSION = 8


class DemoCorpusError(Exception):
    """The corpus cannot be built as asked (missing program or voice, too few sentences, foreign files)."""


@dataclasses.dataclass(frozen=True)
class DemoCorpusConfig(Checked):
    """Corpus parameters; the same values give the same corpus, byte for byte."""

    seed: int = described(0, "seed for every random choice")
    num_dev_sentences: int = described(300, "sentences held out for dev", check=POSITIVE)
    num_test_sentences: int = described(300, "sentences held out for test", check=POSITIVE)
    num_train_speakers: int = described(900, "synthetic train speakers", check=POSITIVE)
    num_dev_speakers: int = described(10, "synthetic dev speakers", check=POSITIVE)
    num_test_speakers: int = described(10, "synthetic test speakers", check=POSITIVE)
    renderings: int = described(2, "renderings of each train sentence by different speakers", check=POSITIVE)
    max_train_utterances: int = described(0, "cap on train utterances (0: no cap)", check=NON_NEGATIVE)
    noise_prob: float = described(0.3, "probability that an utterance gets additive noise", check=FRACTION)
    min_snr_db: float = described(10.0, "lowest SNR of added noise, dB")
    max_snr_db: float = described(30.0, "highest SNR of added noise, dB")
    max_gain_db: float = described(
        6.0, "random gain in [-max_gain_db, +max_gain_db] for every utterance, dB", check=NON_NEGATIVE
    )
    fortunes_dir: str = described("/usr/share/games/fortunes", "directory with fortune text files")

    def params(self) -> dict:
        """The stamp that tells a finished corpus with these parameters (and generator)."""
        return {"generator_version": GENERATOR_VERSION, **dataclasses.asdict(self)}
