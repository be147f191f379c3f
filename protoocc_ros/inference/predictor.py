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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from protoocc_ros.classes import ClassTable, class_table
from protoocc_ros.config import ConfigError, ProtoOccConfig, load_config
from protoocc_ros.data.preprocessing import PreprocessedSet, preprocess_camera_set
from protoocc_ros.device import resolve_device
from protoocc_ros.geometry import make_transform, optical_rotation
from protoocc_ros.model import ProtoOcc, TemporalMemory, build_model
from protoocc_ros.training.checkpoint import load_checkpoint, read_metadata, runtime_config, stored_config

__all__ = ["OccupancyPredictor", "Prediction", "PredictorError", "load_predictor", "WARMUP_CAMERA_HEIGHT_M"]

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


class OccupancyPredictor:
    """Runs ProtoOcc on one camera set at a time and carries the temporal memory between sets."""

    def __init__(self, model: ProtoOcc, cfg: ProtoOccConfig, device: torch.device | str = "cpu",
                 memory_enabled: bool = True, training_cameras: Sequence[str] | None = None) -> None:
        self.cfg = cfg
        self.training_cameras = list(training_cameras if training_cameras is not None else cfg.dataset.cameras)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
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
        dev = self.device
        pose = torch.as_tensor(np.asarray(ego2global, dtype=np.float64) if not isinstance(ego2global, Tensor)
                               else ego2global, dtype=torch.float64)
        stamp = stamp_s.to(torch.float64).reshape(1) if isinstance(stamp_s, Tensor) \
            else torch.tensor([float(stamp_s)], dtype=torch.float64)
        memory = self.memory if self.memory_enabled else None
        try:
            labels, confidence, new_memory = self.model.predict(
                images[None].to(dev, torch.float32),      # (1, N, 3, H, W)
                lidar2img[None].to(dev, torch.float32),   # (1, N, 4, 4)
                pose[None].to(dev),                       # (1, 4, 4) float64
                stamp.to(dev),                            # (1,) float64 seconds
                memory)
        except Exception:
            self.memory = None  # a failed set leaves no half-updated history
            raise
        self.memory = new_memory if self.memory_enabled else None
        reason = (new_memory.reset_reason or [None])[0]
        return Prediction(labels[0].cpu().numpy(), confidence[0].float().cpu().numpy(), reason)

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
            self.step([np.full((H, W, 3), 128, np.uint8)] * n, [K] * n, cam2ego, np.eye(4), 0)
        except Exception as exc:
            raise PredictorError(f"model warm-up on {self.device} failed: {type(exc).__name__}: {exc}") from None
        self.reset()
        return 1e3 * (time.monotonic() - start)


def load_model(checkpoint: Path | None, cfg: ProtoOccConfig, device: torch.device | str = "cpu") -> ProtoOcc:
    """(checkpoint, config) -> model in eval mode on ``device``; checkpoint None = random initialisation.

    The checkpoint is safetensors + JSON metadata (protoocc_ros.training.checkpoint; never pickle) whose
    architecture must match ``cfg``.
    """
    if checkpoint is None:
        return build_model(cfg).to(device).eval()
    model, _ = load_checkpoint(checkpoint, cfg, device=device)
    return model  # type: ignore[return-value]


def load_predictor(checkpoint: Path | None, config: str | Path | None = None, overrides: Sequence[str] = (),
                   device: str | torch.device = "auto", memory_enabled: bool = True,
                   warn: Callable[[str], object] | None = None) -> OccupancyPredictor:
    """Checkpoint (+ optional config and overrides) -> predictor on ``device``.

    The architecture comes from the checkpoint; ``config`` (a path or shipped name; None or '' = the
    checkpoint's own) and ``overrides`` may change only run-time settings (runtime_config). Without a
    checkpoint the config (default 'demo') builds a randomly initialised model and ``warn`` gets the
    random-weights warning. Raises PredictorError naming the config or checkpoint and why.
    """
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
        model = load_model(checkpoint, cfg, dev)
    except Exception as exc:  # any failure here is a start-up error with its reason
        what = f"checkpoint {str(checkpoint)!r}" if checkpoint is not None else f"model of config {cfg.name!r}"
        raise PredictorError(f"{what} cannot be loaded: {type(exc).__name__}: {exc}") from None
    return OccupancyPredictor(model, cfg, dev, memory_enabled, trained)


def random_weights_warning() -> list[str]:
    """The loud warning of a node that runs without a checkpoint."""
    from protoocc_ros.training.checkpoint import default_checkpoint_path

    return ["=" * 72, f"NO CHECKPOINT: {default_checkpoint_path()} does not exist and parameter 'checkpoint' is empty.",
            "The model runs with RANDOM WEIGHTS: its predictions are meaningless.", "=" * 72]
