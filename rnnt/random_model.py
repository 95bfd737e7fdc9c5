"""A flagfile's architecture with random weights, exported, for speed benchmarks.

A random joint network emits a token on almost every frame (blank is one class of V),
which would make the search far busier than a trained model's. The blank logit's bias is
therefore raised until blank wins `BLANK_RATE` of the frames on speech-like input, about
what a trained model does at 120 ms per encoder frame. The bias is set on real speech from
the tokenizer corpus: set on synthetic speech it did not transfer (the random model then
emitted ~2.2 tokens per frame on real input, making the search ~5x busier than a trained
model's).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from absl import flags

from rnnt.checkpoint import atomic_save, load_bundle, make_checkpoint
from rnnt.config import BLANK_ID, FeatureConfig, replace
from rnnt.corpus import read_corpus
from rnnt.export import export
from rnnt.features import compute_features
from rnnt.flags import run_config_from_flags
from rnnt.model import Transducer
from rnnt.runtimes import CONFIG_FILE
from rnnt.state import LstmState
from rnnt.text import normalize
from rnnt.tokenizer import Tokenizer
from rnnt.training import model_config_for_summary

log = logging.getLogger(__name__)

BLANK_RATE = 0.7  # fraction of frames on which the random model emits nothing
CALIBRATION_SECONDS = 30.0  # speech from the tokenizer corpus used to set the blank bias
CALIBRATION_CONTEXTS = 64  # random one-token predictor contexts it is set over
SEED = 0


def read_transcripts(corpus: Path) -> list[str]:
    """Normalised transcripts of a LibriSpeech-layout folder (no audio is opened)."""
    texts = []
    for transcript in sorted(corpus.rglob("*.trans.txt")):
        texts += [normalize(line.partition(" ")[2]) for line in transcript.read_text().splitlines()]
    if not texts:
        raise FileNotFoundError(f"{corpus}: no *.trans.txt transcripts to train a tokenizer on")
    return sorted(set(filter(None, texts)))


def calibrate_blank(model: Transducer, features: np.ndarray, blank_rate: float) -> None:
    """Raise the blank bias so blank is the argmax on `blank_rate` of (frame, context) pairs.

    Contexts are the predictor's outputs after the start token and after each of
    `CALIBRATION_CONTEXTS` random tokens, so the rate holds once tokens have been emitted.
    """
    generator = torch.Generator().manual_seed(SEED)
    tokens = torch.randint(2, model.config.vocab_size, (CALIBRATION_CONTEXTS, 1), generator=generator)
    with torch.no_grad():
        encoder_out, _ = model.encode(torch.from_numpy(features)[None])
        start, state = model.predict(torch.tensor([[BLANK_ID]]))
        after, _ = model.predict(tokens, LstmState(*(x.expand(-1, len(tokens), -1) for x in state)))
        contexts = torch.cat([start[:, 0], after[:, 0]])
        logits = model.join(encoder_out[0][:, None], contexts[None])
        others = logits.clone()
        others[..., BLANK_ID] = -torch.inf
        margin = others.max(dim=-1).values - logits[..., BLANK_ID]
        model.joint.out.bias[BLANK_ID] += float(torch.quantile(margin.flatten(), blank_rate)) + 1e-3


def calibration_features(corpus: Path, config: FeatureConfig) -> np.ndarray:
    """Features of the corpus's first `CALIBRATION_SECONDS` of speech, utterances joined."""
    samples: list[np.ndarray] = []
    for utterance in read_corpus(corpus):
        samples.append(utterance.load(config.sample_rate))
        if sum(map(len, samples)) >= CALIBRATION_SECONDS * config.sample_rate:
            break
    return compute_features(np.concatenate(samples), config)


def build_random_export(flagfile: str, work_dir: Path, tokenizer_corpus: Path) -> tuple[Path, Path]:
    """(checkpoint, export dir) for `flagfile`'s architecture; reused when present."""
    checkpoint, export_dir = work_dir / "model.pt", work_dir / "export"
    if checkpoint.is_file() and (export_dir / CONFIG_FILE).is_file():
        return checkpoint, export_dir
    flags.FLAGS(
        ["benchmark", *flags.FLAGS.read_flags_from_files([f"--flagfile={flagfile}"], force_gnu=False)]
    )
    config = run_config_from_flags()
    tokenizer = Tokenizer.train(read_transcripts(tokenizer_corpus), config.tokenizer)
    model_config = replace(model_config_for_summary(config), vocab_size=tokenizer.vocab_size)
    torch.manual_seed(SEED)
    model = Transducer(model_config).eval()
    calibrate_blank(model, calibration_features(tokenizer_corpus, config.feature), BLANK_RATE)
    configs = {**config.as_dict(), "model": model_config}
    atomic_save(make_checkpoint(model, tokenizer, configs), checkpoint)
    log.info("exporting %s with random weights to %s", flagfile, export_dir)
    export(load_bundle(checkpoint), export_dir, int8=True)
    return checkpoint, export_dir
