"""Per-set inference without ROS: model, device, temporal memory and its reset rules, warm-up.

    predictor = load_predictor(checkpoint, config="demo", device="cpu")
    out = predictor.step(images, intrinsics, cam2ego, ego2global, stamp_ns)   # one camera set
    out.labels (X, Y, Z) uint8, out.confidence (X, Y, Z) float32, out.reset_reason ('first_frame', ... | None)

The memory rules are the model's (TemporalMemory: first frame, time backwards, gap, pose jump) plus the
caller's ``reset(reason)`` (lifecycle deactivate, a parameter change); a failing step drops the memory.
``step`` takes camera images as delivered (RGB uint8, any size) with their K and cam2ego and runs the one
shared preprocessing (protoocc_ros.data.preprocessing); ``step_tensors`` takes an already preprocessed set
(a dataset sample).
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from protoocc_ros.checkpoints.format import (
    architecture_differences,
    load_checkpoint,
    read_metadata,
    runtime_config,
    stored_config,
)
from protoocc_ros.classes import ClassTable, class_table
from protoocc_ros.config import (
    ConfigError,
    ProtoOccConfig,
    load_config,
    stored_config_from_dict,
    with_overrides,
)
from protoocc_ros.data.preprocessing import PreprocessedSet, preprocess_camera_set
from protoocc_ros.device import resolve_device
from protoocc_ros.export import ExportError, available_providers, onnx_session, resolve_providers
from protoocc_ros.export.temporal import TemporalOnnxRunner, export_temporal_onnx
from protoocc_ros.geometry import make_transform, optical_rotation
from protoocc_ros.model import ProtoOcc, TemporalMemory, build_model

WARMUP_CAMERA_HEIGHT_M = 1.5
DEFAULT_CONFIG = "demo"  # the config of a node without a checkpoint (and of the bundled checkpoint)


class PredictorError(RuntimeError):
    """The predictor cannot be built or a set cannot be run; the message names what and why."""


@dataclass
class Prediction:
    """One camera set's occupancy: argmax labels, their softmax confidence, and why the memory restarted."""

    labels: np.ndarray            # (X, Y, Z) uint8
    confidence: np.ndarray        # (X, Y, Z) float32 in [0, 1]
    reset_reason: str | None      # 'first_frame', 'time_backwards', 'gap', 'pose_jump', or None (memory used)


