"""Data-parallel training across processes (PyTorch DDP), as ``torchrun`` launches them.

    torchrun --standalone --nproc-per-node 2 -m components.distil BATCH_ID

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in every process; :func:`setup` joins
the group (NCCL on GPUs, each process on GPU ``LOCAL_RANK``; gloo on the CPU). Without them the
process is a group of one and nothing here does anything. Rank 0 is the main process: it alone
writes (checkpoints, MLflow, outputs); every rank trains on its share of each batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


SINGLE = ProcessGroup()


def from_env() -> ProcessGroup:
    """The group ``torchrun`` started this process in (``SINGLE`` when it did not)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return ProcessGroup(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def current() -> ProcessGroup:
    """The group this process has joined (:func:`setup`), else ``SINGLE``."""
    if dist.is_available() and dist.is_initialized():
        return ProcessGroup(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return SINGLE


def device() -> torch.device:
    """This process's device: its own GPU under torchrun (``LOCAL_RANK``), the CPU without one."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


def setup() -> ProcessGroup:
    """Join the group ``torchrun`` started (idempotent); ``SINGLE`` outside torchrun."""
    group = from_env()
    if not group.distributed or dist.is_initialized():
        return current() if group.distributed else group
    if torch.cuda.is_available():
        torch.cuda.set_device(device())
        dist.init_process_group("nccl", device_id=device())
    else:
        dist.init_process_group("gloo")
    return current()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], group: ProcessGroup, device: torch.device) -> list[float]:
    """``values`` summed element-wise over every process (returned unchanged in a group of one)."""
    if not group.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(group: ProcessGroup) -> None:
    if group.distributed:
        dist.barrier()


def broadcast_from_main(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rank 0's ``t`` in every process (``t`` itself outside a group); same shape and dtype everywhere."""
    if not current().distributed:
        return t
    out = t.to(device).contiguous()
    dist.broadcast(out, src=0)
    return out.cpu()
