"""ONNX export of ProtoOcc *with* its temporal memory as explicit graph inputs and outputs (docs/training.md "Export").

    k = max_hits_for(cfg, lidar2img, margin=0.1)             # query slots per camera, a constant of the graph
    export_temporal_onnx(model, images, lidar2img, "protoocc.onnx", max_hits=k)
    runner = TemporalOnnxRunner(onnx_session("protoocc.onnx"), cfg)
    logits, memory = runner.step(images, lidar2img, ego2global, stamp, memory)   # caller-side reset rules
    checks = compare_sequence(runner, model, frames)         # ONNX Runtime vs ProtoOcc.forward, frame by frame

The graph (``TemporalGraph``), batch 1:

  inputs   images         float32 (1, N, 3, H, W)  RGB at the config's image size, (x - mean) / std
           lidar2img      float32 (1, N, 4, 4)     ego (base_link) -> pixel of the resized image
           prev_features  float32 (1, d, h, w, z)  the ``features`` output of the previous frame (zeros after a reset)
           prev_valid     float32 (1,)             1 = look back at prev_features, 0 = start fresh
           ego_motion     float64 (1, 4, 4)        inv(ego2global_prev) @ ego2global_cur: current ego -> previous ego
                                                   (identity after a reset)
  outputs  logits         float32 (1, C, X, Y, Z)
           features       float32 (1, d, h, w, z)  the memory to feed into the next frame

A model without temporal attention (``model.temporal.enabled: false``) has only the first two inputs.
It is ``ProtoOcc.forward`` with the memory taken apart: the warp of the previous features
(``temporal_memory.warp_features``) runs inside the graph on ``ego_motion`` (in float64, as in PyTorch),
while the *reset rules* (first frame, time backwards, gap, pose jump: ``TemporalMemory.reset_reasons``) stay
with the caller, which turns them into ``prev_valid`` (``TemporalOnnxRunner``). A test pins
``TemporalGraph`` to ``ProtoOcc.forward`` over a sequence with resets.

Fixed in the graph: batch 1, camera count, image size, and K = ``max_hits``, the number of query slots
per camera (``gather_hit_queries`` pads to the largest hit count of the frame; here the padding is a
constant). Padding slots carry zero attention weight, so any K at least the frame's largest hit count gives
the same result; a camera seeing more query pillars than K would lose queries, so the runner counts the
hits (the same projection, ``project_points``) and refuses such a frame. K is stored in the ONNX file's
metadata (``protoocc.max_hits``). ``max_hits_for`` picks it from the rig of an example frame plus a margin;
K = h·w·z (every query pillar) fits any rig at a higher cost.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from protoocc_ros.config import ProtoOccConfig
from protoocc_ros.export.onnx_export import DEFAULT_OPSET, ExportError, trace_to_onnx
from protoocc_ros.model.protoocc import ProtoOcc
from protoocc_ros.model.spatial_cross_attention import project_points
from protoocc_ros.model.temporal_memory import TemporalMemory
from protoocc_ros.model.voxel_query import voxel_centres

__all__ = ["TemporalGraph", "TemporalOnnxRunner", "export_temporal_onnx", "compare_sequence", "max_hits_for",
           "hits_per_camera", "pillar_points", "TEMPORAL_INPUTS", "TEMPORAL_OUTPUTS", "METADATA_MAX_HITS"]

TEMPORAL_INPUTS = ("images", "lidar2img", "prev_features", "prev_valid", "ego_motion")
TEMPORAL_OUTPUTS = ("logits", "features")
METADATA_MAX_HITS = "protoocc.max_hits"
METADATA_GRAPH = "protoocc.graph"


# -- geometry shared by the graph and its caller -------------------------------------------------------------
def pillar_points(cfg: ProtoOccConfig) -> Tensor:
    """(h*w*z, Z_a, 3) float32: the reference pillar of every query voxel, as ``VoxelQuery.pillar_points``
    (without building the query embeddings; a test checks both are equal)."""
    m, pcr = cfg.model, list(cfg.dataset.point_cloud_range)
    centres = voxel_centres(pcr, list(m.query_size))  # (Q, 3)
    za = m.encoder.num_points_in_pillar
    dz = (pcr[5] - pcr[2]) / m.query_size[2]
    offsets = (torch.arange(za, dtype=torch.float32) + 0.5) / za - 0.5
    pillar = centres[:, None, :].repeat(1, za, 1)  # (Q, Z_a, 3)
    pillar[..., 2] += offsets * dz
    return pillar


def hits_per_camera(cfg: ProtoOccConfig, lidar2img: Tensor | np.ndarray, pillars: Tensor | None = None) -> np.ndarray:
    """(B, N) int: query pillars each camera sees (the model's projection, ``project_points``);
    lidar2img (B, N, 4, 4)."""
    pts = pillar_points(cfg) if pillars is None else pillars
    l2i = torch.as_tensor(np.asarray(lidar2img) if not isinstance(lidar2img, Tensor) else lidar2img).float()
    _, visible = project_points(pts, l2i, (int(cfg.image_size[0]), int(cfg.image_size[1])))  # (B, N, Q, Z_a)
    return visible.any(-1).sum(-1).numpy()


def max_hits_for(cfg: ProtoOccConfig, lidar2img: Tensor | np.ndarray, margin: float = 0.1) -> int:
    """K for an example rig: its largest per-camera hit count times (1 + margin), at most h·w·z."""
    q = math.prod(cfg.model.query_size)
    return max(1, min(q, math.ceil(int(hits_per_camera(cfg, lidar2img).max()) * (1.0 + margin))))


def _warp_by_motion(features: Tensor, ego_motion: Tensor, point_cloud_range: Sequence[float],
                    size: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    """``warp_features`` on a given motion: features (B, d, h, w, z), ego_motion (B, 4, 4) f64 current -> previous
    ego, size = (h, w, z) as Python ints (a size read from the traced tensor would put the voxel centres into the
    graph as float32 arithmetic on its shape). Returns (warped (B, d, h, w, z), valid (B, 1, h, w, z) bool)."""
    b = features.shape[0]
    h, w, z = size
    dev = features.device
    lo = torch.tensor(list(point_cloud_range[:3]), dtype=torch.float64, device=dev)
    span = torch.tensor(list(point_cloud_range[3:]), dtype=torch.float64, device=dev) - lo
    axes = [(torch.arange(n, dtype=torch.float64, device=dev) + 0.5) / n for n in (h, w, z)]
    norm = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)  # (h*w*z, 3) in (0, 1)
    pts = lo + norm * span  # current ego metres (a constant of the graph)
    rel = ego_motion.to(torch.float64)
    prev = pts @ rel[:, :3, :3].transpose(1, 2) + rel[:, None, :3, 3]  # (B, h*w*z, 3) previous ego metres
    unit = ((prev - lo) / span).reshape(b, h, w, z, 3)  # in [0, 1] when inside
    valid = ((unit >= 0) & (unit <= 1)).all(-1)  # (B, h, w, z)
    grid = (2.0 * unit - 1.0).flip(-1).to(features.dtype)  # grid_sample's last axis is (z, y, x)
    warped = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped, valid[:, None]


# -- the graph -----------------------------------------------------------------------------------------------
class TemporalGraph(nn.Module):
    """ProtoOcc in eval mode with the memory as tensors (module docstring); ``max_hits`` = K slots per camera."""

    def __init__(self, model: ProtoOcc, max_hits: int) -> None:
        super().__init__()
        self.model: ProtoOcc = model
        self.max_hits = int(max_hits)
        self.eval()

    def forward(self, images: Tensor, lidar2img: Tensor, prev_features: Tensor, prev_valid: Tensor,
                ego_motion: Tensor) -> tuple[Tensor, Tensor]:
        # The steps of ProtoOcc.forward, in its order; only the hit gathering (constant K) and the previous
        # volume (memory from the inputs) differ.
        model = self.model
        cfg = model.cfg
        h, w, z = cfg.model.query_size
        enc = model.encode_images(images, lidar2img, self.max_hits)
        prev = enc.query
        if cfg.model.temporal.enabled:
            warped, inside = _warp_by_motion(prev_features.to(prev.dtype), ego_motion, cfg.dataset.point_cloud_range,
                                             (h, w, z))
            use = inside.flatten(2).transpose(1, 2) & (prev_valid > 0.5)[:, None, None]  # (B, Q, 1)
            prev = torch.where(use, warped.flatten(2).transpose(1, 2), enc.query)  # (B, Q, d)
        volume, _ = model.encode_volume(enc, prev)  # (B, d, h, w, z)
        logits, _ = model.decoder(volume)
        return logits, volume


def memory_shape(cfg: ProtoOccConfig) -> tuple[int, int, int, int]:
    """(d, h, w, z) of the memory features."""
    h, w, z = cfg.model.query_size
    return cfg.model.embed_dims, h, w, z


def example_memory_inputs(cfg: ProtoOccConfig, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """(prev_features, prev_valid, ego_motion) of a first frame: zeros, 0, identity."""
    return (torch.zeros(1, *memory_shape(cfg), device=device), torch.zeros(1, device=device),
            torch.eye(4, dtype=torch.float64, device=device)[None])


def export_temporal_onnx(model: ProtoOcc, images: Tensor, lidar2img: Tensor, path: str | Path, max_hits: int,
                         opset: int = DEFAULT_OPSET) -> Path:
    """Trace ``TemporalGraph`` with example inputs (a first frame) and write it, K = ``max_hits`` in its metadata.

    The example memory is traced as a first frame; the graph has no branch on ``prev_valid``, so the same
    file serves frames with memory.
    """
    import onnx

    cfg = model.cfg
    q = math.prod(cfg.model.query_size)
    if not 1 <= max_hits <= q:
        raise ExportError(f"{path}: max_hits = {max_hits}: expected 1..{q} (h*w*z query pillars)")
    device = next(model.parameters()).device
    need = int(hits_per_camera(cfg, lidar2img.cpu()).max())
    if need > max_hits:
        raise ExportError(f"{path}: max_hits = {max_hits} but a camera of the example frame sees {need} query pillars")
    example = (images.to(device), lidar2img.to(device, torch.float32), *example_memory_inputs(cfg, device))
    path = trace_to_onnx(model, lambda: TemporalGraph(model, max_hits), example, path, TEMPORAL_INPUTS,
                         TEMPORAL_OUTPUTS, opset)
    proto = onnx.load(str(path))
    for key, value in ((METADATA_MAX_HITS, str(max_hits)), (METADATA_GRAPH, "temporal")):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


# -- the caller side: memory and reset rules ----------------------------------------------------------------
class TemporalOnnxRunner:
    """Runs an exported temporal graph frame by frame; the caller's half of the memory (module docstring).

    ``step`` decides the reset with ``TemporalMemory.reset_reasons`` (the rules and thresholds of the
    PyTorch model: ``model.temporal.memory_max_gap_s`` / ``memory_max_pose_jump_m`` of ``cfg``), feeds the
    memory or a fresh start, and returns the new memory as a ``TemporalMemory`` (features on the CPU).
    """

    def __init__(self, session: Any, cfg: ProtoOccConfig, source: str | Path = "graph") -> None:
        self.session, self.cfg, self.source = session, cfg, str(source)
        names = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        # Without temporal attention the memory inputs are unused and the exporter drops them.
        expected = TEMPORAL_INPUTS if cfg.model.temporal.enabled else TEMPORAL_INPUTS[:2]
        if tuple(names) != expected or tuple(outputs) != TEMPORAL_OUTPUTS:
            raise ExportError(f"{source}: inputs {names}, outputs {outputs}: expected the temporal graph's "
                              f"{list(expected)} -> {list(TEMPORAL_OUTPUTS)} (re-export with protoocc-export; "
                              "--single-frame graphs have no memory)")
        meta = session.get_modelmeta().custom_metadata_map
        if METADATA_MAX_HITS not in meta:
            raise ExportError(f"{source}: no '{METADATA_MAX_HITS}' in the ONNX metadata: not written by "
                              "export_temporal_onnx")
        self.max_hits = int(meta[METADATA_MAX_HITS])
        self.shapes = {i.name: list(i.shape) for i in session.get_inputs()}
        self.num_cameras = int(self.shapes["images"][1])  # fixed in the graph (the model takes any number)
        shapes = {"images": [1, self.num_cameras, 3, *cfg.image_size], "prev_features": [1, *memory_shape(cfg)]}
        for name, shape in shapes.items():
            if name in self.shapes and self.shapes[name] != shape:
                raise ExportError(f"{source}: input {name!r} has shape {self.shapes[name]}, the config "
                                  f"{cfg.name!r} needs {shape}")
        self.pillars = pillar_points(cfg)

    def check_hits(self, lidar2img: Tensor) -> None:
        """ExportError when a camera sees more query pillars than the graph has slots for."""
        hits = hits_per_camera(self.cfg, lidar2img, self.pillars)[0]  # (N,)
        if int(hits.max()) > self.max_hits:
            cam = int(hits.argmax())
            name = self.cfg.dataset.cameras[cam] if cam < len(self.cfg.dataset.cameras) else f"#{cam}"
            raise ExportError(f"{self.source}: camera {name} sees {int(hits.max())} query pillars, the graph was "
                              f"exported for at most {self.max_hits} (max_hits): re-export it with a frame of this rig "
                              "(protoocc-export --split ...) or with --any-rig")

    def step(self, images: Tensor, lidar2img: Tensor, ego2global: Tensor, timestamp: Tensor,
             memory: TemporalMemory | None, check_hits: bool = True) -> tuple[np.ndarray, TemporalMemory]:
        """images (1, N, 3, H, W), lidar2img (1, N, 4, 4), ego2global (1, 4, 4) f64, timestamp (1,) f64 s ->
        (logits (1, C, X, Y, Z) float32, the memory for the next frame). ``check_hits`` False skips the hit
        count check (a warm-up on a synthetic rig, whose output nobody reads)."""
        t = self.cfg.model.temporal
        if check_hits:
            self.check_hits(lidar2img)
        ego2global = ego2global.to(torch.float64).cpu()
        timestamp = timestamp.to(torch.float64).cpu()
        memory = memory if memory is not None else TemporalMemory()
        reasons = memory.reset_reasons(ego2global, timestamp, memory_shape(self.cfg), t.memory_max_gap_s,
                                       t.memory_max_pose_jump_m)
        prev, valid, motion = (x.numpy() for x in example_memory_inputs(self.cfg))
        if reasons[0] is None and memory.features is not None and memory.ego2global is not None:
            prev = memory.features.detach().cpu().float().numpy()
            valid = np.ones(1, np.float32)
            motion = np.linalg.solve(memory.ego2global.double().cpu().numpy(), ego2global.numpy())  # cur -> prev
        feeds = {"images": _numpy(images, np.float32), "lidar2img": _numpy(lidar2img, np.float32),
                 "prev_features": np.ascontiguousarray(prev, np.float32), "prev_valid": valid.astype(np.float32),
                 "ego_motion": np.ascontiguousarray(motion, np.float64)}
        feeds = {name: arr for name, arr in feeds.items() if name in self.shapes}
        for name, arr in feeds.items():
            if list(arr.shape) != self.shapes[name]:
                raise ExportError(f"input {name!r}: the graph was exported for shape {self.shapes[name]}, got "
                                  f"{list(arr.shape)}")
        logits, features = self.session.run(list(TEMPORAL_OUTPUTS), feeds)
        return logits, TemporalMemory(torch.from_numpy(features), ego2global, timestamp, reasons)


def _numpy(value: Tensor | np.ndarray, dtype: Any) -> np.ndarray:
    arr = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
    return np.ascontiguousarray(arr, dtype)


def compare_sequence(runner: TemporalOnnxRunner, model: ProtoOcc,
                     frames: Sequence[tuple[Tensor, Tensor, Tensor, Tensor]]) -> list[dict[str, Any]]:
    """ONNX Runtime (``runner``, caller-side memory) vs ``ProtoOcc.forward`` with a ``TemporalMemory``, over a
    sequence of (images (1,N,3,H,W), lidar2img (1,N,4,4), ego2global (1,4,4) f64, timestamp (1,) f64) frames.

    Per frame: max |ONNX - PyTorch| of the logits, the largest |logit|, argmax agreement, max |difference| of the
    memory features, and both reset reasons (they must agree).
    """
    was_training = model.training
    model.eval()
    torch_memory: TemporalMemory | None = None
    onnx_memory: TemporalMemory | None = None
    checks = []
    try:
        for i, (images, lidar2img, ego2global, timestamp) in enumerate(frames):
            with torch.inference_mode():
                out = model(images, lidar2img, ego2global, timestamp, torch_memory)
            ref = out.logits.float().cpu().numpy()
            got, onnx_memory = runner.step(images, lidar2img, ego2global, timestamp, onnx_memory)
            torch_memory = out.memory
            assert torch_memory.features is not None and onnx_memory.features is not None
            memory_diff = (onnx_memory.features - torch_memory.features.cpu()).abs().max()
            checks.append({"frame": i, "max_abs_diff": float(np.abs(got - ref).max()),
                           "max_abs_logit": float(np.abs(ref).max()),
                           "argmax_agreement": float((got.argmax(1) == ref.argmax(1)).mean()),
                           "memory_max_abs_diff": float(memory_diff),
                           "reset_reason": torch_memory.reset_reason[0],
                           "onnx_reset_reason": onnx_memory.reset_reason[0]})
    finally:
        model.train(was_training)
    return checks
