"""occupancy_node: camera sets -> ProtoOcc -> 3D semantic occupancy (design §1 data flow, §5 ROS interfaces).

Inputs: N camera image topics (Image or CompressedImage, sensor QoS) + CameraInfo (intrinsics),
/tf_static (base_link -> optical frames), /tf (odom -> base_link, the ego pose for the temporal
memory). Sets are synchronised (sync.py) in the subscription callbacks and handed to one worker
thread through a bounded queue (inference_worker.py) which decodes, looks up TF, preprocesses with
protoocc_ros.data.preprocessing.preprocess_camera_set, runs ProtoOcc.predict and publishes
``~/occupancy``, ``~/occupied_voxels``, ``~/markers``; ``/diagnostics`` reports rates, latency per
stage, dropped sets and memory resets by reason. Bad input is dropped and counted, never fatal; a
bad configuration or checkpoint at start exits with a one-line reason and a non-zero code.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from protoocc_ros import classes
from protoocc_ros.config import ConfigError, load_config
from protoocc_ros.data.errors import DatasetError
from protoocc_ros.data.preprocessing import preprocess_camera_set
from protoocc_ros.model import build_model
from protoocc_ros.msg import SemanticOccupancyGrid
from protoocc_ros.ros.diagnostics import NodeDiagnostics, ThrottledLog
from protoocc_ros.ros.image_conversion import ImageConversionError, msg_to_rgb
from protoocc_ros.ros.inference_worker import InferenceWorker
from protoocc_ros.ros.markers import OccupancyMarkers
from protoocc_ros.ros.occupancy_msg import grid_to_msg, occupied_voxels
from protoocc_ros.ros.params import OccupancyNodeParams, ParamError, read_params
from protoocc_ros.ros.pointcloud import create_cloud
from protoocc_ros.ros.qos import reliable_qos, sensor_qos
from protoocc_ros.ros.sync import ApproximateTimeSync, SyncedSet
from protoocc_ros.ros.tf_buffer import (
    ConnectivityError, FrameLookupError, TfBuffer, TransformError, attach_tf_listener,
)
from protoocc_ros.training.checkpoint import default_checkpoint_path, load_checkpoint

__all__ = ["OccupancyNode", "NodeStartError", "load_model", "class_table", "main"]

NODE_NAME = "occupancy_node"
INPUT_WAIT_S = 0.25  # how long the worker waits for a transform / CameraInfo that may still be on its way


class NodeStartError(RuntimeError):
    """The node cannot start (bad parameter, config, checkpoint or device); the message says which and why."""


# -- model, checkpoint, classes -------------------------------------------------------------------
def load_model(checkpoint: Path | None, cfg: Any, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The single place that turns (checkpoint, config) into a model in eval mode on ``device``.

    checkpoint: a safetensors checkpoint (weights + JSON metadata, protoocc_ros.training.checkpoint;
    never pickle) whose architecture must match ``cfg``; None = random initialisation.
    """
    if checkpoint is None:
        return build_model(cfg).to(device).eval()
    model, _ = load_checkpoint(checkpoint, cfg, device=device)
    return model


def class_table(cfg: Any) -> tuple[list[str], np.ndarray, int]:
    """(class names, (C, 3) uint8 RGB colours, free label) of the config's dataset."""
    n = cfg.dataset.num_classes
    names = list(cfg.dataset.class_names or classes.class_names_for(n))
    if n == classes.OCC3D_NUM_CLASSES:
        colors = classes.OCC3D_COLORS
    elif n == classes.KITTI_NUM_CLASSES:
        colors = classes.KITTI_COLORS
    else:  # evenly spaced hues for a custom label set
        hues = np.linspace(0, 179, n, endpoint=False).astype(np.uint8)
        colors = cv2.cvtColor(np.stack([hues, np.full(n, 200, np.uint8), np.full(n, 230, np.uint8)], -1)[None],
                              cv2.COLOR_HSV2RGB)[0]
    return names, np.asarray(colors, np.uint8), int(cfg.dataset.free_label)


