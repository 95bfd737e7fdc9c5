"""Train on one machine or many through Lightning Fabric: train.py's loop, Lightning's launch.

python lightning.py --flagfile=flagfiles/E6D2.txt --devices=4                  # 4 GPUs (or CPU processes)
python lightning.py --flagfile=flagfiles/E6D2.txt --devices=8 --num_nodes=2    # on each node, under SLURM
python lightning.py --flagfile=flagfiles/E6D2.txt --devices=4 --mode=resume

Lightning starts the processes and sets up their process group wherever it runs (SLURM,
TorchElastic, LSF, Kubeflow, or MASTER_ADDR / MASTER_PORT / NODE_RANK by hand); each process
then runs the library's own training loop (`rnnt.training.train_run`) as a rank, so data
sharding, gradient reduction, checkpoints and exact resume are train.py's, and so are the
results: the same flagfile on the same ranks gives the same weights either way.
"""

from __future__ import annotations

from absl import flags

from rnnt import cli
from rnnt.config import RunConfig
from rnnt.distributed import Distributed
from rnnt.flags import run_config_from_flags, write_flagfile
from rnnt.training import train_run

_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "resume"], "start a run or continue its latest checkpoint"
)
_DEVICES = flags.DEFINE_integer(
    "devices", 1, "processes per node (one per GPU; CPU processes without GPUs)", lower_bound=1
)
_NUM_NODES = flags.DEFINE_integer("num_nodes", 1, "machines taking part", lower_bound=1)
_ACCELERATOR = flags.DEFINE_string("accelerator", "auto", "cpu, cuda or auto")


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    # The standalone lightning-fabric package: this script's own name shadows `lightning`.
    from lightning_fabric import Fabric

    config = run_config_from_flags()
    processes = _DEVICES.value * _NUM_NODES.value
    try:
        fabric = Fabric(
            accelerator=_ACCELERATOR.value,
            devices=_DEVICES.value,
            num_nodes=_NUM_NODES.value,
            strategy="ddp" if processes > 1 else "auto",
        )
    except RuntimeError as error:  # e.g. --accelerator=cuda on a machine without a GPU
        raise ValueError(f"--accelerator={_ACCELERATOR.value}: {error}") from None
    fabric.launch(run_rank, config, _MODE.value == "resume")


def run_rank(fabric: object, config: RunConfig, resume: bool) -> None:
    """One process's part, in the process group Lightning set up."""
    rank = Distributed(fabric.global_rank, fabric.world_size, fabric.local_rank)  # type: ignore[attr-defined]
    train_run(config, rank, resume, lambda: write_flagfile(config.run_dir / "flagfile.txt"))


if __name__ == "__main__":
    cli.run(main)
