"""occupancy_node parameters (design §5 "parameters declared with descriptions and validated at start").

Each parameter is declared once here with its default and description; ``declare_params(node)``
declares them, ``read_params(node)`` reads them into :class:`OccupancyNodeParams` and validates the
values, raising :class:`ParamError` naming the parameter, its value and what was expected.
``apply_change(current, changes, configured)`` decides a runtime change (``ros2 param set``): the
LIVE_PARAMETERS take effect at once when valid; the others are read when the node is configured and
are refused while it is, with that reason.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["ParamError", "OccupancyNodeParams", "PARAMETERS", "LIVE_PARAMETERS", "declare_params", "read_params",
           "validate_params", "apply_change", "field_name", "params_from_values", "resolve_device"]


class ParamError(ValueError):
    """An invalid node parameter; the message starts with the parameter name."""


# name -> (default, description). The ROS type follows the default's Python type.
PARAMETERS: dict[str, tuple[Any, str]] = {
    "autostart": (True, "Configure and activate at start; false = wait in 'unconfigured' for the lifecycle "
                        "services (ros2 lifecycle set <node> configure / activate)."),
    "config_file": ("demo", "Model/data config YAML (a path, or a name in the package's config/ folder)."),
    "config_overrides": ([""], "Config overrides KEY=VALUE (e.g. model.temporal.memory_max_gap_s=2.0)."),
    "checkpoint": ("", "safetensors checkpoint; '' = the bundled models/protoocc_demo.safetensors when it "
                       "exists, otherwise random weights (a loud warning)."),
    "device": ("auto", "Inference device: cpu, cuda or auto (cuda when available)."),
    "torch_threads": (0, "CPU threads of the model (torch.set_num_threads, per process); 0 = torch's default "
                         "(one per core). Leave cores to camera drivers and DDS on a shared computer."),
    "cameras": ([""], "Camera names in model order; [''] = the config's dataset.cameras."),
    "image_topic_pattern": ("/cameras/{camera}/image_raw", "Image topic per camera ({camera} = camera name)."),
    "image_transport": ("raw", "raw (sensor_msgs/Image) or compressed (CompressedImage on <image topic>/compressed)."),
    "camera_info_topic_pattern": ("/cameras/{camera}/camera_info", "CameraInfo topic per camera."),
    "base_frame": ("base_link", "Ego frame: the grid's frame and the parent of the camera optical frames."),
    "odom_frame": ("odom", "World frame of the ego pose (odom -> base_link) used by the temporal memory."),
    "sync_slop_s": (0.05, "Largest stamp spread inside one camera set (s)."),
    "sync_queue_size": (10, "Incomplete camera sets kept while waiting for the missing cameras."),
    "input_qos_depth": (5, "History depth of the sensor-QoS image/CameraInfo subscriptions."),
    "input_reliability": ("best_effort", "QoS reliability of the image/CameraInfo subscriptions: best_effort "
                                         "(sensor QoS, live cameras) or reliable (replays and evaluation: no "
                                         "image lost in transport; needs reliable publishers)."),
    "inference_queue_size": (1, "Camera sets waiting for the model; when full the oldest is dropped."),
    "score_threshold": (0.0, "Occupied voxels with a lower confidence are left out of ~/occupied_voxels and "
                             "~/markers (the grid keeps every argmax label)."),
    "max_rate_hz": (0.0, "Run the model on at most this many camera sets per second (by stamp); the others "
                         "are dropped as 'rate_limited'. 0 = every set the model can take."),
    "publish_occupancy": (True, "Publish ~/occupancy (SemanticOccupancyGrid, reliable)."),
    "publish_confidence": (True, "Fill the grid's confidence array (max softmax probability)."),
    "publish_occupied_voxels": (True, "Publish ~/occupied_voxels (PointCloud2 x, y, z, label, confidence)."),
    "publish_markers": (True, "Publish ~/markers (MarkerArray, one CUBE_LIST per class)."),
    "markers_delete_all": (False, "Start every MarkerArray with DELETEALL instead of deleting stale classes."),
    "memory.enabled": (True, "Carry the temporal memory between camera sets (false: every set starts fresh)."),
    "memory.max_gap_s": (-1.0, "Reset the memory after a gap longer than this (s); -1 = config value."),
    "memory.max_pose_jump_m": (-1.0, "Reset the memory after an ego jump longer than this (m); -1 = config value."),
    "tf_tolerance_s": (0.1, "Allowed TF extrapolation beyond the newest/oldest transform (s)."),
    "tf_cache_s": (10.0, "How long dynamic transforms are kept (s)."),
    "time_jump_s": (1.0, "A stamp this much older than the previous one is a backwards time jump (resets)."),
    "diagnostics_period_s": (1.0, "Period of /diagnostics (s)."),
    "log_throttle_s": (5.0, "At most one log line per drop reason in this period (s)."),
    "diagnostics.window_s": (5.0, "'Recent' in /diagnostics: input rates, mean latency, cameras missing from sets (s)."),
    "diagnostics.expected_rate_hz": (0.0, "WARN when a camera's image rate is below this (Hz); 0 = no check."),
    "diagnostics.latency_budget_ms": (1000.0, "WARN when the recent mean latency (set complete -> published) is "
                                              "above this (ms); 0 = no check."),
    "diagnostics.tf_stale_error_s": (0.5, "ERROR when the newest ego pose (odom_frame -> base_frame) is older "
                                          "than the newest image by more than this (s); 0 = no check."),
    "foxglove.enabled": (False, "Serve a Foxglove WebSocket live view (scene of voxel cubes, images, transforms)."),
    "foxglove.host": ("127.0.0.1", "Address the Foxglove server binds to (0.0.0.0 = every interface)."),
    "foxglove.port": (8765, "Port of the Foxglove server (0 = any free port; the port is logged)."),
    "foxglove.image_max_width": (640, "Camera images are JPEG-encoded for Foxglove at most this wide (px); "
                                      "0 = as received."),
}
# Parameters a running node applies at once (validated first); all others are read at configure.
LIVE_PARAMETERS = frozenset({
    "score_threshold", "max_rate_hz", "publish_occupancy", "publish_confidence", "publish_occupied_voxels",
    "publish_markers", "memory.enabled", "log_throttle_s", "diagnostics.window_s", "diagnostics.expected_rate_hz",
    "diagnostics.latency_budget_ms", "diagnostics.tf_stale_error_s", "foxglove.image_max_width",
})


@dataclass
class OccupancyNodeParams:
    autostart: bool
    config_file: str
    config_overrides: list[str]
    checkpoint: str
    device: str
    torch_threads: int
    cameras: list[str]
    image_topic_pattern: str
    image_transport: str
    camera_info_topic_pattern: str
    base_frame: str
    odom_frame: str
    sync_slop_s: float
    sync_queue_size: int
    input_qos_depth: int
    input_reliability: str
    inference_queue_size: int
    score_threshold: float
    max_rate_hz: float
    publish_occupancy: bool
    publish_confidence: bool
    publish_occupied_voxels: bool
    publish_markers: bool
    markers_delete_all: bool
    memory_enabled: bool
    memory_max_gap_s: float
    memory_max_pose_jump_m: float
    tf_tolerance_s: float
    tf_cache_s: float
    time_jump_s: float
    diagnostics_period_s: float
    log_throttle_s: float
    diagnostics_window_s: float
    diagnostics_expected_rate_hz: float
    diagnostics_latency_budget_ms: float
    diagnostics_tf_stale_error_s: float
    foxglove_enabled: bool
    foxglove_host: str
    foxglove_port: int
    foxglove_image_max_width: int

    def image_topic(self, camera: str) -> str:
        topic = self.image_topic_pattern.format(camera=camera)
        return topic + "/compressed" if self.image_transport == "compressed" else topic

    def camera_info_topic(self, camera: str) -> str:
        return self.camera_info_topic_pattern.format(camera=camera)

    def model_overrides(self) -> list[str]:
        """Config overrides for load_config: config_overrides plus the memory.* parameters that are set."""
        overrides = list(self.config_overrides)
        if self.memory_max_gap_s != -1.0:
            overrides.append(f"model.temporal.memory_max_gap_s={self.memory_max_gap_s}")
        if self.memory_max_pose_jump_m != -1.0:
            overrides.append(f"model.temporal.memory_max_pose_jump_m={self.memory_max_pose_jump_m}")
        return overrides

    def checkpoint_path(self) -> Path | None:
        """The checkpoint to load: the parameter's file (ParamError when missing), else the bundled demo
        checkpoint when it exists, else None (random weights)."""
        from protoocc_ros.training.checkpoint import default_checkpoint_path

        if self.checkpoint:
            path = Path(self.checkpoint).expanduser()
            if not path.is_file():
                raise ParamError(f"parameter 'checkpoint' = {self.checkpoint!r}: file not found")
            return path
        default = default_checkpoint_path()
        return default if default.is_file() else None


def resolve_device(requested: str) -> Any:
    """torch.device for the ``device`` parameter (auto = cuda when available); ParamError when unavailable."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _check(not requested.startswith("cuda") or torch.cuda.is_available(), "device", requested,
           "cpu or auto: CUDA is not available on this machine")
    return torch.device(requested)


