"""Multi-process training helpers: torchrun environment, process group, DDP wrapping (paper Sec. 4.1: 8 GPUs).

``torchrun --nproc_per_node=K -m protoocc_ros.train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK /
MASTER_ADDR / MASTER_PORT; :func:`init_distributed` reads them and starts a process group (NCCL on
CUDA, gloo on CPU). Without them everything runs as a single process and nothing is initialised.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from protoocc_ros.device import DeviceError, resolve_device
from protoocc_ros.training.errors import TrainingError

RANK_SEED_STRIDE = 1000  # per-rank seed offset for dropout / augmentation randomness


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise TrainingError(f"environment {name}={raw!r}: expected an integer (set by torchrun)") from None


def pick_device(requested: str | None, local_rank: int = 0) -> torch.device:
    """:func:`protoocc_ros.device.resolve_device` with a TrainingError (under torchrun cuda = cuda:<local_rank>)."""
    try:
        return resolve_device(requested, local_rank)
    except DeviceError as exc:
        raise TrainingError(str(exc)) from None


def init_distributed(requested_device: str | None = None) -> DistContext:
    """Read the torchrun environment; start the process group when WORLD_SIZE > 1."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = pick_device(requested_device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank, world_size, local_rank, device)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def process_seed(seed: int, rank: int) -> int:
    """Seed of the run-time randomness (dropout, feature noise) of one rank."""
    return seed + RANK_SEED_STRIDE * rank


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DistributedDataParallel when world_size > 1 (gradients averaged over ranks), else the model itself.

    ``find_unused_parameters`` is on because parts of ProtoOcc are unused in some frames (e.g. the
    temporal branch with no memory) and would otherwise stall the gradient reduction.
    """
    if not ctx.enabled:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def mean_over_ranks(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Average float terms over ranks (for logging); keys must be the same on every rank."""
    if not ctx.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64,
                     device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.tolist())}


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
