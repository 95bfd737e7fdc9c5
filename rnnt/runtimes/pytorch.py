"""The PyTorch backend: a `Transducer` behind the numpy `Runtime` interface."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from rnnt.model import Transducer
from rnnt.state import LstmState


def _to_torch(state: LstmState) -> LstmState:
    return LstmState(
        torch.from_numpy(np.ascontiguousarray(state.h)), torch.from_numpy(np.ascontiguousarray(state.c))
    )


def _to_numpy(state: LstmState) -> LstmState:
    return LstmState(state.h.numpy(), state.c.numpy())


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Predictor and joint calls are tiny: a thread pool only adds wake-up latency."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class TorchRuntime:
    """Runs a model in inference mode on the CPU (encoder on torch's threads, the
    predictor and joint on one)."""

    def __init__(self, model: Transducer):
        self.model = model.eval()
        self.time_reduction = model.config.time_reduction

    def init_encoder_state(self, batch_size: int) -> LstmState:
        return _to_numpy(self.model.encoder.init_state(batch_size))

    def init_predictor_state(self, batch_size: int) -> LstmState:
        return _to_numpy(self.model.predictor.init_state(batch_size))

    @torch.inference_mode()
    def encode(self, features: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        out, new_state = self.model.search_encode(torch.from_numpy(features), _to_torch(state))
        return out.numpy(), _to_numpy(new_state)

    @torch.inference_mode()
    @_one_thread()
    def predict(self, tokens: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        out, new_state = self.model.search_predict(torch.from_numpy(tokens)[:, None], _to_torch(state))
        return out[:, 0].numpy(), _to_numpy(new_state)

    @torch.inference_mode()
    @_one_thread()
    def join(self, encoder_out: np.ndarray, predictor_out: np.ndarray) -> np.ndarray:
        return self.model.search_join(torch.from_numpy(encoder_out), torch.from_numpy(predictor_out)).numpy()
