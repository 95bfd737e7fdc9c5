"""Shared fixtures: a tiny synthetic corpus and tiny configs (seeded, CPU, under tmp dirs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnt.config import (
    AugmentConfig,
    DataConfig,
    DecodeConfig,
    FeatureConfig,
    ModelConfig,
    RunConfig,
    TokenizerConfig,
    TrainConfig,
)

REPO = Path(__file__).resolve().parents[1]
REAL_AUDIO = REPO.parent / "shared" / "real"
# The recordings live beside the checkout (shared/real), not in it: a clone elsewhere skips these.
needs_real_audio = pytest.mark.skipif(not REAL_AUDIO.is_dir(), reason=f"{REAL_AUDIO} not present")

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LibriSpeech-layout corpus of 24 train, 4 dev and 4 test TTS utterances."""
    out = tmp_path_factory.mktemp("corpus") / "demo"
    command = [
        sys.executable,
        str(REPO / "tools" / "make_demo_corpus.py"),
        f"--output_dir={out}",
        "--max_train_utterances=24",
        "--num_dev_sentences=4",
        "--num_test_sentences=4",
        "--num_train_speakers=3",
        "--noise_prob=0",
        "--jobs=1",
    ]
    subprocess.run(command, check=True, capture_output=True, cwd=REPO)
    return out


TINY_MODEL = {
    "encoder_layers": 2,
    "encoder_hidden": 16,
    "encoder_output": 12,
    "reduction_after": 1,
    "predictor_embed": 8,
    "predictor_hidden": 16,
    "predictor_output": 12,
    "joint_dim": 16,
}


def tiny_model_config(**changes: object) -> ModelConfig:
    """A model of a few thousand parameters for fast tests; `changes` override sizes."""
    return ModelConfig(**{**TINY_MODEL, **changes})  # type: ignore[arg-type]


def tiny_run_config(tmp_path: Path, corpus: Path, **train_changes: object) -> RunConfig:
    """A ~50k-parameter model on the tiny corpus, no augmentation, char tokenizer."""
    train = TrainConfig(
        name="tiny",
        logs_root=str(tmp_path / "logs"),
        max_steps=4,
        batch_seconds=12.0,
        lr=3e-3,
        warmup_steps=2,
        eval_every=1000,
        checkpoint_every=2,
        keep_checkpoints=10,
        log_every=1,
        progress=False,
    )
    train = TrainConfig(**{**train.__dict__, **train_changes})
    return RunConfig(
        feature=FeatureConfig(),
        tokenizer=TokenizerConfig(tokenizer_kind="char"),
        model=ModelConfig(
            encoder_layers=2,
            encoder_hidden=48,
            encoder_output=48,
            reduction_after=1,
            predictor_embed=16,
            predictor_hidden=48,
            predictor_output=48,
            joint_dim=48,
        ),
        data=DataConfig(train_manifests=str(corpus / "train"), dev_manifest=str(corpus / "dev")),
        augment=AugmentConfig(time_masks=0, freq_masks=0),
        train=train,
        decode=DecodeConfig(),
    )
