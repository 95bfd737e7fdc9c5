"""Transducer: chunked encoding == whole utterance, state batching, predictor steps, sizes."""

from __future__ import annotations

import copy

import pytest
import torch
from absl import flags

from rnnt.config import (
    BLANK_ID,
    NO_TOKEN,
    AugmentConfig,
    DataConfig,
    DecodeConfig,
    FeatureConfig,
    ModelConfig,
    RunConfig,
    TokenizerConfig,
    TrainConfig,
    model_config_for_summary,
)
from rnnt.flags import CONFIG_FLAGS
from rnnt.model import STEPWISE_MAX_BATCH, Transducer, count_parameters, run_lstm
from rnnt.state import LstmState, select_state, stack_states, unstack_states

from .conftest import REPO

ATOL = 1e-5
NUM_FRAMES = 24  # divisible by every chunk size below
SHIPPED_SIZES = {"E4D1": 3.3e6, "E6D2": 50.8e6, "E6D2_LARGE_Batch": 53.7e6}
SIZE_TOLERANCE = 0.02  # relative


def tiny_config(**changes: object) -> ModelConfig:
    base = ModelConfig(
        vocab_size=12,
        input_dim=20,
        encoder_layers=3,
        encoder_hidden=16,
        encoder_output=14,
        time_reduction=2,
        reduction_after=2,
        predictor_embed=8,
        predictor_layers=2,
        predictor_hidden=16,
        predictor_output=10,
        joint_dim=18,
    )
    return ModelConfig(**{**base.__dict__, **changes})


@pytest.fixture
def model() -> Transducer:
    torch.manual_seed(0)
    return Transducer(tiny_config()).eval()


def assert_states_close(actual: LstmState, expected: LstmState) -> None:
    torch.testing.assert_close(actual.h, expected.h, atol=ATOL, rtol=0)
    torch.testing.assert_close(actual.c, expected.c, atol=ATOL, rtol=0)


def encode_in_chunks(
    model: Transducer, features: torch.Tensor, sizes: list[int]
) -> tuple[torch.Tensor, LstmState]:
    state = model.encoder.init_state(features.shape[0])
    outputs, start = [], 0
    for size in sizes:
        out, state = model.encode(features[:, start : start + size], state)
        outputs.append(out)
        start += size
    assert start == features.shape[1]
    return torch.cat(outputs, dim=1), state