def field_name(name: str) -> str:
    """ROS parameter name -> OccupancyNodeParams field ('memory.enabled' -> 'memory_enabled')."""
    return name.replace(".", "_")


def declare_params(node: Any) -> None:
    """Declare every parameter (with type and description); ParamError when an override has the wrong type."""
    from rcl_interfaces.msg import ParameterDescriptor, ParameterType
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    ros_types = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                 float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
                 list: ParameterType.PARAMETER_STRING_ARRAY}

    for name, (default, description) in PARAMETERS.items():
        try:
            node.declare_parameter(name, default, ParameterDescriptor(
                name=name, type=ros_types[type(default)], description=description))
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            kind = type(default).__name__ if not isinstance(default, list) else "list of strings"
            raise ParamError(f"parameter {name!r}: expected a {kind} ({exc})") from None


def params_from_values(values: dict[str, Any]) -> OccupancyNodeParams:
    """ROS parameter name -> value (missing names take their default) to validated params; [''] lists become []."""
    unknown = sorted(set(values) - set(PARAMETERS))
    if unknown:
        raise ParamError(f"parameters {unknown}: not parameters of occupancy_node (known: {sorted(PARAMETERS)})")
    values = {**{name: default for name, (default, _) in PARAMETERS.items()}, **values}
    flat = {field_name(name): value for name, value in values.items()}
    for key in ("config_overrides", "cameras"):
        flat[key] = [v for v in (flat[key] or []) if v]
    params = OccupancyNodeParams(**{f.name: flat[f.name] for f in fields(OccupancyNodeParams)})
    validate_params(params)
    return params


