"""Export: PyTorch == ONNX Runtime == OpenVINO (f32), chunk by chunk and in greedy transcripts;
the deployed backends never import torch; broken exports are rejected with a clear message."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from rnnt import benchmark
from rnnt.audio import load_audio
from rnnt.checkpoint import atomic_save, load_bundle, make_checkpoint
from rnnt.config import DecodeConfig, FeatureConfig, StreamConfig, TokenizerConfig
from rnnt.decoding import decode_features, encode_utterances
from rnnt.device import native_bf16
from rnnt.export import ExportError, export
from rnnt.features import compute_features
from rnnt.hypothesis import Runtime
from rnnt.model import Transducer
from rnnt.parity import synthetic_speech
from rnnt.runtimes import CONFIG_FILE, EXPORT_FORMAT, GRAPHS, ModelLoadError, is_current_export, load_model
from rnnt.runtimes.ort import import_onnxruntime, process_pool_threads
from rnnt.runtimes.ov import OpenVinoRuntime, import_openvino
from rnnt.runtimes.pytorch import TorchRuntime
from rnnt.tokenizer import Tokenizer

from .conftest import REAL_AUDIO, REPO, tiny_model_config

TEXTS = ["i had that curiosity beside me at this moment", "in eighteen thirteen", "eight the press yard"]
FEATURES = FeatureConfig()
# Real recordings (3.4 s and 1.5 s: odd and even frame counts) and their synthetic stand-ins' lengths.
RECORDINGS = {"Lab41-SRI-VOiCES-src-sp0307-ch127535-sg0042.wav": 3.4, "LJ002-0020.wav": 1.5}
BF16_ATOL = 0.1  # bfloat16 keeps 8 significant bits
ATOL = 1e-4
CHUNK_FRAMES = 8  # a multiple of the time reduction


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = Tokenizer.train(TEXTS, TokenizerConfig(tokenizer_kind="char"))
    config = tiny_model_config(
        vocab_size=tokenizer.vocab_size,
        input_dim=FEATURES.feature_dim,
        encoder_layers=3,
        reduction_after=2,
        predictor_layers=2,
        joint_dim=12,
        ctc_head=True,  # the encoder exports its CTC output (`rnnt.rescoring`)
    )
    torch.manual_seed(0)
    model = Transducer(config).eval()
    path = tmp_path_factory.mktemp("checkpoint") / "model.pt"
    configs = {"feature": FEATURES, "model": config, "decode": DecodeConfig(suppress_unk=False)}
    atomic_save(make_checkpoint(model, tokenizer, configs), path)
    return path


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("export")
    real = REAL_AUDIO / next(iter(RECORDINGS))
    report = export(checkpoint, directory, int8=True, parity_audio=real if real.is_file() else None)
    assert all(result.passed for result in report.parity)
    return directory


def run_tool(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, script, *args], cwd=REPO, capture_output=True, text=True, check=False
    )


def speech(name: str, seconds: float) -> np.ndarray:
    """A real recording, or synthetic speech of its length where shared/ is absent."""
    path = REAL_AUDIO / name
    if path.is_file():
        return load_audio(path, FEATURES.sample_rate)
    return synthetic_speech(FEATURES.sample_rate, seconds)


@pytest.fixture(scope="module")
def utterances() -> list[np.ndarray]:
    return [compute_features(speech(name, seconds), FEATURES) for name, seconds in RECORDINGS.items()]


@pytest.fixture(scope="module")
def backends(checkpoint: Path, exported: Path) -> dict[str, Runtime]:
    return {
        "torch": TorchRuntime(load_bundle(checkpoint).model),
        "onnx": load_model(exported, "onnx").runtime,
        "openvino": load_model(exported, "openvino").runtime,
    }


def test_export_directory_describes_itself(checkpoint: Path, exported: Path) -> None:
    bundle = load_bundle(checkpoint)
    config = json.loads((exported / CONFIG_FILE).read_text())
    assert config["model"] == dataclasses.asdict(bundle.model.config)
    assert config["feature"] == dataclasses.asdict(bundle.features)
    assert config["decode"] == dataclasses.asdict(bundle.decode)
    for name in GRAPHS:
        for path in (exported / f"{name}.onnx", exported / f"{name}.int8.onnx"):
            metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
            assert json.loads(metadata["model"]) == config["model"]
            assert metadata["format"] == config["format"]
    operators = [node.op_type for node in onnx.load(str(exported / "encoder.onnx")).graph.node]
    assert operators.count("LSTM") == bundle.model.config.encoder_layers  # not unrolled time steps
    loaded = load_model(exported, "onnx")
    assert loaded.tokenizer.model_proto == bundle.tokenizer.model_proto
    assert loaded.features == bundle.features and loaded.decode == bundle.decode


def test_runtimes_match_torch_chunk_by_chunk(
    backends: dict[str, Runtime], utterances: list[np.ndarray]
) -> None:
    features = utterances[0][None, : len(utterances[0]) // CHUNK_FRAMES * CHUNK_FRAMES]
    states = {name: runtime.init_encoder_state(1) for name, runtime in backends.items()}
    for start in range(0, features.shape[1], CHUNK_FRAMES):
        outputs = {}
        for name, runtime in backends.items():
            outputs[name], states[name] = runtime.encode(
                features[:, start : start + CHUNK_FRAMES], states[name]
            )
        for name in ("onnx", "openvino"):
            np.testing.assert_allclose(outputs[name], outputs["torch"], atol=ATOL, err_msg=name)
            np.testing.assert_allclose(states[name].h, states["torch"].h, atol=ATOL, err_msg=name)
            np.testing.assert_allclose(states[name].c, states["torch"].c, atol=ATOL, err_msg=name)


def test_ctc_output_matches_torch_and_rescored_transcripts_agree(
    backends: dict[str, Runtime], utterances: list[np.ndarray]
) -> None:
    """The encoder's CTC log-probabilities (`encode_with_ctc`) match PyTorch's chunk by chunk,
    and beam search + CTC rescoring picks the same hypotheses on every runtime."""
    features = utterances[0][None, : 2 * CHUNK_FRAMES]
    outputs = {}
    for name, runtime in backends.items():
        assert runtime.has_ctc, name
        state = runtime.init_encoder_state(1)
        chunks = []
        for start in (0, CHUNK_FRAMES):
            chunk = features[:, start : start + CHUNK_FRAMES]
            plain, plain_state = runtime.encode(chunk, state)
            out, ctc_log_probs, state = runtime.encode_with_ctc(chunk, state)
            np.testing.assert_array_equal(out, plain)
            np.testing.assert_array_equal(state.h, plain_state.h)
            chunks += [out, ctc_log_probs]
        outputs[name] = chunks
        np.testing.assert_allclose(np.exp(ctc_log_probs).sum(axis=-1), 1.0, atol=1e-5)
    for name in ("onnx", "openvino"):
        for got, want in zip(outputs[name], outputs["torch"], strict=True):
            np.testing.assert_allclose(got, want, atol=ATOL, err_msg=name)
    decode = DecodeConfig(suppress_unk=False, beam_size=3, ctc_rescore_weight=0.5)
    transcripts = {
        name: [hyp.tokens for hyp in decode_features(runtime, utterances, decode)]
        for name, runtime in backends.items()
    }
    assert transcripts["onnx"] == transcripts["torch"] == transcripts["openvino"]


def test_openvino_compiles_the_recurring_chunk_shape(exported: Path, utterances: list[np.ndarray]) -> None:
    """From the second chunk on, OpenVINO runs a copy compiled for the chunk's shape (and
    for a batch-1 predictor), with ONNX Runtime's outputs."""
    openvino, onnx = (load_model(exported, backend).runtime for backend in ("openvino", "onnx"))
    assert isinstance(openvino, OpenVinoRuntime)
    features = utterances[0][None, : 3 * CHUNK_FRAMES]
    tokens = np.array([2], dtype=np.int64)
    ov_state, onnx_state = openvino.init_encoder_state(1), onnx.init_encoder_state(1)
    ov_predictor, onnx_predictor = openvino.init_predictor_state(1), onnx.init_predictor_state(1)
    for start in range(0, features.shape[1], CHUNK_FRAMES):
        chunk = features[:, start : start + CHUNK_FRAMES]
        ov_out, ov_state = openvino.encode(chunk, ov_state)
        onnx_out, onnx_state = onnx.encode(chunk, onnx_state)
        np.testing.assert_allclose(ov_out, onnx_out, atol=ATOL)
        np.testing.assert_allclose(ov_state.h, onnx_state.h, atol=ATOL)
        ov_out, ov_predictor = openvino.predict(tokens, ov_predictor)
        onnx_out, onnx_predictor = onnx.predict(tokens, onnx_predictor)
        np.testing.assert_allclose(ov_out, onnx_out, atol=ATOL)
        np.testing.assert_allclose(ov_predictor.c, onnx_predictor.c, atol=ATOL)
    shapes = openvino.static_shapes()
    assert [shape[0] for shape in shapes["encoder"]] == [chunk.shape]
    assert [shape[0] for shape in shapes["decoder"]] == [(1, 1)]
    assert shapes["joint"] == []


