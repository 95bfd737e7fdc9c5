"""stream.py end to end: real recordings in, JSON events out == offline decoding; clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from rnnt.audio import load_audio
from rnnt.checkpoint import atomic_save, make_checkpoint
from rnnt.config import BLANK_ID, DecodeConfig, FeatureConfig, TokenizerConfig
from rnnt.decoding import decode_features
from rnnt.features import compute_features
from rnnt.model import Transducer
from rnnt.runtimes.pytorch import TorchRuntime
from rnnt.tokenizer import Tokenizer

from .conftest import REAL_AUDIO, REPO, needs_real_audio, tiny_model_config
from .test_streaming import BLANK_BIAS, JOINT_GAIN, PREDICTOR_GAIN, TEXTS

RECORDINGS = ["jfk.flac", "common_voice_en_651325.mp3"]  # 44.1 kHz stereo flac; 48 kHz mp3
FEATURES = FeatureConfig()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model with a char tokenizer, saved as a checkpoint."""
    tokenizer = Tokenizer.train(TEXTS, TokenizerConfig(tokenizer_kind="char"))
    config = tiny_model_config(vocab_size=tokenizer.vocab_size, input_dim=FEATURES.feature_dim)
    torch.manual_seed(2)
    model = Transducer(config)
    with torch.no_grad():
        model.joint.pred_proj.weight.mul_(PREDICTOR_GAIN)
        model.joint.out.weight.mul_(JOINT_GAIN)
        model.joint.out.bias[BLANK_ID] += BLANK_BIAS
    path = tmp_path_factory.mktemp("model") / "model.pt"
    configs = {"feature": FEATURES, "model": config, "decode": DecodeConfig()}
    atomic_save(make_checkpoint(model, tokenizer, configs), path)
    return path


def run_stream(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(REPO / "stream.py"), "--threads=1", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)


def offline_text(checkpoint: Path, audio: Path, decode: DecodeConfig) -> str:
    from rnnt.checkpoint import load_bundle

    bundle = load_bundle(checkpoint)
    features = compute_features(load_audio(audio, FEATURES.sample_rate), FEATURES)
    (hyp,) = decode_features(TorchRuntime(bundle.model), [features], decode)
    return bundle.tokenizer.decode(hyp.tokens)


@needs_real_audio
@pytest.mark.parametrize("recording", RECORDINGS)
def test_jsonl_events_equal_offline_decoding(checkpoint: Path, recording: str) -> None:
    audio = REAL_AUDIO / recording
    beam = "2" if recording.endswith(".mp3") else "1"
    result = run_stream(
        f"--model={checkpoint}",
        f"--input={audio}",
        "--format=jsonl",
        "--noendpointing",
        f"--beam_size={beam}",
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events and all(e["kind"] in ("partial", "final") for e in events)
    finals = [e for e in events if e["kind"] == "final"]
    assert len(finals) == 1 and events[-1] is finals[0]
    expected = offline_text(checkpoint, audio, DecodeConfig(beam_size=int(beam)))
    assert expected and finals[0]["text"] == expected
    times = [t["start"] for t in finals[0]["tokens"]]
    assert times == sorted(times) and finals[0]["end"] <= soundfile.info(str(audio)).duration + 1e-3


@needs_real_audio
def test_text_output_off_a_terminal_is_the_finals(checkpoint: Path) -> None:
    audio = REAL_AUDIO / "jfk.flac"
    result = run_stream(f"--model={checkpoint}", f"--input={audio}", "--chunk_ms=240")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(line.strip() for line in lines) and "\r" not in result.stdout


def assert_one_line_error(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and words in errors[0], result.stderr


def test_missing_input_is_one_line(checkpoint: Path, tmp_path: Path) -> None:
    result = run_stream(f"--model={checkpoint}", f"--input={tmp_path / 'missing.wav'}")
    assert_one_line_error(result, "no such audio file")


def test_empty_audio_is_one_line(checkpoint: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), FEATURES.sample_rate)
    assert_one_line_error(run_stream(f"--model={checkpoint}", f"--input={empty}"), "no audio samples")


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--model=/nonexistent/model.pt"], "no such model"),
        (["--backend=tensorrt"], "unknown backend"),
        (["--backend=onnx"], "export it for onnx"),
        (["--format=xml"], "unknown --format"),
    ],
)
def test_bad_model_or_flags_is_one_line(checkpoint: Path, flags: list[str], words: str) -> None:
    audio = REAL_AUDIO / "jfk.flac"
    result = run_stream(f"--model={checkpoint}", f"--input={audio}", *flags)
    assert_one_line_error(result, words)


def test_stream_script_does_not_import_torch() -> None:
    code = "import sys; import stream; sys.exit('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
