"""occupancy_node: camera sets -> ProtoOcc -> 3D semantic occupancy (design §1 data flow, §5 ROS interfaces).

A managed (lifecycle) node, like the perception nodes of nav2 / Autoware:
  configure   validate parameters, load config + checkpoint, warm the model up, create the publishers,
              listen to TF, start the Foxglove server (``foxglove.enabled``)
  activate    subscribe to the cameras and publish
  deactivate  unsubscribe, drop waiting sets, reset the temporal memory
  cleanup     free the model and everything configure made; shutdown ends the process
A failing transition returns FAILURE and logs the reason. ``autostart`` (default true) configures and
activates at start; a failure then exits with a one-line reason and a non-zero code.

Inputs: N camera image topics (Image or CompressedImage, sensor QoS) + CameraInfo (intrinsics),
/tf_static (base_link -> optical frames), /tf (odom -> base_link, the ego pose for the temporal
memory). Sets are synchronised (sync.py) in the subscription callbacks and handed to one worker
thread through a bounded queue (inference_worker.py) which decodes, looks up TF, preprocesses with
protoocc_ros.data.preprocessing.preprocess_camera_set, runs ProtoOcc.predict and publishes
``~/occupancy``, ``~/occupied_voxels``, ``~/markers``; ``/diagnostics`` reports the lifecycle state,
rates, latency per stage, TF age, model failures, dropped sets and memory resets by reason with
OK / WARN / ERROR levels (diagnostics.py). Bad input is dropped and counted, never fatal. Runtime
parameter changes (params.LIVE_PARAMETERS) take effect at once; the others are refused while configured.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from protoocc_ros import classes
from protoocc_ros.config import ConfigError, load_config
from protoocc_ros.data.errors import DatasetError
from protoocc_ros.data.preprocessing import preprocess_camera_set
from protoocc_ros.geometry import make_transform, yaw_matrix
from protoocc_ros.model import build_model
from protoocc_ros.msg import SemanticOccupancyGrid
from protoocc_ros.ros.diagnostics import HealthLimits, NodeDiagnostics, ThrottledLog
from protoocc_ros.ros.foxglove_bridge import FoxgloveBridge, FoxgloveBridgeError
from protoocc_ros.ros.image_conversion import ImageConversionError, msg_to_rgb
from protoocc_ros.ros.inference_worker import InferenceWorker
from protoocc_ros.ros.lifecycle import run_transition
from protoocc_ros.ros.markers import OccupancyMarkers, serializer_matches_rclpy
from protoocc_ros.ros.occupancy_msg import grid_to_msg, occupied_voxels
from protoocc_ros.ros.params import (
    PARAMETERS, OccupancyNodeParams, ParamError, apply_change, declare_params, read_params, resolve_device,
)
from protoocc_ros.ros.pointcloud import create_cloud
from protoocc_ros.ros.spin import spin_until
from protoocc_ros.ros.qos import reliable_qos, sensor_qos, tf_qos, tf_static_qos
from protoocc_ros.ros.sync import ApproximateTimeSync, SyncedSet
from protoocc_ros.ros.tf_buffer import ConnectivityError, FrameLookupError, TfBuffer, TransformError
from protoocc_ros.training.checkpoint import default_checkpoint_path, load_checkpoint

__all__ = ["OccupancyNode", "NodeStartError", "load_model", "class_table", "main"]

NODE_NAME = "occupancy_node"
INPUT_WAIT_S = 0.25  # how long the worker waits for a transform / CameraInfo that may still be on its way
OPTICAL_AXES = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # optical x/y/z in the ego frame


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


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def health_limits(p: OccupancyNodeParams) -> HealthLimits:
    return HealthLimits(window_s=p.diagnostics_window_s, expected_rate_hz=p.diagnostics_expected_rate_hz,
                        latency_budget_ms=p.diagnostics_latency_budget_ms,
                        tf_stale_error_s=p.diagnostics_tf_stale_error_s)


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


@dataclass
class _Gathered:
    images: list[np.ndarray]   # RGB uint8 (H_i, W_i, 3) per camera
    Ks: list[np.ndarray]       # (3, 3) per camera
    cam2ego: list[np.ndarray]  # (4, 4) optical frame -> base_frame per camera
    frames: list[str]          # optical frame id per camera


class OccupancyNode(LifecycleNode):
    """Managed ROS 2 node running ProtoOcc on synchronised camera sets (see the module docstring)."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        try:
            declare_params(self)
        except ParamError as exc:
            raise NodeStartError(str(exc)) from None
        self.autostart = bool(self.get_parameter("autostart").value)
        period = float(self.get_parameter("diagnostics_period_s").value)
        if not period > 0:
            raise NodeStartError(f"parameter 'diagnostics_period_s' = {period!r}: expected > 0 seconds")
        self.params: OccupancyNodeParams | None = None  # read and validated by configure
        self.last_error = ""                             # reason of the last failed transition
        self.finalized = False
        self._active = False
        self._pending_params: OccupancyNodeParams | None = None
        self.model: torch.nn.Module | None = None
        self.memory: Any = None
        self.sync: ApproximateTimeSync | None = None
        self.worker: InferenceWorker[_Job] | None = None
        self.fox: FoxgloveBridge | None = None
        self._outputs: list[Any] = []
        self._tf_subs: list[Any] = []
        self._input_subs: list[Any] = []
        self._missing_seen: Counter[Any] = Counter()
        self._last_set_ns: int | None = None
        self.diag = NodeDiagnostics(self.get_fully_qualified_name().lstrip("/"))
        self.diag.state = "unconfigured"
        self.throttled = ThrottledLog(float(self.get_parameter("log_throttle_s").value))
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(10))
        self.create_timer(period, self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

    # -- lifecycle transitions (executor thread) ------------------------------------------------------
    def _transition(self, name: str, body: Any, target: str, undo: Any = None) -> TransitionCallbackReturn:
        def failed(reason: str) -> None:
            self.last_error = reason
            self.diag.transition_error = f"{name}: {reason}"
            if undo is not None:
                undo()

        result = run_transition(self.get_logger(), name, body, failed,
                                explained=(NodeStartError, FoxgloveBridgeError))
        if result == TransitionCallbackReturn.SUCCESS:
            self.last_error = self.diag.transition_error = ""
            self.diag.state = target
        return result

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("configure", self._configure, "inactive", undo=self._release)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition("activate", self._activate, "active", undo=self._deactivate)
        return super().on_activate(state) if result == TransitionCallbackReturn.SUCCESS else result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition("deactivate", self._deactivate, "inactive")
        return super().on_deactivate(state) if result == TransitionCallbackReturn.SUCCESS else result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("cleanup", self._release, "unconfigured")

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.finalized = True
        return self._transition("shutdown", self.shutdown, "finalized")

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._transition("error recovery", self.shutdown, "unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        try:
            p = read_params(self)
        except ParamError as exc:
            raise NodeStartError(str(exc)) from None
        self.cfg = self._load_config(p)
        self.cameras = p.cameras or list(self.cfg.dataset.cameras)
        if len(self.cameras) != self.cfg.num_cameras:
            raise NodeStartError(f"parameter 'cameras' = {self.cameras}: the model of {p.config_file} takes "
                                 f"{self.cfg.num_cameras} cameras ({self.cfg.dataset.cameras})")
        try:
            self.device = resolve_device(p.device)
            checkpoint = p.checkpoint_path()
        except ParamError as exc:
            raise NodeStartError(str(exc)) from None
        if p.torch_threads:
            torch.set_num_threads(p.torch_threads)
        self.model = self._load_model(checkpoint)
        self._warm_up()
        self.params = p
        self.class_names, self.colors, self.free_label = class_table(self.cfg)
        self.diag.hardware_id, self.diag.cameras = str(self.device), list(self.cameras)
        self.diag.set_limits(health_limits(p))
        self.throttled.period_s = p.log_throttle_s
        self.tf = TfBuffer(p.tf_cache_s, p.tf_tolerance_s, on_reject=self._on_tf_reject, jump_back_s=p.time_jump_s)
        self._tf_resets_seen = 0
        self.sync = ApproximateTimeSync(self.cameras, p.sync_slop_s, p.sync_queue_size, p.time_jump_s,
                                        callback=self._on_set, on_drop=self._on_sync_drop)
        self._missing_seen = Counter()
        self.camera_info: dict[str, _CameraInfo] = {}
        self.markers = OccupancyMarkers(self.class_names, self.colors, self.free_label, ns="occupancy",
                                        delete_all_first=p.markers_delete_all)
        self._markers_as_bytes = serializer_matches_rclpy()  # ~10x faster than one Point object per voxel
        if not self._markers_as_bytes:
            self.get_logger().warning("this distro's visualization_msgs/Marker layout differs from the one the "
                                      "fast marker serializer writes; building MarkerArray messages (slower)")
        self.pub_grid = self.create_lifecycle_publisher(SemanticOccupancyGrid, "~/occupancy", reliable_qos(10))
        self.pub_cloud = self.create_lifecycle_publisher(PointCloud2, "~/occupied_voxels", reliable_qos(2))
        self.pub_markers = self.create_lifecycle_publisher(MarkerArray, "~/markers", reliable_qos(2))
        self._outputs = [self.pub_grid, self.pub_cloud, self.pub_markers]
        self._tf_subs = [self.create_subscription(TFMessage, "/tf", self._tf_callback(False), tf_qos()),
                         self.create_subscription(TFMessage, "/tf_static", self._tf_callback(True), tf_static_qos())]
        self.worker = InferenceWorker(self._process, p.inference_queue_size, on_drop=self._on_busy_drop,
                                      on_error=self._on_worker_error)
        if p.foxglove_enabled:
            self.fox = FoxgloveBridge(p.foxglove_host, p.foxglove_port, self.cameras, self.class_names, self.colors,
                                      self.free_label, name=NODE_NAME, prefix=self.get_fully_qualified_name())
            self.get_logger().info(f"Foxglove live view on ws://{p.foxglove_host}:{self.fox.port} "
                                   "(Foxglove app: Open connection > Foxglove WebSocket; layout config/foxglove_layout.json)")
        self.get_logger().info(f"configured: config {self.cfg.name}, grid {tuple(self.cfg.dataset.grid_size)}, "
                               f"device {self.device} ({torch.get_num_threads()} CPU threads), "
                               f"warm-up {self.diag.warmup_ms:.0f} ms")

    def _activate(self) -> None:
        p = self.params
        assert p is not None and self.sync is not None
        self.sync.reset()
        self.diag.restart_stamps()
        self._last_set_ns = None
        image_type = CompressedImage if p.image_transport == "compressed" else Image
        qos = (reliable_qos if p.input_reliability == "reliable" else sensor_qos)(p.input_qos_depth)
        for cam in self.cameras:
            self._input_subs.append(self.create_subscription(image_type, p.image_topic(cam), self._image_callback(cam),
                                                             qos))
            self._input_subs.append(self.create_subscription(CameraInfo, p.camera_info_topic(cam),
                                                             self._info_callback(cam), qos))
        self._active = True
        self.get_logger().info(f"active: {len(self.cameras)} cameras {self.cameras} on "
                               f"{p.image_topic(self.cameras[0])} ...")

    def _deactivate(self) -> None:
        """Stop processing: unsubscribe, drop waiting sets, let the running one finish, reset the memory."""
        self._active = False
        for sub in self._input_subs:
            self.destroy_subscription(sub)
        self._input_subs = []
        if self.worker is not None:
            self.worker.clear()
        if self.sync is not None:
            self.sync.reset()
        if self.memory is not None:
            self.diag.reset("memory.deactivated")
        self.memory = None

    def _release(self) -> None:
        """Undo configure (cleanup, failed configure): everything but the parameters and /diagnostics."""
        self._deactivate()
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        if self.fox is not None:
            self.fox.close()
            self.fox = None
        for pub in self._outputs:
            self.destroy_lifecycle_publisher(pub)
        for sub in self._tf_subs:
            self.destroy_subscription(sub)
        self._outputs, self._tf_subs = [], []
        self.model, self.sync, self.params = None, None, None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _load_config(self, p: OccupancyNodeParams) -> Any:
        try:
            return load_config(p.config_file, p.model_overrides())
        except (ConfigError, OSError) as exc:
            raise NodeStartError(f"parameter 'config_file' = {p.config_file!r}: {exc}") from None

    def _load_model(self, path: Path | None) -> torch.nn.Module:
        log = self.get_logger()
        if path is None:
            log.warning("=" * 72)
            log.warning(f"NO CHECKPOINT: {default_checkpoint_path()} does not exist and parameter 'checkpoint' "
                        "is empty.")
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

    def _warm_up(self) -> None:
        """One inference on a synthetic rig (grey images, cameras around the car) so that the first real set
        does not pay for lazy initialisation; a failure here fails configure."""
        H, W = self.cfg.image_size
        n = self.cfg.num_cameras
        K = np.array([[W / 2.0, 0.0, W / 2.0], [0.0, W / 2.0, H / 2.0], [0.0, 0.0, 1.0]])
        cam2ego = [make_transform(yaw_matrix(2 * np.pi * i / n) @ OPTICAL_AXES, [0.0, 0.0, 1.5]) for i in range(n)]
        batch = preprocess_camera_set([np.full((H, W, 3), 128, np.uint8)] * n, [K] * n, cam2ego, (H, W))
        start = time.monotonic()
        try:
            self._predict(batch, np.eye(4), 0, None)
        except Exception as exc:  # noqa: BLE001 - reported as the reason configure failed
            raise NodeStartError(f"model warm-up on {self.device} failed: {type(exc).__name__}: {exc}") from None
        self.diag.warmup_ms = 1e3 * (time.monotonic() - start)

    # -- parameters (executor thread) -------------------------------------------------------------------
    def _check_parameters(self, changed: list[Any]) -> SetParametersResult:
        """Validate a ``ros2 param set``: refused with the reason, or kept for _apply_parameters."""
        changes = {param.name: param.value for param in changed if param.name in PARAMETERS}
        if not changes:
            return SetParametersResult(successful=True)
        current = {name: self.get_parameter(name).value for name in PARAMETERS}
        try:
            self._pending_params = apply_change(current, changes, configured=self.params is not None,
                                                node_name=self.get_fully_qualified_name())
        except ParamError as exc:
            self.get_logger().warning(f"parameter change refused: {exc}")
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, changed: list[Any]) -> None:
        new, self._pending_params = self._pending_params, None
        names = ", ".join(f"{p.name}={p.value!r}" for p in changed)
        if new is None or self.params is None:
            if new is not None:
                self.get_logger().info(f"parameters stored, read at the next configure: {names}")
            return
        self.params = new  # one reference swap: the worker reads self.params once per set
        self.throttled.period_s = new.log_throttle_s
        self.diag.set_limits(health_limits(new))
        if not new.memory_enabled:
            self.memory = None
        self.get_logger().info(f"parameters applied: {names}")

    # -- callbacks (executor thread; must stay cheap) -----------------------------------------------
    def _image_callback(self, camera: str) -> Any:
        def callback(msg: Image | CompressedImage) -> None:
            stamp = _stamp_ns(msg.header.stamp)
            self.diag.tick_input(camera, stamp)
            if self._active and self.sync is not None:
                self.sync.add(camera, stamp, msg)
        return callback

    def _info_callback(self, camera: str) -> Any:
        topic = self.params.camera_info_topic(camera) if self.params else camera

        def callback(msg: CameraInfo) -> None:
            self.diag.tick_input(f"{camera}/camera_info")
            K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
            if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] != 1.0:
                self._drop("bad_camera_info", f"{topic}: K = {K.tolist()} is not a pinhole matrix "
                                              "(finite, positive focal lengths, K[2,2] = 1); ignored")
                return
            self.camera_info[camera] = _CameraInfo(K, int(msg.width), int(msg.height), msg.header.frame_id)
        return callback

    def _tf_callback(self, static: bool) -> Any:
        """TransformListener feeding self.tf; dynamic transforms whose child is base_frame are the ego pose."""
        authority = "/tf_static" if static else "/tf"

        def callback(msg: TFMessage) -> None:
            self.tf.add_message(msg, static=static, authority=authority)
            if not static and self.params is not None:
                base = self.params.base_frame
                for ts in msg.transforms:
                    if ts.child_frame_id.lstrip("/") == base:
                        self.diag.ego_pose(_stamp_ns(ts.header.stamp))
        return callback

    def _on_set(self, synced: SyncedSet) -> None:
        p, worker = self.params, self.worker
        if not self._active or p is None or worker is None:
            return
        last = self._last_set_ns
        if p.max_rate_hz > 0 and last is not None and 0 <= synced.stamp_ns - last < 1e9 / p.max_rate_hz - 1e6:
            self.diag.drop("rate_limited")  # on purpose: counted, not logged
            return
        self._last_set_ns = synced.stamp_ns
        worker.submit(_Job(synced, time.monotonic()))

    def _on_sync_drop(self, reason: str, detail: str) -> None:
        if reason == "time_jump_backwards":
            self.diag.reset("sync.time_jump_backwards")
            self.diag.restart_stamps()
            self._last_set_ns = None
            line = self.throttled("sync.reset", f"inputs jumped back in time, synchronizer reset: {detail}")
            if line:
                self.get_logger().warning(line)
            return
        self._drop(reason, detail)

    def _on_tf_reject(self, reason: str, detail: str) -> None:
        self._drop(f"tf_rejected_{reason}", detail)

    def _on_busy_drop(self, job: _Job) -> None:
        queue = self.params.inference_queue_size if self.params else "?"
        self._drop("inference_busy", f"set at {job.synced.stamp_ns} ns dropped: the model is still busy "
                                     f"(inference_queue_size {queue})")

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
        if self.sync is not None:
            if self.tf.resets != self._tf_resets_seen:
                for _ in range(self.tf.resets - self._tf_resets_seen):
                    self.diag.reset("tf.time_jump_backwards")
                self._tf_resets_seen = self.tf.resets
            missing = Counter(self.sync.missing)
            for cam, n in (missing - self._missing_seen).items():
                self.diag.camera_missing(str(cam), n)
            self._missing_seen = missing
        self.pub_diag.publish(self.diag.to_msg(self.get_clock().now().to_msg()))

    # -- worker thread ----------------------------------------------------------------------------
    def _process(self, job: _Job) -> None:
        if not self._active:  # deactivated while the set waited
            return
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

    def _gather(self, p: OccupancyNodeParams, synced: SyncedSet) -> _Gathered:
        """Decoded RGB images, K, cam2ego and optical frame per camera (raises _Drop)."""
        out = _Gathered([], [], [], [])
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
            out.cam2ego.append(self._lookup(p.base_frame, frame, synced.stamps_ns[cam], f"extrinsics of {cam}"))
            out.images.append(rgb)
            out.Ks.append(info.K)
            out.frames.append(frame)
        return out

    def _run_set(self, job: _Job) -> None:
        p, synced = self.params, job.synced  # one snapshot of the parameters for the whole set
        assert p is not None
        t0 = time.monotonic()
        got = self._gather(p, synced)
        ego2global = self._lookup(p.odom_frame, p.base_frame, synced.stamp_ns, "ego pose")
        t1 = time.monotonic()
        try:
            batch = preprocess_camera_set(got.images, got.Ks, got.cam2ego, self.cfg.image_size)
        except DatasetError as exc:
            raise _Drop("preprocess_error", str(exc)) from None
        t2 = time.monotonic()
        labels, confidence = self._infer(p, batch, ego2global, synced.stamp_ns)
        t3 = time.monotonic()
        shown = self._publish(p, labels, confidence, synced.stamp_ns)
        t4 = time.monotonic()
        stages = [("queue", t0 - job.queued_at), ("decode_tf", t1 - t0), ("preprocess", t2 - t1),
                  ("inference", t3 - t2), ("publish", t4 - t3), ("total", t4 - job.queued_at)]
        if self.fox is not None:
            transforms = [(p.odom_frame, p.base_frame, ego2global)] + [
                (p.base_frame, frame, T) for frame, T in zip(got.frames, got.cam2ego)]
            ds = self.cfg.dataset
            if self.fox.publish(synced.stamp_ns, shown, ds.point_cloud_range, ds.voxel_size, p.base_frame,
                                dict(zip(self.cameras, got.images)), dict(zip(self.cameras, got.frames)),
                                transforms, p.foxglove_image_max_width):
                stages.append(("foxglove", time.monotonic() - t4))
        for stage, seconds in stages:
            self.diag.latency(stage, seconds)
        self.diag.tick_output()

    def _predict(self, batch: Any, ego2global: np.ndarray, stamp_ns: int, memory: Any) -> tuple[Any, Any, Any]:
        dev = self.device
        return self.model.predict(
            batch.images[None].to(dev),                                          # (1, N, 3, H, W)
            batch.lidar2img[None].to(dev),                                       # (1, N, 4, 4)
            torch.from_numpy(np.asarray(ego2global, np.float64))[None].to(dev),  # (1, 4, 4) float64
            torch.tensor([stamp_ns / 1e9], dtype=torch.float64, device=dev),     # (1,) seconds
            memory,
        )

    def _infer(self, p: OccupancyNodeParams, batch: Any, ego2global: np.ndarray,
               stamp_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """ProtoOcc.predict on one set; carries and reports the temporal memory. Returns (X,Y,Z) uint8, float32."""
        try:
            labels, confidence, memory = self._predict(batch, ego2global, stamp_ns,
                                                       self.memory if p.memory_enabled else None)
        except Exception as exc:  # noqa: BLE001 - a model failure is an ERROR in /diagnostics, not a crash
            self.diag.model_failure(f"{type(exc).__name__}: {exc}")
            self.memory = None
            raise _Drop("model_failure", f"set at {stamp_ns} ns: {type(exc).__name__}: {exc}") from None
        self.diag.model_ok()
        if p.memory_enabled and self._active:
            self.memory = memory
            reason = (memory.reset_reason or [None])[0]
            if reason is not None:
                self.diag.reset(f"memory.{reason}")
                line = self.throttled(f"memory.{reason}", f"temporal memory reset ({reason}) at {stamp_ns} ns")
                if line:
                    self.get_logger().info(line)
        return labels[0].cpu().numpy(), confidence[0].float().cpu().numpy()

    def _publish(self, p: OccupancyNodeParams, labels: np.ndarray, confidence: np.ndarray,
                 stamp_ns: int) -> np.ndarray:
        """Publish the enabled outputs; returns the labels as shown (free below the score threshold)."""
        ds = self.cfg.dataset
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
            build = self.markers.build_serialized if self._markers_as_bytes else self.markers.build
            self.pub_markers.publish(build(shown, ds.point_cloud_range, ds.voxel_size, header))
        return shown

    def shutdown(self) -> None:
        """Free everything (shutdown transition, Ctrl-C)."""
        self._release()


def _start(node: OccupancyNode) -> str:
    """Configure and activate (autostart); returns '' or the reason it failed."""
    for transition in (node.trigger_configure, node.trigger_activate):
        if transition() != TransitionCallbackReturn.SUCCESS:
            return node.last_error or f"{transition.__name__} failed"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``ros2 run protoocc_ros occupancy_node``); returns the process exit code."""
    args = list(sys.argv if argv is None else argv)
    rclpy.init(args=args)
    node: OccupancyNode | None = None
    try:
        try:
            node = OccupancyNode()
            reason = _start(node) if node.autostart else ""
        except NodeStartError as exc:
            reason = str(exc)
        if reason:
            rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {reason}")
            return 2
        assert node is not None
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spin_until(executor, lambda: node.finalized)  # the shutdown transition ends the process
        return 0
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
