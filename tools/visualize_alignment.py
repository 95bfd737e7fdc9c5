"""Draw a recording's alignment as a PNG (after Graves 2013, fig. 1).

    python tools/visualize_alignment.py --model=models/demo/model.pt --input=AUDIO --output=align.png

Top: the log-mel spectrogram with each emitted token at the frame it was emitted.
Middle: p(token | frame) along the transcript for every token (rows) over time (columns).
Bottom: the probability of a non-blank emission along the decoded path.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from absl import flags

from rnnt import atomic, cli
from rnnt.alignment import lattice_posteriors
from rnnt.audio import load_audio
from rnnt.decoding import decode_features
from rnnt.features import compute_features
from rnnt.runtimes import load_model

_MODEL = flags.DEFINE_string("model", "models/demo/model.pt", "checkpoint or export directory")
_BACKEND = flags.DEFINE_string("backend", "torch", "torch, onnx or openvino")
_INPUT = flags.DEFINE_string("input", None, "audio file (any format ffmpeg or libsndfile reads)")
_OUTPUT = flags.DEFINE_string("output", "alignment.png", "PNG to write")
flags.mark_flag_as_required("input")

FIGURE_SIZE_IN = (14, 9)
DPI = 110


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    loaded = load_model(_MODEL.value, _BACKEND.value)
    samples = load_audio(_INPUT.value, loaded.features.sample_rate)
    features = compute_features(samples, loaded.features)
    if len(features) < loaded.model.time_reduction:
        raise ValueError(f"{_INPUT.value}: too short to draw (less than one encoder frame)")
    runtime = loaded.runtime
    hyp = decode_features(runtime, [features], loaded.decode)[0]
    encoder_out, _ = runtime.encode(features[None], runtime.init_encoder_state(1))
    posteriors = lattice_posteriors(runtime, encoder_out[0], hyp.tokens)
    pieces = [loaded.tokenizer.piece(t) for t in hyp.tokens]
    figure = draw(
        features, loaded.features.num_mel_bins, pieces, hyp.frames, posteriors, loaded.features.frame_ms
    )
    figure.suptitle(loaded.tokenizer.decode(hyp.tokens) or "(nothing decoded)")
    output = Path(_OUTPUT.value)
    output = output if output.suffix else output.with_suffix(".png")  # what matplotlib would write
    with atomic.atomic_open(output, "wb") as file:  # no half-written figure if stopped
        figure.savefig(file, dpi=DPI, format=output.suffix[1:])
    print(f"wrote {output}")


def draw(features, num_mel_bins, pieces, frames, posteriors, frame_ms):  # type: ignore[no-untyped-def]
    """The three panels; `frames` are encoder frames, `frame_ms` one feature frame's length."""
    figure, (spec, lattice, path) = plt.subplots(3, 1, figsize=FIGURE_SIZE_IN, sharex=True)
    seconds = len(features) * frame_ms / 1000
    frame_s = seconds / max(1, posteriors.blank.shape[0])  # one encoder frame
    mel = features[:, :num_mel_bins].T  # first stacked sub-frame of each model frame
    spec.imshow(mel, origin="lower", aspect="auto", extent=(0, seconds, 0, num_mel_bins), cmap="magma")
    for piece, frame in zip(pieces, frames, strict=True):
        spec.axvline(frame * frame_s, color="cyan", alpha=0.4)
        spec.text(frame * frame_s, num_mel_bins * 0.9, piece, color="white", fontsize=8, rotation=90)
    spec.set_ylabel("mel bin")
    extent = (0, seconds, -0.5, max(1, len(pieces)) - 0.5)
    label = posteriors.label.T if len(pieces) else np.zeros((1, posteriors.blank.shape[0]))
    lattice.imshow(label, origin="lower", aspect="auto", extent=extent, cmap="Greys", vmin=0, vmax=1)
    lattice.set_yticks(range(len(pieces)), pieces, fontsize=7)
    lattice.set_ylabel("p(token | t, u)")
    times = np.arange(posteriors.blank.shape[0]) * frame_s
    context = np.searchsorted(np.asarray(frames), np.arange(len(times)), side="left")
    path.plot(times, 1 - posteriors.blank[np.arange(len(times)), context], color="black")
    path.set_ylabel("p(non-blank)")
    path.set_xlabel("seconds")
    figure.tight_layout()
    return figure


if __name__ == "__main__":
    cli.run(main)
