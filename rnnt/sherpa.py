"""A sherpa-onnx export's files, and decoding with sherpa-onnx itself (numpy only, no torch).

`export_onnx.py --format=sherpa-onnx` (`rnnt.sherpa_export`) writes a directory sherpa-onnx's
`OnlineRecognizer` loads: `encoder.onnx`, `decoder.onnx`, `joiner.onnx` (+ `.int8.onnx`),
`tokens.txt`, `bpe.vocab` (the pieces with their scores, with which sherpa-onnx tokenises
hotwords) and `sherpa-onnx.json`, the recognizer's keyword arguments that make its features
the model's (file names relative to the directory). This module opens such a directory with
the `sherpa_onnx` package and decodes utterances with it, as a deployment would.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnt.config import DecodeConfig, FeatureConfig
from rnnt.corpus import read_corpus
from rnnt.decoding import decode_features
from rnnt.features import KALDI_LOW_FREQ_HZ, compute_features, num_frames
from rnnt.runtimes import LoadedModel, load_model, read_json_object
from rnnt.scoring import ErrorRates, error_rates

TOKENS_FILE = "tokens.txt"
BPE_VOCAB_FILE = "bpe.vocab"
OPTIONS_FILE = "sherpa-onnx.json"
GRAPHS = ("encoder", "decoder", "joiner")
KALDI_FRAME_MS = (25.0, 10.0)  # window and shift of the fbank frames sherpa-onnx computes
WORD_START = "\u2581"  # sentencepiece's word-start mark, a space in text
# sherpa-onnx's greedy search: at most one token per encoder frame, <unk> allowed.
SHERPA_GREEDY = DecodeConfig(max_symbols_per_frame=1, suppress_unk=False)
BATCH = 16  # utterances the toolkit decodes at once in `compare_with_sherpa`


class SherpaError(Exception):
    """A sherpa-onnx directory or package that cannot be used; the message says why."""


def graph_file(graph: str, precision: str = "fp32") -> str:
    """A graph's file name in the directory."""
    return f"{graph}.onnx" if precision == "fp32" else f"{graph}.{precision}.onnx"


def recognizer_options(features: FeatureConfig) -> dict[str, Any]:
    """`sherpa-onnx.json`: the keyword arguments of `OnlineRecognizer.from_transducer` for a
    model with these features. Our Kaldi fbank frames with `snip_edges` and draws mel bins up
    to Nyquist, where sherpa-onnx's defaults centre frames and stop 400 Hz below it."""
    files = {"tokens": TOKENS_FILE} | {graph: graph_file(graph) for graph in GRAPHS}
    return files | {
        "sample_rate": features.sample_rate,
        "feature_dim": features.num_mel_bins,
        "low_freq": KALDI_LOW_FREQ_HZ,
        "high_freq": 0.0,  # Kaldi's convention: <= 0 is that far below Nyquist
        "dither": 0.0,
        "snip_edges": True,
        "normalize_samples": True,  # samples in [-1, 1], as `compute_features` takes them
        "model_type": "lstm",
        "decoding_method": "greedy_search",
        # How sherpa-onnx tokenises a hotwords file (used with decoding_method=modified_beam_search).
        "modeling_unit": "bpe",
        "bpe_vocab": BPE_VOCAB_FILE,
    }


def open_recognizer(
    directory: str | Path, precision: str = "fp32", num_threads: int = 1, **overrides: Any
) -> Any:
    """sherpa-onnx's `OnlineRecognizer` for an export directory (fp32 or int8 graphs);
    `overrides` replace the directory's options (e.g. `decoding_method="modified_beam_search",
    hotwords_file=...`)."""
    try:
        import sherpa_onnx
    except ImportError as error:
        raise SherpaError(
            f"the sherpa-onnx package is not installed (pip install sherpa-onnx): {error}"
        ) from error
    directory = Path(directory)
    options_path = directory / OPTIONS_FILE
    if not options_path.is_file():
        raise SherpaError(f"{directory}: not a sherpa-onnx export (no {OPTIONS_FILE}); run export_onnx.py")
    options = read_json_object(options_path)
    for name in ("tokens", "bpe_vocab"):
        if name in options:  # exports before bpe.vocab came have no such option
            options[name] = str(directory / options[name])
    if "tokens" in options:
        check_tokens_file(Path(options["tokens"]))
    for graph in GRAPHS:
        path = directory / graph_file(graph, precision)
        if not path.is_file():
            raise SherpaError(f"{path}: missing" + (" (export with --int8)" if precision != "fp32" else ""))
        options[graph] = str(path)
    try:
        return sherpa_onnx.OnlineRecognizer.from_transducer(num_threads=num_threads, **(options | overrides))
    except (AssertionError, IndexError, RuntimeError, TypeError) as error:  # a damaged export
        raise SherpaError(f"{directory}: sherpa-onnx cannot load this export: {error}") from None


