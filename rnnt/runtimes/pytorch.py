"""The PyTorch backend: a `Transducer` behind the numpy `Runtime` interface."""

from __future__ import annotations

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


class TorchRuntime:
    """Runs a model in inference mode on the CPU, every call on torch's threads.

    The predictor and joint once ran on one thread. torch's threads are faster even for
    them: on 30 demo test utterances, interleaved, 35.2x real time against 32.1x (predictor
    0.64 against 0.80 ms per call); on the E6D2_LARGE_Batch benchmark model, 12.1x against
    11.2x. Transcripts were identical. (ONNX Runtime is different: its idle pools busy-wait.)
    """

    def __init__(self, model: Transducer):
        self.model = model.eval()
        self.time_reduction = model.config.time_reduction
        self.has_ctc = model.ctc is not None

    def init_encoder_state(self, batch_size: int) -> LstmState:
        return _to_numpy(self.model.encoder.init_state(batch_size))

    def init_predictor_state(self, batch_size: int) -> LstmState:
        return _to_numpy(self.model.predictor.init_state(batch_size))

    @torch.inference_mode()
    def encode(self, features: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        out, new_state = self.model.search_encode(torch.from_numpy(features), _to_torch(state))
        return out.numpy(), _to_numpy(new_state)

    @torch.inference_mode()
    def encode_with_ctc(
        self, features: np.ndarray, state: LstmState
    ) -> tuple[np.ndarray, np.ndarray, LstmState]:
        out, ctc_log_probs, new_state = self.model.search_encode_with_ctc(
            torch.from_numpy(features), _to_torch(state)
        )
        return out.numpy(), ctc_log_probs.numpy(), _to_numpy(new_state)

    @torch.inference_mode()
    def predict(self, tokens: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        out, new_state = self.model.search_predict(torch.from_numpy(tokens)[:, None], _to_torch(state))
        return out[:, 0].numpy(), _to_numpy(new_state)

    @torch.inference_mode()
    def join(self, encoder_out: np.ndarray, predictor_out: np.ndarray) -> np.ndarray:
        return self.model.search_join(torch.from_numpy(encoder_out), torch.from_numpy(predictor_out)).numpy()
