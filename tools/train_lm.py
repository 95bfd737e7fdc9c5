"""Estimate a token n-gram LM for shallow fusion in beam search (`rnnt.lm`).

    python tools/train_lm.py --model=models/demo/model.pt --text=datasets/demo/train \\
        --dev=datasets/demo/dev --output=exports/demo/lm.npz
    python train.py --mode=eval --checkpoint=models/demo/model.pt --eval_set=datasets/demo/test \\
        --beam_size=4 --lm=exports/demo/lm.npz

--text takes JSONL manifests, LibriSpeech-layout folders and plain .txt files (one sentence a
line), comma-separated. Text is normalised as training transcripts are and tokenised with the
model's tokenizer, so the LM only fits that model (its file records which). Keep the sentences
of any set you score on out of --text; --dev prints the LM's perplexity on one.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from rnnt import cli
from rnnt.corpus import read_sentences
from rnnt.lm import NgramLm, tokenizer_fingerprint
from rnnt.runtimes import load_model

_MODEL = flags.DEFINE_string(
    "model", "models/demo/model.pt", "checkpoint or export directory (for its tokenizer)"
)
_TEXT = flags.DEFINE_string(
    "text", "", "training text: manifests, LibriSpeech folders, .txt files; comma-separated"
)
_DEV = flags.DEFINE_string("dev", "", "optional held-out text (same forms) to report perplexity on")
_OUTPUT = flags.DEFINE_string("output", "", "LM file to write (.npz)")
_ORDER = flags.DEFINE_integer("order", 5, "n-gram order in tokens (5: the best on the demo dev set)")
_DISCOUNT = flags.DEFINE_float("discount", 0.75, "Kneser-Ney absolute discount")


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    cli.require_flags(_TEXT, _OUTPUT)
    model_path = Path(_MODEL.value)
    tokenizer = load_model(model_path, "torch" if model_path.is_file() else "onnx").tokenizer
    sentences = read_sentences(_TEXT.value)  # each once: a sentence read by two speakers is one sentence
    dev = read_sentences(_DEV.value) if _DEV.value else []  # read first: a bad --dev fails before training
    lm = NgramLm.train(
        (tokenizer.encode(s) for s in sentences),
        tokenizer.vocab_size,
        tokenizer_fingerprint(tokenizer.model_proto),
        _ORDER.value,
        _DISCOUNT.value,
    )
    lm.save(_OUTPUT.value)
    size_mb = Path(_OUTPUT.value).stat().st_size / 1e6
    print(f"wrote {_OUTPUT.value}: {lm.order}-gram over {len(sentences)} sentences ({size_mb:.1f} MB)")
    if dev:
        perplexity, count = lm.perplexity(tokenizer.encode(s) for s in dev)
        print(f"{_DEV.value}: perplexity {perplexity:.2f} per token ({count} tokens)")


if __name__ == "__main__":
    cli.run(main)
