"""Every absl flag of the toolkit, defined once, and the builders that turn them into configs.

Each config dataclass field becomes a flag of the same name, type and default, with the
field's help text; flagfiles set them (`--flagfile=flagfiles/E4D1.txt`) and may include
other flagfiles. Scripts import this module and call `run_config_from_flags()` etc.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from absl import flags

from rnnt import atomic
from rnnt.cli import require_flags
from rnnt.config import (
    ALL_CONFIGS,
    AugmentConfig,
    DataConfig,
    DecodeConfig,
    FeatureConfig,
    ModelConfig,
    RunConfig,
    StreamConfig,
    TokenizerConfig,
    TrainConfig,
    replace,
)
from rnnt.config_flags import config_from_holders, define_config_flags
from rnnt.fusion import Fusion
from rnnt.hotwords import load_hotwords
from rnnt.lm import NgramLm, tokenizer_fingerprint
from rnnt.runtimes import BACKENDS, LoadedModel, load_model
from rnnt.tokenizer import Tokenizer

FLAGS = flags.FLAGS
C = TypeVar("C")

LM = flags.DEFINE_string("lm", "", "token n-gram LM (tools/train_lm.py) fused into beam search; empty: none")
HOTWORDS = flags.DEFINE_string(
    "hotwords",
    "",
    "file of phrases beam search favours, one per line (`phrase` or `phrase :score`); empty: none",
)

CONFIG_FLAGS: dict[type, dict[str, flags.FlagHolder[Any]]] = {
    cls: define_config_flags(cls) for cls in ALL_CONFIGS
}


def config_from_flags(cls: type[C], base: C | None = None) -> C:
    """The config `cls` with every field taken from its flag.

    With `base` (e.g. the settings a model was exported with), only the flags actually
    given, on the command line or in a flagfile, override it.
    """
    holders = CONFIG_FLAGS[cls]
    if base is None:
        return config_from_holders(cls, holders)
    return replace(base, **{name: holder.value for name, holder in holders.items() if holder.present})


def run_config_from_flags() -> RunConfig:
    """A `RunConfig` from the flags."""
    return RunConfig(
        feature=config_from_flags(FeatureConfig),
        tokenizer=config_from_flags(TokenizerConfig),
        model=config_from_flags(ModelConfig),
        data=config_from_flags(DataConfig),
        augment=config_from_flags(AugmentConfig),
        train=config_from_flags(TrainConfig),
        decode=config_from_flags(DecodeConfig),
    )


def decode_config_from_flags(base: DecodeConfig | None = None) -> DecodeConfig:
    return config_from_flags(DecodeConfig, base)


def lm_from_flags(tokenizer: Tokenizer) -> NgramLm | None:
    """The --lm file, checked against the model's tokenizer; None without --lm."""
    if not LM.value:
        return None
    return NgramLm.load(LM.value, tokenizer_fingerprint(tokenizer.model_proto))


def fusion_from_flags(tokenizer: Tokenizer, decode: DecodeConfig) -> Fusion:
    """The --lm and --hotwords, for the model's tokenizer."""
    hotwords = load_hotwords(HOTWORDS.value, tokenizer, decode.hotwords_score) if HOTWORDS.value else None
    return Fusion(lm_from_flags(tokenizer), hotwords)


def stream_config_from_flags() -> StreamConfig:
    return config_from_flags(StreamConfig)


def live_configs_from_flags(model: LoadedModel) -> tuple[StreamConfig, DecodeConfig, Fusion]:
    """What a `StreamingRecognizer` of `model` takes besides it: the stream config, the
    decode config (the model's own, overridden by flags) and the --lm and --hotwords."""
    decode = decode_config_from_flags(model.decode)
    return stream_config_from_flags(), decode, fusion_from_flags(model.tokenizer, decode)


@dataclass(frozen=True)
class RuntimeFlags:
    """--model, --backend, --precision and --threads of a script that runs a model."""

    model: flags.FlagHolder[str]
    backend: flags.FlagHolder[str]
    precision: flags.FlagHolder[str]
    threads: flags.FlagHolder[int]

    def load(self) -> LoadedModel:
        require_flags(self.model)
        return load_model(self.model.value, self.backend.value, self.precision.value, self.threads.value)


def define_runtime_flags(default_model: str = "") -> RuntimeFlags:
    """Define the flags of `RuntimeFlags` (for the scripts that run a model, not train.py)."""
    return RuntimeFlags(
        flags.DEFINE_string(
            "model", default_model, "checkpoint file (torch) or export directory (any backend)"
        ),
        flags.DEFINE_string("backend", "torch", f"runtime: {', '.join(BACKENDS)}"),
        flags.DEFINE_string("precision", "fp32", "fp32; int8 (onnx, needs export --int8); bf16 (openvino)"),
        flags.DEFINE_integer("threads", 0, "intra-op threads (0: the backend's default)", lower_bound=0),
    )


def write_flagfile(path: str | Path) -> None:
    """The resolved flags (every toolkit flag, explicit or default) as a flagfile."""
    lines = []
    for holders in CONFIG_FLAGS.values():
        lines += [FLAGS[name].serialize() or f"--{name}=" for name in holders]
    atomic.write_text(path, "\n".join(lines) + "\n")
