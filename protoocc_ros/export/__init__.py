"""Deployment exports of the inference graph (ONNX); see onnx_export.py."""
from __future__ import annotations

from protoocc_ros.export.onnx_export import (
    DEFAULT_OPSET,
    ExportError,
    SingleFrameGraph,
    compare_with_pytorch,
    export_onnx,
    onnx_session,
    run_onnx,
)

__all__ = ["DEFAULT_OPSET", "ExportError", "SingleFrameGraph", "compare_with_pytorch", "export_onnx", "onnx_session",
           "run_onnx"]
