"""Frozen, typed configuration, one dataclass per component.

Every field carries its unit in `help`; `rnnt/flags.py` turns each field into an absl flag
of the same name, so a flagfile line `--encoder_hidden=256` sets `ModelConfig.encoder_hidden`.
Field names are therefore unique across all configs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

BLANK_ID = 0  # The transducer blank; also the predictor's start-of-sequence input.
UNK_ID = 1  # The tokenizer's unknown piece.
NO_TOKEN = -1  # A stateless predictor's context before the start token (zero embedding).


# What a field's value must be (`described(..., check=...)`), tested when a config is built,
# so a bad flag or a hand-edited checkpoint fails at once with one line naming the field.
POSITIVE = "positive"
NON_NEGATIVE = "non-negative"
FRACTION = "between 0 and 1"
BELOW_ONE = "at least 0 and below 1"
_CHECKS = {
    POSITIVE: lambda value: value > 0,
    NON_NEGATIVE: lambda value: value >= 0,
    FRACTION: lambda value: 0 <= value <= 1,
    BELOW_ONE: lambda value: 0 <= value < 1,
}


def described(default: Any, help: str, check: str = "", choices: tuple[str, ...] = ()) -> Any:
    """A dataclass field with a help text (its absl flag's; `rnnt.config_flags`) and optionally
    a `check` its value must pass (POSITIVE, NON_NEGATIVE, ...) or `choices` it must be in."""
    return field(default=default, metadata={"help": help, "check": check, "choices": choices})


class Checked:
    """Base of the configs: `__post_init__` raises ValueError for a field failing its check."""

    def __post_init__(self) -> None:
        for config_field in dataclasses.fields(self):  # type: ignore[arg-type]
            check = config_field.metadata.get("check", "")
            value = getattr(self, config_field.name)
            if check and not _CHECKS[check](value):
                raise ValueError(f"{config_field.name} must be {check}, got {value}")
            choices = config_field.metadata.get("choices", ())
            if choices and value not in choices:
                raise ValueError(f"{config_field.name} must be one of {', '.join(choices)}; got {value!r}")


def _derived(default: Any, help: str, check: str = "") -> Any:
    """A field set from other components (tokenizer, features), not by a flag."""
    return field(default=default, metadata={"help": help, "flag": False, "check": check})


@dataclass(frozen=True)
class FeatureConfig(Checked):
    """Audio -> stacked log-mel frames. Defaults are the reference's features."""

    sample_rate: int = described(16000, "audio sample rate the model expects, Hz", check=POSITIVE)
    feature_kind: str = described(
        "logmel", "logmel (reference: Hann, natural log) or kaldi_fbank", choices=("logmel", "kaldi_fbank")
    )
    num_mel_bins: int = described(80, "mel filterbank channels", check=POSITIVE)
    n_fft: int = described(512, "FFT size, samples", check=POSITIVE)
    win_length: int = described(400, "analysis window, samples", check=POSITIVE)
    hop_length: int = described(160, "frame shift, samples", check=POSITIVE)
    preemphasis: float = described(0.97, "pre-emphasis coefficient, applied within each frame")
    stack_frames: int = described(3, "consecutive frames concatenated into one model frame", check=POSITIVE)

    def __post_init__(self) -> None:
        super().__post_init__()
        # The streaming framer keeps no skip between calls; rfft would silently cut a window.
        if self.hop_length > self.win_length:
            raise ValueError(f"hop_length ({self.hop_length}) must not exceed win_length ({self.win_length})")
        if self.n_fft < self.win_length:
            raise ValueError(f"n_fft ({self.n_fft}) must be at least win_length ({self.win_length})")

    @property
    def feature_dim(self) -> int:
        """Width of one stacked model frame (D)."""
        return self.num_mel_bins * self.stack_frames

    @property
    def frame_ms(self) -> float:
        """Duration of one stacked model frame, ms."""
        return 1000.0 * self.hop_length * self.stack_frames / self.sample_rate

    def encoder_frame_s(self, time_reduction: int) -> float:
        """Duration of one encoder frame (T'), after the encoder's `time_reduction`, s."""
        return self.frame_ms * time_reduction / 1000.0


@dataclass(frozen=True)
class TokenizerConfig(Checked):
    """Sentencepiece model trained on the training transcripts."""

    tokenizer_kind: str = described("bpe", "bpe or char (sentencepiece model types)", choices=("bpe", "char"))
    vocab_size: int = described(256, "pieces including <blk> and <unk> (ignored for char)", check=POSITIVE)


@dataclass(frozen=True)
class ModelConfig(Checked):
    """Sizes of the encoder, predictor and joint network."""

    vocab_size: int = _derived(256, "output classes including blank (set from the tokenizer)", POSITIVE)
    input_dim: int = _derived(240, "model frame width (set from the features)", POSITIVE)
    input_norm: str = described(
        "layernorm", "per-frame layernorm (reference) or global mean/std", choices=("layernorm", "global")
    )
    encoder_layers: int = described(4, "stacked unidirectional LSTM layers", check=POSITIVE)
    encoder_hidden: int = described(256, "encoder LSTM width", check=POSITIVE)
    encoder_output: int = described(256, "encoder Linear projection width", check=POSITIVE)
    encoder_dropout: float = described(0.0, "dropout between encoder layers (training only)", check=FRACTION)
    time_reduction: int = described(
        2, "frames averaged by the time reduction (1 disables it)", check=POSITIVE
    )
    reduction_after: int = described(2, "encoder layer after which time is reduced", check=NON_NEGATIVE)
    predictor: str = described(
        "lstm",
        "lstm (reference) or stateless (the last predictor_context tokens through a Conv1d, icefall's: "
        "what sherpa-onnx runs)",
        choices=("lstm", "stateless"),
    )
    predictor_context: int = described(2, "stateless predictor: tokens it sees, the newest included (>= 2)")
    predictor_embed: int = described(256, "predictor token embedding width", check=POSITIVE)
    predictor_layers: int = described(1, "predictor LSTM layers", check=POSITIVE)
    predictor_hidden: int = described(256, "predictor LSTM width", check=POSITIVE)
    predictor_output: int = described(256, "predictor Linear projection width", check=POSITIVE)
    predictor_dropout: float = described(0.0, "dropout on predictor embeddings and outputs", check=FRACTION)
    joint_dim: int = described(256, "joint network hidden width", check=POSITIVE)
    ctc_head: bool = described(False, "add a CTC head on the encoder (auxiliary loss)")
    simple_joint: bool = described(
        False, "add the linear joint (encoder and predictor each projected to V, added) --prune_range needs"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        # Outside 1..layers the encoder would never reduce time while `output_lengths` divides.
        if self.time_reduction > 1 and not 1 <= self.reduction_after <= self.encoder_layers:
            raise ValueError(
                f"reduction_after must be between 1 and encoder_layers ({self.encoder_layers}), "
                f"got {self.reduction_after}"
            )
        if self.predictor == "stateless" and self.predictor_context < 2:
            raise ValueError(f"predictor_context must be at least 2, got {self.predictor_context}")

    @property
    def predictor_state_shape(self) -> tuple[int, int]:
        """(layers, width) of each of the predictor state's two arrays (`rnnt.state.LstmState`):
        the LSTM's (layers, hidden), or a stateless predictor's context of its last
        `predictor_context - 1` token ids (`rnnt.model.StatelessPredictor`)."""
        if self.predictor == "stateless":
            return self.predictor_context - 1, 1
        return self.predictor_layers, self.predictor_hidden


@dataclass(frozen=True)
class DataConfig(Checked):
    """Where utterances come from and which are kept."""

    train_manifests: str = described("", "comma list of PATH[:WEIGHT]: JSONL manifests or LibriSpeech dirs")
    dev_manifest: str = described("", "JSONL manifest or LibriSpeech dir for dev evaluation")
    test_manifest: str = described("", "JSONL manifest or LibriSpeech dir for --mode=eval")
    max_duration: float = described(14.0, "longest training utterance kept, seconds", check=POSITIVE)
    min_duration: float = described(0.3, "shortest training utterance kept, seconds", check=NON_NEGATIVE)
    dev_max_utterances: int = described(
        0, "evaluate on the first N dev utterances (0: all)", check=NON_NEGATIVE
    )


@dataclass(frozen=True)
class AugmentConfig(Checked):
    """Training-time augmentation (never applied in evaluation)."""

    time_masks: int = described(2, "SpecAugment time masks per utterance", check=NON_NEGATIVE)
    time_mask_frames: int = described(50, "widest time mask, model frames", check=NON_NEGATIVE)
    time_mask_max_ratio: float = described(
        0.2, "time masks cover at most this fraction per mask", check=FRACTION
    )
    freq_masks: int = described(1, "SpecAugment frequency masks per utterance", check=NON_NEGATIVE)
    freq_mask_bins: int = described(27, "widest frequency mask, mel bins", check=NON_NEGATIVE)
    noise_prob: float = described(0.0, "probability of adding white noise to an utterance", check=FRACTION)
    noise_snr_db: float = described(20.0, "lowest signal-to-noise ratio of that noise, dB")
    gain_db: float = described(0.0, "random gain in [-gain_db, +gain_db], dB", check=NON_NEGATIVE)
    speed_perturb: float = described(
        0.0, "play each utterance at 1-x, 1 or 1+x times its speed (0: off)", check=BELOW_ONE
    )
    vtlp: float = described(
        0.0,
        "warp each utterance's frequency axis by a factor in [1-x, 1+x] (VTLP; 0: off)",
        check=BELOW_ONE,
    )
    eq_db: float = described(
        0.0, "random smooth frequency response per utterance, within +-x dB (0: off)", check=NON_NEGATIVE
    )
    dither: float = described(0.0, "dither amplitude added to samples (int16 scale)", check=NON_NEGATIVE)


@dataclass(frozen=True)
class TrainConfig(Checked):
    """The optimisation recipe and run bookkeeping."""

    name: str = described("run", "run name: outputs go to <logs_root>/<name>/")
    logs_root: str = described("logs", "root of run directories")
    seed: int = described(1234, "seed for weights, data order and augmentation")
    init_checkpoint: str = described(
        "",
        "fine-tune: start from this checkpoint's weights and tokenizer (its model config must equal "
        "this run's); optimiser, schedule and step start afresh",
    )
    max_steps: int = described(10000, "optimizer steps to train", check=POSITIVE)
    max_minutes: float = described(
        0.0, "stop (with a checkpoint) after this wall time, minutes; 0: no limit", check=NON_NEGATIVE
    )
    batch_seconds: float = described(
        120.0, "audio per optimizer step across all ranks, seconds", check=POSITIVE
    )
    micro_batch_seconds: float = described(
        0.0, "audio per forward pass, seconds (0: whole batch)", check=NON_NEGATIVE
    )
    joint_sub_batch: int = described(
        0, "utterances per joint+loss pass, caps BxTxUxV memory (0: all)", check=NON_NEGATIVE
    )
    optimizer: str = described("adam", "adam, adamw or sgd", choices=("adam", "adamw", "sgd"))
    lr: float = described(1e-3, "peak learning rate", check=POSITIVE)
    weight_decay: float = described(0.0, "weight decay", check=NON_NEGATIVE)
    momentum: float = described(0.9, "SGD momentum", check=NON_NEGATIVE)
    warmup_steps: int = described(500, "linear warmup, steps", check=NON_NEGATIVE)
    scheduler: str = described(
        "plateau",
        "after warmup: plateau, cosine, onecycle or constant",
        choices=("plateau", "cosine", "onecycle", "constant"),
    )
    schedule_clock: str = described(
        "steps",
        "cosine/onecycle decay over steps (to max_steps) or minutes (to max_minutes)",
        choices=("steps", "minutes"),
    )
    plateau_factor: float = described(0.7, "plateau: lr multiplier on a plateau of dev WER", check=FRACTION)
    plateau_patience: int = described(
        2, "plateau: evaluations without improvement before decay", check=NON_NEGATIVE
    )
    min_lr: float = described(1e-5, "floor of every schedule", check=NON_NEGATIVE)
    grad_clip: float = described(5.0, "clip the global gradient norm to this (0: off)", check=NON_NEGATIVE)
    amp: str = described(
        "none",
        "mixed precision: none, bf16, fp16, or auto (bf16 where computed natively)",
        choices=("none", "bf16", "fp16", "auto"),
    )
    loss_normalization: str = described(
        "utterance", "divide the summed loss by utterances or tokens", choices=("utterance", "token")
    )
    ctc_weight: float = described(
        0.0, "weight of the auxiliary CTC loss (needs --ctc_head)", check=NON_NEGATIVE
    )
    prune_range: int = described(
        0,
        "pruned RNN-T: the joint runs on this many lattice rows per frame, chosen by the simple joint "
        "(0: all; k2's default is 5)",
        check=NON_NEGATIVE,
    )
    simple_loss_weight: float = described(
        0.5, "pruned RNN-T: weight of the simple joint's RNN-T loss", check=NON_NEGATIVE
    )
    prune_warmup_steps: int = described(
        0, "pruned RNN-T: the pruned loss's weight rises from 0.1 to 1 over these steps", check=NON_NEGATIVE
    )
    eval_every: int = described(500, "dev evaluation every N steps", check=POSITIVE)
    checkpoint_every: int = described(500, "checkpoint every N steps", check=POSITIVE)
    keep_checkpoints: int = described(3, "step checkpoints kept (oldest deleted)", check=POSITIVE)
    log_every: int = described(10, "tensorboard scalars every N steps", check=POSITIVE)
    num_workers: int = described(0, "data loader worker processes", check=NON_NEGATIVE)
    num_threads: int = described(0, "torch intra-op threads (0: torch default)", check=NON_NEGATIVE)
    progress: bool = described(True, "show a progress bar")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_lr > self.lr:  # every schedule would jump up to the floor after warmup
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")


@dataclass(frozen=True)
class DecodeConfig(Checked):
    """Search settings shared by evaluation and streaming."""

    beam_size: int = described(
        1, "1: greedy search; >1: beam search width (max_symbols_per_frame applies to both)", check=POSITIVE
    )
    max_symbols_per_frame: int = described(4, "most tokens emitted on one encoder frame", check=POSITIVE)
    suppress_unk: bool = described(True, "never emit <unk>")
    blank_penalty: float = described(
        0.0,
        "subtracted from the blank logit before the softmax, as sherpa-onnx does (> 0: fewer deletions)",
        check=NON_NEGATIVE,
    )
    # icefall's beam searches take a temperature too (default 1); 2 is the best on the demo dev
    # set, 2-3 points at every beam width, LM or not (README, "Language model").
    temperature: float = described(
        2.0,
        "beam search: the joint's logits are divided by this before the softmax (> 1 flattens)",
        check=POSITIVE,
    )
    # Shallow fusion with a token n-gram LM (--lm, tools/train_lm.py), beam search only; the
    # defaults are the best of a grid on the demo dev set at temperature 2 (README, "Language model").
    lm_weight: float = described(0.2, "with --lm: weight of the LM's log-probability added to each token's")
    lm_token_bonus: float = described(
        0.75, "with --lm: added to each token's log-probability (offsets the LM's cost)"
    )
    # Contextual biasing (--hotwords), beam search only; 1.5 is icefall's and sherpa-onnx's default.
    hotwords_score: float = described(
        1.5, "with --hotwords: earned by each token of a listed phrase (a file's `phrase :score` overrides)"
    )
    # A second pass over each utterance's (or caption segment's) final beam, for models trained
    # with a CTC head (`rnnt.rescoring`); 0.2 was the best on the demo dev set (README).
    ctc_rescore_weight: float = described(
        0.0,
        "beam search: re-rank the final beam by score + this x the CTC head's log-likelihood (0: off)",
        check=NON_NEGATIVE,
    )


@dataclass(frozen=True)
class StreamConfig(Checked):
    """Live decoding: encoder chunk size and endpointing (sherpa-onnx's three rules).

    An endpoint closes the current caption segment: its text becomes final and the next
    words start a new hypothesis. A rule set to 0 is off.
    """

    chunk_ms: float = described(
        600.0, "audio per encoder call, ms (rounded to whole encoder frames)", check=POSITIVE
    )
    endpointing: bool = described(True, "close caption segments at pauses and at a maximum length")
    endpoint_silence_s: float = described(
        2.4, "rule 1: close a segment with no text after this much blank, s", check=NON_NEGATIVE
    )
    endpoint_trailing_silence_s: float = described(
        1.2, "rule 2: close a segment after this much blank after text, s", check=NON_NEGATIVE
    )
    endpoint_max_segment_s: float = described(
        20.0, "rule 3: close a segment this long whatever it holds, s", check=NON_NEGATIVE
    )


@dataclass(frozen=True)
class RunConfig:
    """All configs of one run."""

    feature: FeatureConfig
    tokenizer: TokenizerConfig
    model: ModelConfig
    data: DataConfig
    augment: AugmentConfig
    train: TrainConfig
    decode: DecodeConfig

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def run_dir(self) -> Path:
        return Path(self.train.logs_root) / self.train.name


def model_config_for_summary(config: RunConfig) -> ModelConfig:
    """The model config a run would build, before any tokenizer exists (BPE size assumed)."""
    vocab = (
        config.tokenizer.vocab_size if config.tokenizer.tokenizer_kind == "bpe" else config.model.vocab_size
    )
    return replace(config.model, vocab_size=vocab, input_dim=config.feature.feature_dim)


C = TypeVar("C")


def replace(config: C, **changes: Any) -> C:
    """A copy of a frozen config with some fields changed."""
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


def from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build a config from a dict, ignoring keys it does not know (older checkpoints)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in values.items() if k in names})


ALL_CONFIGS: tuple[type, ...] = (
    FeatureConfig,
    TokenizerConfig,
    ModelConfig,
    DataConfig,
    AugmentConfig,
    TrainConfig,
    DecodeConfig,
    StreamConfig,
)
