"""Shared fixtures: a tiny synthetic corpus and tiny configs (seeded, CPU, under tmp dirs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnt.checkpoint import atomic_save, make_checkpoint
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
from rnnt.corpus import read_librispeech
from rnnt.model import Transducer
from rnnt.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]
REAL_AUDIO = REPO.parent / "shared" / "real"
DEMO_MODEL = REPO / "models" / "demo" / "model.pt"  # the shipped demo model
# A sentence in which the demo model hears espeak-ng's en-us `inspector` as `in spector`.
INSPECTOR_SENTENCE = (
    "better hope the life inspector doesn't come around while you have your life in such a mess"
)
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


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path) -> Path:
    """A tiny random model whose char tokenizer covers the tiny corpus."""
    texts = [u.text for u in read_librispeech(tiny_corpus / "train")]
    tokenizer = Tokenizer.train(texts, TokenizerConfig(tokenizer_kind="char"))
    config = tiny_model_config(vocab_size=tokenizer.vocab_size, input_dim=FeatureConfig().feature_dim)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-model") / "model.pt"
    configs = {"feature": FeatureConfig(), "model": config, "decode": DecodeConfig()}
    atomic_save(make_checkpoint(Transducer(config), tokenizer, configs), path)
    return path


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    """A top-level script of the repository run with `args`, its output captured."""
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=300
    )


def eval_command(checkpoint: Path, corpus: Path) -> list[str]:
    """train.py --mode=eval of `checkpoint` on the tiny corpus's dev set."""
    return ["train.py", "--mode=eval", f"--checkpoint={checkpoint}", f"--eval_set={corpus / 'dev'}"]


def run_beam_scripts(checkpoint: Path, corpus: Path, *flags: str) -> str:
    """train.py --mode=eval on the dev set and stream.py on its first utterance, with beam
    search and `flags`; asserts both succeed and returns the evaluation's output."""
    evaluation = run_script(*eval_command(checkpoint, corpus), "--beam_size=2", *flags)
    assert evaluation.returncode == 0, evaluation.stderr[-2000:]
    audio = read_librispeech(corpus / "dev")[0].audio
    stream = run_script("stream.py", f"--model={checkpoint}", f"--input={audio}", "--beam_size=2", *flags)
    assert stream.returncode == 0, stream.stderr[-2000:]
    return evaluation.stdout


def assert_eval_refuses(checkpoint: Path, corpus: Path, cases: list[tuple[list[str], str]]) -> None:
    """Each (flags, message): the evaluation exits non-zero with `message`, no traceback."""
    for flags, message in cases:
        result = run_script(*eval_command(checkpoint, corpus), *flags)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr, result.stderr
        assert message in result.stderr, result.stderr


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
