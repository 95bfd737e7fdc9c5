"""Self-describing checkpoints: configs + tokenizer + weights (+ training state).

Evaluation, export and streaming rebuild everything from a checkpoint alone.
Files are written atomically (temporary file, fsync, rename), so a kill never leaves a
truncated checkpoint behind.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rnnt.atomic import atomic_open
from rnnt.config import DecodeConfig, FeatureConfig, ModelConfig, from_dict
from rnnt.model import Transducer
from rnnt.tokenizer import Tokenizer

FORMAT = "rnnt-checkpoint-1"

log = logging.getLogger(__name__)


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says why."""


@dataclass
class ModelBundle:
    """Everything inference needs, rebuilt from one checkpoint."""

    model: Transducer
    features: FeatureConfig
    tokenizer: Tokenizer
    decode: DecodeConfig
    configs: dict[str, dict[str, Any]]  # every config the run used, as dicts


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file beside `path`, then rename over it."""
    with atomic_open(path, "wb") as file:
        torch.save(obj, file)


def make_checkpoint(
    model: Transducer, tokenizer: Tokenizer, configs: dict[str, Any], **training: Any
) -> dict[str, Any]:
    """The checkpoint dict; `configs` maps names to config dataclasses."""
    return {
        "format": FORMAT,
        "configs": {name: dataclasses.asdict(cfg) for name, cfg in configs.items()},
        "tokenizer": tokenizer.model_proto,
        "model": model.state_dict(),
        **training,
    }


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__})") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an rnnt checkpoint (format {FORMAT} expected)")
    return checkpoint


def bundle_from_checkpoint(checkpoint: dict[str, Any], source: str = "checkpoint") -> ModelBundle:
    configs = checkpoint["configs"]
    model = Transducer(from_dict(ModelConfig, configs["model"]))
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{source}: weights do not match its model config ({error})") from error
    return ModelBundle(
        model=model.eval(),
        features=from_dict(FeatureConfig, configs["feature"]),
        tokenizer=Tokenizer(checkpoint["tokenizer"]),
        decode=from_dict(DecodeConfig, configs.get("decode", {})),
        configs=configs,
    )


def load_weights(model: Transducer, features: FeatureConfig, checkpoint: dict[str, Any], source: str) -> None:
    """Load `checkpoint`'s weights into `model`, built from the same model and feature configs
    (fine-tuning, resuming): other features would feed the weights frames they never saw."""
    changed = _changed_fields(from_dict(ModelConfig, checkpoint["configs"]["model"]), model.config)
    changed += _changed_fields(from_dict(FeatureConfig, checkpoint["configs"]["feature"]), features)
    if changed:
        raise CheckpointError(f"{source}: another model than this run's: {', '.join(changed)}")
    model.load_state_dict(checkpoint["model"])
    train_state = checkpoint.get("train_state", {})
    log.info(
        "weights from %s (its step %s, %.1f training minutes)",
        source,
        train_state.get("step", "?"),
        train_state.get("train_seconds", 0.0) / 60,
    )


def _changed_fields(saved: Any, current: Any) -> list[str]:
    """`name=saved (run: current)` for each field of two configs of one class that differs."""
    return sorted(
        f"{name}={getattr(saved, name)!r} (run: {getattr(current, name)!r})"
        for name in (f.name for f in dataclasses.fields(current))
        if getattr(saved, name) != getattr(current, name)
    )


def load_bundle(path: str | Path) -> ModelBundle:
    """Model, features, tokenizer and decode settings from a checkpoint file."""
    return bundle_from_checkpoint(read_checkpoint(path), str(path))


def step_checkpoints(directory: str | Path) -> list[Path]:
    """`<step>.pt` files in `directory`, oldest step first."""
    return sorted(
        (p for p in Path(directory).glob("*.pt") if p.stem.isdigit()),
        key=lambda p: int(p.stem),
    )


def prune_checkpoints(directory: str | Path, keep: int) -> None:
    for old in step_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


TRAINING_KEYS = ("optimizer", "schedule", "rng")  # what inference does not need


def save_for_inference(source: str | Path, destination: str | Path) -> Path:
    """Copy a checkpoint without optimiser, schedule and RNG state (a model to ship)."""
    atomic_save(_without_training_state(read_checkpoint(source)), destination)
    return Path(destination)


def _without_training_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in checkpoint.items() if key not in TRAINING_KEYS}


def average_checkpoints(sources: Sequence[str | Path], destination: str | Path) -> Path:
    """Write the mean of the weights of `sources`, checkpoints of one model, as a model to ship
    (icefall's `--avg`): its other contents come from the last source.

    Means are taken in float64; non-float tensors are taken from the last source.
    """
    if not sources:
        raise CheckpointError("no checkpoints to average")
    checkpoints = [read_checkpoint(path) for path in sources]
    last = checkpoints[-1]
    for path, checkpoint in zip(sources, checkpoints, strict=True):
        if (
            checkpoint["configs"]["model"] != last["configs"]["model"]
            or checkpoint["tokenizer"] != last["tokenizer"]
        ):
            raise CheckpointError(f"{path}: another model or tokenizer than {sources[-1]}; cannot average")
    averaged = {}
    for name, tensor in last["model"].items():
        if tensor.is_floating_point():
            total = sum(checkpoint["model"][name].double() for checkpoint in checkpoints)
            averaged[name] = (total / len(checkpoints)).to(tensor.dtype)
        else:
            averaged[name] = tensor
    slim = _without_training_state(last) | {"model": averaged, "averaged_from": [str(p) for p in sources]}
    atomic_save(slim, destination)
    return Path(destination)
