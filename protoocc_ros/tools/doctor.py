"""protoocc-doctor: checks the environment occupancy_node is about to be launched in (docs/operating.md).

    protoocc-doctor                                   # config/occupancy_node.yaml of the package
    protoocc-doctor --params-file my_vehicle.yaml --checkpoint /models/occ3d.safetensors --device cuda

Checks, each printed as OK / WARN / FAIL / SKIP with what to do for a failure: Python; rclpy and the
RMW implementation (a node can be created); the message packages the node uses; tf2_msgs; the node
parameters (same validation as the node); the model config; the checkpoint (loads and matches the
config); the device; foxglove-sdk when the live view is enabled; and, when a ROS graph is running on
this ROS_DOMAIN_ID, the camera image / CameraInfo topics (messages arriving, rate), the TF frames
the node needs and the lifecycle state of a running occupancy_node. Exit code 1 when a check fails.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from protoocc_ros.config import ConfigError, load_config, safe_yaml
from protoocc_ros.package_files import find_package_file

__all__ = ["Check", "DoctorError", "run_checks", "format_report", "main"]

MESSAGE_MODULES = ("std_msgs.msg", "sensor_msgs.msg", "geometry_msgs.msg", "visualization_msgs.msg",
                   "diagnostic_msgs.msg", "lifecycle_msgs.msg", "rcl_interfaces.msg", "builtin_interfaces.msg")
SYMBOL = {"ok": "[ OK ]", "warn": "[WARN]", "fail": "[FAIL]", "skip": "[SKIP]"}
DISCOVERY_S = 5.0  # longest wait for DDS discovery of the camera publishers (ends as soon as all are seen)


class DoctorError(RuntimeError):
    """The doctor itself cannot run (unreadable parameter file); the message names the file."""


@dataclass
class Check:
    name: str
    status: str      # ok | warn | fail | skip
    detail: str
    fix: str = ""    # what to do, for warn / fail


def _exception_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# -- environment ----------------------------------------------------------------------------------
def check_python() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("python", "ok" if ok else "fail", f"{platform.python_version()} ({sys.executable})",
                 "" if ok else "use Python >= 3.10 (the venv of scripts/setup_env.sh)")


def check_rclpy() -> Check:
    fix = ("source the environment (source .venv/protoocc_env.sh, or /opt/ros/<distro>/setup.bash), or install the "
           "ROS 2 wheels: pip install -r requirements.txt")
    try:
        import rclpy
        from rclpy.context import Context
        from rclpy.utilities import get_rmw_implementation_identifier
    except Exception as exc:
        return Check("rclpy", "fail", f"cannot import rclpy: {_exception_text(exc)}", fix)
    context = Context()
    try:
        rclpy.init(context=context, args=[])
        node = rclpy.create_node("protoocc_doctor_probe", context=context)
        node.destroy_node()
        rmw = get_rmw_implementation_identifier()
    except Exception as exc:
        return Check("rclpy", "fail", f"rclpy imports but cannot create a node: {_exception_text(exc)}",
                     "check RMW_IMPLEMENTATION (unset, or an installed one such as rmw_fastrtps_cpp) and that the "
                     "RMW library is on LD_LIBRARY_PATH (source .venv/protoocc_env.sh)")
    finally:
        context.try_shutdown()
    domain = os.environ.get("ROS_DOMAIN_ID", "0 (unset)")
    return Check("rclpy", "ok", f"RMW {rmw}, ROS_DOMAIN_ID {domain}")


def _check_imports(name: str, modules: tuple[str, ...], fix: str) -> Check:
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            missing.append(f"{module} ({_exception_text(exc)})")
    if missing:
        return Check(name, "fail", "cannot import " + "; ".join(missing), fix)
    return Check(name, "ok", ", ".join(m.removesuffix(".msg") for m in modules))


def check_messages() -> Check:
    check = _check_imports("messages", (*MESSAGE_MODULES, "protoocc_ros.msg"),
                           "pip install -r requirements.txt (ros-*-msgs wheels); for "
                           "protoocc_ros/SemanticOccupancyGrid build the package (colcon build, or "
                           "scripts/setup_env.sh) and source its setup")
    if check.status == "ok":
        try:
            from rclpy.type_support import check_for_type_support

            from protoocc_ros.msg import SemanticOccupancyGrid

            check_for_type_support(SemanticOccupancyGrid)
        except Exception as exc:
            return Check("messages", "fail", f"SemanticOccupancyGrid has no type support: {_exception_text(exc)}",
                         "rebuild the message package (scripts/setup_env.sh or colcon build) for this Python")
    return check


def check_tf2() -> Check:
    return _check_imports("tf2_msgs", ("tf2_msgs.msg",),
                          "pip install ros-tf2-msgs (or the distro's ros-<distro>-tf2-msgs)")


# -- node parameters, config, checkpoint, device ---------------------------------------------------------
def read_params_file(path: Path, node: str = "occupancy_node") -> dict[str, Any]:
    """ROS parameter name -> value of ``node`` in a --params-file YAML (nested keys joined with '.')."""
    try:
        data = safe_yaml(path.read_text(), f"--params-file {path}") or {}
    except OSError as exc:
        raise DoctorError(f"--params-file {path}: cannot read it ({exc})") from None
    except ConfigError as exc:
        raise DoctorError(str(exc)) from None
    section = next((data[k] for k in (node, f"/{node}", "/**") if isinstance(data.get(k), dict)), None)
    if section is None or not isinstance(section.get("ros__parameters"), dict):
        raise DoctorError(f"--params-file {path}: no '{node}: ros__parameters:' section")

    def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for key, value in values.items():
            flat.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return flat

    return flatten(section["ros__parameters"])


def check_params(values: dict[str, Any]) -> tuple[Check, Any]:
    from protoocc_ros.ros.nodes.occupancy_params import OccupancyNodeParams
    from protoocc_ros.ros.runtime.params import ParamError, params_from_values

    values = {k: v for k, v in values.items() if k != "use_sim_time"}
    try:
        params = params_from_values(OccupancyNodeParams, values)
    except ParamError as exc:
        return Check("parameters", "fail", str(exc), "fix the value in the parameter file / on the command line "
                     "(ros2 param describe /occupancy_node <name> lists what each one expects)"), None
    return Check("parameters", "ok", f"{len(values)} set, valid"), params


def _checkpoint_or_none(params: Any) -> Any:
    from protoocc_ros.ros.runtime.params import ParamError

    try:
        return params.checkpoint_path()
    except ParamError:
        return None  # reported by check_checkpoint


def check_config(params: Any) -> tuple[Check, Any]:
    """The config the node would run with: config_file, or the checkpoint's own when it is ''."""
    from protoocc_ros.checkpoints.format import read_metadata, stored_config
    from protoocc_ros.inference.predictor import DEFAULT_CONFIG

    checkpoint = _checkpoint_or_none(params)
    try:
        if params.config_file or checkpoint is None:
            cfg = load_config(params.config_file or DEFAULT_CONFIG, params.model_overrides())
            trained = cfg.dataset.cameras
        if checkpoint is not None:
            stored = stored_config(read_metadata(checkpoint), checkpoint)
            cfg = cfg if params.config_file else stored
            trained = stored.dataset.cameras
    except Exception as exc:
        return Check("config", "fail", f"config_file {params.config_file!r}: {_exception_text(exc)}",
                     "pass a config YAML path or a name of a shipped config (demo, occ3d_base ...), or '' for the "
                     "checkpoint's own config; the message names the key to fix"), None
    cameras = params.cameras or list(cfg.dataset.cameras)
    detail = (f"{cfg.name}: {len(cameras)} cameras {cameras}, image {cfg.image_size}, "
              f"grid {tuple(cfg.dataset.grid_size)}")
    if list(cameras) != list(trained):
        return Check("config", "warn", f"{detail}; the weights were trained on {len(trained)} cameras {trained}",
                     "fine if intended: the model takes any camera rig, but accuracy on another rig is unmeasured "
                     "(fine-tune on its data, docs/training.md)"), cfg
    return Check("config", "ok", detail), cfg


