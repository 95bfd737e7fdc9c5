"""A hotwords list for measuring contextual biasing: the words of an evaluation set's
transcripts that no training transcript holds, plus distractors (such words of another set).

    python tools/hotword_list.py --train=datasets/demo/train --eval_set=datasets/demo/test \\
        --distractors=datasets/demo/dev --output=logs/test-hotwords.txt
    python train.py --mode=eval --checkpoint=models/demo/model.pt --eval_set=datasets/demo/test \\
        --beam_size=4 --hotwords=logs/test-hotwords.txt

The list is made from the evaluation set's own references, as biasing evaluations make theirs
(a real user lists the names and terms they expect): it measures how much of what is listed
the search recovers (`--mode=eval` prints the recall and false alarms), not a WER to claim.
"""

from __future__ import annotations

from absl import flags

from rnnt import atomic, cli
from rnnt.corpus import read_sentences
from rnnt.hotwords import unseen_words

_TRAIN = flags.DEFINE_string(
    "train", "", "training transcripts: manifests, LibriSpeech folders, .txt; comma-separated"
)
_EVAL_SET = flags.DEFINE_string("eval_set", "", "the set whose unseen words are listed (same forms)")
_DISTRACTORS = flags.DEFINE_string("distractors", "", "optional set whose unseen words are listed too")
_OUTPUT = flags.DEFINE_string("output", "", "hotwords file to write, one word a line")


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    cli.require_flags(_TRAIN, _EVAL_SET, _OUTPUT)
    train = read_sentences(_TRAIN.value)
    words = unseen_words(train, read_sentences(_EVAL_SET.value))
    distractors = []
    if _DISTRACTORS.value:
        distractors = sorted(set(unseen_words(train, read_sentences(_DISTRACTORS.value))) - set(words))
    atomic.write_text(_OUTPUT.value, "".join(f"{word}\n" for word in words + distractors))
    unseen = f"{len(words)} words of {_EVAL_SET.value} unseen in training"
    print(f"wrote {_OUTPUT.value}: {unseen}, {len(distractors)} distractors")


if __name__ == "__main__":
    cli.run(main)
