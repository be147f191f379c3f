"""Pickle-free encoding of nested training state (docs/architecture.md "Checkpoints": safetensors + JSON, never pickle).

Optimizer, LR-scheduler, grad-scaler and RNG states are nested dicts/lists/tuples of numbers, strings
and tensors. :func:`flatten_state` splits such a value into a flat ``{name: Tensor}`` dict (for
safetensors) and a JSON skeleton in which every tensor is replaced by ``{"__tensor__": name}``;
:func:`unflatten_state` rebuilds the value. Tuples, non-string dict keys (the optimizer's integer
parameter ids) and numpy arrays are tagged so they come back with their types.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from protoocc_ros.checkpoints.errors import CheckpointError

_TAGS = ("__tensor__", "__ndarray__", "__tuple__", "__items__", "__float__")


def flatten_state(value: Any, prefix: str) -> tuple[dict[str, Tensor], Any]:
    """Return ``(tensors, skeleton)``: tensors named ``prefix.<path>`` and a JSON-serialisable skeleton."""
    tensors: dict[str, Tensor] = {}
    skeleton = _encode(value, prefix, tensors)
    return tensors, skeleton


def unflatten_state(skeleton: Any, tensors: dict[str, Tensor], where: str = "state") -> Any:
    """Inverse of :func:`flatten_state`; a tensor named in the skeleton but absent raises CheckpointError."""
    return _decode(skeleton, tensors, where)


def _encode(value: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(value, Tensor):
        tensors[path] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": path}
    if isinstance(value, np.ndarray):  # wide unsigned ints (numpy's MT19937 key is uint32) travel as int64
        wide_unsigned = value.dtype.kind == "u" and value.dtype.itemsize > 1
        array = value.astype(np.int64) if wide_unsigned else np.ascontiguousarray(value)
        tensors[path] = torch.from_numpy(array).clone()
        return {"__ndarray__": [path, value.dtype.str]}
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return _encode(value.item(), path, tensors)
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and k not in _TAGS for k in value):
            return {k: _encode(v, f"{path}.{k}", tensors) for k, v in value.items()}
        items = []
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise CheckpointError(f"{path}: dict key {k!r} of type {type(k).__name__} cannot be stored "
                                      "(expected str/int/float/bool)")
            items.append([k, _encode(v, f"{path}.{k}", tensors)])
        return {"__items__": items}
    raise CheckpointError(f"{path}: value of type {type(value).__name__} cannot be stored without pickle "
                          "(expected tensors, arrays, numbers, strings, lists, tuples or dicts)")


def _decode(node: Any, tensors: dict[str, Tensor], where: str) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors, where) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (tag, payload), = node.items()
        if tag in ("__tensor__", "__ndarray__"):
            name, dtype = (payload, None) if tag == "__tensor__" else payload
            if name not in tensors:
                raise CheckpointError(f"{where}: tensor {name!r} is named in the JSON state but missing "
                                      "from the safetensors file")
            return tensors[name] if dtype is None else tensors[name].numpy().astype(np.dtype(dtype))
        if tag == "__tuple__":
            return tuple(_decode(v, tensors, where) for v in payload)
        if tag == "__items__":
            return {k: _decode(v, tensors, where) for k, v in payload}
        if tag == "__float__":
            return float(payload)
    return {k: _decode(v, tensors, where) for k, v in node.items()}
