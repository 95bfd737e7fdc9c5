"""Export a checkpoint to ONNX and OpenVINO (optionally int8) and check them against PyTorch.

python export_onnx.py --checkpoint=models/demo/model.pt --output_dir=exports/demo [--int8]
The directory then loads without torch: rnnt.runtimes.load_model(DIR, "onnx" or "openvino").

python export_onnx.py --format=sherpa-onnx --checkpoint=MODEL.pt --output_dir=DIR [--chunk_ms=600]
writes the graphs sherpa-onnx runs (`rnnt.sherpa`; a model with a stateless predictor and
Kaldi fbank features, flagfiles/demo_sherpa.txt) and the recognizer options they need.
"""

from __future__ import annotations

import logging
import sys

from absl import flags

from rnnt import cli
from rnnt.config import StreamConfig
from rnnt.export import DEFAULT_OPSET, ExportError, ExportReport, export

_CHECKPOINT = flags.DEFINE_string("checkpoint", "", "checkpoint to export (*.pt)")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "", "export directory to write")
_INT8 = flags.DEFINE_bool("int8", False, "also write int8 graphs (ONNX Runtime dynamic quantisation)")
_OPSET = flags.DEFINE_integer("opset", DEFAULT_OPSET, "ONNX opset version")
_PARITY_AUDIO = flags.DEFINE_string(
    "parity_audio", "", "recording whose features check parity (default: synthetic speech)"
)
_FORMAT = flags.DEFINE_enum(
    "format", "rnnt", ["rnnt", "sherpa-onnx"], "rnnt: this toolkit's runtimes; sherpa-onnx: k2-fsa's"
)
_CHUNK_MS = flags.DEFINE_float(
    "chunk_ms", StreamConfig.chunk_ms, "sherpa-onnx: audio per encoder call, ms (whole encoder frames)"
)

log = logging.getLogger("export")


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    if not _CHECKPOINT.value or not _OUTPUT_DIR.value:
        raise ValueError("give --checkpoint=PATH and --output_dir=DIR")
    if _FORMAT.value == "sherpa-onnx":
        export_for_sherpa()
        return
    try:
        report = export(
            _CHECKPOINT.value, _OUTPUT_DIR.value, _INT8.value, _OPSET.value, _PARITY_AUDIO.value or None
        )
    except ExportError as error:
        if error.report:
            print_parity(error.report)
        log.error("error: parity check failed: %s", error)
        sys.exit(1)
    print_parity(report)
    for note in report.notes:
        print(note)
    print(f"wrote {len(report.files)} files to {report.output_dir} (opset {report.opset})")


def export_for_sherpa() -> None:
    from rnnt.sherpa_export import SherpaExportError, export_sherpa

    stream = StreamConfig(chunk_ms=_CHUNK_MS.value)
    try:
        result = export_sherpa(_CHECKPOINT.value, _OUTPUT_DIR.value, stream, _INT8.value, _OPSET.value)
    except SherpaExportError as error:
        log.error("error: %s", error)
        sys.exit(1)
    for graph, diff in result.max_abs_diff.items():
        print(f"onnx fp32 {graph:<8} max |diff| {diff:.2e} against PyTorch")
    print(f"wrote {len(result.files)} files to {result.output_dir} ({result.chunk_frames} frames a chunk);")
    print(f"run it with sherpa_onnx.OnlineRecognizer.from_transducer(**options) ({result.options_file})")


def print_parity(report: ExportReport) -> None:
    print(f"{'runtime':<16} {'graph':<8} {'max |diff|':>10}  tolerance")
    for result in report.parity:
        tolerance = "report only" if result.tolerance is None else f"{result.tolerance:.0e}"
        status = "" if result.passed else "  FAILED"
        print(
            f"{result.backend + ' ' + result.precision:<16} {result.graph:<8} "
            f"{result.max_abs_diff:>10.2e}  {tolerance}{status}"
        )


if __name__ == "__main__":
    cli.run(main)