def check_tokens_file(path: Path) -> None:
    """SherpaError unless `path` holds `piece id` lines: sherpa-onnx ends the whole process
    (exit 255, no exception) on a malformed tokens.txt, so it is checked first."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise SherpaError(f"{path}: unreadable ({error})") from None
    if not lines or not all(line.rpartition(" ")[2].isdigit() for line in lines):
        raise SherpaError(f"{path}: not a tokens file (one `piece id` a line)")


def transcribe(recognizer: Any, samples: np.ndarray, sample_rate: int) -> list[str]:
    """The tokens sherpa-onnx decodes from mono `samples`: whole chunks only (`decoded_frames`),
    so a caller who wants the end of the speech appends silence (`compare_with_sherpa`)."""
    stream = recognizer.create_stream()
    stream.accept_waveform(sample_rate, samples)
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode_stream(stream)
    return list(recognizer.get_result_all(stream).tokens)


def decoded_frames(num_frames: int, chunk_frames: int) -> int:
    """Feature frames sherpa-onnx decodes of `num_frames`: whole chunks while more than a
    chunk's frames are ready (`OnlineRecognizerTransducerImpl::IsReady`)."""
    return max(0, (num_frames - 1) // chunk_frames) * chunk_frames


def chunk_frames_of(directory: str | Path) -> int:
    """Feature frames a call of the export's encoder takes (its `T` metadata)."""
    from rnnt.runtimes.ort import cpu_session, import_onnxruntime, process_pool_threads

    ort = import_onnxruntime()
    process_pool_threads(ort, 0)
    session = cpu_session(ort, Path(directory) / graph_file("encoder"))
    return int(session.get_modelmeta().custom_metadata_map["T"])


def pieces_text(pieces: Sequence[str]) -> str:
    return "".join(pieces).replace(WORD_START, " ").strip()


@dataclass(frozen=True)
class SherpaComparison:
    """A test set decoded by sherpa-onnx and, given the checkpoint, by the toolkit."""

    sherpa: ErrorRates
    toolkit: ErrorRates | None  # None without a checkpoint
    differing: int  # utterances whose tokens differ between the two (0 without a checkpoint)
    seconds: float  # audio decoded, s
    sherpa_s: float  # sherpa-onnx's wall time for it, s


def compare_with_sherpa(
    directory: str | Path,
    eval_set: str | Path,
    checkpoint: str | Path | None = None,
    precision: str = "fp32",
    num_threads: int = 1,
) -> SherpaComparison:
    """Corpus WER/CER of sherpa-onnx on `eval_set`, each utterance followed by a chunk of
    silence; with `checkpoint`, the toolkit's greedy search with sherpa-onnx's settings over
    the same frames (`decoded_frames`), and how many utterances' tokens differ."""
    recognizer = open_recognizer(directory, precision, num_threads)
    options = read_json_object(Path(directory) / OPTIONS_FILE)
    rate = int(options["sample_rate"])
    chunk = chunk_frames_of(directory)
    tail = round((chunk + 1) * KALDI_FRAME_MS[1] * rate / 1000)
    utterances = read_corpus(eval_set)
    audio = [np.concatenate([u.load(rate), np.zeros(tail, np.float32)]) for u in utterances]
    start = time.perf_counter()
    decoded = [transcribe(recognizer, samples, rate) for samples in audio]
    sherpa_s = time.perf_counter() - start
    references = [u.text for u in utterances]
    sherpa = error_rates(references, [pieces_text(p) for p in decoded])
    seconds = sum(len(samples) for samples in audio) / rate
    if checkpoint is None:
        return SherpaComparison(sherpa, None, 0, seconds, sherpa_s)
    toolkit = toolkit_pieces(load_model(checkpoint, "torch"), audio, chunk)
    # Compared as text: sherpa-onnx gives BPE pieces back with their word-start mark as a space.
    differing = sum(pieces_text(a) != pieces_text(b) for a, b in zip(decoded, toolkit, strict=True))
    rates = error_rates(references, [pieces_text(p) for p in toolkit])
    return SherpaComparison(sherpa, rates, differing, seconds, sherpa_s)


def toolkit_pieces(model: LoadedModel, audio: Sequence[np.ndarray], chunk: int) -> list[list[str]]:
    """The toolkit's tokens for each utterance over the frames sherpa-onnx decodes of it."""
    features = []
    for samples in audio:
        frames = decoded_frames(num_frames(len(samples), model.features), chunk)
        features.append(compute_features(samples, model.features)[: frames // model.features.stack_frames])
    pieces = []
    for first in range(0, len(features), BATCH):
        hyps = decode_features(model.runtime, features[first : first + BATCH], SHERPA_GREEDY)
        pieces += [[model.tokenizer.piece(token) for token in hyp.tokens] for hyp in hyps]
    return pieces
