"""Deployment exports of the inference graph (ONNX): onnx_export.py (single frame, shared helpers), temporal.py
(the memory as graph inputs and outputs)."""
from __future__ import annotations

from protoocc_ros.export.onnx_export import (
    DEFAULT_OPSET,
    ExportError,
    SingleFrameGraph,
    available_providers,
    compare_with_pytorch,
    export_onnx,
    onnx_session,
    resolve_providers,
    run_onnx,
)
from protoocc_ros.export.temporal import (
    TemporalGraph,
    TemporalOnnxRunner,
    compare_sequence,
    export_temporal_onnx,
    max_hits_for,
)

__all__ = ["DEFAULT_OPSET", "ExportError", "SingleFrameGraph", "TemporalGraph", "TemporalOnnxRunner",
           "available_providers", "compare_sequence", "compare_with_pytorch", "export_onnx", "export_temporal_onnx",
           "max_hits_for", "onnx_session", "resolve_providers", "run_onnx"]
