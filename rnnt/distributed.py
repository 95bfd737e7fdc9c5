"""Data parallelism across ranks (torchrun): rank info and gradient all-reduce.

Gradients are summed with one `all_reduce` over a flat buffer after the step's
micro-batches. DistributedDataParallel's reducer expects one backward per forward and
every parameter used in it; the sub-batched joint backward (`rnnt.loss`) runs several
backwards per forward, so the reduction is done here, once per optimizer step. Each rank
divides its loss by the global normaliser, so the sum is the whole batch's gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0  # among all processes of all nodes
    world: int = 1  # processes in all
    local_rank: int = 0  # among this node's processes: its GPU's index

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def all_reduce_sum(values: list[float], dist_info: Distributed) -> list[float]:
    if dist_info.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def sum_gradients(model: torch.nn.Module, dist_info: Distributed) -> None:
    """Sum gradients over ranks (each rank already divided by the global normaliser). A
    parameter without a gradient on this rank (its share of the step had no readable audio)
    but with one elsewhere takes part as zeros: every rank must reduce the same tensor."""
    if dist_info.world == 1:
        return
    params = list(model.parameters())
    anywhere = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
    dist.all_reduce(anywhere)
    grads = []
    for param, used in zip(params, anywhere.tolist(), strict=True):
        if used:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            grads.append(param.grad)
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def check_resume_world(saved_world: int, dist_info: Distributed, mid_epoch: bool, source: str) -> None:
    """ValueError for a checkpoint saved mid-epoch by another number of ranks (0: not recorded):
    its position counts batches dealt for that many, so resuming would skip or repeat audio."""
    if saved_world and saved_world != dist_info.world and mid_epoch:
        raise ValueError(
            f"{source}: saved mid-epoch by {saved_world} ranks; resume it on {saved_world}, not "
            f"{dist_info.world} (its data position counts batches dealt for {saved_world})"
        )
