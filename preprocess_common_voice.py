"""Convert a Common Voice release to 16 kHz mono FLAC once, with a JSONL manifest per split.

python preprocess_common_voice.py --cv_dir=datasets/cv-corpus-17.0/en --output_dir=datasets/common_voice
python train.py --flagfile=flagfiles/E6D2.txt --train_manifests=datasets/common_voice/train.jsonl,...

Runs ffmpeg on --jobs clips at once. Safe to stop and run again: converted clips are kept and
skipped, a clip in progress is redone. Missing or undecodable clips are skipped and counted.
"""

from __future__ import annotations

import logging

from absl import flags

from rnnt import cli
from rnnt.preparation import prepare_common_voice, summarize

_CV_DIR = flags.DEFINE_string("cv_dir", "", "a Common Voice language folder (its *.tsv and clips/)")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "datasets/common_voice", "where clips/ and <split>.jsonl go")
_SPLITS = flags.DEFINE_list(
    "splits", ["train", "dev", "test"], "TSV files to convert (validated, other, ...)"
)
_JOBS = flags.DEFINE_integer("jobs", 0, "ffmpeg processes at once (0: one per core)", lower_bound=0)
_MAX_CLIPS = flags.DEFINE_integer(
    "max_clips", 0, "convert only each split's first N clips (0: all)", lower_bound=0
)


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    cli.require_flags(_CV_DIR, _SPLITS)
    reports = []
    for split in _SPLITS.value:
        logging.info("converting %s", split)
        reports.append(
            prepare_common_voice(_CV_DIR.value, split, _OUTPUT_DIR.value, _JOBS.value, _MAX_CLIPS.value)
        )
    print(summarize(reports))
    empty = [str(r.manifest) for r in reports if not r.utterances]
    if empty:
        raise ValueError(f"no utterance prepared for {', '.join(empty)} (see the counts above)")


if __name__ == "__main__":
    cli.run(main)
