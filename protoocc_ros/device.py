"""The one rule that turns a device name into a torch.device (training, evaluation, the node, the benchmarks)."""
from __future__ import annotations

import torch


class DeviceError(ValueError):
    """The requested device does not exist on this machine; the message names it and what to use instead."""


def resolve_device(requested: str | None, local_rank: int = 0) -> torch.device:
    """'cpu', 'cuda', 'cuda:N', or None / '' / 'auto' (CUDA when available).

    A bare 'cuda' becomes ``cuda:<local_rank>`` (one GPU per torchrun process) and is made the current device.
    """
    name = "auto" if requested in (None, "") else str(requested)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"device {requested!r}: expected cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {requested!r}: expected cpu, cuda, cuda:N or auto")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {requested!r}: CUDA is not available on this machine (use cpu or auto)")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {requested!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        torch.cuda.set_device(device)
    return device