@pytest.mark.parametrize("batch", [5, 1])  # each may run on a copy compiled for its shape
def test_predictor_and_joint_match_torch(backends: dict[str, Runtime], batch: int) -> None:
    rng = np.random.default_rng(0)
    encoder_out = rng.standard_normal((batch, 12)).astype(np.float32)
    results = {}
    for name, runtime in backends.items():
        state = runtime.init_predictor_state(batch)
        steps = []
        for tokens in ([0, 0, 0, 0, 0], [2, 3, 4, 5, 6], [7, 2, 9, 3, 4]):
            out, state = runtime.predict(np.array(tokens[:batch], dtype=np.int64), state)
            steps += [out, state.h, state.c, runtime.join(encoder_out, out)]
        results[name] = steps
    for name in ("onnx", "openvino"):
        for got, want in zip(results[name], results["torch"], strict=True):
            np.testing.assert_allclose(got, want, atol=ATOL, err_msg=name)


def test_openvino_decoder_is_cell_arithmetic(exported: Path) -> None:
    """OpenVINO's decoder is the predictor LSTM's cell arithmetic, faster there
    (`export_openvino`); ONNX Runtime's keeps the LSTM operator. Both match torch (above)."""
    ov_ops = {
        op.get_type_name()
        for op in import_openvino().Core().read_model(str(exported / "openvino" / "decoder.xml")).get_ops()
    }
    assert "MatMul" in ov_ops and not any("LSTM" in op for op in ov_ops), ov_ops
    assert "LSTM" in {node.op_type for node in onnx.load(str(exported / "decoder.onnx")).graph.node}


