"""The transducer: encoder, predictor and joint network. It computes; it does not train,
search or do I/O (loss: `rnnt.loss`, search: `rnnt.decoding`).

Shapes: B batch, T frames, T' encoder frames, U tokens, D features, J joint_dim, V vocab.
Streaming state is explicit: every recurrent module takes an `LstmState` and returns the
new one, so a stream is resumed by passing back what it returned, and streams are batched
by `rnnt.state.stack_states` / `unstack_states`.
"""

from __future__ import annotations

from typing import NamedTuple, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnt.config import BLANK_ID, NO_TOKEN, ModelConfig
from rnnt.state import LstmState

STEPWISE_MAX_BATCH = 8  # largest batch for which `run_lstm`'s step loop beats nn.LSTM on a CPU


def _inference_only() -> bool:
    """No autograd and no ONNX export: the hand-written inference paths below may run."""
    exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    return not torch.is_grad_enabled() and not exporting


_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`F.linear`, computed by oneDNN for float32 inference on the CPU.

    PyTorch sends float32 CPU products to MKL, whose kernels on the project's AMD machine
    ran the batch-1 (1 x 1024) @ (1024 x 4096) product of a streaming LSTM step at 57 GB/s,
    against 130 GB/s through oneDNN (`mkldnn._linear_pointwise`, the op PyTorch's own compiler
    emits for a linear layer); a 600 ms E6D2 encoder chunk took 33.6 against 15.5 ms. PyTorch
    has no setting that sends float32 products to oneDNN. Training and export keep `F.linear`.
    """
    if _ONEDNN_LINEAR and x.dtype == torch.float32 and x.device.type == "cpu" and _inference_only():
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def apply_linear(layer: nn.Linear, x: Tensor) -> Tensor:
    """`layer(x)` through `linear`."""
    return linear(x, layer.weight, layer.bias)


def run_lstm(
    lstm: nn.LSTM, x: Tensor, state: tuple[Tensor, Tensor], stepwise: bool | None = None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """`lstm(x, state)` for a batch-first LSTM without projection.

    Without autograd (inference) and outside an ONNX export, the same arithmetic runs as a
    loop of `linear` products, one time step after another (`stepwise_lstm`): written by hand
    because PyTorch's CPU LSTM kernel (oneDNN) is about 3x slower on streaming chunks, 145 ms
    against 44 ms for one 600 ms chunk of the E6D2 encoder (6x1024) on an earlier 2-core machine
    of this project, 13 ms against 2.6 ms for a 2x512 predictor step. Larger batches (offline
    evaluation) and training keep `nn.LSTM`, which is faster there, and so does export (ONNX
    gets its LSTM operator). `stepwise` forces either path (True: the loop, also when traced).
    """
    if stepwise is None:
        stepwise = _inference_only() and x.shape[0] <= STEPWISE_MAX_BATCH
    return stepwise_lstm(lstm, x, state) if stepwise else lstm(x, state)


def stepwise_lstm(
    lstm: nn.LSTM, x: Tensor, state: tuple[Tensor, Tensor]
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """`lstm(x, state)` as its cell arithmetic: the input products for all steps at once, then
    one recurrent product and the gates per step."""
    h0, c0 = state
    hs, cs = [], []
    for layer in range(lstm.num_layers):
        w_hh = getattr(lstm, f"weight_hh_l{layer}")
        bias = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}") if lstm.bias else None
        x_gates = linear(x, getattr(lstm, f"weight_ih_l{layer}"), bias)  # (B, T, 4H)
        h, c = h0[layer], c0[layer]
        outputs = []
        for t in range(x.shape[1]):
            i, f, g, o = (linear(h, w_hh) + x_gates[:, t]).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        x = torch.stack(outputs, dim=1) if outputs else x_gates.new_zeros(x.shape[0], 0, lstm.hidden_size)
        hs.append(h)
        cs.append(c)
    return x, (torch.stack(hs), torch.stack(cs))


def _zeros(num_layers: int, batch_size: int, hidden: int, like: Tensor) -> LstmState:
    zeros = like.new_zeros(num_layers, batch_size, hidden)
    return LstmState(zeros, zeros.clone())


class GlobalNorm(nn.Module):
    """Fixed per-dimension mean/std normalisation (global CMVN), stats set from data."""

    mean: Tensor
    inv_std: Tensor

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("inv_std", torch.ones(dim))

    def set_stats(self, mean: Tensor, std: Tensor) -> None:
        self.mean.copy_(mean)
        self.inv_std.copy_(1.0 / std.clamp_min(1e-5))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) * self.inv_std


class Encoder(nn.Module):
    """Stacked unidirectional LSTMs with LayerNorm, residuals and a time reduction.

    Layer i (from the second on) adds its input to its output; every layer is followed by
    LayerNorm. After layer `reduction_after`, frames are averaged in groups of
    `time_reduction` (a trailing remainder is dropped). A Linear projects the last layer.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        hidden = config.encoder_hidden
        norms = {"layernorm": nn.LayerNorm, "global": GlobalNorm}
        if config.input_norm not in norms:
            raise ValueError(f"unknown input_norm {config.input_norm!r} (layernorm or global)")
        self.input_norm: nn.Module = norms[config.input_norm](config.input_dim)
        sizes = [config.input_dim] + [hidden] * (config.encoder_layers - 1)
        self.lstms = nn.ModuleList(nn.LSTM(size, hidden, batch_first=True) for size in sizes)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in sizes)
        self.dropout = nn.Dropout(config.encoder_dropout)
        self.proj = nn.Linear(hidden, config.encoder_output)

    def init_state(self, batch_size: int) -> LstmState:
        return _zeros(self.config.encoder_layers, batch_size, self.config.encoder_hidden, self.proj.weight)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Encoder frames (T') produced from `lengths` input frames (T)."""
        return torch.div(lengths, self.config.time_reduction, rounding_mode="floor")

    def forward(self, x: Tensor, state: LstmState) -> tuple[Tensor, LstmState]:
        """(B, T, D) frames and state -> (B, T', encoder_output) and the new state.

        Streaming callers pass T divisible by `time_reduction` so chunks join seamlessly.
        """
        x = self.input_norm(x)
        hs, cs = [], []
        for i, (lstm, norm) in enumerate(zip(self.lstms, self.norms, strict=True)):
            y, (h, c) = run_lstm(cast(nn.LSTM, lstm), x, (state.h[i : i + 1], state.c[i : i + 1]))
            hs.append(h)
            cs.append(c)
            x = self.dropout(norm(y + x if i > 0 else y))
            if i + 1 == self.config.reduction_after:
                x = self._reduce_time(x)
        return apply_linear(self.proj, x), LstmState(torch.cat(hs), torch.cat(cs))

    def _reduce_time(self, x: Tensor) -> Tensor:
        factor = self.config.time_reduction
        if factor == 1:
            return x
        frames = x.shape[1] // factor * factor
        return x[:, :frames].reshape(x.shape[0], frames // factor, factor, x.shape[2]).mean(dim=2)


class Predictor(nn.Module):
    """Embedding -> stacked LSTM -> Linear; the label-context network."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.predictor_embed)
        self.lstm = nn.LSTM(
            config.predictor_embed, config.predictor_hidden, config.predictor_layers, batch_first=True
        )
        self.dropout = nn.Dropout(config.predictor_dropout)
        self.proj = nn.Linear(config.predictor_hidden, config.predictor_output)

    def init_state(self, batch_size: int) -> LstmState:
        layers, hidden = self.config.predictor_state_shape
        return _zeros(layers, batch_size, hidden, self.proj.weight)

    def forward(
        self, tokens: Tensor, state: LstmState, stepwise: bool | None = None
    ) -> tuple[Tensor, LstmState]:
        """(B, U) token ids and state -> (B, U, predictor_output) and the new state.
        `stepwise`: as `run_lstm`'s."""
        y, (h, c) = run_lstm(self.lstm, self.dropout(self.embed(tokens)), (state.h, state.c), stepwise)
        return self.dropout(apply_linear(self.proj, y)), LstmState(h, c)


class StatelessPredictor(nn.Module):
    """Embedding -> Conv1d over the last `predictor_context` tokens -> ReLU -> Linear: a
    predictor that sees a few tokens, not the whole history (Ghodsi et al. 2020, "Rnn-transducer
    with stateless prediction network"; icefall's `decoder.py` layout, grouped convolution
    included), so it cannot learn its training sentences by heart, and the kind of predictor
    sherpa-onnx runs (`rnnt.sherpa`).

    Its state is its context: the previous `predictor_context - 1` token ids as floats, in
    `h` shaped (context - 1, B, 1), so that it stacks, steps and exports through the same
    `LstmState` as the LSTM's; `c` (the same shape) is unused and passed through. Before an
    utterance's start token (blank) the context holds `NO_TOKEN`, whose embedding is zero
    (icefall's padding, and the context sherpa-onnx starts from).
    """

    GROUP_WIDTH = 4  # channels per convolution group, icefall's (decoder_dim // 4 groups)

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.predictor_context < 2:
            raise ValueError(f"predictor_context must be at least 2, got {config.predictor_context}")
        if config.predictor_embed % self.GROUP_WIDTH:
            raise ValueError(
                f"predictor_embed must be a multiple of {self.GROUP_WIDTH} for a stateless predictor"
            )
        self.config = config
        width = config.predictor_embed
        self.embed = nn.Embedding(config.vocab_size, width)
        self.conv = nn.Conv1d(
            width, width, config.predictor_context, groups=width // self.GROUP_WIDTH, bias=False
        )
        self.dropout = nn.Dropout(config.predictor_dropout)
        self.proj = nn.Linear(width, config.predictor_output)

    def init_state(self, batch_size: int) -> LstmState:
        layers, width = self.config.predictor_state_shape
        zeros = _zeros(layers, batch_size, width, self.proj.weight)
        return LstmState(torch.full_like(zeros.h, NO_TOKEN), zeros.c)

    def forward(
        self, tokens: Tensor, state: LstmState, stepwise: bool | None = None
    ) -> tuple[Tensor, LstmState]:
        """(B, U) token ids and state -> (B, U, predictor_output) and the new state (the
        last context - 1 ids). `stepwise` is the LSTM predictor's and means nothing here."""
        context = torch.cat([state.h[:, :, 0].transpose(0, 1).long(), tokens], dim=1)
        present = (context != NO_TOKEN).unsqueeze(-1).to(self.proj.weight.dtype)
        embedded = self.embed(context.clamp(min=0)) * present
        embedded = self.dropout(embedded).transpose(1, 2)  # (B, E, context - 1 + U)
        y = F.relu(self.conv(embedded)).transpose(1, 2)
        kept = context[:, 1 - self.config.predictor_context :]
        new_h = kept.transpose(0, 1).unsqueeze(-1).to(state.h.dtype)
        return self.dropout(apply_linear(self.proj, y)), LstmState(new_h, state.c)


PREDICTORS: dict[str, type[Predictor | StatelessPredictor]] = {
    "lstm": Predictor,
    "stateless": StatelessPredictor,
}


class Joint(nn.Module):
    """tanh(W_e enc + W_p pred) -> Linear(V): the reference's concat-Linear-tanh-Linear."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.enc_proj = nn.Linear(config.encoder_output, config.joint_dim)
        self.pred_proj = nn.Linear(config.predictor_output, config.joint_dim, bias=False)
        self.out = nn.Linear(config.joint_dim, config.vocab_size)

    def forward(self, enc: Tensor, pred: Tensor) -> Tensor:
        """Broadcasting (..., encoder_output) and (..., predictor_output) -> (..., V) logits."""
        return self.combine(self.enc_proj(enc), self.pred_proj(pred))

    def combine(self, enc: Tensor, pred: Tensor) -> Tensor:
        """Logits from already projected (..., joint_dim) encoder and predictor vectors."""
        return apply_linear(self.out, torch.tanh(enc + pred))


class SimpleJoint(nn.Module):
    """The linear joint am[t] + lm[u] of pruned RNN-T (Kuang et al. 2022): it only finds, per
    frame, the tokens worth running the real joint on. Training only; nothing exports it."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.am = nn.Linear(config.encoder_output, config.vocab_size)
        self.lm = nn.Linear(config.predictor_output, config.vocab_size)

    def forward(self, enc: Tensor, pred: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T', encoder_output) and (B, U + 1, predictor_output) -> (B, T', V) and (B, U + 1, V)."""
        return self.am(enc), self.lm(pred)


class TrainingOutputs(NamedTuple):
    """What the loss needs from one forward pass over a padded batch."""

    encoder_out: Tensor  # (B, T', encoder_output)
    encoder_lengths: Tensor  # (B,)
    predictor_out: Tensor  # (B, U + 1, predictor_output), blank-prefixed context


class Transducer(nn.Module):
    """RNN-Transducer (Graves 2012) with an optional auxiliary CTC head on the encoder."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        if config.predictor not in PREDICTORS:
            raise ValueError(f"unknown predictor {config.predictor!r} ({' or '.join(PREDICTORS)})")
        self.predictor: Predictor | StatelessPredictor = PREDICTORS[config.predictor](config)
        self.joint = Joint(config)
        self.ctc = nn.Linear(config.encoder_output, config.vocab_size) if config.ctc_head else None
        self.simple = SimpleJoint(config) if config.simple_joint else None

    def forward(self, features: Tensor, feature_lengths: Tensor, targets: Tensor) -> TrainingOutputs:
        """(B, T, D) features, (B,) lengths and (B, U) padded targets -> loss inputs."""
        batch_size = features.shape[0]
        encoder_out, _ = self.encoder(features, self.encoder.init_state(batch_size))
        context = torch.nn.functional.pad(targets, (1, 0), value=BLANK_ID)
        predictor_out, _ = self.predictor(context, self.predictor.init_state(batch_size))
        return TrainingOutputs(encoder_out, self.encoder.output_lengths(feature_lengths), predictor_out)

    def encode(self, features: Tensor, state: LstmState | None = None) -> tuple[Tensor, LstmState]:
        """(B, T, D) features -> (B, T', encoder_output); a chunk when `state` is given."""
        state = self.encoder.init_state(features.shape[0]) if state is None else state
        return self.encoder(features, state)

    def predict(self, tokens: Tensor, state: LstmState | None = None) -> tuple[Tensor, LstmState]:
        """(B, U) tokens -> (B, U, predictor_output), continuing from `state`."""
        state = self.predictor.init_state(tokens.shape[0]) if state is None else state
        return self.predictor(tokens, state)

    def join(self, enc: Tensor, pred: Tensor) -> Tensor:
        """Broadcast encoder and predictor outputs into (..., V) logits."""
        return self.joint(enc, pred)

    def join_pruned(self, enc: Tensor, pred: Tensor, positions: Tensor) -> Tensor:
        """(B, T', encoder_output), (B, U + 1, predictor_output) and (B, T', R) predictor positions
        per frame -> (B, T', R, V) logits: the joint at R positions of each frame only, with each
        encoder and predictor vector projected once."""
        enc, pred = self.joint.enc_proj(enc), self.joint.pred_proj(pred)
        batch_size, frames, width = positions.shape
        index = positions.reshape(batch_size, frames * width, 1).expand(-1, -1, pred.shape[-1])
        pred_at = pred.gather(1, index).reshape(batch_size, frames, width, -1)
        return self.joint.combine(enc[:, :, None, :], pred_at)

    # ---- the search's view: what the runtimes and the exported graphs compute ---------
    # The joint's input projections move into the encoder and the predictor (the layout of
    # icefall's exports, which sherpa-onnx runs): a frame is projected once and a predictor
    # output once per hypothesis, not once per joint call, and the joint a search calls for
    # every frame and every emitted token is only tanh(enc + pred) -> Linear(V).

    def search_encode(self, features: Tensor, state: LstmState) -> tuple[Tensor, LstmState]:
        """(B, T, D) features and state -> (B, T', joint_dim) projected frames and the new state."""
        out, new_state = self.encoder(features, state)
        return apply_linear(self.joint.enc_proj, out), new_state

    def search_encode_with_ctc(self, features: Tensor, state: LstmState) -> tuple[Tensor, Tensor, LstmState]:
        """`search_encode` plus the CTC head's (B, T', V) log-probabilities, for the second
        pass (`rnnt.rescoring`); the model must have a CTC head."""
        if self.ctc is None:
            raise ValueError("this model has no CTC head (trained without --ctc_head)")
        out, new_state = self.encoder(features, state)
        ctc_log_probs = apply_linear(self.ctc, out).log_softmax(-1)
        return apply_linear(self.joint.enc_proj, out), ctc_log_probs, new_state

    def search_predict(
        self, tokens: Tensor, state: LstmState, stepwise: bool | None = None
    ) -> tuple[Tensor, LstmState]:
        """(B, U) tokens and state -> (B, U, joint_dim) projected predictor outputs and the new
        state. `stepwise`: as `run_lstm`'s."""
        out, new_state = self.predictor(tokens, state, stepwise)
        return apply_linear(self.joint.pred_proj, out), new_state

    def search_join(self, enc: Tensor, pred: Tensor) -> Tensor:
        """`search_encode` and `search_predict` vectors -> (..., V) logits; equals `join` of the
        unprojected outputs."""
        return self.joint.combine(enc, pred)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
