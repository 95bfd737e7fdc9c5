"""Write a training checkpoint as a model to ship: configs, tokenizer and weights only.

python tools/ship_checkpoint.py --checkpoint=logs/demo/models/best.pt --output=models/demo/model.pt
python tools/ship_checkpoint.py --checkpoint=logs/demo/models/9000.pt,logs/demo/models/9200.pt  # averaged
"""

from __future__ import annotations

from absl import flags

from rnnt import cli
from rnnt.checkpoint import average_checkpoints, save_for_inference

_CHECKPOINT = flags.DEFINE_list(
    "checkpoint", None, "training checkpoint; several: their weights are averaged"
)
_OUTPUT = flags.DEFINE_string("output", "models/demo/model.pt", "where the slim checkpoint goes")
flags.mark_flag_as_required("checkpoint")


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    sources = _CHECKPOINT.value
    if len(sources) == 1:
        path = save_for_inference(sources[0], _OUTPUT.value)
    else:
        path = average_checkpoints(sources, _OUTPUT.value)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    cli.run(main)
