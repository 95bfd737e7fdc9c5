"""Write a training checkpoint as a model to ship: configs, tokenizer and weights only.

python tools/ship_checkpoint.py --checkpoint=logs/demo/models/best.pt --output=models/demo/model.pt
"""

from __future__ import annotations

from absl import app, flags

from rnnt import cli
from rnnt.checkpoint import save_for_inference

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "training checkpoint")
_OUTPUT = flags.DEFINE_string("output", "models/demo/model.pt", "where the slim checkpoint goes")
flags.mark_flag_as_required("checkpoint")


def main(argv: list[str]) -> None:
    del argv
    path = save_for_inference(_CHECKPOINT.value, _OUTPUT.value)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    app.run(cli.guarded(main))
