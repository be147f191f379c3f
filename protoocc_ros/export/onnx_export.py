"""ONNX export of the ProtoOcc inference graph (docs/architecture.md "Export"): the single-frame graph and the
pieces every exported graph shares (tracing, ONNX Runtime sessions and providers).

    graph = SingleFrameGraph(model)                       # (images, lidar2img) -> logits
    export_onnx(model, images, lidar2img, "protoocc.onnx")
    session = onnx_session("protoocc.onnx", threads=2)
    logits = run_onnx(session, images, lidar2img)         # numpy (B, C, X, Y, Z)

The temporal graph, with the memory as explicit inputs and outputs, is export/temporal.py.
What is fixed in the single-frame graph:
* the temporal memory is left out: every call is a first frame (the temporal self-attention looks at
  the current queries, as after a reset).
* batch, camera count and image size are those of the example inputs.
* the padded number K of hit queries per camera (``gather_hit_queries``) is traced as a constant from
  the example ``lidar2img``: other calibrations of the same rig work as long as no camera sees more
  query pillars than at export time (the example should be the rig the graph will run on).
The stable ``argsort`` of the hit gathering becomes ONNX TopK, which orders equal keys by index
(the ONNX TopK tie rule), so the slot order matches PyTorch's; the adaptive average pooling that
initialises the prototypes is traced as two products with constant pooling matrices (same values).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["ExportError", "SingleFrameGraph", "export_onnx", "trace_to_onnx", "onnx_session", "run_onnx",
           "compare_with_pytorch", "available_providers", "resolve_providers", "DEFAULT_OPSET"]

DEFAULT_OPSET = 20  # GridSample on 5-D volumes (temporal attention) needs opset >= 20
INPUT_NAMES = ("images", "lidar2img")
OUTPUT_NAMES = ("logits",)
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class ExportError(RuntimeError):
    """ONNX export or ONNX Runtime failed; the message names the file / input and what was expected."""


class SingleFrameGraph(nn.Module):
    """ProtoOcc in eval mode without temporal memory: (images (B,N,3,H,W) f32, lidar2img (B,N,4,4) f32) ->
    logits (B, C, X, Y, Z). ego2global / timestamp only feed the memory's reset rules, so constants stand in."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.eval()  # the wrapper too: an exporter that restores the wrapper's mode must not restore "training"

    def forward(self, images: Tensor, lidar2img: Tensor) -> Tensor:
        b = images.shape[0]
        ego2global = torch.eye(4, dtype=torch.float64, device=images.device).expand(b, 4, 4)
        timestamp = torch.zeros(b, dtype=torch.float64, device=images.device)
        return self.model(images, lidar2img, ego2global, timestamp, None).logits


def _argsort_symbolic(g: Any, self: Any, *args: Any) -> Any:
    """aten::argsort (self, dim, descending) and aten::argsort.stable (self, stable, dim, descending) -> TopK."""
    from torch.onnx import symbolic_helper as sh

    dim = sh._get_const(args[-2], "i", "dim")
    descending = sh._get_const(args[-1], "i", "descending")
    scalar = sh._try_get_scalar_type(self)
    if scalar is None or not scalar.dtype().is_floating_point:
        self = g.op("Cast", self, to_i=11)  # TopK keys as double (ONNX Runtime has no int8 TopK)
    size = g.op("Gather", g.op("Shape", self), g.op("Constant", value_t=torch.tensor([dim], dtype=torch.int64)))
    _, indices = g.op("TopK", self, size, axis_i=dim, largest_i=int(bool(descending)), sorted_i=1, outputs=2)
    return indices


def _pool_matrix(size: int, out: int, dtype: torch.dtype) -> Tensor:
    """(out, size) averaging matrix of adaptive pooling: row i averages [floor(i*size/out), ceil((i+1)*size/out))."""
    m = torch.zeros(out, size, dtype=dtype)
    for i in range(out):
        lo, hi = (i * size) // out, -((-(i + 1) * size) // out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def _adaptive_avg_pool2d_matmul(x: Tensor, output_size: Any) -> Tensor:
    """F.adaptive_avg_pool2d as two products with constant pooling matrices (same result): the ONNX
    exporter cannot export adaptive pooling once the input's spatial size is only known in the graph."""
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph = _pool_matrix(h, oh if oh is not None else h, x.dtype).to(x.device)  # (oh, h)
    pw = _pool_matrix(w, ow if ow is not None else w, x.dtype).to(x.device)  # (ow, w)
    return ph @ x @ pw.transpose(0, 1)  # (..., oh, ow)


@contextmanager
def _exportable_ops() -> Iterator[None]:
    """Swap ops the TorchScript ONNX exporter cannot handle for equivalent ones, and register TopK for argsort."""
    import torch.nn.functional as F

    original = F.adaptive_avg_pool2d
    F.adaptive_avg_pool2d = _adaptive_avg_pool2d_matmul  # type: ignore[assignment]
    try:
        yield
    finally:
        F.adaptive_avg_pool2d = original


