"""The RNN-T losses: the reduced lattice equals torchaudio over all V; the simple joint's
lattice equals the full lattice of its logits; pruned RNN-T equals the full loss when its
windows cover every token and stays a bound on it when they do not."""

from __future__ import annotations

import pytest
import torch
import torchaudio

from rnnt.config import TrainConfig
from rnnt.loss import (
    check_loss_config,
    lattice_loss,
    prune_starts,
    pruned_rnnt_losses,
    reduced_rnnt_loss,
    rnnt_loss,
    simple_lattice,
)
from rnnt.model import TrainingOutputs, Transducer

from .conftest import tiny_model_config

VOCAB = 13


def random_batch(seed: int = 0) -> tuple[Transducer, TrainingOutputs, torch.Tensor, torch.Tensor]:
    """A tiny model with a simple joint, its outputs on random features, and targets."""
    torch.manual_seed(seed)
    model = Transducer(tiny_model_config(vocab_size=VOCAB, input_dim=20, simple_joint=True))
    features = torch.randn(4, 24, 20)
    targets = torch.randint(1, VOCAB, (4, 6), dtype=torch.int32)
    target_lengths = torch.tensor([6, 3, 5, 1], dtype=torch.int32)
    outputs = model(features, torch.tensor([24, 20, 16, 24]), targets)
    return model, outputs, targets, target_lengths


def test_reduced_rnnt_loss_equals_torchaudio_over_the_full_vocabulary() -> None:
    torch.manual_seed(0)
    batch, frames, tokens = 4, 9, 5
    logits = torch.randn(batch, frames, tokens + 1, VOCAB, requires_grad=True)
    targets = torch.randint(1, VOCAB, (batch, tokens), dtype=torch.int32)
    logit_lengths = torch.tensor([9, 7, 5, 9], dtype=torch.int32)
    target_lengths = torch.tensor([5, 3, 4, 1], dtype=torch.int32)
    full = torchaudio.functional.rnnt_loss(
        logits, targets, logit_lengths, target_lengths, blank=0, reduction="none"
    )
    (full_grad,) = torch.autograd.grad(full.sum(), logits)
    reduced = reduced_rnnt_loss(logits, targets, logit_lengths, target_lengths)
    (reduced_grad,) = torch.autograd.grad(reduced.sum(), logits)
    torch.testing.assert_close(reduced, full)
    torch.testing.assert_close(reduced_grad, full_grad, rtol=1e-4, atol=1e-5)