def check_checkpoint(params: Any, cfg: Any) -> Check:
    from protoocc_ros.checkpoints.format import default_checkpoint_path, load_checkpoint, runtime_config
    from protoocc_ros.ros.runtime.params import ParamError

    try:
        path = params.checkpoint_path()
    except ParamError as exc:
        return Check("checkpoint", "fail", str(exc), "pass the path of a safetensors checkpoint (protoocc-train "
                     "writes them), or '' for the bundled models/protoocc_demo.safetensors")
    if path is None:
        return Check("checkpoint", "warn", f"no checkpoint: {default_checkpoint_path()} is missing and 'checkpoint' "
                     "is empty; the node would run with RANDOM weights",
                     "pass checkpoint:=/path/model.safetensors")
    try:
        run_cfg = runtime_config(path, cfg if params.config_file else None, params.model_overrides())
        load_checkpoint(path, run_cfg, device="cpu")
    except Exception as exc:
        return Check("checkpoint", "fail", f"{path}: {_exception_text(exc)}",
                     "leave config_file empty to run the checkpoint with its own config, or use a config that "
                     "differs only in run-time settings (protoocc-info shows a checkpoint's config)")
    return Check("checkpoint", "ok", f"{path} loads and matches the config")


def check_device(params: Any) -> Check:
    from protoocc_ros.device import DeviceError, resolve_device

    try:
        device = resolve_device(params.device)
    except DeviceError as exc:
        return Check("device", "fail", str(exc), "use device:=cpu (slow) or auto, or install the CUDA build of torch "
                     "and the NVIDIA driver (nvidia-smi must list the GPU)")
    import torch

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device.index or 0)
        return Check("device", "ok", f"{device}: {props.name}, {props.total_memory / 2**30:.1f} GiB")
    note = " (auto: no CUDA device found)" if params.device == "auto" else ""
    return Check("device", "ok", f"cpu, {torch.get_num_threads()} threads{note}")


