"""The demo corpus: English speech from espeak-ng, flite, festival and SVOX Pico, in LibriSpeech layout.

Text comes from Debian's fortunes; dev and test use sentences and (voice, variant)
combinations never seen in training, and one flite voice held out whole. Modules, in
pipeline order: `text` (sentences), `voices` (speakers), `plan` (who says what, and the
ids), `render` (audio), `build` (files on disk).
"""

from rnnt.demo_corpus.build import BuildReport, build_demo_corpus
from rnnt.demo_corpus.config import DemoCorpusConfig, DemoCorpusError

__all__ = ["BuildReport", "DemoCorpusConfig", "DemoCorpusError", "build_demo_corpus"]