@pytest.mark.parametrize("chunk_frames", [2, 4, 6])
@torch.no_grad()
def test_chunked_encoding_equals_whole(model: Transducer, chunk_frames: int) -> None:
    torch.manual_seed(1)
    features = torch.randn(2, NUM_FRAMES, model.config.input_dim)
    whole, whole_state = model.encode(features)
    chunked, chunked_state = encode_in_chunks(model, features, [chunk_frames] * (NUM_FRAMES // chunk_frames))
    assert whole.shape == (2, NUM_FRAMES // 2, model.config.encoder_output)
    torch.testing.assert_close(chunked, whole, atol=ATOL, rtol=0)
    assert_states_close(chunked_state, whole_state)


@pytest.mark.parametrize("batch_size", [1, 3, STEPWISE_MAX_BATCH])
def test_inference_lstm_steps_equal_nn_lstm(batch_size: int) -> None:
    """`run_lstm`'s inference loop computes what nn.LSTM (used when autograd is on) does."""
    torch.manual_seed(3)
    lstm = torch.nn.LSTM(20, 16, num_layers=2, batch_first=True).eval()
    x = torch.randn(batch_size, 7, 20)
    state = (torch.randn(2, batch_size, 16), torch.randn(2, batch_size, 16))
    expected, (h, c) = run_lstm(lstm, x, state)
    assert expected.requires_grad  # nn.LSTM ran
    with torch.inference_mode():
        actual, (h_steps, c_steps) = run_lstm(lstm, x, state)
    torch.testing.assert_close(actual, expected.detach(), atol=ATOL, rtol=0)
    assert_states_close(LstmState(h_steps, c_steps), LstmState(h.detach(), c.detach()))


def test_inference_encoder_equals_training_graph(model: Transducer) -> None:
    torch.manual_seed(4)
    features = torch.randn(1, NUM_FRAMES, model.config.input_dim)
    expected, expected_state = model.encode(features)
    with torch.inference_mode():
        actual, state = model.encode(features)
    torch.testing.assert_close(actual, expected.detach(), atol=ATOL, rtol=0)
    assert_states_close(state, LstmState(expected_state.h.detach(), expected_state.c.detach()))


@torch.no_grad()
def test_uneven_chunks_equal_whole(model: Transducer) -> None:
    torch.manual_seed(2)
    features = torch.randn(1, NUM_FRAMES, model.config.input_dim)
    whole, whole_state = model.encode(features)
    chunked, chunked_state = encode_in_chunks(model, features, [2, 6, 4, 2, 8, 2])
    torch.testing.assert_close(chunked, whole, atol=ATOL, rtol=0)
    assert_states_close(chunked_state, whole_state)


def test_stack_unstack_round_trip() -> None:
    torch.manual_seed(3)
    states = [LstmState(torch.randn(3, 1, 5), torch.randn(3, 1, 5)) for _ in range(4)]
    batched = stack_states(states)
    assert batched.h.shape == (3, 4, 5)
    for original, recovered in zip(states, unstack_states(batched), strict=True):
        assert torch.equal(original.h, recovered.h)
        assert torch.equal(original.c, recovered.c)
    picked = select_state(batched, [2, 0])
    assert torch.equal(picked.h, torch.cat([states[2].h, states[0].h], dim=1))
    numpy_states = [LstmState(s.h.numpy(), s.c.numpy()) for s in states]
    assert (stack_states(numpy_states).c == batched.c.numpy()).all()


@torch.no_grad()
def test_batched_streams_equal_each_alone(model: Transducer) -> None:
    torch.manual_seed(4)
    first, second = (torch.randn(1, 10, model.config.input_dim) for _ in range(2))
    # Give the streams different histories, then continue both in one batch.
    _, state_a = model.encode(first[:, :4])
    _, state_b = model.encode(second[:, :6])
    batched_out, batched_state = model.encode(
        torch.cat([first[:, 4:8], second[:, 6:10]]), stack_states([state_a, state_b])
    )
    alone_a, new_a = model.encode(first[:, 4:8], state_a)
    alone_b, new_b = model.encode(second[:, 6:10], state_b)
    torch.testing.assert_close(batched_out, torch.cat([alone_a, alone_b]), atol=ATOL, rtol=0)
    split_a, split_b = unstack_states(batched_state)
    assert_states_close(split_a, new_a)
    assert_states_close(split_b, new_b)


@pytest.fixture(params=["lstm", "stateless"])
def any_predictor_model(request: pytest.FixtureRequest) -> Transducer:
    torch.manual_seed(0)
    return Transducer(tiny_config(predictor=request.param, predictor_context=3)).eval()


@torch.no_grad()
def test_predictor_steps_equal_whole_sequence(any_predictor_model: Transducer) -> None:
    model = any_predictor_model
    torch.manual_seed(5)
    tokens = torch.randint(0, model.config.vocab_size, (3, 7))
    whole, whole_state = model.predict(tokens)
    state = model.predictor.init_state(3)
    steps = []
    for u in range(tokens.shape[1]):
        out, state = model.predict(tokens[:, u : u + 1], state)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, atol=ATOL, rtol=0)
    assert_states_close(state, whole_state)


@torch.no_grad()
def test_join_broadcasts(model: Transducer) -> None:
    torch.manual_seed(6)
    enc = torch.randn(2, 5, 1, model.config.encoder_output)
    pred = torch.randn(2, 1, 3, model.config.predictor_output)
    logits = model.join(enc, pred)
    assert logits.shape == (2, 5, 3, model.config.vocab_size)
    torch.testing.assert_close(logits[1, 4, 2], model.join(enc[1, 4, 0], pred[1, 0, 2]))


@torch.no_grad()
def test_search_view_gives_the_training_joints_logits(model: Transducer) -> None:
    """The runtimes' projected encoder/predictor vectors, summed in the joint, give the
    logits `join` computes from the raw outputs (the projections only moved)."""
    torch.manual_seed(7)
    features = torch.randn(2, 8, model.config.input_dim)
    tokens = torch.randint(0, model.config.vocab_size, (2, 3))
    enc, _ = model.encode(features)
    pred, _ = model.predict(tokens)
    enc_j, _ = model.search_encode(features, model.encoder.init_state(2))
    pred_j, _ = model.search_predict(tokens, model.predictor.init_state(2))
    assert enc_j.shape[-1] == pred_j.shape[-1] == model.config.joint_dim
    expected = model.join(enc[:, :, None], pred[:, None])
    actual = model.search_join(enc_j[:, :, None], pred_j[:, None])
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


def _run_config_from_flagfile(name: str, monkeypatch: pytest.MonkeyPatch) -> RunConfig:
    """Parse a shipped flagfile into a RunConfig, on private copies of the toolkit's flags."""
    monkeypatch.chdir(REPO)  # flagfiles include each other by repo-relative path
    values = flags.FlagValues()
    for holders in CONFIG_FLAGS.values():
        for flag_name in holders:
            values[flag_name] = copy.deepcopy(flags.FLAGS[flag_name])
    values(["summary", f"--flagfile=flagfiles/{name}.txt"])
    configs = {cls: cls(**{n: values[n].value for n in holders}) for cls, holders in CONFIG_FLAGS.items()}
    return RunConfig(
        feature=configs[FeatureConfig],
        tokenizer=configs[TokenizerConfig],
        model=configs[ModelConfig],
        data=configs[DataConfig],
        augment=configs[AugmentConfig],
        train=configs[TrainConfig],
        decode=configs[DecodeConfig],
    )


@pytest.mark.parametrize("name", sorted(SHIPPED_SIZES))
def test_shipped_model_sizes(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _run_config_from_flagfile(name, monkeypatch)
    assert config.train.name == name
    model = Transducer(model_config_for_summary(config))
    assert count_parameters(model) == pytest.approx(SHIPPED_SIZES[name], rel=SIZE_TOLERANCE)


@torch.no_grad()
def test_stateless_predictor_sees_only_its_context() -> None:
    """Two histories that end in the same three tokens give the same output (context 3: the
    token itself and the two before it); a different token two back changes it."""
    torch.manual_seed(0)
    model = Transducer(tiny_config(predictor="stateless", predictor_context=3)).eval()
    same = [model.predict(torch.tensor([tokens]))[0][0, -1] for tokens in ([4, 7, 2, 5, 6], [9, 1, 2, 5, 6])]
    torch.testing.assert_close(same[0], same[1])
    other = model.predict(torch.tensor([[4, 7, 3, 5, 6]]))[0][0, -1]
    assert (other - same[0]).abs().max() > 1e-3


@torch.no_grad()
def test_stateless_predictor_starts_from_no_tokens() -> None:
    """Before the start token the context is `NO_TOKEN`, which embeds to zero: the first output
    equals the convolution of zeros and the blank's embedding (icefall's left padding)."""
    torch.manual_seed(0)
    model = Transducer(tiny_config(predictor="stateless", predictor_context=2)).eval()
    predictor = model.predictor
    assert (predictor.init_state(1).h == NO_TOKEN).all()
    first, _ = model.predict(torch.tensor([[BLANK_ID]]))
    embedded = torch.stack([torch.zeros(8), predictor.embed.weight[BLANK_ID]], dim=1)[None]
    expected = predictor.proj(torch.relu(predictor.conv(embedded)).transpose(1, 2))
    torch.testing.assert_close(first, expected)