def export_onnx(model: nn.Module, images: Tensor, lidar2img: Tensor, path: str | Path,
                opset: int = DEFAULT_OPSET) -> Path:
    """Trace the single-frame inference graph with the example inputs and write it to ``path`` (one file)."""
    device = next(model.parameters()).device
    example = (images.to(device), lidar2img.to(device, torch.float32))
    return trace_to_onnx(model, lambda: SingleFrameGraph(model), example, path, INPUT_NAMES, OUTPUT_NAMES, opset)


def trace_to_onnx(model: nn.Module, make_graph: Callable[[], nn.Module], example: tuple[Tensor, ...],
                  path: str | Path, input_names: Sequence[str], output_names: Sequence[str],
                  opset: int = DEFAULT_OPSET) -> Path:
    """Trace the wrapper ``make_graph()`` of ``model`` with ``example`` and write the ONNX file (TorchScript exporter).

    The model is left as it was: same device, and every module's train/eval flag restored afterwards (the
    wrapper puts the model in eval mode, and the TorchScript exporter restores the mode it found on the
    wrapper, recursively), so the flags are taken before the wrapper is made.
    """
    import warnings

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    modes = {name: m.training for name, m in model.named_modules()}
    graph = make_graph()
    torch.onnx.register_custom_op_symbolic("aten::argsort", _argsort_symbolic, opset)
    try:
        with warnings.catch_warnings(), torch.no_grad(), _exportable_ops():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the constant K above, shape asserts
            torch.onnx.export(graph, example, str(path), dynamo=False, opset_version=opset,
                              input_names=list(input_names), output_names=list(output_names),
                              do_constant_folding=True)
    except Exception as exc:
        raise ExportError(f"{path}: ONNX export (opset {opset}) failed: {type(exc).__name__}: {exc}") from exc
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::argsort", opset)
        for name, m in model.named_modules():
            m.training = modes[name]
    return path


def available_providers() -> list[str]:
    """ONNX Runtime execution providers of this installation (onnxruntime: CPU; onnxruntime-gpu adds CUDA, TensorRT)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(requested: Sequence[str] = (), device: str = "auto") -> list[str]:
    """The execution providers a session uses, in priority order; CPU always last as the fallback.

    ``requested`` empty: TensorRT, then CUDA when installed and ``device`` is not 'cpu', then CPU.
    A requested provider this installation lacks is an ExportError naming it and the available ones.
    """
    have = available_providers()
    if requested:
        missing = [p for p in requested if p not in have]
        if missing:
            raise ExportError(f"ONNX Runtime execution provider(s) {missing} not available here (available: {have}; "
                              "the CUDA and TensorRT providers come with the onnxruntime-gpu package)")
        chosen = list(requested)
    else:
        gpu = [p for p in GPU_PROVIDERS if p in have] if device != "cpu" else []
        chosen = gpu
    return chosen + (["CPUExecutionProvider"] if "CPUExecutionProvider" not in chosen else [])


def onnx_session(path: str | Path, threads: int | None = None, providers: Sequence[str] = ("CPUExecutionProvider",)
                 ) -> Any:
    """ONNX Runtime session of an exported graph; ``threads`` = intra-op threads (None: ORT's default),
    ``providers`` in priority order (resolve_providers picks them for a device)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: ONNX file not found")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=list(providers))
    except Exception as exc:
        raise ExportError(f"{path}: ONNX Runtime cannot load the graph: {type(exc).__name__}: {exc}") from exc


def run_onnx(session: Any, images: Tensor | np.ndarray, lidar2img: Tensor | np.ndarray) -> np.ndarray:
    """Logits (B, C, X, Y, Z) float32 of one call; inputs must have the exported shapes."""
    feeds = {}
    for meta, value in zip(session.get_inputs(), (images, lidar2img)):
        arr = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
        arr = arr.astype(np.float32, copy=False)
        if list(arr.shape) != list(meta.shape):
            raise ExportError(f"input {meta.name!r}: the graph was exported for shape {meta.shape}, got "
                              f"{list(arr.shape)}")
        feeds[meta.name] = arr
    return session.run(list(OUTPUT_NAMES), feeds)[0]


def compare_with_pytorch(session: Any, model: nn.Module, frames: list[tuple[Tensor, Tensor]]) -> list[dict[str, float]]:
    """Per (images, lidar2img) frame: max |ONNX - PyTorch| logit difference, the largest |logit| (its scale)
    and the argmax label agreement of ONNX Runtime vs the model's single-frame graph."""
    graph = SingleFrameGraph(model)
    checks = []
    for i, (images, lidar2img) in enumerate(frames):
        with torch.inference_mode():
            ref = graph(images, lidar2img).cpu().numpy()
        got = run_onnx(session, images, lidar2img)
        checks.append({"frame": i, "max_abs_diff": float(np.abs(got - ref).max()),
                       "max_abs_logit": float(np.abs(ref).max()),
                       "argmax_agreement": float((got.argmax(1) == ref.argmax(1)).mean())})
    return checks