def _resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise NodeStartError(f"parameter 'device' = {requested!r}: CUDA is not available on this machine "
                             "(use cpu or auto)")
    return torch.device(requested)


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# -- per-set processing -----------------------------------------------------------------------------
class _Drop(Exception):
    """A camera set that cannot be used; ``reason`` is the /diagnostics key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass
class _Job:
    synced: SyncedSet
    queued_at: float  # time.monotonic() when the set was complete


@dataclass
class _CameraInfo:
    K: np.ndarray  # (3, 3) float64
    width: int
    height: int
    frame_id: str


class OccupancyNode(Node):
    """ROS 2 node running ProtoOcc on synchronised camera sets (see the module docstring)."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        try:
            self.params = read_params(self)
        except ParamError as exc:
            raise NodeStartError(str(exc)) from None
        p = self.params
        self.cfg = self._load_config(p)
        self.cameras = p.cameras or list(self.cfg.dataset.cameras)
        if len(self.cameras) != self.cfg.num_cameras:
            raise NodeStartError(f"parameter 'cameras' = {self.cameras}: the model of {p.config_file} takes "
                                 f"{self.cfg.num_cameras} cameras ({self.cfg.dataset.cameras})")
        self.device = _resolve_device(p.device)
        self.model = self._load_model(p.checkpoint)
        self.class_names, colors, self.free_label = class_table(self.cfg)
        self.memory: Any = None

        log = self.get_logger()
        self.diag = NodeDiagnostics(self.get_fully_qualified_name().lstrip("/"), hardware_id=str(self.device))
        self.throttled = ThrottledLog(p.log_throttle_s)  # one log line per key and period
        self.tf = TfBuffer(p.tf_cache_s, p.tf_tolerance_s, on_reject=self._on_tf_reject, jump_back_s=p.time_jump_s)
        self._tf_resets_seen = 0
        self.sync = ApproximateTimeSync(self.cameras, p.sync_slop_s, p.sync_queue_size, p.time_jump_s,
                                        callback=self._on_set, on_drop=self._on_sync_drop)
        self.camera_info: dict[str, _CameraInfo] = {}
        self.markers = OccupancyMarkers(self.class_names, colors, self.free_label, ns="occupancy",
                                        delete_all_first=p.markers_delete_all)

        self.pub_grid = self.create_publisher(SemanticOccupancyGrid, "~/occupancy", reliable_qos(10))
        self.pub_cloud = self.create_publisher(PointCloud2, "~/occupied_voxels", reliable_qos(2))
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", reliable_qos(2))
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(10))
        attach_tf_listener(self, self.tf)
        image_type = CompressedImage if p.image_transport == "compressed" else Image
        for cam in self.cameras:
            self.create_subscription(image_type, p.image_topic(cam), self._image_callback(cam),
                                     sensor_qos(p.input_qos_depth))
            self.create_subscription(CameraInfo, p.camera_info_topic(cam), self._info_callback(cam),
                                     sensor_qos(p.input_qos_depth))
        self.worker: InferenceWorker[_Job] = InferenceWorker(
            self._process, p.inference_queue_size, on_drop=self._on_busy_drop, on_error=self._on_worker_error)
        self.create_timer(p.diagnostics_period_s, self._publish_diagnostics)
        log.info(f"ready: {len(self.cameras)} cameras {self.cameras} on {p.image_topic(self.cameras[0])} ..., "
                 f"config {self.cfg.name}, grid {tuple(self.cfg.dataset.grid_size)}, device {self.device}")

    # -- start-up ---------------------------------------------------------------------------------
    def _load_config(self, p: OccupancyNodeParams) -> Any:
        overrides = list(p.config_overrides)
        if p.memory_max_gap_s != -1.0:
            overrides.append(f"model.temporal.memory_max_gap_s={p.memory_max_gap_s}")
        if p.memory_max_pose_jump_m != -1.0:
            overrides.append(f"model.temporal.memory_max_pose_jump_m={p.memory_max_pose_jump_m}")
        try:
            return load_config(p.config_file, overrides)
        except (ConfigError, OSError) as exc:
            raise NodeStartError(f"parameter 'config_file' = {p.config_file!r}: {exc}") from None

    def _load_model(self, checkpoint_param: str) -> torch.nn.Module:
        log = self.get_logger()
        if checkpoint_param:
            path: Path | None = Path(checkpoint_param).expanduser()
            if not path.is_file():
                raise NodeStartError(f"parameter 'checkpoint' = {checkpoint_param!r}: file not found")
        else:
            default = default_checkpoint_path()
            path = default if default.is_file() else None
            if path is None:
                log.warning("=" * 72)
                log.warning(f"NO CHECKPOINT: {default} does not exist and parameter 'checkpoint' is empty.")
                log.warning("The model runs with RANDOM WEIGHTS: its predictions are meaningless.")
                log.warning("=" * 72)
        try:
            model = load_model(path, self.cfg, self.device)
        except Exception as exc:  # noqa: BLE001 - any failure here is a start-up error with its reason
            what = f"checkpoint {str(path)!r}" if path is not None else f"model of config {self.cfg.name!r}"
            raise NodeStartError(f"{what} cannot be loaded: {type(exc).__name__}: {exc}") from None
        if path is not None:
            log.info(f"loaded checkpoint {path}")
        return model

    # -- callbacks (executor thread; must stay cheap) -----------------------------------------------
    def _image_callback(self, camera: str) -> Any:
        def callback(msg: Image | CompressedImage) -> None:
            self.diag.tick_input(camera)
            self.sync.add(camera, _stamp_ns(msg.header.stamp), msg)
        return callback

    def _info_callback(self, camera: str) -> Any:
        topic = self.params.camera_info_topic(camera)

        def callback(msg: CameraInfo) -> None:
            self.diag.tick_input(f"{camera}/camera_info")
            K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
            if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] != 1.0:
                self._drop("bad_camera_info", f"{topic}: K = {K.tolist()} is not a pinhole matrix "
                                              "(finite, positive focal lengths, K[2,2] = 1); ignored")
                return
            self.camera_info[camera] = _CameraInfo(K, int(msg.width), int(msg.height), msg.header.frame_id)
        return callback

    def _on_set(self, synced: SyncedSet) -> None:
        self.worker.submit(_Job(synced, time.monotonic()))

    def _on_sync_drop(self, reason: str, detail: str) -> None:
        if reason == "time_jump_backwards":
            self.diag.reset("sync.time_jump_backwards")
            line = self.throttled("sync.reset", f"inputs jumped back in time, synchronizer reset: {detail}")
            if line:
                self.get_logger().warning(line)
            return
        self._drop(reason, detail)

    def _on_tf_reject(self, reason: str, detail: str) -> None:
        self._drop(f"tf_rejected_{reason}", detail)

    def _on_busy_drop(self, job: _Job) -> None:
        self._drop("inference_busy", f"set at {job.synced.stamp_ns} ns dropped: the model is still busy "
                                     f"(inference_queue_size {self.params.inference_queue_size})")

    def _on_worker_error(self, job: _Job, exc: BaseException) -> None:
        if not self.context.ok():  # shutting down (Ctrl-C) while a set was being published
            return
        self._drop("internal_error", f"set at {job.synced.stamp_ns} ns: {type(exc).__name__}: {exc}")

    def _drop(self, reason: str, detail: str) -> None:
        self.diag.drop(reason)
        line = self.throttled(reason, f"dropped ({reason}): {detail}")
        if line:
            self.get_logger().warning(line)

    def _publish_diagnostics(self) -> None:
        if self.tf.resets != self._tf_resets_seen:
            for _ in range(self.tf.resets - self._tf_resets_seen):
                self.diag.reset("tf.time_jump_backwards")
            self._tf_resets_seen = self.tf.resets
        self.pub_diag.publish(self.diag.to_msg(self.get_clock().now().to_msg()))

    # -- worker thread ----------------------------------------------------------------------------
    def _process(self, job: _Job) -> None:
        try:
            self._run_set(job)
        except _Drop as drop:
            self._drop(drop.reason, str(drop))

    def _lookup(self, target: str, source: str, stamp_ns: int, what: str) -> np.ndarray:
        """4x4 target <- source at stamp_ns, waiting up to INPUT_WAIT_S for data that may still be on its way."""
        deadline = time.monotonic() + INPUT_WAIT_S
        while True:
            try:
                return self.tf.lookup_matrix(target, source, stamp_ns)
            except TransformError as exc:  # retried: after a time jump even "past" data can still arrive
                if time.monotonic() >= deadline:
                    reason = "tf_missing" if isinstance(exc, (FrameLookupError, ConnectivityError)) else "tf_stale"
                    raise _Drop(reason, f"{what}: {exc}") from None
            time.sleep(0.005)

    def _gather(self, synced: SyncedSet) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Decoded RGB images, K and cam2ego per camera (raises _Drop)."""
        p = self.params
        images, Ks, cam2ego = [], [], []
        for cam in self.cameras:
            msg = synced.messages[cam]
            info = self.camera_info.get(cam)
            deadline = time.monotonic() + INPUT_WAIT_S
            while info is None and time.monotonic() < deadline:  # e.g. the first image beat its CameraInfo
                time.sleep(0.005)
                info = self.camera_info.get(cam)
            if info is None:
                raise _Drop("no_camera_info", f"{cam}: no CameraInfo received on {p.camera_info_topic(cam)} yet")
            try:
                rgb = msg_to_rgb(msg, p.image_topic(cam))
            except ImageConversionError as exc:
                raise _Drop("image_encoding", str(exc)) from None
            if info.width and info.height and (rgb.shape[1], rgb.shape[0]) != (info.width, info.height):
                raise _Drop("image_size_mismatch", f"{cam}: image is {rgb.shape[1]}x{rgb.shape[0]} but its "
                                                   f"CameraInfo says {info.width}x{info.height}")
            frame = msg.header.frame_id or info.frame_id or f"{cam.lower()}_optical_frame"
            cam2ego.append(self._lookup(p.base_frame, frame, synced.stamps_ns[cam], f"extrinsics of {cam}"))
            images.append(rgb)
            Ks.append(info.K)
        return images, Ks, cam2ego

    def _run_set(self, job: _Job) -> None:
        p, synced = self.params, job.synced
        t0 = time.monotonic()
        images, Ks, cam2ego = self._gather(synced)
        ego2global = self._lookup(p.odom_frame, p.base_frame, synced.stamp_ns, "ego pose")
        t1 = time.monotonic()
        try:
            batch = preprocess_camera_set(images, Ks, cam2ego, self.cfg.image_size)
        except DatasetError as exc:
            raise _Drop("preprocess_error", str(exc)) from None
        t2 = time.monotonic()
        labels, confidence = self._infer(batch, ego2global, synced.stamp_ns)
        t3 = time.monotonic()
        self._publish(labels, confidence, synced.stamp_ns)
        t4 = time.monotonic()
        for stage, seconds in (("queue", t0 - job.queued_at), ("decode_tf", t1 - t0), ("preprocess", t2 - t1),
                               ("inference", t3 - t2), ("publish", t4 - t3), ("total", t4 - job.queued_at)):
            self.diag.latency(stage, seconds)
        self.diag.tick_output()

    def _infer(self, batch: Any, ego2global: np.ndarray, stamp_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """ProtoOcc.predict on one set; carries and reports the temporal memory. Returns (X,Y,Z) uint8, float32."""
        dev = self.device
        labels, confidence, memory = self.model.predict(
            batch.images[None].to(dev),                                          # (1, N, 3, H, W)
            batch.lidar2img[None].to(dev),                                       # (1, N, 4, 4)
            torch.from_numpy(np.asarray(ego2global, np.float64))[None].to(dev),  # (1, 4, 4) float64
            torch.tensor([stamp_ns / 1e9], dtype=torch.float64, device=dev),     # (1,) seconds
            self.memory if self.params.memory_enabled else None,
        )
        if self.params.memory_enabled:
            self.memory = memory
            reason = (memory.reset_reason or [None])[0]
            if reason is not None:
                self.diag.reset(f"memory.{reason}")
                line = self.throttled(f"memory.{reason}", f"temporal memory reset ({reason}) at {stamp_ns} ns")
                if line:
                    self.get_logger().info(line)
        return labels[0].cpu().numpy(), confidence[0].float().cpu().numpy()

    def _publish(self, labels: np.ndarray, confidence: np.ndarray, stamp_ns: int) -> None:
        p, ds = self.params, self.cfg.dataset
        header = Header(frame_id=p.base_frame)
        header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        if p.publish_occupancy:
            self.pub_grid.publish(grid_to_msg(labels, ds.point_cloud_range, ds.voxel_size, self.class_names,
                                              self.free_label, header,
                                              confidence if p.publish_confidence else None))
        shown = np.where(confidence >= p.score_threshold, labels, np.uint8(self.free_label))  # (X, Y, Z)
        if p.publish_occupied_voxels:
            points = occupied_voxels(shown, ds.point_cloud_range, ds.voxel_size, self.free_label, confidence)
            self.pub_cloud.publish(create_cloud(header, points))
        if p.publish_markers:
            self.pub_markers.publish(self.markers.build(shown, ds.point_cloud_range, ds.voxel_size, header))

    def shutdown(self) -> None:
        self.worker.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``ros2 run protoocc_ros occupancy_node``); returns the process exit code."""
    args = list(sys.argv if argv is None else argv)
    rclpy.init(args=args)
    node: OccupancyNode | None = None
    try:
        try:
            node = OccupancyNode()
        except NodeStartError as exc:
            rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {exc}")
            return 2
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        return 0
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