class Predictor:
    """Runs ProtoOcc on one camera set at a time and carries the temporal memory between sets (both backends).

    The memory and its rules live here, on the caller's side of the model: the backend's ``_infer`` gets the
    memory of the previous set (or None) and returns the next one.
    """

    backend = "base"

    def __init__(self, cfg: ProtoOccConfig, device: torch.device | str = "cpu", memory_enabled: bool = True,
                 training_cameras: Sequence[str] | None = None) -> None:
        self.cfg = cfg
        self.training_cameras = list(training_cameras if training_cameras is not None else cfg.dataset.cameras)
        self.device = torch.device(device)
        self.memory_enabled = memory_enabled
        self.memory: TemporalMemory | None = None
        self.classes: ClassTable = class_table(cfg.dataset.num_classes, cfg.dataset.class_names,
                                               cfg.dataset.free_label)

    def rig_note(self, cameras: Sequence[str]) -> str | None:
        """What running on ``cameras`` means when the rig differs from the one the weights were trained on."""
        cameras, trained = list(cameras), self.training_cameras
        if cameras == trained:
            return None
        return (f"camera rig differs from the training rig: {len(cameras)} camera(s) {cameras}, trained on "
                f"{len(trained)} {trained}. The weights take any number of cameras (each voxel averages the "
                "cameras that see it), but voxels no camera sees are guessed from the learned query alone, and "
                "accuracy on cameras mounted, aimed or sized unlike the training rig is unmeasured: fine-tune on "
                "data of this rig (docs/training.md 'Fine-tuning on a new camera rig').")

    # -- memory ---------------------------------------------------------------------------------------
    def reset(self) -> bool:
        """Forget the temporal memory (the next set starts as a first frame); True when there was one."""
        had = self.memory is not None
        self.memory = None
        return had

    # -- inference --------------------------------------------------------------------------------------
    def preprocess(self, images: Sequence[np.ndarray], intrinsics: Sequence[np.ndarray],
                   cam2ego: Sequence[np.ndarray]) -> PreprocessedSet:
        """Resize + normalise RGB images and build lidar2img for the model's input size."""
        return preprocess_camera_set(images, intrinsics, cam2ego, self.cfg.image_size)

    def step(self, images: Sequence[np.ndarray], intrinsics: Sequence[np.ndarray], cam2ego: Sequence[np.ndarray],
             ego2global: np.ndarray, stamp_ns: int) -> Prediction:
        """One set of RGB uint8 images (any size) with K (3, 3), cam2ego (4, 4) per camera, ego2global (4, 4)."""
        batch = self.preprocess(images, intrinsics, cam2ego)
        return self.step_tensors(batch.images, batch.lidar2img, ego2global, stamp_ns / 1e9)

    @torch.no_grad()
    def step_tensors(self, images: Tensor, lidar2img: Tensor, ego2global: np.ndarray | Tensor,
                     stamp_s: float | Tensor) -> Prediction:
        """A preprocessed set: images (N, 3, H, W) f32, lidar2img (N, 4, 4), ego2global (4, 4), stamp (s, f64)."""
        return self._step(images, lidar2img, ego2global, stamp_s, warm_up=False)

    def _step(self, images: Tensor, lidar2img: Tensor, ego2global: np.ndarray | Tensor, stamp_s: float | Tensor,
              warm_up: bool) -> Prediction:
        pose = torch.as_tensor(np.asarray(ego2global, dtype=np.float64) if not isinstance(ego2global, Tensor)
                               else ego2global, dtype=torch.float64)
        stamp = stamp_s.to(torch.float64).reshape(1) if isinstance(stamp_s, Tensor) \
            else torch.tensor([float(stamp_s)], dtype=torch.float64)
        memory = self.memory if self.memory_enabled else None
        try:
            labels, confidence, new_memory = self._infer(images[None].float(), lidar2img[None].float(), pose[None],
                                                         stamp, memory, warm_up)
        except Exception:
            self.memory = None  # a failed set leaves no half-updated history
            raise
        self.memory = new_memory if self.memory_enabled else None
        reason = (new_memory.reset_reason or [None])[0]
        return Prediction(labels, confidence, reason)

    def _infer(self, images: Tensor, lidar2img: Tensor, ego2global: Tensor, stamp: Tensor,
               memory: TemporalMemory | None, warm_up: bool) -> tuple[np.ndarray, np.ndarray, TemporalMemory]:
        """images (1, N, 3, H, W) f32, lidar2img (1, N, 4, 4) f32, ego2global (1, 4, 4) f64, stamp (1,) f64 s ->
        (labels (X, Y, Z) uint8, confidence (X, Y, Z) float32, memory of this set)."""
        raise NotImplementedError

    def warm_up(self) -> float:
        """One inference on a synthetic rig (grey images, cameras around the car), so the first real set does
        not pay for lazy initialisation; leaves the memory empty. Returns its duration in ms."""
        H, W = self.cfg.image_size
        n = self.cfg.num_cameras
        K = np.array([[W / 2.0, 0.0, W / 2.0], [0.0, W / 2.0, H / 2.0], [0.0, 0.0, 1.0]])
        cam2ego = [make_transform(optical_rotation(2 * np.pi * i / n), [0.0, 0.0, WARMUP_CAMERA_HEIGHT_M])
                   for i in range(n)]
        start = time.monotonic()
        try:
            batch = self.preprocess([np.full((H, W, 3), 128, np.uint8)] * n, [K] * n, cam2ego)
            with torch.no_grad():
                self._step(batch.images, batch.lidar2img, np.eye(4), 0.0, warm_up=True)
        except Exception as exc:
            raise PredictorError(f"model warm-up ({self.backend}) on {self.device} failed: {type(exc).__name__}: "
                                 f"{exc}") from None
        self.reset()
        return 1e3 * (time.monotonic() - start)


class OccupancyPredictor(Predictor):
    """The PyTorch backend: ``ProtoOcc.predict`` on ``device`` with the memory as a TemporalMemory."""

    backend = "torch"

    def __init__(self, model: ProtoOcc, cfg: ProtoOccConfig, device: torch.device | str = "cpu",
                 memory_enabled: bool = True, training_cameras: Sequence[str] | None = None) -> None:
        super().__init__(cfg, device, memory_enabled, training_cameras)
        self.model = model.to(self.device).eval()

    def _infer(self, images: Tensor, lidar2img: Tensor, ego2global: Tensor, stamp: Tensor,
               memory: TemporalMemory | None, warm_up: bool) -> tuple[np.ndarray, np.ndarray, TemporalMemory]:
        dev = self.device
        labels, confidence, new_memory = self.model.predict(
            images.to(dev, torch.float32),      # (1, N, 3, H, W)
            lidar2img.to(dev, torch.float32),   # (1, N, 4, 4)
            ego2global.to(dev),                 # (1, 4, 4) float64
            stamp.to(dev),                      # (1,) float64 seconds
            memory)
        return labels[0].cpu().numpy(), confidence[0].float().cpu().numpy(), new_memory


