"""Explicit recurrent state, shared by the torch model and the torch-free runtimes.

`LstmState(h, c)` holds arrays shaped (num_layers, B, H): torch tensors in the model,
numpy arrays in the runtimes. Batching streams stacks along B.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np


class LstmState(NamedTuple):
    """Hidden and cell state of stacked LSTMs, each (num_layers, B, H)."""

    h: Any
    c: Any


def _concat(parts: Sequence[Any]) -> Any:
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts, axis=1)
    import torch  # only reached with torch tensors, which means torch is installed

    return torch.cat(list(parts), dim=1)


def stack_states(states: Sequence[LstmState]) -> LstmState:
    """Batch per-stream states (num_layers, b_i, H) into one (num_layers, sum b_i, H).

    States are never written in place, so a single state is returned as it is (a single
    stream's every encoder and predictor call would otherwise copy it)."""
    if len(states) == 1:
        return states[0]
    return LstmState(_concat([s.h for s in states]), _concat([s.c for s in states]))


def unstack_states(state: LstmState) -> list[LstmState]:
    """Split a batched state into per-stream states (num_layers, 1, H)."""
    return [select_state(state, [i]) for i in range(state.h.shape[1])]


def select_state(state: LstmState, index: Any) -> LstmState:
    """The streams `index` (an int list or array) of a batched state; a batch of one stream
    selected whole is returned as it is (see `stack_states`)."""
    if state.h.shape[1] == 1 and len(index) == 1:
        return state
    return LstmState(state.h[:, index], state.c[:, index])
