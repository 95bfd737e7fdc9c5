"""A flagfile's architecture with random weights, exported, for speed benchmarks.

A random joint network emits a token on almost every frame (blank is one class of V),
which would make the search far busier than a trained model's. The blank logit's bias is
therefore raised until greedy search on the benchmark's speech emits `TOKENS_PER_SECOND`,
about what a trained BPE model emits on read English.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from rnnt.checkpoint import atomic_save, load_bundle, make_checkpoint
from rnnt.config import BLANK_ID, DecodeConfig, RunConfig, model_config_for_summary, replace
from rnnt.decoding import encode_utterances, greedy_search
from rnnt.export import export
from rnnt.features import compute_features
from rnnt.hypothesis import initial_hypothesis
from rnnt.model import Transducer
from rnnt.runtimes import is_current_export
from rnnt.runtimes.pytorch import TorchRuntime
from rnnt.text import normalize
from rnnt.tokenizer import Tokenizer

log = logging.getLogger(__name__)

TOKENS_PER_SECOND = 4.0  # ~3 words per second of read speech, ~1.3 BPE pieces per word
CALIBRATION_STEPS = 12  # bisection steps on the blank bias
SEED = 0


def read_transcripts(corpus: Path) -> list[str]:
    """Normalised transcripts of a LibriSpeech-layout folder (no audio is opened)."""
    texts = []
    for transcript in sorted(corpus.rglob("*.trans.txt")):
        texts += [normalize(line.partition(" ")[2]) for line in transcript.read_text().splitlines()]
    if not texts:
        raise FileNotFoundError(f"{corpus}: no *.trans.txt transcripts to train a tokenizer on")
    return sorted(set(filter(None, texts)))


def calibrate_blank(model: Transducer, utterances: Sequence[np.ndarray], tokens_per_frame: float) -> None:
    """Raise the blank bias until greedy search, decoding each of `utterances` (T, D) from
    the start as a benchmark does, emits about `tokens_per_frame` tokens per encoder frame.

    The rate is measured by decoding, because the predictor contexts that matter are the
    ones the model's own tokens lead to: a bias set on one-token contexts, or on one long
    utterance, still let the random model emit ~2.7 tokens per frame on other utterances.
    """
    runtime = TorchRuntime(model)
    encoder_out, lengths = encode_utterances(runtime, utterances)  # the bias is joint-only
    starts = [initial_hypothesis(runtime)] * len(utterances)
    bias = model.joint.out.bias
    start = float(bias[BLANK_ID].detach())

    def set_offset(offset: float) -> None:
        with torch.no_grad():
            bias[BLANK_ID] = start + offset

    def emission_rate(offset: float) -> float:
        set_offset(offset)
        hyps = greedy_search(runtime, encoder_out, lengths, starts, DecodeConfig())
        return sum(len(hyp.tokens) for hyp in hyps) / sum(lengths)

    low, high = 0.0, 1.0
    while emission_rate(high) > tokens_per_frame:
        low, high = high, 2 * high
    for _ in range(CALIBRATION_STEPS):
        middle = (low + high) / 2
        low, high = (middle, high) if emission_rate(middle) > tokens_per_frame else (low, middle)
    set_offset(high)


def build_random_export(
    config: RunConfig, work_dir: Path, tokenizer_corpus: Path, speech: Sequence[np.ndarray]
) -> tuple[Path, Path]:
    """(checkpoint, export dir) for `config`'s architecture; reused when present.

    The blank bias is set on `speech` (utterances' samples at the model's rate): a random
    model's emission rate depends on its input so much (~0.5 tokens per frame on training
    utterances became ~1.8 on test ones) that it is set on the audio to be benchmarked.
    """
    checkpoint, export_dir = work_dir / "model.pt", work_dir / "export"
    if checkpoint.is_file():
        if not is_current_export(export_dir):  # from an older export format: the same weights again
            export(load_bundle(checkpoint), export_dir, int8=True)
        return checkpoint, export_dir
    tokenizer = Tokenizer.train(read_transcripts(tokenizer_corpus), config.tokenizer)
    model_config = replace(model_config_for_summary(config), vocab_size=tokenizer.vocab_size)
    torch.manual_seed(SEED)
    model = Transducer(model_config).eval()
    features = [compute_features(samples, config.feature) for samples in speech]
    tokens_per_frame = TOKENS_PER_SECOND * config.feature.encoder_frame_s(model_config.time_reduction)
    calibrate_blank(model, features, tokens_per_frame)
    configs = {**config.as_dict(), "model": model_config}
    atomic_save(make_checkpoint(model, tokenizer, configs), checkpoint)
    log.info("exporting %s with random weights to %s", config.train.name, export_dir)
    export(load_bundle(checkpoint), export_dir, int8=True)
    return checkpoint, export_dir
