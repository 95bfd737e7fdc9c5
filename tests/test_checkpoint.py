"""Checkpoints: save -> load gives the same model, tokenizer and features; bad files rejected;
averaging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from rnnt import atomic
from rnnt.checkpoint import (
    FORMAT,
    CheckpointError,
    atomic_save,
    average_checkpoints,
    load_bundle,
    load_weights,
    make_checkpoint,
    prune_checkpoints,
    step_checkpoints,
)
from rnnt.config import DecodeConfig, FeatureConfig, TokenizerConfig, replace
from rnnt.model import Transducer
from rnnt.tokenizer import Tokenizer

from .conftest import tiny_model_config

TEXTS = ["the quick brown fox", "jumps over the lazy dog", "hello world"]
FEATURES = FeatureConfig(feature_kind="kaldi_fbank", hop_length=320, stack_frames=2)
DECODE = DecodeConfig(max_symbols_per_frame=3, suppress_unk=False)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(TEXTS, TokenizerConfig(tokenizer_kind="char"))


def tiny_model(tokenizer: Tokenizer, hidden: int = 16, seed: int = 0) -> Transducer:
    config = tiny_model_config(
        vocab_size=tokenizer.vocab_size,
        input_dim=FEATURES.feature_dim,
        encoder_hidden=hidden,
        predictor_hidden=hidden,
        joint_dim=12,
    )
    torch.manual_seed(seed)
    return Transducer(config).eval()


def configs_of(model: Transducer) -> dict[str, Any]:
    return {"feature": FEATURES, "model": model.config, "decode": DECODE}


@torch.no_grad()
def outputs(model: Transducer, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    enc, _ = model.encode(features)
    pred, _ = model.predict(tokens)
    return model.join(enc[:, :, None], pred[:, None])


def test_save_load_round_trip(tmp_path: Path, tokenizer: Tokenizer) -> None:
    model = tiny_model(tokenizer)
    path = tmp_path / "models" / "7.pt"
    atomic_save(make_checkpoint(model, tokenizer, configs_of(model), step=7), path)
    assert [p.name for p in path.parent.iterdir()] == ["7.pt"]  # no temporary file left

    bundle = load_bundle(path)
    torch.manual_seed(1)
    features = torch.randn(2, 10, FEATURES.feature_dim)
    tokens = torch.randint(1, tokenizer.vocab_size, (2, 4))
    assert torch.equal(outputs(bundle.model, features, tokens), outputs(model, features, tokens))
    assert not bundle.model.training
    assert bundle.model.config == model.config
    assert bundle.features == FEATURES
    assert bundle.decode == DECODE
    assert bundle.tokenizer.model_proto == tokenizer.model_proto
    for text in TEXTS:
        assert bundle.tokenizer.encode(text) == tokenizer.encode(text)
    assert bundle.configs["model"]["encoder_hidden"] == 16


def test_atomic_save_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "latest.pt"
    atomic_save({"value": 1}, path)
    atomic_save({"value": 2}, path)
    assert torch.load(path, weights_only=True) == {"value": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def test_atomic_writes_get_the_permissions_of_plain_writes(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic.write_text(tmp_path / "atomic.txt", "x")
    assert (tmp_path / "atomic.txt").stat().st_mode == plain.stat().st_mode


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "out" / "rows.json"
    atomic.write_text(path, "old\n")
    with pytest.raises(RuntimeError, match="killed"), atomic.atomic_open(path) as file:
        file.write("half a new fi")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old\n"
    assert [p.name for p in path.parent.iterdir()] == ["rows.json"]  # no temporary left behind


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nothing.pt"
    with pytest.raises(CheckpointError, match=f"{path}: no such checkpoint"):
        load_bundle(path)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(CheckpointError, match=f"{path}: not a readable checkpoint"):
        load_bundle(path)


@pytest.mark.parametrize("content", [{"model": {}}, {"format": "something-else"}, [1, 2, 3]])
def test_not_our_format(tmp_path: Path, content: object) -> None:
    path = tmp_path / "foreign.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=f"{path}: not an rnnt checkpoint.*{FORMAT}"):
        load_bundle(path)


def test_weights_of_another_architecture(tmp_path: Path, tokenizer: Tokenizer) -> None:
    model = tiny_model(tokenizer, hidden=16)
    other = tiny_model(tokenizer, hidden=20)
    checkpoint = make_checkpoint(model, tokenizer, configs_of(model))
    checkpoint["model"] = other.state_dict()
    path = tmp_path / "mismatch.pt"
    atomic_save(checkpoint, path)
    with pytest.raises(CheckpointError, match=f"{path}: weights do not match its model config"):
        load_bundle(path)


def test_fine_tuning_refuses_other_features(tokenizer: Tokenizer) -> None:
    """Same frame width, other frames (a 10 ms log-mel instead of the 20 ms Kaldi fbank the
    weights learnt): refused, not silently trained on."""
    model = tiny_model(tokenizer)
    checkpoint = make_checkpoint(model, tokenizer, configs_of(model))
    other = replace(FEATURES, feature_kind="logmel", hop_length=160)
    assert other.feature_dim == FEATURES.feature_dim
    with pytest.raises(CheckpointError, match="another model than this run's: feature_kind='kaldi_fbank'"):
        load_weights(tiny_model(tokenizer, seed=1), other, checkpoint, "init.pt")
    fresh = tiny_model(tokenizer, seed=1)
    load_weights(fresh, FEATURES, checkpoint, "init.pt")
    assert all(
        torch.equal(a, b)
        for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True)
    )


def test_prune_keeps_the_latest_steps(tmp_path: Path) -> None:
    for name in ["9.pt", "10.pt", "100.pt", "2.pt", "best.pt", "latest.pt", "1000.txt"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in step_checkpoints(tmp_path)] == ["2.pt", "9.pt", "10.pt", "100.pt"]
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "10.pt",
        "100.pt",
        "1000.txt",
        "best.pt",
        "latest.pt",
    ]
    prune_checkpoints(tmp_path, keep=0)  # 0 keeps everything
    assert len(step_checkpoints(tmp_path)) == 2


def test_average_checkpoints_is_the_mean_of_the_weights(tmp_path: Path, tokenizer: Tokenizer) -> None:
    models = [tiny_model(tokenizer, seed=seed) for seed in (1, 2, 3)]
    paths = []
    for step, model in enumerate(models):
        paths.append(tmp_path / f"{step}.pt")
        checkpoint = make_checkpoint(model, tokenizer, configs_of(model), step=step, optimizer={"x": 1})
        atomic_save(checkpoint, paths[-1])
    averaged = load_bundle(average_checkpoints(paths, tmp_path / "avg.pt")).model
    for name, tensor in averaged.state_dict().items():
        expected = sum(model.state_dict()[name] for model in models) / len(models)
        torch.testing.assert_close(tensor, expected, atol=1e-6, rtol=0)
    assert not torch.equal(
        averaged.state_dict()["joint.out.weight"], models[-1].state_dict()["joint.out.weight"]
    )
    shipped = torch.load(tmp_path / "avg.pt", weights_only=True)
    assert "optimizer" not in shipped and shipped["averaged_from"] == [str(p) for p in paths]


def test_average_checkpoints_of_different_models(tmp_path: Path, tokenizer: Tokenizer) -> None:
    paths = [tmp_path / "a.pt", tmp_path / "b.pt"]
    for path, hidden in zip(paths, (16, 20), strict=True):
        model = tiny_model(tokenizer, hidden=hidden)
        atomic_save(make_checkpoint(model, tokenizer, configs_of(model)), path)
    with pytest.raises(CheckpointError, match="cannot average"):
        average_checkpoints(paths, tmp_path / "avg.pt")