def test_simple_lattice_equals_the_full_lattice_of_am_plus_lm() -> None:
    torch.manual_seed(0)
    am = (4 * torch.randn(3, 7, VOCAB)).requires_grad_()  # spread logits, as a trained model's are
    lm = (4 * torch.randn(3, 5, VOCAB)).requires_grad_()
    targets = torch.randint(1, VOCAB, (3, 4), dtype=torch.int32)
    logit_lengths, target_lengths = torch.tensor([7, 6, 3]), torch.tensor([4, 2, 3])
    full = reduced_rnnt_loss(am[:, :, None, :] + lm[:, None, :, :], targets, logit_lengths, target_lengths)
    simple = lattice_loss(simple_lattice(am, lm, targets), logit_lengths, target_lengths)
    torch.testing.assert_close(simple, full)
    full_grads = torch.autograd.grad(full.sum(), [am, lm])
    simple_grads = torch.autograd.grad(simple.sum(), [am, lm])
    for got, want in zip(simple_grads, full_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_pruned_loss_with_windows_over_every_token_equals_the_full_loss() -> None:
    model, outputs, targets, target_lengths = random_batch()
    full = rnnt_loss(model, outputs, targets, target_lengths)
    (full_grad,) = torch.autograd.grad(full.sum(), model.joint.out.weight)
    _, pruned = pruned_rnnt_losses(model, outputs, targets, target_lengths, prune_range=7)
    (pruned_grad,) = torch.autograd.grad(pruned.sum(), model.joint.out.weight)
    torch.testing.assert_close(pruned, full)
    torch.testing.assert_close(pruned_grad, full_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("prune_range", [2, 3, 4])
def test_pruned_loss_bounds_the_full_loss_and_trains_every_part(prune_range: int) -> None:
    model, outputs, targets, target_lengths = random_batch(seed=prune_range)
    full = rnnt_loss(model, outputs, targets, target_lengths)
    simple, pruned = pruned_rnnt_losses(model, outputs, targets, target_lengths, prune_range)
    # Fewer paths, so a larger loss, yet finite: every utterance has a path through the windows.
    assert torch.all(pruned >= full - 1e-4) and torch.all(torch.isfinite(pruned)), (pruned, full)
    assert torch.all(pruned > 0) and torch.all(simple > 0)
    (0.5 * simple.sum() + pruned.sum()).backward()
    for name, parameter in model.named_parameters():
        if name.startswith("ctc"):
            continue
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_prune_windows_hold_one_path_and_follow_the_occupancy() -> None:
    frames, tokens, window = 12, 8, 3
    occupancy = torch.zeros(2, frames, tokens + 1)
    for t in range(frames):  # all occupancy on a diagonal; the second row jumps 5 rows at t=6
        occupancy[0, t, min(tokens, (2 * t) // 3)] = 1.0
        occupancy[1, t, 0 if t < 6 else min(tokens, 5 + (t - 6))] = 1.0
    logit_lengths, target_lengths = torch.tensor([frames, frames]), torch.tensor([tokens, tokens])
    starts = prune_starts(occupancy, logit_lengths, target_lengths, window)
    assert torch.all(starts[:, 0] == 0)
    steps = starts[:, 1:] - starts[:, :-1]
    assert torch.all(steps >= 0) and torch.all(steps <= window - 1)
    assert torch.all(starts[:, -1] == tokens + 1 - window)  # the last window holds row U
    diagonal = torch.tensor([min(tokens, (2 * t) // 3) for t in range(frames)])
    assert torch.all((starts[0] <= diagonal) & (diagonal < starts[0] + window))


def test_an_utterance_without_a_path_through_the_windows_leaves_the_others_losses_as_alone() -> None:
    """The longest utterance (most frames and tokens) has more tokens than its frames can emit
    through 2-row windows: its pruned loss is 0 and the other's is what it is on its own (the
    loss of the feasible rows alone once failed on their shorter lattice: "output length
    mismatch", two hours into a run)."""
    torch.manual_seed(0)
    model = Transducer(tiny_model_config(vocab_size=VOCAB, input_dim=20, simple_joint=True))
    features, feature_lengths = torch.randn(2, 16, 20), torch.tensor([16, 8])
    targets = torch.randint(1, VOCAB, (2, 12), dtype=torch.int32)
    target_lengths = torch.tensor([12, 2], dtype=torch.int32)
    outputs = model(features, feature_lengths, targets)
    assert int(outputs.encoder_lengths[0]) < 12 and int(outputs.encoder_lengths[1]) < int(
        outputs.encoder_lengths[0]
    )
    _, pruned = pruned_rnnt_losses(model, outputs, targets, target_lengths, prune_range=2)
    alone = model(features[1:, :8], feature_lengths[1:], targets[1:, :2])
    _, pruned_alone = pruned_rnnt_losses(model, alone, targets[1:, :2], target_lengths[1:], prune_range=2)
    assert pruned[0] == 0
    torch.testing.assert_close(pruned[1:], pruned_alone)


def test_a_ctc_head_without_a_ctc_loss_is_refused() -> None:
    """Its weights would stay random, and `--ctc_rescore_weight` would re-rank beams by them."""
    with pytest.raises(ValueError, match="--ctc_head needs --ctc_weight above 0"):
        check_loss_config(tiny_model_config(vocab_size=VOCAB, ctc_head=True), TrainConfig(ctc_weight=0.0))
    check_loss_config(tiny_model_config(vocab_size=VOCAB, ctc_head=True), TrainConfig(ctc_weight=0.3))
