"""sherpa-onnx runs the sherpa export (`rnnt.sherpa`) and decodes what the toolkit decodes:
the real sherpa-onnx package, its own features and greedy search, on real recordings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnt.audio import load_audio
from rnnt.checkpoint import ModelBundle, atomic_save, load_bundle, make_checkpoint
from rnnt.config import DecodeConfig, FeatureConfig, StreamConfig, TokenizerConfig
from rnnt.decoding import decode_features
from rnnt.export import export
from rnnt.features import compute_features, num_frames
from rnnt.model import Transducer
from rnnt.parity import synthetic_speech
from rnnt.runtimes import load_model
from rnnt.runtimes.pytorch import TorchRuntime
from rnnt.sherpa import TOKENS_FILE, decoded_frames, open_recognizer, pieces_text, transcribe
from rnnt.sherpa_export import SherpaExportError, export_sherpa
from rnnt.tokenizer import Tokenizer

from .conftest import INSPECTOR_SENTENCE, REAL_AUDIO, REPO, tiny_model_config

sherpa_onnx = pytest.importorskip("sherpa_onnx")

FEATURES = FeatureConfig(feature_kind="kaldi_fbank")
TEXTS = ["the boy was there when the sun rose", "a rod is used to catch pink salmon"]
# sherpa-onnx's greedy search: one token per frame at most, <unk> allowed.
SHERPA_GREEDY = DecodeConfig(max_symbols_per_frame=1, suppress_unk=False)
GREEDY = DecodeConfig(suppress_unk=False)
RECORDINGS = ("LJ002-0020.wav", "jfk.flac", "libri-1088-134315-0000.wav")


def tiny_bundle_checkpoint(path: Path, **changes: object) -> Path:
    tokenizer = Tokenizer.train(TEXTS, TokenizerConfig(tokenizer_kind="char"))
    config = tiny_model_config(vocab_size=tokenizer.vocab_size, input_dim=FEATURES.feature_dim, **changes)
    torch.manual_seed(0)
    model = Transducer(config).eval()
    configs = {"feature": FEATURES, "model": config, "decode": SHERPA_GREEDY}
    atomic_save(make_checkpoint(model, tokenizer, configs), path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sherpa")
    # Dropout as a trained model has it: export and checks must run it in eval mode.
    return tiny_bundle_checkpoint(
        directory / "model.pt",
        predictor="stateless",
        predictor_context=3,
        encoder_dropout=0.1,
        predictor_dropout=0.2,
    )


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sherpa-export")
    result = export_sherpa(checkpoint, directory, StreamConfig(chunk_ms=360), int8=True)
    assert result.chunk_frames == 36
    return directory


def recording(name: str) -> np.ndarray:
    path = REAL_AUDIO / name
    if path.is_file():
        return load_audio(path, FEATURES.sample_rate)
    return synthetic_speech(FEATURES.sample_rate, 2.0 + len(name) % 3)


def sherpa_tokens(directory: Path, samples: np.ndarray, precision: str = "fp32") -> list[str]:
    return transcribe(open_recognizer(directory, precision), samples, FEATURES.sample_rate)


def toolkit_tokens(bundle: ModelBundle, samples: np.ndarray, chunk: int) -> list[str]:
    """The toolkit's greedy search over the frames sherpa-onnx decodes."""
    frames = decoded_frames(num_frames(len(samples), FEATURES), chunk)
    features = compute_features(samples, FEATURES)[: frames // FEATURES.stack_frames]
    hyp = decode_features(TorchRuntime(bundle.model), [features], SHERPA_GREEDY)[0]
    return [bundle.tokenizer.piece(token) for token in hyp.tokens]


@pytest.mark.parametrize("name", RECORDINGS)
def test_sherpa_onnx_decodes_the_toolkits_tokens(checkpoint: Path, exported: Path, name: str) -> None:
    samples = recording(name)
    expected = toolkit_tokens(load_bundle(checkpoint), samples, chunk=36)
    assert len(expected) >= 10  # the random model emits plenty: a real comparison
    assert sherpa_tokens(exported, samples) == expected


def test_sherpa_onnx_runs_the_int8_graphs(exported: Path) -> None:
    samples = recording(RECORDINGS[1])
    fp32, int8 = sherpa_tokens(exported, samples), sherpa_tokens(exported, samples, "int8")
    matching = sum(a == b for a, b in zip(fp32, int8, strict=False))
    assert abs(len(int8) - len(fp32)) <= 0.2 * len(fp32)
    assert matching >= 0.5 * len(fp32)


def test_tokens_file_lists_every_piece(checkpoint: Path, exported: Path) -> None:
    tokenizer = load_bundle(checkpoint).tokenizer
    lines = (exported / TOKENS_FILE).read_text().splitlines()
    assert lines == [f"{tokenizer.piece(i)} {i}" for i in range(tokenizer.vocab_size)]


def test_an_lstm_predictor_or_other_features_are_refused(tmp_path: Path) -> None:
    lstm = tiny_bundle_checkpoint(tmp_path / "lstm.pt")
    with pytest.raises(SherpaExportError, match="predictor is an LSTM"):
        export_sherpa(lstm, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_toolkits_own_runtimes_run_a_stateless_predictor(checkpoint: Path, tmp_path: Path) -> None:
    """The same model through `rnnt.export`: every runtime's graphs match PyTorch (the export
    checks) and decode the same tokens."""
    report = export(checkpoint, tmp_path)
    assert all(result.passed for result in report.parity)
    features = [compute_features(recording(name), FEATURES) for name in RECORDINGS[:2]]
    transcripts = {
        backend: [hyp.tokens for hyp in decode_features(load_model(path, backend).runtime, features, GREEDY)]
        for backend, path in (("torch", checkpoint), ("onnx", tmp_path), ("openvino", tmp_path))
    }
    assert all(transcripts["torch"])
    assert transcripts["onnx"] == transcripts["torch"] == transcripts["openvino"]


def test_script_exports_for_sherpa_or_says_why_not(tmp_path: Path) -> None:
    stateless = tiny_bundle_checkpoint(tmp_path / "stateless.pt", predictor="stateless")
    lstm = tiny_bundle_checkpoint(tmp_path / "lstm.pt")
    runs = {
        name: subprocess.run(
            [
                sys.executable,
                "export_onnx.py",
                "--format=sherpa-onnx",
                f"--checkpoint={path}",
                f"--output_dir={tmp_path / name}",
                "--chunk_ms=240",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        for name, path in (("stateless", stateless), ("lstm", lstm))
    }
    assert runs["stateless"].returncode == 0, runs["stateless"].stderr
    assert "24 frames a chunk" in runs["stateless"].stdout
    assert runs["lstm"].returncode == 1
    assert "error: sherpa-onnx cannot run this model" in runs["lstm"].stderr
    assert "Traceback" not in runs["lstm"].stderr


def test_eval_tool_scores_sherpa_onnx_and_finds_no_difference(
    checkpoint: Path, exported: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "tools/eval_sherpa.py", f"--eval_set={tiny_corpus / 'test'}", *args]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)

    result = run(f"--export_dir={exported}", f"--checkpoint={checkpoint}")
    assert result.returncode == 0, result.stderr
    assert "sherpa-onnx fp32: WER" in result.stdout and "(4 utterances" in result.stdout
    assert "transcripts differing: 0" in result.stdout
    missing = run(f"--export_dir={tmp_path}")
    assert missing.returncode == 1
    assert "not a sherpa-onnx export" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng not installed (tools/setup_system.sh)"
)
def test_sherpa_onnx_takes_hotwords_with_the_export(tmp_path: Path) -> None:
    """sherpa-onnx tokenises a hotwords file with the export's bpe.vocab: the shipped
    demo-sherpa model, run by sherpa-onnx's modified beam search, hears espeak-ng's `inspector`
    as `in spector`, and as `inspector` once it is listed."""
    export_sherpa(REPO / "models" / "demo-sherpa" / "model.pt", tmp_path / "export")
    audio = tmp_path / "sentence.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(audio), INSPECTOR_SENTENCE], check=True)
    samples = load_audio(audio, FEATURES.sample_rate)
    hotwords = tmp_path / "hotwords.txt"
    hotwords.write_text("inspector\nchocolates\n")
    beam = {"decoding_method": "modified_beam_search"}
    texts = [
        pieces_text(
            transcribe(open_recognizer(tmp_path / "export", **options), samples, FEATURES.sample_rate)
        )
        for options in (beam, beam | {"hotwords_file": str(hotwords)})
    ]
    assert "in spector" in texts[0]
    assert texts[1] == texts[0].replace("in spector", "inspector")