def test_greedy_transcripts_identical(backends: dict[str, Runtime], utterances: list[np.ndarray]) -> None:
    decode = DecodeConfig(suppress_unk=False)
    transcripts = {
        name: [hyp.tokens for hyp in decode_features(runtime, utterances, decode)]
        for name, runtime in backends.items()
    }
    assert any(transcripts["torch"])
    assert transcripts["onnx"] == transcripts["torch"]
    assert transcripts["openvino"] == transcripts["torch"]


def test_a_second_onnx_thread_count_runs_on_the_process_pool(
    exported: Path, utterances: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    """ONNX Runtime has one thread pool per process and refuses sessions with pools of their
    own once it exists: a runtime asking for another thread count loads, says so, and decodes
    as the first one does."""
    decode = DecodeConfig(suppress_unk=False)
    first = load_model(exported, "onnx").runtime
    pool = process_pool_threads(import_onnxruntime(), 0)
    with caplog.at_level(logging.WARNING, logger="rnnt"):
        other = load_model(exported, "onnx", threads=pool + 1).runtime
    assert f"{pool + 1} intra-op threads asked for" in caplog.text
    encoded = [encode_utterances(runtime, utterances)[0] for runtime in (first, other)]
    np.testing.assert_array_equal(encoded[0], encoded[1])
    transcripts = [[hyp.tokens for hyp in decode_features(r, utterances, decode)] for r in (first, other)]
    assert transcripts[0] == transcripts[1] and any(transcripts[0])


def test_int8_export_decodes(exported: Path, utterances: list[np.ndarray]) -> None:
    loaded = load_model(exported, "onnx", "int8")
    hyps = decode_features(loaded.runtime, utterances, loaded.decode)
    assert len(hyps) == len(utterances)
    assert all(0 <= token < loaded.model.vocab_size for hyp in hyps for token in hyp.tokens)


def test_int8_weights_use_seven_bits(exported: Path) -> None:
    """8-bit weights saturate ONNX Runtime's int16 pair sums on CPUs without VNNI (the demo model
    streamed at 48.84% WER against 32.20% fp32 on an AVX2 host); 7 bits do not (`quantize_onnx`)."""
    for name in GRAPHS:
        graph = onnx.load(str(exported / f"{name}.int8.onnx")).graph
        weights = [
            onnx.numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8
        ]
        assert weights, name
        assert all(np.abs(w.astype(np.int16)).max() <= 64 for w in weights), name  # 8 bits: 127


def test_openvino_bf16_is_close_to_torch(
    backends: dict[str, Runtime], exported: Path, utterances: list[np.ndarray]
) -> None:
    bf16 = load_model(exported, "openvino", "bf16").runtime
    features = utterances[0][None]
    want, _ = backends["torch"].encode(features, backends["torch"].init_encoder_state(1))
    got, _ = bf16.encode(features, bf16.init_encoder_state(1))
    np.testing.assert_allclose(got, want, atol=BF16_ATOL)


TORCH_FREE = """
import dataclasses
import sys
import numpy as np
from rnnt.features import compute_features
from rnnt.decoding import decode_features
from rnnt.fusion import Fusion
from rnnt.hotwords import Hotwords, Phrase
from rnnt.lm import NgramLm
from rnnt.runtimes import load_model
samples = np.random.default_rng(0).uniform(-0.1, 0.1, 16000).astype(np.float32)
for backend, precision in (("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32")):
    loaded = load_model(sys.argv[1], backend, precision)
    features = [compute_features(samples, loaded.features)]
    decode_features(loaded.runtime, features, loaded.decode)
    lm = NgramLm.train([[2, 3], [3]], loaded.tokenizer.vocab_size, "any", order=2)
    decode = dataclasses.replace(loaded.decode, beam_size=2, ctc_rescore_weight=0.2)
    hotwords = Hotwords([Phrase((2, 3), 1.5)], loaded.tokenizer.vocab_size)
    decode_features(loaded.runtime, features, decode, Fusion(lm, hotwords))
    assert "torch" not in sys.modules, backend + " imported torch"
"""


def test_deployed_backends_do_not_import_torch(exported: Path) -> None:
    command = [sys.executable, "-c", TORCH_FREE, str(exported)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_missing_export_is_rejected(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such model"):
        load_model(tmp_path / "nowhere", "onnx")
    with pytest.raises(ModelLoadError, match="not an export directory"):
        load_model(tmp_path, "openvino")
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    (broken / "decoder.onnx").unlink()
    with pytest.raises(ModelLoadError, match=r"decoder\.onnx"):
        load_model(broken, "onnx")
    (broken / "openvino" / "joint.xml").write_text("not an IR")
    with pytest.raises(ModelLoadError, match=r"joint\.xml"):
        load_model(broken, "openvino")
    (broken / "encoder.int8.onnx").unlink()
    with pytest.raises(ModelLoadError, match="--int8"):
        load_model(broken, "onnx", "int8")
    with pytest.raises(ModelLoadError, match="runs fp32 or bf16"):
        load_model(exported, "openvino", "int8")
    with pytest.raises(ModelLoadError, match="runs fp32 or int8"):
        load_model(exported, "onnx", "bf16")


@pytest.mark.parametrize("output", [0, 1])  # the encoder's frames, its CTC log-probabilities
def test_parity_failure_raises(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: int
) -> None:
    encode = OpenVinoRuntime.encode_with_ctc

    def noisy(self: OpenVinoRuntime, features: np.ndarray, state: object) -> tuple[np.ndarray, ...]:
        outputs = list(encode(self, features, state))  # type: ignore[arg-type]
        outputs[output] = outputs[output] + 1e-3
        return tuple(outputs)

    monkeypatch.setattr(OpenVinoRuntime, "encode_with_ctc", noisy)
    with pytest.raises(ExportError, match=r"encoder on openvino fp32 differs from PyTorch by 1\.00e-03"):
        export(checkpoint, tmp_path)
    assert not (tmp_path / CONFIG_FILE).exists()  # a failed export is not loadable


def test_script_rejects_a_bad_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    command = [sys.executable, "export_onnx.py", f"--checkpoint={bad}", f"--output_dir={tmp_path / 'out'}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert "error:" in result.stderr and "not a readable checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_benchmark_compares_every_runtime_in_one_run(
    checkpoint: Path, exported: Path, tmp_path: Path
) -> None:
    audio = [REAL_AUDIO / name for name in RECORDINGS]
    if not all(path.is_file() for path in audio):
        pytest.skip("needs the real recordings in shared/real")
    manifest = tmp_path / "real.jsonl"
    manifest.write_text("".join(json.dumps({"audio": str(path), "text": "a b"}) + "\n" for path in audio))
    output = tmp_path / "bench.json"
    variants = "torch:fp32,onnx:fp32,openvino:fp32,openvino:bf16,onnx:int8"
    run = run_tool(
        "tools/benchmark.py",
        f"--checkpoint={checkpoint}",
        f"--export_dir={exported}",
        f"--manifest={manifest}",
        f"--variants={variants}",
        f"--output={output}",
        "--chunk_ms=240",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(output.read_text())
    rows = {f"{row['runtime']}:{row['precision']}": row for row in result["rows"]}
    assert list(rows) == variants.split(",")
    assert result["fp32_transcripts_identical"]
    assert len({rows[name]["wer_percent"] for name in rows if name.endswith("fp32")}) == 1
    for row in rows.values():
        assert row["audio_s_per_s"] > 0 and row["peak_rss_mb"] > 0 and row["size_mb"] > 0
        assert row["encoder_floor_ms"] > 0 and row["encoder_step_floor_ms"] > 0
        assert row["joint_calls"] > 0 and row["first_encoder_ms"] > 0 and row["load_s"] > 0
    assert rows["onnx:int8"]["size_mb"] < rows["onnx:fp32"]["size_mb"]
    assert result["paired_reference"] == "onnx fp32" and rows["onnx:fp32"]["speed_vs_reference"] == 1.0
    assert f"{os.cpu_count()} logical cores" in result["host"] and f"host: {result['host']}" in run.stdout
    assert all(row["speed_vs_reference"] > 0 for row in rows.values())
    bf16_floor, fp32_floor = (
        rows["openvino:bf16"]["encoder_floor_ms"],
        rows["openvino:fp32"]["encoder_floor_ms"],
    )
    assert bf16_floor == pytest.approx(fp32_floor / 2, abs=2e-3)
    # Only OpenVINO bf16 can be emulated, and the row says so exactly when this CPU lacks bf16
    # units (by torch's probe of the CPU, independent of OpenVINO's report the row is built on).
    has_bf16_units = native_bf16(torch.device("cpu"))
    assert rows["openvino:bf16"]["native_precision"] is has_bf16_units
    assert all(row["native_precision"] for name, row in rows.items() if name != "openvino:bf16")
    assert ("bf16 (emulated)" in run.stdout) is not has_bf16_units


def test_benchmark_does_not_count_its_warm_up(exported: Path) -> None:
    speech = [synthetic_speech(16000, seconds, seed) for seed, seconds in enumerate((1.0, 2.0))]
    variant = benchmark.open_variant(exported, "onnx", "fp32", StreamConfig(chunk_ms=240), DecodeConfig(), 0)
    benchmark.run_interleaved([variant], speech, chunk_ms=240)
    # Two utterances counted, not three: the warm-up decoded the first one once more.
    assert len(variant.utterance_busy_s) == len(variant.transcripts) == 2
    assert variant.audio_s == pytest.approx(3.0)
    assert variant.first_encoder_call_s > 0
    assert len(variant.chunk_latency_s) == 5 + 9  # 240 ms chunks of 1 s and 2 s


def test_lstm_calibration_times_a_plain_stack_beside_an_export(exported: Path, tmp_path: Path) -> None:
    output = tmp_path / "calibration.json"
    run = run_tool(
        "tools/lstm_calibration.py",
        "--layers=2",
        "--hidden=32",
        "--input_dim=20",
        "--chunk_frames=4",
        "--rounds=2",
        f"--export_dir={exported}",
        f"--work_dir={tmp_path / 'stack'}",
        f"--output={output}",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(output.read_text())
    rows = {(row["model"], row["runtime"], row["precision"]): row for row in result["rows"]}
    assert len(rows) == 6
    assert ("plain 2x32", "openvino", "fp32") in rows
    assert all(row["chunk_ms_median"] > 0 and row["step_floor_ms"] > 0 for row in rows.values())
    int8, fp32 = (rows["plain 2x32", "onnx", precision]["step_floor_ms"] for precision in ("int8", "fp32"))
    assert int8 == pytest.approx(fp32 / 4, rel=0.05)
    assert len(result["fp32_state_max_abs_difference"]) == 2
    assert max(result["fp32_state_max_abs_difference"].values()) < ATOL


def test_an_export_of_an_older_format_is_not_current(tmp_path: Path) -> None:
    """Tools that reuse an export (the benchmark's random models) remake a stale one."""
    assert not is_current_export(tmp_path / "missing")
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"format": "rnnt-export-1"}))
    assert not is_current_export(tmp_path)
    with pytest.raises(ModelLoadError, match="export the checkpoint again"):
        load_model(tmp_path, "onnx")
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"format": EXPORT_FORMAT}))
    assert is_current_export(tmp_path)
