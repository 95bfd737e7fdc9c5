"""A flagfile's architecture with random weights, exported, for speed benchmarks.

A random joint network emits a token on almost every frame (blank is one class of V),
which would make the search far busier than a trained model's. The blank logit's bias is
therefore raised until blank wins `BLANK_RATE` of the frames on speech-like input, about
what a trained model does at 120 ms per encoder frame.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from absl import flags

from rnnt.checkpoint import atomic_save, load_bundle, make_checkpoint
from rnnt.config import BLANK_ID, replace
from rnnt.export import export, synthetic_speech
from rnnt.features import compute_features
from rnnt.flags import run_config_from_flags
from rnnt.model import Transducer
from rnnt.runtimes import CONFIG_FILE
from rnnt.text import normalize
from rnnt.tokenizer import Tokenizer
from rnnt.training import model_config_for_summary

log = logging.getLogger(__name__)

BLANK_RATE = 0.7  # fraction of frames on which the random model emits nothing
CALIBRATION_SECONDS = 20.0  # synthetic speech used to set the blank bias
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
    """Raise the blank bias so blank is the argmax on `blank_rate` of the frames."""
    with torch.no_grad():
        encoder_out, _ = model.encode(torch.from_numpy(features)[None])
        pred, _ = model.predict(torch.tensor([[BLANK_ID]]))
        logits = model.join(encoder_out[0], pred[0])
        others = logits.clone()
        others[:, BLANK_ID] = -torch.inf
        margin = others.max(dim=1).values - logits[:, BLANK_ID]
        model.joint.out.bias[BLANK_ID] += float(torch.quantile(margin, blank_rate)) + 1e-3


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
    speech = synthetic_speech(config.feature.sample_rate, CALIBRATION_SECONDS, SEED)
    calibrate_blank(model, compute_features(speech, config.feature), BLANK_RATE)
    configs = {**config.as_dict(), "model": model_config}
    atomic_save(make_checkpoint(model, tokenizer, configs), checkpoint)
    log.info("exporting %s with random weights to %s", flagfile, export_dir)
    export(load_bundle(checkpoint), export_dir, int8=True)
    return checkpoint, export_dir