class OnnxRuntimePredictor(Predictor):
    """The ONNX Runtime backend: the temporal graph of protoocc_ros.export.temporal, memory and reset rules here.

    Same outputs as the PyTorch backend (labels = argmax, confidence = max softmax of the graph's logits);
    the memory features go back and forth through host memory.
    """

    backend = "onnxruntime"

    def __init__(self, session: Any, cfg: ProtoOccConfig, source: str | Path, device: torch.device | str = "cpu",
                 memory_enabled: bool = True, training_cameras: Sequence[str] | None = None) -> None:
        super().__init__(cfg, device, memory_enabled, training_cameras)
        try:
            self.runner = TemporalOnnxRunner(session, cfg, source)
        except ExportError as exc:
            raise PredictorError(str(exc)) from None
        self.source = str(source)
        self.providers = list(session.get_providers())

    def rig_note(self, cameras: Sequence[str]) -> str | None:
        """As Predictor.rig_note; PredictorError when the graph was exported for another number of cameras."""
        if len(cameras) != self.runner.num_cameras:
            raise PredictorError(f"backend onnxruntime: {self.source} takes {self.runner.num_cameras} cameras, the "
                                 f"node has {len(cameras)} {list(cameras)} (parameter 'cameras'): export the graph "
                                 "for this rig (protoocc-export), or use onnx.file '' to export it at configure")
        return super().rig_note(cameras)

    def _infer(self, images: Tensor, lidar2img: Tensor, ego2global: Tensor, stamp: Tensor,
               memory: TemporalMemory | None, warm_up: bool) -> tuple[np.ndarray, np.ndarray, TemporalMemory]:
        try:
            logits, new_memory = self.runner.step(images, lidar2img, ego2global, stamp, memory, check_hits=not warm_up)
        except ExportError as exc:
            raise PredictorError(str(exc)) from None
        confidence, labels = torch.from_numpy(logits).float().softmax(1).max(1)  # as ProtoOcc.predict
        return labels[0].to(torch.uint8).numpy(), confidence[0].numpy(), new_memory


def load_model(checkpoint: Path | None, cfg: ProtoOccConfig, device: torch.device | str = "cpu") -> ProtoOcc:
    """(checkpoint, config) -> model in eval mode on ``device``; checkpoint None = random initialisation.

    The checkpoint is safetensors + JSON metadata (protoocc_ros.checkpoints.format; never pickle) whose
    architecture must match ``cfg``.
    """
    if checkpoint is None:
        return build_model(cfg).to(device).eval()
    model, _ = load_checkpoint(checkpoint, cfg, device=device)
    return model


BACKENDS = ("torch", "onnxruntime")


def load_predictor(checkpoint: Path | None, config: str | Path | None = None, overrides: Sequence[str] = (),
                   device: str | torch.device = "auto", memory_enabled: bool = True,
                   warn: Callable[[str], object] | None = None, backend: str = "torch",
                   onnx_file: str | Path | None = None, providers: Sequence[str] = (),
                   cameras: Sequence[str] = ()) -> Predictor:
    """Checkpoint (+ optional config and overrides) -> predictor on ``device``.

    The architecture comes from the checkpoint; ``config`` (a path or shipped name; None or '' = the
    checkpoint's own) and ``overrides`` may change only run-time settings (runtime_config). Without a
    checkpoint the config (default 'demo') builds a randomly initialised model and ``warn`` gets the
    random-weights warning. ``backend`` 'torch' (ProtoOcc in PyTorch) or 'onnxruntime': the temporal ONNX graph
    ``onnx_file`` from protoocc-export (its weights and, from its sidecar, its config; ``checkpoint`` is not
    read), or, without ``onnx_file``, the checkpoint exported here for any rig (every query pillar in the graph:
    slower than a graph exported for the rig; ``cameras``, when given, sets its camera count). ``providers``: ONNX
    Runtime execution providers in order; empty = TensorRT / CUDA when installed and the device is not the CPU,
    then CPU. Raises PredictorError naming the config, checkpoint or graph and why.
    """
    if backend not in BACKENDS:
        raise PredictorError(f"parameter 'backend' = {backend!r}: expected one of {list(BACKENDS)}")
    if backend == "onnxruntime" and onnx_file:
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        return load_onnx_predictor(Path(onnx_file), config, overrides, dev, memory_enabled, providers)
    given: ProtoOccConfig | None = None
    if config or checkpoint is None:  # a config file's own errors are the config's, not the checkpoint's
        try:
            given = load_config(config or DEFAULT_CONFIG, list(overrides))
        except (ConfigError, OSError) as exc:
            raise PredictorError(f"parameter 'config_file' = {str(config or DEFAULT_CONFIG)!r}: {exc}") from None
    if checkpoint is None:
        assert given is not None
        cfg = given
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if checkpoint is None and warn is not None:
        for line in random_weights_warning():
            warn(line)
    try:
        trained = None
        if checkpoint is not None:
            cfg = runtime_config(checkpoint, given, overrides) if given is not None \
                else runtime_config(checkpoint, None, overrides)
            trained = stored_config(read_metadata(checkpoint), checkpoint).dataset.cameras
        model = load_model(checkpoint, cfg, dev if backend == "torch" else "cpu")
    except Exception as exc:  # any failure here is a start-up error with its reason
        what = f"checkpoint {str(checkpoint)!r}" if checkpoint is not None else f"model of config {cfg.name!r}"
        raise PredictorError(f"{what} cannot be loaded: {type(exc).__name__}: {exc}") from None
    if backend == "torch":
        return OccupancyPredictor(model, cfg, dev, memory_enabled, trained)
    with tempfile.TemporaryDirectory(prefix="protoocc_onnx_") as tmp:  # ONNX Runtime keeps the graph in memory
        path = Path(tmp) / "protoocc_any_rig.onnx"
        n = len(cameras) or cfg.num_cameras
        images = torch.zeros(1, n, 3, *cfg.image_size)
        lidar2img = torch.eye(4).expand(1, n, 4, 4).clone()  # sees nothing; K covers every pillar
        try:
            export_temporal_onnx(model, images, lidar2img, path, max_hits=math.prod(cfg.model.query_size))
        except ExportError as exc:
            raise PredictorError(f"export of {str(checkpoint)!r} for backend onnxruntime failed: {exc}") from None
        session = _session(path, dev, providers)
    return OnnxRuntimePredictor(session, cfg, f"{checkpoint} (exported at load, any rig)", dev, memory_enabled,
                                trained)


