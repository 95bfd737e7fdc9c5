"""Synthesise the seeded demo corpus (LibriSpeech layout) with espeak-ng and flite.

    python tools/make_demo_corpus.py [--output_dir=datasets/demo] [--cross_utterances=300]

The library is `rnnt.demo_corpus`. A finished corpus is detected by its stamp file and left
alone; an interrupted run renders only the missing audio files.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from absl import flags

try:
    from rnnt import cli
except ImportError:  # run as a script from a checkout where the package is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rnnt import cli
from rnnt.config_flags import config_from_holders, define_config_flags
from rnnt.demo_corpus import DemoCorpusConfig, DemoCorpusError, build_demo_corpus

FLAGS = flags.FLAGS
CORPUS_FLAGS = define_config_flags(DemoCorpusConfig)
flags.DEFINE_string("output_dir", "datasets/demo", "Corpus root (LibriSpeech layout below it).")
flags.DEFINE_integer("jobs", 2, "Worker processes.")
flags.DEFINE_integer(
    "cross_utterances",
    0,
    "Also render diagnostic sets under <output_dir>/cross/, this many utterances each: training "
    "sentences spoken by training speakers and by test speakers, and test sentences spoken by "
    "training speakers (0: none).",
)


def main(argv: Sequence[str]) -> None:
    """Builds the corpus (and the cross sets asked for), or reports that it is up to date."""
    del argv  # positional arguments are refused by cli.run
    config = config_from_holders(DemoCorpusConfig, CORPUS_FLAGS)
    try:
        report = build_demo_corpus(config, Path(FLAGS.output_dir), FLAGS.jobs, FLAGS.cross_utterances)
    except DemoCorpusError as error:
        print(error, file=sys.stderr)
        sys.exit(1)
    if report.up_to_date:
        print("corpus up to date")
    else:
        print(f"found {report.num_sentences} unique sentences")
        for split, stats in report.summary.items():
            print(f"{split}: " + ", ".join(f"{k}={v}" for k, v in stats.items()))
        print(f"elapsed: {report.elapsed_s:.1f} s")
    if report.cross_dirs:
        print(f"cross sets: {', '.join(map(str, report.cross_dirs))}")


if __name__ == "__main__":
    cli.run(main)
