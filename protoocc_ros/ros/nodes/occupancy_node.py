"""occupancy_node: camera sets -> ProtoOcc -> 3D semantic occupancy (docs/architecture.md "ROS topics and frames").

A managed (lifecycle) node, like the perception nodes of nav2 / Autoware:
  configure   validate parameters, load config + checkpoint into a Predictor (backend torch or onnxruntime), warm
              it up, create the publishers, listen to TF, start the Foxglove server (``foxglove.enabled``)
  activate    subscribe to the cameras and publish
  deactivate  unsubscribe, drop waiting sets, reset the temporal memory
  cleanup     free everything configure made (one object, ``self.run``); shutdown ends the process
A failing transition returns FAILURE and logs the reason. ``autostart`` (default true) configures and
activates at start; a failure then exits with a one-line reason and a non-zero code.

Sets are synchronised (sync.py) in the subscription callbacks and handed to one worker thread through a
bounded queue (inference_worker.py), which gathers them (camera_inputs.py), runs the ROS-free predictor
(protoocc_ros.inference) and publishes (occupancy_outputs.py, foxglove_bridge.py); /diagnostics reports
rates, per-stage latency, TF age, model failures, memory resets and drops by reason (diagnostics.py), in two
families: sets not published, and input messages refused. Bad input is dropped and counted, never fatal.
Live parameters take effect at once; the others are refused while configured (occupancy_params.py).

A set and every output of it carry the header stamp of the first camera in ``cameras`` (SyncedSet.stamp_ns): the
ego pose and the temporal memory are taken at that stamp (docs/operating.md "The stamp of a set and of every
output": what it means for cameras not triggered together).
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from protoocc_ros.data.errors import DatasetError
from protoocc_ros.device import DeviceError, resolve_device
from protoocc_ros.inference.predictor import Predictor, PredictorError, load_predictor
from protoocc_ros.ros.inputs.camera_inputs import CameraInputs, SetDropped
from protoocc_ros.ros.inputs.stamp_horizon import StampHorizon
from protoocc_ros.ros.inputs.sync import MESSAGE_DROPS, ApproximateTimeSync, SyncedSet
from protoocc_ros.ros.inputs.tf_buffer import TfBuffer
from protoocc_ros.ros.inputs.tf_listener import TfListener
from protoocc_ros.ros.nodes.occupancy_params import OccupancyNodeParams
from protoocc_ros.ros.publishing.foxglove_bridge import FoxgloveBridge, FoxgloveBridgeError
from protoocc_ros.ros.publishing.msg_builders import optical_frame_id, stamp_to_ns
from protoocc_ros.ros.publishing.occupancy_outputs import OccupancyOutputs
from protoocc_ros.ros.runtime.diagnostics import NodeDiagnostics, ThrottledLog
from protoocc_ros.ros.runtime.inference_worker import InferenceWorker
from protoocc_ros.ros.runtime.lifecycle import ManagedNode, run_managed_node
from protoocc_ros.ros.runtime.params import (
    ParamError,
    apply_change,
    current_values,
    declare_params,
    param_specs,
    read_params,
)
from protoocc_ros.ros.runtime.qos import reliable_qos, sensor_qos

__all__ = ["OccupancyNode", "NodeStartError", "main"]

NODE_NAME = "occupancy_node"
PARAMS = OccupancyNodeParams
PARAMETER_NAMES = frozenset(s.name for s in param_specs(OccupancyNodeParams))


class NodeStartError(RuntimeError):
    """The node cannot start (bad parameter, config, checkpoint or device); the message says which and why."""


@dataclass
class _Job:
    synced: SyncedSet
    queued_at: float  # time.monotonic() when the set was complete


@dataclass
class _Run:
    """Everything configure creates and cleanup frees (None on the node while unconfigured)."""

    params: OccupancyNodeParams
    cameras: list[str]
    predictor: Predictor
    tf: TfBuffer
    inputs: CameraInputs
    outputs: OccupancyOutputs
    sync: ApproximateTimeSync
    worker: InferenceWorker[_Job]
    horizon: StampHorizon
    tf_listener: TfListener | None = None
    fox: FoxgloveBridge | None = None
    input_subs: list[Any] = field(default_factory=list)
    missing_seen: Counter[Any] = field(default_factory=Counter)
    tf_resets_seen: int = 0
    last_set_ns: int | None = None


class OccupancyNode(ManagedNode):
    """Managed ROS 2 node running ProtoOcc on synchronised camera sets (see the module docstring)."""

    explained = (NodeStartError, FoxgloveBridgeError, ParamError)

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        try:
            declare_params(self, OccupancyNodeParams)
        except ParamError as exc:
            raise NodeStartError(str(exc)) from None
        startup = current_values(self, OccupancyNodeParams)  # the rest is validated at configure
        self.autostart = bool(startup["autostart"])
        self.run: _Run | None = None                  # the configuration, while configured
        self._active = False
        self._pending_params: OccupancyNodeParams | None = None
        self.diag = NodeDiagnostics(self.get_fully_qualified_name().lstrip("/"))
        self.diag.state = "unconfigured"
        self.throttled = ThrottledLog(float(startup["log_throttle_s"]))
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(10))
        self.create_timer(float(startup["diagnostics_period_s"]), self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

    @property
    def params(self) -> OccupancyNodeParams | None:
        return self.run.params if self.run is not None else None

    # -- lifecycle transitions (executor thread; ManagedNode calls them) -------------------------------
    def on_state(self, state: str) -> None:
        self.diag.state = state

    def on_transition_error(self, text: str) -> None:
        self.diag.transition_error = text

    def configure_body(self) -> None:
        log = self.get_logger()
        try:
            p = read_params(self, OccupancyNodeParams)
            device = resolve_device(p.device)
            checkpoint = p.checkpoint_path()
            if p.torch_threads:
                torch.set_num_threads(p.torch_threads)
            predictor = load_predictor(checkpoint, p.config_file, p.model_overrides(), device, p.memory_enabled,
                                       warn=lambda line: log.warning(line), **p.backend_options())
            cfg = predictor.cfg
            cameras = p.cameras or list(cfg.dataset.cameras)
            if checkpoint is not None:
                log.info(f"loaded checkpoint {checkpoint}")
            note = predictor.rig_note(cameras)
            if note:
                log.warning(note)
            self.diag.warmup_ms = predictor.warm_up()
        except (ParamError, DeviceError, PredictorError) as exc:
            raise NodeStartError(str(exc)) from None
        self.diag.hardware_id, self.diag.cameras = str(device), list(cameras)
        self.diag.set_limits(p.health_limits())
        self.throttled.period_s = p.log_throttle_s
        tf = TfBuffer(p.tf_cache_s, p.tf_tolerance_s, on_reject=self._on_tf_reject, jump_back_s=p.time_jump_s,
                      future_limit_s=p.tf_future_limit_s, max_frames=p.tf_max_frames)
        tf.need([p.base_frame, p.odom_frame, *(optical_frame_id(cam) for cam in cameras)])
        ds = cfg.dataset
        self.run = _Run(
            params=p, cameras=cameras, predictor=predictor, tf=tf,
            inputs=CameraInputs(cameras, tf, lambda reason, detail: self._drop(reason, detail, message=True)),
            outputs=OccupancyOutputs(self, predictor.classes, ds.point_cloud_range, ds.voxel_size, ds.grid_size,
                                     cfg.image_size, p),
            sync=ApproximateTimeSync(cameras, p.sync_slop_s, p.sync_queue_size, p.time_jump_s,
                                     callback=self._on_set, on_drop=self._on_sync_drop),
            worker=InferenceWorker(self._process, p.inference_queue_size, on_drop=self._on_busy_drop,
                                   on_error=self._on_worker_error),
            horizon=StampHorizon(lambda: self.get_clock().now().nanoseconds))
        self.run.tf_listener = TfListener(self, tf, horizon=self.run.horizon)  # its own node and thread
        if p.foxglove_enabled:
            table = predictor.classes
            self.run.fox = FoxgloveBridge(p.foxglove_host, p.foxglove_port, cameras, list(table.names), table.colors,
                                          table.free_label, name=NODE_NAME, prefix=self.get_fully_qualified_name(),
                                          log=lambda line: log.warning(line))
            log.info(f"Foxglove live view on ws://{p.foxglove_host}:{self.run.fox.port} (Foxglove app: "
                                   "Open connection > Foxglove WebSocket; layout config/foxglove_layout.json)")
        log.info(f"configured: config {cfg.name}, grid {tuple(ds.grid_size)}, backend {predictor.backend}, device "
                 f"{device} ({torch.get_num_threads()} CPU threads), warm-up {self.diag.warmup_ms:.0f} ms")

    def activate_body(self) -> None:
        run = self.run
        assert run is not None
        p = run.params
        run.sync.reset()
        self.diag.restart_stamps()
        run.last_set_ns = None
        image_type = CompressedImage if p.image_transport == "compressed" else Image
        qos = (reliable_qos if p.input_reliability == "reliable" else sensor_qos)(p.input_qos_depth)
        for cam in run.cameras:
            run.input_subs.append(self.create_subscription(image_type, p.image_topic(cam), self._image_callback(cam),
                                                           qos))
            run.input_subs.append(self.create_subscription(CameraInfo, p.camera_info_topic(cam),
                                                           self._info_callback(cam, p.camera_info_topic(cam)), qos))
        self._active = True
        self.get_logger().info(f"active: {len(run.cameras)} cameras {run.cameras} on "
                               f"{p.image_topic(run.cameras[0])} ...")

    def deactivate_body(self) -> None:
        """Stop processing: unsubscribe, drop waiting sets, let the running one finish, reset the memory."""
        self._active = False
        run = self.run
        if run is None:
            return
        for sub in run.input_subs:
            self.destroy_subscription(sub)
        run.input_subs = []
        run.worker.clear()
        run.sync.reset()
        if run.predictor.reset():
            self.diag.reset("memory.deactivated")

    def release_body(self) -> None:
        """Undo configure (cleanup, failed configure): everything but the parameters and /diagnostics."""
        self.deactivate_body()
        run, self.run = self.run, None
        if run is None:
            return
        run.worker.stop()
        if run.fox is not None:
            run.fox.close()
        run.outputs.destroy(self)
        if run.tf_listener is not None:
            run.tf_listener.close()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- parameters (executor thread) -------------------------------------------------------------------
    def _check_parameters(self, changed: list[Any]) -> SetParametersResult:
        """Validate a ``ros2 param set``: refused with the reason, or kept for _apply_parameters."""
        changes = {param.name: param.value for param in changed if param.name in PARAMETER_NAMES}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            self._pending_params = apply_change(OccupancyNodeParams, current_values(self, OccupancyNodeParams),
                                                changes, configured=self.run is not None,
                                                node_name=self.get_fully_qualified_name())
            if self.run is not None:  # settings that must fit the loaded model (classes, grid)
                self.run.outputs.grid_2d_spec(self._pending_params)
        except ParamError as exc:
            self.get_logger().warning(f"parameter change refused: {exc}")
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, changed: list[Any]) -> None:
        new, self._pending_params = self._pending_params, None
        names = ", ".join(f"{p.name}={p.value!r}" for p in changed)
        run = self.run
        if new is None or run is None:
            if new is not None:
                self.get_logger().info(f"parameters stored, read at the next configure: {names}")
            return
        run.params = new  # one reference swap: the worker reads the params once per set
        self.throttled.period_s = new.log_throttle_s
        self.diag.set_limits(new.health_limits())
        run.predictor.memory_enabled = new.memory_enabled
        if not new.memory_enabled:
            run.predictor.reset()
        self.get_logger().info(f"parameters applied: {names}")

    # -- callbacks (executor thread; must stay cheap) -----------------------------------------------
    def _image_callback(self, camera: str) -> Callable[[Any], None]:
        def callback(msg: Image | CompressedImage) -> None:
            stamp = stamp_to_ns(msg.header.stamp)
            self.diag.tick_input(camera, stamp)
            run = self.run
            if self._active and run is not None:
                run.sync.add(camera, stamp, msg)
        return callback

    def _info_callback(self, camera: str, topic: str) -> Callable[[CameraInfo], None]:
        def callback(msg: CameraInfo) -> None:
            self.diag.tick_input(f"{camera}/camera_info")
            run = self.run
            if run is not None:
                run.inputs.on_camera_info(run.params, camera, topic, msg)
        return callback

    def _on_set(self, synced: SyncedSet) -> None:
        run = self.run
        if not self._active or run is None:
            return
        run.horizon.saw(synced.stamp_ns)  # the inputs reached this stamp: TF held as ahead of it may be stored now
        run.tf.release_future(run.horizon() or synced.stamp_ns)
        p, last = run.params, run.last_set_ns
        if p.max_rate_hz > 0 and last is not None and 0 <= synced.stamp_ns - last < 1e9 / p.max_rate_hz - 1e6:
            self.diag.drop("rate_limited")  # on purpose: counted, not logged
            return
        run.last_set_ns = synced.stamp_ns
        run.worker.submit(_Job(synced, time.monotonic()))

    def _on_sync_drop(self, reason: str, detail: str) -> None:
        if reason == "time_jump_backwards":
            self.diag.reset("sync.time_jump_backwards")
            self.diag.restart_stamps()
            run = self.run
            if run is not None:
                run.last_set_ns = None
                run.tf.time_jumped(run.sync.jumped_to_ns or 0)  # TF still on the old timeline goes too
                if run.sync.jumped_to_ns is not None:
                    run.horizon.saw(run.sync.jumped_to_ns)
                run.inputs.time_jumped()
            line = self.throttled("sync.reset", f"inputs jumped back in time, synchronizer reset: {detail}")
            if line:
                self.get_logger().warning(line)
            return
        self._drop(reason, detail, message=reason in MESSAGE_DROPS)

    def _on_tf_reject(self, reason: str, detail: str) -> None:
        self._drop(f"tf_rejected_{reason}", detail, message=True)

    def _on_busy_drop(self, job: _Job) -> None:
        queue = self.run.params.inference_queue_size if self.run is not None else "?"
        self._drop("inference_busy", f"set at {job.synced.stamp_ns} ns dropped: the model is still busy "
                                     f"(inference_queue_size {queue})")

    def _on_worker_error(self, job: _Job, exc: BaseException) -> None:
        if not self.context.ok():  # shutting down (Ctrl-C) while a set was being published
            return
        self._drop("internal_error", f"set at {job.synced.stamp_ns} ns: {type(exc).__name__}: {exc}")

    def _drop(self, reason: str, detail: str, message: bool = False) -> None:
        """Count one set (``message``: one input message) lost for ``reason``; log it, throttled per reason."""
        (self.diag.drop_message if message else self.diag.drop)(reason)
        line = self.throttled(reason, f"{'refused' if message else 'dropped'} ({reason}): {detail}")
        if line:
            self.get_logger().warning(line)

    def _publish_diagnostics(self) -> None:
        run = self.run
        if run is not None:
            pose_ns = run.tf.newest_stamp(run.params.base_frame)  # the ego pose (TF age)
            if pose_ns is not None:
                self.diag.ego_pose(pose_ns)
            self.diag.tf_tree(run.tf.frame_count(), run.params.tf_max_frames)
            for _ in range(run.tf.resets - run.tf_resets_seen):
                self.diag.reset("tf.time_jump_backwards")
            run.tf_resets_seen = run.tf.resets
            missing = Counter(run.sync.missing)
            for cam, n in (missing - run.missing_seen).items():
                self.diag.camera_missing(str(cam), n)
            run.missing_seen = missing
        self.pub_diag.publish(self.diag.to_msg(self.get_clock().now().to_msg()))

    # -- worker thread ----------------------------------------------------------------------------
    def _process(self, job: _Job) -> None:
        run = self.run
        if not self._active or run is None:  # deactivated while the set waited
            return
        try:
            self._run_set(run, job)
        except SetDropped as drop:
            for reason, n in drop.messages.items():  # camera messages at fault: counted in both families
                self.diag.drop_message(reason, n)
            self._drop(drop.reason, str(drop))

    def _run_set(self, run: _Run, job: _Job) -> None:
        p, synced = run.params, job.synced  # one snapshot of the parameters for the whole set
        t0 = time.monotonic()
        got = run.inputs.gather(p, synced)
        ego2global = run.inputs.lookup(p.odom_frame, p.base_frame, synced.stamp_ns, "ego pose")
        t1 = time.monotonic()
        try:
            batch = run.predictor.preprocess(got.images, got.Ks, got.cam2ego)
        except DatasetError as exc:
            raise SetDropped("preprocess_error", str(exc)) from None
        t2 = time.monotonic()
        try:
            out = run.predictor.step_tensors(batch.images, batch.lidar2img, ego2global, synced.stamp_ns / 1e9)
        except Exception as exc:
            self.diag.model_failure(f"{type(exc).__name__}: {exc}")
            raise SetDropped("model_failure", f"set at {synced.stamp_ns} ns: {type(exc).__name__}: {exc}") from None
        self.diag.model_ok()
        if not self._active:  # deactivated while the set ran: deactivate's memory reset stands
            run.predictor.reset()
        elif out.reset_reason is not None and p.memory_enabled:
            self.diag.reset(f"memory.{out.reset_reason}")
            line = self.throttled(f"memory.{out.reset_reason}",
                                  f"temporal memory reset ({out.reset_reason}) at {synced.stamp_ns} ns")
            if line:
                self.get_logger().info(line)
        t3 = time.monotonic()
        shown, cells = run.outputs.publish(p, out.labels, out.confidence, synced.stamp_ns, batch.lidar2img,
                                           want_shown=run.fox is not None)
        t4 = time.monotonic()
        stages = [("queue", t0 - job.queued_at), ("decode_tf", t1 - t0 - got.rectify_s), ("rectify", got.rectify_s),
                  ("preprocess", t2 - t1),
                  ("inference", t3 - t2), ("publish_grid", run.outputs.grid_s), ("publish", t4 - t3),
                  ("total", t4 - job.queued_at)]
        if run.fox is not None and shown is not None:  # shown is returned whenever the bridge runs
            transforms = [(p.odom_frame, p.base_frame, ego2global)] + [
                (p.base_frame, frame, T) for frame, T in zip(got.frames, got.cam2ego)]
            ds = run.predictor.cfg.dataset
            if run.fox.publish(synced.stamp_ns, shown, ds.point_cloud_range, ds.voxel_size, p.base_frame,
                               dict(zip(run.cameras, got.images)), dict(zip(run.cameras, got.frames)),
                               transforms, p.foxglove_image_max_width, cells, p.occupancy_2d_ground_z_m):
                stages.append(("foxglove", time.monotonic() - t4))
        for stage, seconds in stages:
            self.diag.latency(stage, seconds)
        self.diag.tick_output()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``ros2 run protoocc_ros occupancy_node``); returns the process exit code."""
    return run_managed_node(OccupancyNode, NODE_NAME, NodeStartError, argv)


if __name__ == "__main__":
    sys.exit(main())