def read_params(node: Any) -> OccupancyNodeParams:
    """Read and validate every parameter of ``node`` (declared before with declare_params)."""
    return params_from_values({name: node.get_parameter(name).value for name in PARAMETERS})


def apply_change(current: dict[str, Any], changes: dict[str, Any], configured: bool,
                 node_name: str = "/occupancy_node") -> OccupancyNodeParams:
    """The params after a runtime change, or ParamError with the reason it is refused.

    current: every parameter's present value (ROS names); changes: the new values (ROS names).
    configured: the node holds a model (inactive or active): then only LIVE_PARAMETERS may change.
    """
    refused = sorted(set(changes) - LIVE_PARAMETERS) if configured else []
    if refused:
        what = f"parameter {refused[0]!r} needs" if len(refused) == 1 else f"parameters {refused} need"
        raise ParamError(
            f"{what} a restart: read when the node is configured (model, topics, frames, server); deactivate and "
            f"clean up the node (ros2 lifecycle set {node_name} deactivate, then cleanup), set it, then configure "
            f"and activate again, or restart the node. Changeable while running: {sorted(LIVE_PARAMETERS)}")
    return params_from_values({**current, **changes})


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ParamError(f"parameter {name!r} = {value!r}: expected {expected}")


def validate_params(p: OccupancyNodeParams) -> None:
    """Value checks that need no file system or model (paths are checked where they are used)."""
    _check(p.device in ("cpu", "cuda", "auto") or p.device.startswith("cuda:"), "device", p.device,
           "cpu, cuda, cuda:N or auto")
    _check(p.torch_threads >= 0, "torch_threads", p.torch_threads, ">= 0 (0 = torch's default)")
    _check(len(set(p.cameras)) == len(p.cameras), "cameras", p.cameras, "distinct camera names")
    for name in ("image_topic_pattern", "camera_info_topic_pattern"):
        pattern = getattr(p, name)
        _check("{camera}" in pattern and pattern.startswith("/"), name, pattern,
               "an absolute topic containing {camera}")
        try:
            pattern.format(camera="CAM")
        except (KeyError, IndexError, ValueError):
            _check(False, name, pattern, "only the {camera} placeholder")
    _check(p.image_transport in ("raw", "compressed"), "image_transport", p.image_transport, "raw or compressed")
    _check(p.input_reliability in ("best_effort", "reliable"), "input_reliability", p.input_reliability,
           "best_effort or reliable")
    _check(bool(p.base_frame) and bool(p.odom_frame) and p.base_frame != p.odom_frame, "base_frame/odom_frame",
           (p.base_frame, p.odom_frame), "two different non-empty frame ids")
    _check(p.sync_slop_s >= 0, "sync_slop_s", p.sync_slop_s, ">= 0 seconds")
    for name in ("sync_queue_size", "input_qos_depth", "inference_queue_size"):
        _check(getattr(p, name) >= 1, name, getattr(p, name), "an integer >= 1")
    _check(0.0 <= p.score_threshold <= 1.0, "score_threshold", p.score_threshold, "a probability in [0, 1]")
    for name in ("memory_max_gap_s", "memory_max_pose_jump_m"):
        value = getattr(p, name)
        _check(value == -1.0 or value > 0, name.replace("memory_", "memory."), value, "> 0, or -1 for the config value")
    _check(p.tf_tolerance_s >= 0, "tf_tolerance_s", p.tf_tolerance_s, ">= 0 seconds")
    for name in ("tf_cache_s", "time_jump_s", "diagnostics_period_s", "log_throttle_s"):
        _check(getattr(p, name) > 0, name, getattr(p, name), "> 0 seconds")
    _check(p.tf_cache_s > p.tf_tolerance_s, "tf_cache_s", p.tf_cache_s, f"> tf_tolerance_s ({p.tf_tolerance_s})")
    _check(p.max_rate_hz >= 0, "max_rate_hz", p.max_rate_hz, ">= 0 (0 = no limit)")
    _check(p.diagnostics_window_s > 0, "diagnostics.window_s", p.diagnostics_window_s, "> 0 seconds")
    for name in ("expected_rate_hz", "latency_budget_ms", "tf_stale_error_s"):
        value = getattr(p, f"diagnostics_{name}")
        _check(value >= 0, f"diagnostics.{name}", value, ">= 0 (0 = no check)")
    _check(bool(p.foxglove_host), "foxglove.host", p.foxglove_host, "an address such as 127.0.0.1 or 0.0.0.0")
    _check(0 <= p.foxglove_port <= 65535, "foxglove.port", p.foxglove_port, "a port in 0..65535 (0 = any free)")
    _check(p.foxglove_image_max_width >= 0, "foxglove.image_max_width", p.foxglove_image_max_width,
           ">= 0 pixels (0 = as received)")
