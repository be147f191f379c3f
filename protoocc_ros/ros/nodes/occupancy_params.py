"""occupancy_node parameters: one typed dataclass, declared and validated by protoocc_ros.ros.runtime.params.

Numeric parameters carry a finite range in their ParameterDescriptor; ``live=True`` ones change at once
on ``ros2 param set`` (validated first), the others are read at configure (docs/operating.md "Parameters").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protoocc_ros.ros.inputs.rectification import DEFAULT_MAX_PIXELS, RECTIFICATION_MODES
from protoocc_ros.ros.runtime.diagnostics import HealthLimits
from protoocc_ros.ros.runtime.params import ParamError, check, param

__all__ = ["OccupancyNodeParams"]

HOUR_S = 3600.0


@dataclass
class OccupancyNodeParams:
    autostart: bool = param(True, "Configure and activate at start; false = wait in 'unconfigured' for the lifecycle "
                                  "services (ros2 lifecycle set <node> configure / activate).")
    config_file: str = param("", "Config YAML (a path or a shipped name); '' = the checkpoint's own config. It may "
                                  "change only run-time settings (cameras, thresholds, ...), never the architecture.")
    config_overrides: list[str] = param([""], "Config overrides KEY=VALUE (e.g. model.temporal.memory_max_gap_s=2.0).")
    checkpoint: str = param("", "safetensors checkpoint; '' = the bundled models/protoocc_demo.safetensors when it "
                                "exists, otherwise random weights (a loud warning).")
    device: str = param("auto", "Inference device: cpu, cuda, cuda:N or auto (cuda when available).")
    backend: str = param("torch", "Inference backend: torch (ProtoOcc in PyTorch) or onnxruntime (the temporal ONNX "
                                  "graph of protoocc-export; same outputs, memory and reset rules in the node).",
                         choices=("torch", "onnxruntime"))
    onnx_file: str = param("", "backend onnxruntime: the .onnx file from protoocc-export (exported for this rig; its "
                               "<file>.json must name the config's architecture); '' = export the checkpoint at "
                               "configure for any rig (slower graph).", name="onnx.file")
    onnx_providers: list[str] = param([""], "backend onnxruntime: execution providers in order, e.g. "
                                            "[TensorrtExecutionProvider, CUDAExecutionProvider]; [''] = TensorRT / "
                                            "CUDA when installed and device is not cpu, then CPU.",
                                      name="onnx.providers")
    torch_threads: int = param(0, "CPU threads of the model (torch.set_num_threads, per process); 0 = torch's "
                                  "default (one per core). Leave cores to camera drivers and DDS on a shared computer.",
                               range=(0, 1024))
    cameras: list[str] = param([""], "Camera names (any number, any order); [''] = the config's dataset.cameras.")
    image_topic_pattern: str = param("/cameras/{camera}/image_raw", "Image topic per camera ({camera} = camera name).")
    image_transport: str = param("raw", "raw (sensor_msgs/Image) or compressed (CompressedImage on "
                                        "<image topic>/compressed).", choices=("raw", "compressed"))
    camera_info_topic_pattern: str = param("/cameras/{camera}/camera_info", "CameraInfo topic per camera.")
    rectification: str = param("rectify", "How camera images relate to their CameraInfo: rectify = image_raw, "
                                          "distortion (plumb_bob, rational_polynomial, equidistant) and R removed "
                                          "in the node; rectified_input = image_rect (already rectified): P and R "
                                          "are used, D ignored; refuse_distorted = a CameraInfo with non-zero D is "
                                          "refused (distorted_camera_info). Applies to CameraInfo received after a "
                                          "change.", choices=RECTIFICATION_MODES, live=True)
    camera_info_tolerance_s: float = param(0.005, "An image is read with the CameraInfo of its stamp or the newest "
                                                  "one not newer than the image stamp plus this (s).",
                                           range=(0.0, 1.0), live=True)
    image_max_pixels: int = param(DEFAULT_MAX_PIXELS, "Largest image (width x height) accepted; a CameraInfo or "
                                                      "image claiming more is refused before decoding.",
                                  range=(1, 1 << 30), live=True)
    image_16bit_white: int = param(65535, "16-bit encodings (mono16, 16UC1, bayer_*16): the value shown as white "
                                          "(65535 full range, 4095 for 12-bit data).", range=(1, 65535), live=True)
    base_frame: str = param("base_link", "Ego frame: the grid's frame and the parent of the camera optical frames.")
    odom_frame: str = param("odom", "World frame of the ego pose (odom -> base_link) used by the temporal memory.")
    sync_slop_s: float = param(0.05, "Largest stamp spread inside one camera set (s).", range=(0.0, 10.0))
    sync_queue_size: int = param(10, "Incomplete camera sets kept while waiting for the missing cameras.",
                                 range=(1, 1000))
    input_qos_depth: int = param(5, "History depth of the image/CameraInfo subscriptions.", range=(1, 1000))
    input_reliability: str = param("best_effort", "QoS reliability of the image/CameraInfo subscriptions: "
                                                  "best_effort (sensor QoS, live cameras) or reliable (replays and "
                                                  "evaluation: no image lost in transport; needs reliable "
                                                  "publishers).", choices=("best_effort", "reliable"))
    inference_queue_size: int = param(1, "Camera sets waiting for the model; when full the oldest is dropped.",
                                      range=(1, 100))
    score_threshold: float = param(0.0, "Occupied voxels with a lower confidence are left out of ~/occupied_voxels "
                                        "and ~/markers (the grid keeps every argmax label).", range=(0.0, 1.0),
                                   live=True)
    max_rate_hz: float = param(0.0, "Run the model on at most this many camera sets per second (by stamp); the "
                                    "others are dropped as 'rate_limited'. 0 = every set the model can take.",
                               range=(0.0, 1000.0), live=True)
    publish_occupancy: bool = param(True, "Publish ~/occupancy (SemanticOccupancyGrid, reliable).", live=True)
    publish_confidence: bool = param(True, "Fill the grid's confidence array (max softmax probability).", live=True)
    publish_occupied_voxels: bool = param(True, "Publish ~/occupied_voxels (PointCloud2 x, y, z, label, "
                                                "confidence).", live=True)
    publish_markers: bool = param(True, "Publish ~/markers (MarkerArray, one CUBE_LIST per class).", live=True)
    publish_occupancy_2d: bool = param(True, "Publish ~/occupancy_2d (nav_msgs/OccupancyGrid for nav2: 100 obstacle "
                                             "in the height band, 0 free, -1 unseen by every camera).", live=True)
    occupancy_2d_min_height_m: float = param(0.2, "~/occupancy_2d: lowest voxel centre of the obstacle band, above "
                                                  "the ground (m).", name="occupancy_2d.min_height_m",
                                             range=(-20.0, 20.0), live=True)
    occupancy_2d_max_height_m: float = param(2.0, "~/occupancy_2d: highest voxel centre of the obstacle band, above "
                                                  "the ground (m; the vehicle's height plus a margin).",
                                             name="occupancy_2d.max_height_m", range=(-20.0, 20.0), live=True)
    occupancy_2d_ground_z_m: float = param(0.0, "~/occupancy_2d: z of the ground in base_frame (m; 0 when base_link "
                                                "is on the ground).", name="occupancy_2d.ground_z_m",
                                           range=(-20.0, 20.0), live=True)
    occupancy_2d_obstacle_classes: list[str] = param([""], "~/occupancy_2d: class names that are obstacles; [''] = "
                                                           "every class but free and the ground classes (driveable "
                                                           "surface, other flat, sidewalk, terrain).",
                                                     name="occupancy_2d.obstacle_classes", live=True)
    occupancy_2d_min_confidence: float = param(0.0, "~/occupancy_2d: an obstacle voxel below this confidence makes "
                                                    "its cell unknown (-1) instead of occupied.",
                                               name="occupancy_2d.min_confidence", range=(0.0, 1.0), live=True)
    markers_delete_all: bool = param(False, "Start every MarkerArray with DELETEALL instead of deleting stale "
                                            "classes.")
    memory_enabled: bool = param(True, "Carry the temporal memory between camera sets (false: every set starts "
                                       "fresh).", name="memory.enabled", live=True)
    memory_max_gap_s: float = param(-1.0, "Reset the memory after a gap longer than this (s); -1 = config value.",
                                    name="memory.max_gap_s", range=(-1.0, HOUR_S))
    memory_max_pose_jump_m: float = param(-1.0, "Reset the memory after an ego jump longer than this (m); -1 = "
                                                "config value.", name="memory.max_pose_jump_m", range=(-1.0, 1e4))
    tf_tolerance_s: float = param(0.1, "Allowed TF extrapolation beyond the newest/oldest transform (s), used "
                                  "when the transforms around a stamp have not arrived within 0.25 s.",
                                  range=(0.0, 60.0))
    tf_cache_s: float = param(10.0, "How long dynamic transforms are kept (s).", range=(0.001, HOUR_S))
    tf_future_limit_s: float = param(1.0, "A dynamic transform stamped more than this after the newest one of its "
                                          "edge and after the newest camera set (advanced by the clock since it "
                                          "arrived) is held: the next transform of that edge, or a camera set "
                                          "stamped near it, tells a wrong stamp (refused, tf_rejected_future) from "
                                          "time jumping forward (s).", range=(0.001, HOUR_S))
    tf_max_frames: int = param(1000, "Most child frames kept in the TF tree; a transform of a new frame beyond it "
                                     "is refused (tf_rejected_too_many_frames), unless the node needs the frame "
                                     "(base_frame, odom_frame, the cameras' frames and their ancestors), which then "
                                     "replaces the stalest frame it does not need.", range=(8, 1_000_000))
    time_jump_s: float = param(1.0, "A stamp this much older than the previous one is a backwards time jump "
                                    "(resets).", range=(0.001, HOUR_S))
    diagnostics_period_s: float = param(1.0, "Period of /diagnostics (s).", range=(0.01, HOUR_S))
    log_throttle_s: float = param(5.0, "At most one log line per drop reason in this period (s).",
                                  range=(0.001, HOUR_S), live=True)
    diagnostics_window_s: float = param(5.0, "'Recent' in /diagnostics: input rates, mean latency, cameras missing "
                                             "from sets (s).", name="diagnostics.window_s", range=(0.1, HOUR_S),
                                        live=True)
    diagnostics_expected_rate_hz: float = param(0.0, "WARN when a camera's image rate is below this (Hz); 0 = no "
                                                     "check.", name="diagnostics.expected_rate_hz",
                                                range=(0.0, 1000.0), live=True)
    diagnostics_latency_budget_ms: float = param(1000.0, "WARN when the recent mean latency (set complete -> "
                                                         "published) is above this (ms); 0 = no check.",
                                                 name="diagnostics.latency_budget_ms", range=(0.0, 1e6), live=True)
    diagnostics_tf_stale_error_s: float = param(0.5, "ERROR when the newest ego pose (odom_frame -> base_frame) is "
                                                     "older than the newest image by more than this (s); 0 = no "
                                                     "check.", name="diagnostics.tf_stale_error_s",
                                                range=(0.0, HOUR_S), live=True)
    foxglove_enabled: bool = param(False, "Serve a Foxglove WebSocket live view (scene of voxel cubes, images, "
                                          "transforms).", name="foxglove.enabled")
    foxglove_host: str = param("127.0.0.1", "Address the Foxglove server binds to (0.0.0.0 = every interface).",
                               name="foxglove.host")
    foxglove_port: int = param(8765, "Port of the Foxglove server (0 = any free port; the port is logged).",
                               name="foxglove.port", range=(0, 65535))
    foxglove_image_max_width: int = param(640, "Camera images are JPEG-encoded for Foxglove at most this wide (px); "
                                               "0 = as received.", name="foxglove.image_max_width",
                                          range=(0, 16384), live=True)

    def image_topic(self, camera: str) -> str:
        topic = self.image_topic_pattern.format(camera=camera)
        return topic + "/compressed" if self.image_transport == "compressed" else topic

    def camera_info_topic(self, camera: str) -> str:
        return self.camera_info_topic_pattern.format(camera=camera)

    def health_limits(self) -> HealthLimits:
        return HealthLimits(window_s=self.diagnostics_window_s, expected_rate_hz=self.diagnostics_expected_rate_hz,
                            latency_budget_ms=self.diagnostics_latency_budget_ms,
                            tf_stale_error_s=self.diagnostics_tf_stale_error_s)

    def model_overrides(self) -> list[str]:
        """Config overrides for load_config: config_overrides plus the memory.* parameters that are set."""
        overrides = list(self.config_overrides)
        if self.memory_max_gap_s != -1.0:
            overrides.append(f"model.temporal.memory_max_gap_s={self.memory_max_gap_s}")
        if self.memory_max_pose_jump_m != -1.0:
            overrides.append(f"model.temporal.memory_max_pose_jump_m={self.memory_max_pose_jump_m}")
        return overrides

    def backend_options(self) -> dict[str, Any]:
        """load_predictor's backend keywords: backend, onnx_file, providers, cameras (the rig, for an export)."""
        return {"backend": self.backend, "onnx_file": self.onnx_file or None, "providers": self.onnx_providers,
                "cameras": self.cameras}

    def checkpoint_path(self) -> Path | None:
        """The checkpoint to load: the parameter's file (ParamError when missing or not a file), else the
        bundled demo checkpoint when it exists, else None (random weights)."""
        from protoocc_ros.checkpoints.format import default_checkpoint_path

        if self.checkpoint:
            path = Path(self.checkpoint).expanduser()
            if not path.exists():
                raise ParamError(f"parameter 'checkpoint' = {self.checkpoint!r}: file not found")
            if not path.is_file():
                raise ParamError(f"parameter 'checkpoint' = {self.checkpoint!r}: is a directory, not a "
                                 ".safetensors checkpoint file")
            return path
        default = default_checkpoint_path()
        return default if default.is_file() else None

    def validate(self) -> None:
        """Cross-field and format checks that need no file system or model (paths are checked where used)."""
        check(self.device in ("cpu", "cuda", "auto") or (self.device.startswith("cuda:")
                                                          and self.device[5:].isdigit()),
              "device", self.device, "cpu, cuda, cuda:N or auto")
        check(len(set(self.cameras)) == len(self.cameras), "cameras", self.cameras, "distinct camera names")
        for name in ("image_topic_pattern", "camera_info_topic_pattern"):
            pattern = getattr(self, name)
            check("{camera}" in pattern and pattern.startswith("/"), name, pattern,
                  "an absolute topic containing {camera}")
            try:
                pattern.format(camera="CAM")
            except (KeyError, IndexError, ValueError):
                raise ParamError(f"parameter {name!r} = {pattern!r}: expected only the {{camera}} placeholder") \
                    from None
        check(bool(self.base_frame) and bool(self.odom_frame) and self.base_frame != self.odom_frame,
              "base_frame/odom_frame", (self.base_frame, self.odom_frame), "two different non-empty frame ids")
        for name, value in (("memory.max_gap_s", self.memory_max_gap_s),
                            ("memory.max_pose_jump_m", self.memory_max_pose_jump_m)):
            check(value == -1.0 or value > 0, name, value, "> 0, or -1 for the config value")
        check(self.tf_cache_s > self.tf_tolerance_s, "tf_cache_s", self.tf_cache_s,
              f"> tf_tolerance_s ({self.tf_tolerance_s})")
        check(bool(self.foxglove_host), "foxglove.host", self.foxglove_host, "an address such as 127.0.0.1 or 0.0.0.0")
        check(self.occupancy_2d_min_height_m < self.occupancy_2d_max_height_m, "occupancy_2d.min_height_m",
              self.occupancy_2d_min_height_m, f"< occupancy_2d.max_height_m ({self.occupancy_2d_max_height_m})")