def check_foxglove(params: Any) -> Check:
    if not params.foxglove_enabled:
        return Check("foxglove", "skip", "live view off (foxglove.enabled false)")
    check = _check_imports("foxglove", ("foxglove", "foxglove.websocket"),
                           "pip install foxglove-sdk (see requirements.txt)")
    if check.status == "ok":
        check.detail = f"foxglove-sdk importable; server will listen on {params.foxglove_host}:{params.foxglove_port}"
    return check


# -- running graph ----------------------------------------------------------------------------------------
class _GraphProbe:
    """A node in a private context that listens to the camera topics and TF for a while."""

    def __init__(self, params: Any, cameras: list[str]) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        from protoocc_ros.ros.inputs.tf_buffer import TfBuffer
        from protoocc_ros.ros.inputs.tf_listener import attach_tf_listener
        from protoocc_ros.ros.runtime.qos import sensor_qos

        self.params, self.cameras = params, cameras
        self.context = Context()
        rclpy.init(context=self.context, args=[])
        self.node = rclpy.create_node("protoocc_doctor", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.tf = TfBuffer(cache_time_s=30.0, tolerance_s=1.0)
        self.stamps: dict[str, list[float]] = {}
        self.frames: dict[str, str] = {}
        image_type = CompressedImage if params.image_transport == "compressed" else Image
        for cam in cameras:
            self._listen(image_type, params.image_topic(cam), cam, sensor_qos(10))
            self._listen(CameraInfo, params.camera_info_topic(cam), f"{cam}/camera_info", sensor_qos(10))
        attach_tf_listener(self.node, self.tf)

    def _listen(self, msg_type: Any, topic: str, key: str, qos: Any) -> None:
        self.stamps[key] = []

        def keep(msg: Any) -> None:
            self.stamps[key].append(time.monotonic())
            self.frames.setdefault(key, msg.header.frame_id)
        self.node.create_subscription(msg_type, topic, keep, qos)

    def spin(self, seconds: float, until: Callable[[], bool] | None = None) -> None:
        """Process callbacks for ``seconds``, or less once ``until()`` is true."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until is not None and until()):
            self.executor.spin_once(timeout_sec=0.05)

    def topics(self) -> list[str]:
        return [t for cam in self.cameras
                for t in (self.params.image_topic(cam), self.params.camera_info_topic(cam))]

    def discovered(self) -> bool:
        """Another node is seen and every camera topic has a publisher (discovery is done for what we check)."""
        return bool(self.other_nodes()) and all(self.node.count_publishers(t) > 0 for t in self.topics())

    def other_nodes(self) -> list[str]:
        names = self.node.get_node_names_and_namespaces()
        return sorted(f"{ns.rstrip('/')}/{name}" for name, ns in names if name != "protoocc_doctor")

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def _rate(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) >= 2 and stamps[-1] > stamps[0] else 0.0


def _camera_checks(probe: _GraphProbe, wait_s: float) -> list[Check]:
    p, checks = probe.params, []
    for cam in probe.cameras:
        problems, fixes, rates = [], [], []
        for key, topic in ((cam, p.image_topic(cam)), (f"{cam}/camera_info", p.camera_info_topic(cam))):
            if probe.node.count_publishers(topic) == 0:
                problems.append(f"no publisher on {topic}")
                fixes.append(f"start the {cam} driver, or set image_topic_pattern / camera_info_topic_pattern "
                             f"(and image_transport) to the topics it publishes")
            elif not probe.stamps[key]:
                problems.append(f"{topic} has a publisher but no message arrived in {wait_s:g} s")
                fixes.append("check that the driver is streaming and its QoS (the node subscribes best effort)")
            else:
                rates.append(f"{topic} {_rate(probe.stamps[key]):.1f} Hz")
        checks.append(Check(f"camera {cam}", "fail" if problems else "ok", "; ".join(problems or rates),
                            "; ".join(dict.fromkeys(fixes))))
    return checks


def _tf_check(probe: _GraphProbe) -> Check:
    from protoocc_ros.ros.publishing.msg_builders import optical_frame_id

    p, missing = probe.params, []
    for cam in probe.cameras:
        frame = probe.frames.get(cam) or probe.frames.get(f"{cam}/camera_info") or optical_frame_id(cam)
        if not probe.tf.can_transform(p.base_frame, frame):
            missing.append(f"{p.base_frame} -> {frame}")
    if not probe.tf.can_transform(p.odom_frame, p.base_frame):
        missing.append(f"{p.odom_frame} -> {p.base_frame} (ego pose)")
    if missing:
        return Check("tf", "fail", "transforms not available: " + ", ".join(missing),
                     "publish the camera extrinsics on /tf_static (robot_state_publisher or static_transform_publisher)"
                     " and the ego pose on /tf (odometry / localization); check base_frame / odom_frame")
    return Check("tf", "ok", f"{p.base_frame} -> {len(probe.cameras)} optical frames, {p.odom_frame} -> {p.base_frame}")


def _lifecycle_check(probe: _GraphProbe, nodes: list[str]) -> Check:
    from protoocc_ros.ros.runtime.lifecycle import LifecycleClient, LifecycleError

    running = [n for n in nodes if n.rsplit("/", 1)[-1] == "occupancy_node"]
    if not running:
        return Check("occupancy_node", "skip", "not running (nothing to check)")
    try:
        state = LifecycleClient(probe.node, running[0], probe.executor).get_state(timeout_s=5.0)
    except LifecycleError as exc:
        return Check("occupancy_node", "warn", f"{running[0]} is running but: {exc}",
                     "an older occupancy_node without lifecycle services? restart it")
    return Check("occupancy_node", "ok" if state == "active" else "warn", f"{running[0]} is {state}",
                 "" if state == "active" else f"ros2 lifecycle set {running[0]} configure, then activate "
                                              "(or start it with autostart:=true)")


def check_graph(params: Any, cfg: Any, wait_s: float, discovery_s: float) -> list[Check]:
    cameras = params.cameras or (list(cfg.dataset.cameras) if cfg is not None else [])
    if not cameras:
        return [Check("cameras", "skip", "camera names unknown (config not loaded)")]
    probe = _GraphProbe(params, cameras)
    try:
        probe.spin(discovery_s, until=probe.discovered)  # DDS discovery takes seconds on a loaded machine
        nodes = probe.other_nodes()
        if not nodes:
            return [Check("cameras", "skip", f"no ROS graph on ROS_DOMAIN_ID {os.environ.get('ROS_DOMAIN_ID', '0')}"
                                             " (no other node found): camera topics and TF not checked")]
        probe.spin(wait_s)
        return [*_camera_checks(probe, wait_s), _tf_check(probe), _lifecycle_check(probe, nodes)]
    finally:
        probe.close()


# -- report ------------------------------------------------------------------------------------------
def run_checks(values: dict[str, Any], wait_s: float = 3.0, discovery_s: float = DISCOVERY_S, graph: bool = True,
               progress: Callable[[Check], None] | None = None) -> list[Check]:
    """Every check, in order; later checks are skipped when what they need failed."""
    checks: list[Check] = []

    def add(check: Check) -> Check:
        checks.append(check)
        if progress is not None:
            progress(check)
        return check

    add(check_python())
    ros_ok = add(check_rclpy()).status == "ok"
    add(check_messages())
    add(check_tf2())
    params_check, params = check_params(values)
    add(params_check)
    cfg = None
    if params is not None:
        config_check, cfg = check_config(params)
        add(config_check)
        add(check_checkpoint(params, cfg) if cfg is not None else Check("checkpoint", "skip", "needs a valid config"))
        add(check_device(params))
        add(check_foxglove(params))
    if not graph:
        add(Check("cameras", "skip", "--no-graph"))
    elif ros_ok and params is not None:
        for check in check_graph(params, cfg, wait_s, discovery_s):
            add(check)
    else:
        add(Check("cameras", "skip", "needs rclpy and valid parameters"))
    return checks


def format_check(check: Check) -> str:
    line = f"{SYMBOL[check.status]} {check.name:<18} {check.detail}"
    return line + (f"\n       fix: {check.fix}" if check.fix and check.status in ("fail", "warn") else "")


def format_report(checks: list[Check]) -> str:
    """The summary line: the failed checks by name, or the counts per status."""
    by_status = {status: [c.name for c in checks if c.status == status] for status in SYMBOL}
    if by_status["fail"]:
        return f"{len(by_status['fail'])} of {len(checks)} checks FAILED: {', '.join(by_status['fail'])}"
    counts = ", ".join(f"{len(names)} {status}" for status, names in by_status.items() if names)
    warned = f"; warnings: {', '.join(by_status['warn'])}" if by_status["warn"] else ""
    return f"no check failed ({counts}){warned}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="protoocc-doctor", description=__doc__.split("\n")[0])
    default_params = find_package_file("config", "occupancy_node.yaml")
    parser.add_argument("--params-file", type=Path, default=default_params,
                        help="occupancy_node parameter YAML (default: the package's config/occupancy_node.yaml)")
    parser.add_argument("--config", help="override parameter config_file (a path or a name in config/)")
    parser.add_argument("--checkpoint", help="override parameter checkpoint")
    parser.add_argument("--device", help="override parameter device (cpu, cuda, cuda:N, auto)")
    parser.add_argument("--cameras", nargs="+", help="override parameter cameras (names in model order)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="any other parameter, YAML value (e.g. -p image_transport:=compressed), repeatable")
    parser.add_argument("--wait", type=float, default=3.0, help="seconds to listen to camera topics and TF")
    parser.add_argument("--no-graph", action="store_true", help="do not look at a running ROS graph")
    args = parser.parse_args(argv)
    try:
        values = read_params_file(args.params_file) if args.params_file else {}
    except DoctorError as exc:
        print(f"protoocc-doctor: {exc}", file=sys.stderr)
        return 2
    for item in args.param:
        name, sep, text = item.partition(":=")
        if not sep:
            print(f"protoocc-doctor: -p {item!r}: expected NAME:=VALUE", file=sys.stderr)
            return 2
        values[name] = yaml.safe_load(text)
    for name, value in (("config_file", args.config), ("checkpoint", args.checkpoint), ("device", args.device),
                        ("cameras", args.cameras)):
        if value is not None:
            values[name] = value
    print(f"protoocc-doctor: environment for occupancy_node (parameters: {args.params_file or 'defaults'})")
    checks = run_checks(values, wait_s=args.wait, graph=not args.no_graph,
                        progress=lambda c: print(format_check(c), flush=True))
    print(format_report(checks))
    return 1 if any(c.status == "fail" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
