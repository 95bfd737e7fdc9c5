"""Print a run's learning curve (dev WER/CER and train loss vs minutes) and write it as JSON.

    python tools/learning_curve.py --run_dir=logs/demo [--output=logs/demo/learning_curve.json]

Reads the run's tensorboard event files directly (TFRecord framing + tensorboardX's Event
proto), so it needs neither TensorFlow nor the tensorboard package.
"""

from __future__ import annotations

import json
import struct
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from absl import flags
from google.protobuf.message import DecodeError
from tensorboardX.proto import event_pb2

from rnnt import atomic, cli

_RUN_DIR = flags.DEFINE_string("run_dir", "logs/demo", "run directory holding tensorboard events")
_OUTPUT = flags.DEFINE_string("output", "", "JSON output (default: <run_dir>/learning_curve.json)")

RECORD_HEADER = struct.Struct("<QI")  # length, masked crc32 of the length
RECORD_FOOTER_BYTES = 4  # masked crc32 of the data


def read_records(path: Path) -> Iterator[bytes]:
    """The payloads of a TFRecord file; a truncated final record (live run) is ignored."""
    data = path.read_bytes()
    offset = 0
    while offset + RECORD_HEADER.size <= len(data):
        (length, _) = RECORD_HEADER.unpack_from(data, offset)
        start = offset + RECORD_HEADER.size
        if start + length + RECORD_FOOTER_BYTES > len(data):
            return
        yield data[start : start + length]
        offset = start + length + RECORD_FOOTER_BYTES


def read_scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """tag -> step -> value over every event file in `run_dir` (later files win)."""
    scalars: dict[str, dict[int, float]] = defaultdict(dict)
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for record in read_records(path):
            try:
                event = event_pb2.Event.FromString(record)
            except DecodeError:
                raise ValueError(f"{path}: a corrupt event record") from None
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars[value.tag][event.step] = value.simple_value
    return scalars


def learning_curve(scalars: dict[str, dict[int, float]]) -> list[dict[str, float]]:
    minutes = scalars.get("dev/minutes", {}) or scalars.get("train/minutes", {})
    rows = []
    for step in sorted(scalars.get("dev/wer", {})):
        rows.append(
            {
                "step": step,
                "minutes": round(minutes.get(step, float("nan")), 2),
                "dev_wer": round(100 * scalars["dev/wer"][step], 2),
                "dev_cer": round(100 * scalars["dev/cer"].get(step, float("nan")), 2),
                "train_loss": round(_nearest(scalars.get("train/loss", {}), step), 4),
            }
        )
    return rows


def _nearest(series: dict[int, float], step: int) -> float:
    earlier = [s for s in series if s <= step]
    return series[max(earlier)] if earlier else float("nan")


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    run_dir = Path(_RUN_DIR.value)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    rows = learning_curve(read_scalars(run_dir))
    if not rows:
        raise ValueError(f"{run_dir}: no dev evaluation in its tensorboard events")
    print(f"{'step':>6} {'minutes':>8} {'dev WER %':>10} {'dev CER %':>10} {'train loss':>11}")
    for row in rows:
        print(
            f"{row['step']:>6} {row['minutes']:>8.1f} {row['dev_wer']:>10.2f} "
            f"{row['dev_cer']:>10.2f} {row['train_loss']:>11.4f}"
        )
    output = Path(_OUTPUT.value or run_dir / "learning_curve.json")
    atomic.write_text(output, json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    cli.run(main)