def _session(path: Path, device: torch.device, providers: Sequence[str]) -> Any:
    """ONNX Runtime session on ``device``'s providers (PredictorError when CUDA is asked for and not there)."""
    try:
        chosen = resolve_providers(providers, device.type)
        if device.type == "cuda" and chosen == ["CPUExecutionProvider"]:
            raise ExportError(f"device {device} with backend onnxruntime needs the CUDA or TensorRT execution "
                              f"provider (onnxruntime-gpu); this installation has {available_providers()}")
        return onnx_session(path, threads=torch.get_num_threads(), providers=chosen)
    except ExportError as exc:
        raise PredictorError(f"parameter 'onnx.file' = {str(path)!r}: {exc}") from None


def load_onnx_predictor(path: Path, config: str | Path | None, overrides: Sequence[str], device: torch.device,
                        memory_enabled: bool = True, providers: Sequence[str] = ()) -> OnnxRuntimePredictor:
    """An exported temporal graph as a predictor. Its sidecar ``<file>.json`` (protoocc-export) carries the config it
    was exported with: ``config`` None / '' runs it as exported, a given config (with ``overrides``) may change only
    run-time settings, as for a checkpoint. Without a sidecar the config (default 'demo') must fit the graph."""
    if not path.is_file():
        raise PredictorError(f"parameter 'onnx.file' = {str(path)!r}: file not found (protoocc-export writes it)")
    sidecar = path.with_suffix(".json")
    stored: ProtoOccConfig | None = None
    if sidecar.is_file():
        try:
            stored = stored_config_from_dict(json.loads(sidecar.read_text())["config"])
        except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
            raise PredictorError(f"{sidecar}: not a protoocc-export sidecar with a 'config': {exc}") from None
    try:
        if config or stored is None:
            cfg = load_config(config or DEFAULT_CONFIG, list(overrides))
        else:
            cfg = with_overrides(stored, overrides)
    except (ConfigError, OSError) as exc:
        raise PredictorError(f"parameter 'config_file' = {str(config or DEFAULT_CONFIG)!r}: {exc}") from None
    if stored is not None:
        differences = architecture_differences(stored, cfg)
        if differences:
            raise PredictorError(f"{path} was exported for another model than config {cfg.name!r}: "
                                 + "; ".join(d.replace(": checkpoint ", ": graph ", 1) for d in differences))
    trained = stored.dataset.cameras if stored is not None else None
    return OnnxRuntimePredictor(_session(path, device, providers), cfg, path, device, memory_enabled, trained)


def random_weights_warning() -> list[str]:
    """The loud warning of a node that runs without a checkpoint."""
    from protoocc_ros.checkpoints.format import default_checkpoint_path

    return ["=" * 72, f"NO CHECKPOINT: {default_checkpoint_path()} does not exist and parameter 'checkpoint' is empty.",
            "The model runs with RANDOM WEIGHTS: its predictions are meaningless.", "=" * 72]
