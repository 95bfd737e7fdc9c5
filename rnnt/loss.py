"""RNN-T loss (torchaudio), pruned RNN-T, an optional auxiliary CTC loss, and the backward pass.

The joint's (B, T', U+1, V) logits dominate training memory, so `transducer_backward`
can run joint + loss over sub-batches: the encoder and predictor outputs are detached
into leaves, each sub-batch's joint graph is built, back-propagated into those leaves and
freed, and finally the leaves' gradients are sent back through the encoder and predictor
once. Peak memory is one sub-batch's joint instead of the whole batch's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio
from torch import Tensor

from rnnt.config import BLANK_ID, ModelConfig, TrainConfig
from rnnt.model import TrainingOutputs, Transducer


@dataclass(frozen=True)
class LossValues:
    """Summed (not normalised) losses of a batch, for logging."""

    transducer: float  # the pruned loss under pruning
    ctc: float
    simple: float = 0.0  # the simple joint's loss, under pruning


@dataclass(frozen=True)
class Pruning:
    """Pruned RNN-T in one training step."""

    prune_range: int  # token rows of the lattice the joint runs on, per frame
    simple_weight: float  # weight of the simple joint's loss
    pruned_weight: float  # weight of the pruned loss (rises during warmup)


def rnnt_loss(model: Transducer, outputs: TrainingOutputs, targets: Tensor, target_lengths: Tensor) -> Tensor:
    """Per-utterance RNN-T negative log-likelihood, (B,), computed in float32."""
    max_frames = int(outputs.encoder_lengths.max())
    max_tokens = int(target_lengths.max())
    enc = outputs.encoder_out[:, :max_frames, None, :]
    pred = outputs.predictor_out[:, None, : max_tokens + 1, :]
    logits = model.join(enc, pred).float()
    return reduced_rnnt_loss(logits, targets[:, :max_tokens], outputs.encoder_lengths, target_lengths)


def reduced_rnnt_loss(
    logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor
) -> Tensor:
    """torchaudio's RNN-T loss, (B,), fed only the two log-probabilities it uses.

    The transducer lattice visits, at node (t, u), only log p(blank) and log p(y_{u+1}).
    Gathering those from (B, T', U+1, V) logits and running torchaudio's recursion on a
    (B, T', U+1, 2) tensor gives the same loss and gradients (tested) about 3x faster on
    CPU than `fused_log_softmax` over all V, whose kernel dominates a CPU training step.
    """
    label_ids = next_tokens(targets)[:, None, :].expand(logits.shape[0], logits.shape[1], -1)
    return lattice_loss(logit_lattice(logits, label_ids), logit_lengths, target_lengths)


def logit_lattice(logits: Tensor, label_ids: Tensor) -> Tensor:
    """(..., V) joint logits and (...) next-token ids -> (..., 2) log p(blank), log p(next token)."""
    normalizer = torch.logsumexp(logits, dim=-1)
    label = logits.gather(-1, label_ids[..., None]).squeeze(-1)
    return torch.stack([logits[..., BLANK_ID] - normalizer, label - normalizer], dim=-1)


def next_tokens(targets: Tensor) -> Tensor:
    """(B, U) targets -> (B, U + 1): the token each lattice row u emits next (blank after the last)."""
    return torch.nn.functional.pad(targets.long(), (0, 1), value=BLANK_ID)


def lattice_loss(log_probs: Tensor, logit_lengths: Tensor, target_lengths: Tensor) -> Tensor:
    """(B, T', U+1, 2) log p(blank), log p(next token) per lattice node -> (B,) RNN-T loss.

    The lattice may be padded beyond its longest utterance (a subset of a batch's rows): it is
    cut to that utterance's frames and tokens, the only size torchaudio accepts.
    """
    frames, tokens = int(logit_lengths.max()), int(target_lengths.max())
    log_probs = log_probs[:, :frames, : tokens + 1].contiguous()
    return torchaudio.functional.rnnt_loss(
        log_probs,
        torch.ones(
            log_probs.shape[0], log_probs.shape[2] - 1, dtype=torch.int32, device=log_probs.device
        ),  # class 1: next token
        logit_lengths.int(),
        target_lengths.int(),
        blank=0,
        reduction="none",
        fused_log_softmax=False,
    )


# ---- pruned RNN-T ----------------------------------------------------------------------
# Kuang et al. 2022, "Pruned RNN-T for fast, memory-efficient ASR training" (k2's
# rnnt_loss_simple / get_rnnt_prune_ranges / rnnt_loss_pruned). Written here on top of
# torchaudio's loss because torchaudio has no pruned loss and k2 / fast_rnnt ship no build for
# this torch and Python (each needs a C++ build against torch). The full joint costs
# B x T' x (U+1) x V; the pruned one B x T' x R x V, with R ~ 5 against U+1 ~ 30-60 here.


# Log-probability of the arcs outside the windows: -inf makes torchaudio's CPU kernel return
# NaN, and any path through one such arc is exp(-1e5) ~ 0 times less likely than a real path.
OUTSIDE_WINDOW = -1e5
PRUNED_WEIGHT_START = 0.1  # the pruned loss's weight at step 0, before its warmup


def simple_lattice(am: Tensor, lm: Tensor, targets: Tensor) -> Tensor:
    """The linear joint's (B, T', U+1, 2) lattice log-probabilities from (B, T', V) `am` and
    (B, U+1, V) `lm`, without a (B, T', U+1, V) tensor: the normaliser
    logsumexp_v(am[t, v] + lm[u, v]) is one product of exponentials, (T' x V) @ (V x U+1)."""
    am, lm = am.float(), lm.float()
    am_max, lm_max = am.amax(-1, keepdim=True), lm.amax(-1, keepdim=True)
    products = torch.bmm((am - am_max).exp(), (lm - lm_max).exp().transpose(1, 2))
    normalizer = products.clamp_min(torch.finfo(products.dtype).tiny).log() + am_max + lm_max.transpose(1, 2)
    next_token = next_tokens(targets)
    am_label = am.gather(2, next_token[:, None, :].expand(-1, am.shape[1], -1))
    lm_label = lm.gather(2, next_token[:, :, None]).squeeze(-1)
    blank = am[..., BLANK_ID, None] + lm[..., BLANK_ID][:, None, :]
    label = am_label + lm_label[:, None, :]
    return torch.stack([blank - normalizer, label - normalizer], dim=-1)


def prune_starts(
    occupancy: Tensor, logit_lengths: Tensor, target_lengths: Tensor, prune_range: int
) -> Tensor:
    """(B, T', U+1) node occupancies -> (B, T') first token row of each frame's window of
    `prune_range` rows: the window holding most occupancy, then adjusted so that one path
    runs through the windows from (0, 0) to (T'-1, U): starts never decrease, rise by at
    most prune_range - 1 per frame, and the last frame's window holds row U."""
    window = min(prune_range, occupancy.shape[2])
    cumulative = torch.nn.functional.pad(occupancy.cumsum(2), (1, 0))
    start = (cumulative[..., window:] - cumulative[..., :-window]).argmax(-1)
    highest = (target_lengths.long() + 1 - window).clamp_min(0)[:, None]
    frames = torch.arange(start.shape[1], device=start.device)[None, :]
    start = torch.minimum(start, highest).cummax(1).values
    start = torch.minimum(start, frames * (window - 1))
    start = torch.where(frames >= logit_lengths.long()[:, None] - 1, highest, start)
    # Raise each start to within window - 1 of the next: start'[t] = max(start[t],
    # start'[t+1] - (window - 1)), as a reversed running maximum.
    slope = frames * (window - 1)
    return slope + (start - slope).flip(1).cummax(1).values.flip(1)


def pruned_rnnt_losses(
    model: Transducer, outputs: TrainingOutputs, targets: Tensor, target_lengths: Tensor, prune_range: int
) -> tuple[Tensor, Tensor]:
    """(B,) simple-joint and pruned-joint RNN-T losses.

    The simple joint's loss gradient with respect to its lattice is minus each arc's
    posterior, so it gives every node's occupancy; the real joint then runs on the
    `prune_range` rows around it, and arcs outside the windows get log-probability OUTSIDE_WINDOW.
    An utterance with more than prune_range - 1 tokens per frame has no path through any
    windows (it would cross an arc at OUTSIDE_WINDOW): its pruned loss is 0 (its simple
    loss still counts).
    """
    assert model.simple is not None, "pruned RNN-T needs a model built with simple_joint"
    max_frames, max_tokens = int(outputs.encoder_lengths.max()), int(target_lengths.max())
    enc, pred = outputs.encoder_out[:, :max_frames], outputs.predictor_out[:, : max_tokens + 1]
    targets, lengths = targets[:, :max_tokens], outputs.encoder_lengths
    am, lm = model.simple(enc, pred)
    lattice = simple_lattice(am, lm, targets)
    simple = lattice_loss(lattice, lengths, target_lengths)
    (arc_grads,) = torch.autograd.grad(simple.sum(), lattice, retain_graph=True)
    starts = prune_starts(-arc_grads.sum(-1), lengths, target_lengths, prune_range)
    rows_per_frame = torch.arange(min(prune_range, max_tokens + 1), device=starts.device)
    positions = starts[..., None] + rows_per_frame  # (B, T', R)
    logits = model.join_pruned(enc, pred, positions).float()
    label_ids = next_tokens(targets).gather(1, positions.flatten(1)).view_as(positions)
    values = logit_lattice(logits, label_ids)
    pruned = torch.full_like(lattice, OUTSIDE_WINDOW).scatter(
        2, positions[..., None].expand(-1, -1, -1, 2), values
    )
    feasible = starts[:, 0] == 0
    losses = torch.zeros_like(simple)
    if feasible.any():
        rows = feasible.nonzero().squeeze(1)
        losses = losses.index_put((rows,), lattice_loss(pruned[rows], lengths[rows], target_lengths[rows]))
    return simple, losses


def ctc_loss(model: Transducer, outputs: TrainingOutputs, targets: Tensor, target_lengths: Tensor) -> Tensor:
    """Per-utterance CTC negative log-likelihood on the encoder's CTC head, (B,)."""
    assert model.ctc is not None, "ctc_loss needs a model built with ctc_head"
    log_probs = model.ctc(outputs.encoder_out).float().log_softmax(-1).transpose(0, 1)
    return torch.nn.functional.ctc_loss(
        log_probs,
        targets,
        outputs.encoder_lengths,
        target_lengths,
        blank=BLANK_ID,
        reduction="none",
        zero_infinity=True,
    )


def check_loss_config(model: ModelConfig, train: TrainConfig) -> None:
    """Refuse loss settings the model cannot serve, before any data is read or trained on."""
    if train.ctc_weight > 0 and not model.ctc_head:
        raise ValueError("--ctc_weight needs --ctc_head")
    if model.ctc_head and train.ctc_weight == 0:  # an untrained head would re-rank beams at random
        raise ValueError("--ctc_head needs --ctc_weight above 0")
    if train.prune_range and not model.simple_joint:
        raise ValueError("--prune_range needs --simple_joint (the linear joint that chooses the windows)")
    if train.prune_range == 1:
        raise ValueError("--prune_range must be 0 (off) or at least 2: one row per frame emits no token")


def pruning_at(train: TrainConfig, step: int) -> Pruning | None:
    """Step `step`'s pruned RNN-T settings (None: the full joint). The pruned loss starts at a
    tenth of its weight, as in k2's recipes: the first windows follow a poor simple joint."""
    if not train.prune_range:
        return None
    ramp = min(1.0, step / train.prune_warmup_steps) if train.prune_warmup_steps else 1.0
    weight = PRUNED_WEIGHT_START + (1 - PRUNED_WEIGHT_START) * ramp
    return Pruning(train.prune_range, train.simple_loss_weight, weight)


def transducer_backward(
    model: Transducer,
    outputs: TrainingOutputs,
    targets: Tensor,
    target_lengths: Tensor,
    normalizer: float,
    ctc_weight: float = 0.0,
    sub_batch: int = 0,
    pruning: Pruning | None = None,
) -> LossValues:
    """Back-propagate (sum of losses) / normalizer; joint + loss over `sub_batch` rows."""
    enc = outputs.encoder_out.detach().requires_grad_()
    pred = outputs.predictor_out.detach().requires_grad_()
    size = sub_batch or len(targets)
    total = simple_total = 0.0
    for start in range(0, len(targets), size):
        rows = slice(start, start + size)
        part = TrainingOutputs(enc[rows], outputs.encoder_lengths[rows], pred[rows])
        if pruning is None:
            loss = rnnt_loss(model, part, targets[rows], target_lengths[rows]).sum()
            total += loss.item()
        else:
            simple, pruned = pruned_rnnt_losses(
                model, part, targets[rows], target_lengths[rows], pruning.prune_range
            )
            loss = pruning.pruned_weight * pruned.sum() + pruning.simple_weight * simple.sum()
            total, simple_total = total + pruned.sum().item(), simple_total + simple.sum().item()
        (loss / normalizer).backward()
    roots, grads = [outputs.encoder_out, outputs.predictor_out], [enc.grad, pred.grad]
    ctc_total = 0.0
    if ctc_weight > 0:
        ctc = ctc_loss(model, outputs, targets, target_lengths).sum()
        roots.append(ctc * (ctc_weight / normalizer))
        grads.append(torch.ones_like(ctc))
        ctc_total = ctc.item()
    torch.autograd.backward(roots, grads)
    return LossValues(total, ctc_total, simple_total)
