"""Score a sherpa-onnx export with sherpa-onnx itself, and check it against the toolkit.

    python export_onnx.py --format=sherpa-onnx --checkpoint=MODEL.pt --output_dir=exports/sherpa
    python tools/eval_sherpa.py --export_dir=exports/sherpa --eval_set=datasets/demo/test \\
        [--checkpoint=MODEL.pt] [--precision=int8]

Each utterance goes through sherpa-onnx's `OnlineRecognizer` (its features, its encoder
chunks, its greedy search), followed by one chunk of silence so that it decodes to the end of
the speech, and the corpus WER/CER is printed. With --checkpoint, the toolkit decodes the same
samples with sherpa-onnx's search settings (one token per encoder frame, `<unk>` allowed) over
the same frames, and the tool prints its WER and how many transcripts differ (0 is parity).
"""

from __future__ import annotations

from absl import flags

from rnnt import cli
from rnnt.sherpa import compare_with_sherpa

_EXPORT_DIR = flags.DEFINE_string("export_dir", "", "directory export_onnx.py --format=sherpa-onnx wrote")
_EVAL_SET = flags.DEFINE_string("eval_set", "", "JSONL manifest, LibriSpeech or TED-LIUM directory")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "", "the exported checkpoint, to compare transcripts")
_PRECISION = flags.DEFINE_enum("precision", "fp32", ["fp32", "int8"], "which graphs sherpa-onnx runs")
_THREADS = flags.DEFINE_integer("num_threads", 1, "sherpa-onnx's threads", lower_bound=1)


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    cli.require_flags(_EXPORT_DIR, _EVAL_SET)
    report = compare_with_sherpa(
        _EXPORT_DIR.value, _EVAL_SET.value, _CHECKPOINT.value or None, _PRECISION.value, _THREADS.value
    )
    rates = report.sherpa
    print(
        f"sherpa-onnx {_PRECISION.value}: WER {100 * rates.wer:.2f}% CER {100 * rates.cer:.2f}% "
        f"({rates.num_utterances} utterances, {report.seconds:.0f} s of audio in {report.sherpa_s:.1f} s)"
    )
    if report.toolkit is not None:
        print(
            f"toolkit greedy (sherpa-onnx's settings): WER {100 * report.toolkit.wer:.2f}% "
            f"CER {100 * report.toolkit.cer:.2f}%; transcripts differing: {report.differing}"
        )


if __name__ == "__main__":
    cli.run(main)
