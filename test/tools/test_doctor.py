"""protoocc-doctor: a good environment passes; each broken part fails with its reason and a fix; camera topics
and TF are checked against a live graph (a camera rig published from this process on a private ROS_DOMAIN_ID)."""
from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros"))
from ros_helpers import REPO, ros_context  # noqa: E402 - pins a private ROS_DOMAIN_ID before rclpy starts

from protoocc_ros.checkpoints.format import save_checkpoint  # noqa: E402
from protoocc_ros.config import load_config  # noqa: E402
from protoocc_ros.model import build_model  # noqa: E402
from protoocc_ros.tools.doctor import main, read_params_file  # noqa: E402

CAMERAS = ["CAM_FRONT", "CAM_BACK"]
SMALL = {"dataset": {"cameras": CAMERAS, "image_size": [48, 88], "point_cloud_range": [-8.0, -8.0, -1.0, 8.0, 8.0, 5.4],
                     "grid_size": [40, 40, 16]},
         "model": {"query_size": [20, 20, 4], "prototypes": {"num_prototypes": 18}}}


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump({"base": str(REPO / "config" / "demo.yaml"), **data}))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("doctor")
    small = write_config(tmp / "small.yaml", SMALL)
    other = write_config(tmp / "other.yaml", {**SMALL, "model": {**SMALL["model"], "encoder": {"num_layers": 2}}})
    out = {"config": small, "bad_config": write_config(tmp / "bad.yaml", {"dataset": {"voxel_size": -0.4}})}
    for name, path in (("checkpoint", small), ("other_checkpoint", other)):
        cfg = load_config(path)
        out[name] = save_checkpoint(tmp / f"{name}.safetensors", build_model(cfg), cfg)
    return out


def run(capsys: pytest.CaptureFixture[str], files: dict[str, Path], *extra: str,
        graph: bool = False) -> tuple[int, str]:
    argv = ["--config", str(files["config"]), "--checkpoint", str(files["checkpoint"]), "--device", "cpu",
            *extra, *([] if graph else ["--no-graph"])]
    code = main(argv)
    return code, capsys.readouterr().out


def line(output: str, name: str) -> str:
    found = [ln for ln in output.splitlines() if ln[7:].startswith(name + " ")]
    assert found, f"no line for {name}:\n{output}"
    return found[0]


def fix_of(output: str, name: str) -> str:
    lines = output.splitlines()
    i = lines.index(line(output, name))
    assert lines[i + 1].startswith("       fix: "), output
    return lines[i + 1]


def test_good_environment_passes(capsys, files) -> None:
    code, out = run(capsys, files)
    assert code == 0, out
    for name in ("python", "rclpy", "messages", "tf2_msgs", "parameters", "config", "device"):
        assert line(out, name).startswith("[ OK ]"), out
    assert "RMW rmw_" in line(out, "rclpy") and "protoocc_ros" in line(out, "messages")
    assert "loads and matches the config" in line(out, "checkpoint")
    assert out.splitlines()[-1] == "no check failed (8 ok, 2 skip)"  # foxglove off, cameras: --no-graph


@pytest.mark.parametrize(
    "args,name,reason,fix",
    [
        (["--checkpoint", "/nowhere/model.safetensors"], "checkpoint", "file not found", "safetensors checkpoint"),
        (["--checkpoint", "{other_checkpoint}"], "checkpoint", "define the weights", "leave config_file empty"),
        (["--config", "{bad_config}"], "config", "dataset.voxel_size", "config YAML path or a name"),
        (["-p", "score_threshold:=2.0"], "parameters", "'score_threshold' = 2.0", "ros2 param describe"),
        (["-p", "no_such_parameter:=1"], "parameters", "no_such_parameter", "fix the value"),
    ],
)
def test_each_failure_names_the_problem_and_a_fix(capsys, files, args: list[str], name: str, reason: str,
                                                  fix: str) -> None:
    code, out = run(capsys, files, *[a.format(**{k: str(v) for k, v in files.items()}) for a in args])
    assert code == 1, out
    assert line(out, name).startswith("[FAIL]") and reason in line(out, name), out
    assert fix in fix_of(out, name)
    assert "checks FAILED" in out.splitlines()[-1] and name in out.splitlines()[-1]


def test_another_camera_rig_is_a_warning_that_says_what_it_means(capsys, files) -> None:
    code, out = run(capsys, files, "--cameras", "CAM_FRONT")
    assert code == 0, out
    assert line(out, "config").startswith("[WARN]") and "trained on 2 cameras" in line(out, "config"), out
    assert "accuracy on another rig is unmeasured" in fix_of(out, "config")
    code, out = run(capsys, files, "--config", "")  # '' = the checkpoint's own config
    assert code == 0 and line(out, "config").startswith("[ OK ]"), out


def test_cuda_device_is_checked(capsys, files) -> None:
    code, out = run(capsys, files, "--device", "cuda")
    if torch.cuda.is_available():  # on a GPU machine the device is reported with its name and memory
        assert code == 0 and line(out, "device").startswith("[ OK ]") and "GiB" in line(out, "device"), out
    else:
        assert code == 1 and "CUDA is not available" in line(out, "device"), out
        assert "device:=cpu" in fix_of(out, "device")


def test_params_file_sections_are_flattened(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("occupancy_node:\n  ros__parameters:\n    device: cpu\n    foxglove:\n      enabled: true\n")
    assert read_params_file(path) == {"device": "cpu", "foxglove.enabled": True}
    assert read_params_file(REPO / "config" / "occupancy_node.yaml")["diagnostics.tf_stale_error_s"] == 0.5


class CameraRig:
    """Publishes CAM_FRONT and CAM_BACK images + CameraInfo at 10 Hz with TF from a thread; ``silent`` cameras
    keep their publishers but send nothing."""

    def __init__(self, ctx: Any) -> None:
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import CameraInfo, Image
        from tf2_msgs.msg import TFMessage

        from protoocc_ros.geometry import make_transform
        from protoocc_ros.ros.inputs.image_conversion import rgb_to_image
        from protoocc_ros.ros.publishing import msg_builders as mb
        from protoocc_ros.ros.runtime.qos import latched_qos, reliable_qos, tf_qos

        self.mb, self.rgb_to_image = mb, rgb_to_image
        self.node = Node("camera_driver", context=ctx)
        self.images = {c: self.node.create_publisher(Image, mb.image_topic(c), reliable_qos(5)) for c in CAMERAS}
        self.infos = {c: self.node.create_publisher(CameraInfo, mb.camera_info_topic(c), reliable_qos(5))
                      for c in CAMERAS}
        self.tf = self.node.create_publisher(TFMessage, "/tf", tf_qos())
        static = self.node.create_publisher(TFMessage, "/tf_static", latched_qos(1))
        static.publish(mb.camera_static_tf({c: make_transform(t=[i, 0.0, 1.5]) for i, c in enumerate(CAMERAS)}, 0))
        self.silent: set[str] = set()
        self.t_ns = 1_700_000_000 * 10**9
        self.node.create_timer(0.1, self._tick)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _tick(self) -> None:
        mb, K = self.mb, np.array([[40.0, 0, 44], [0, 40.0, 24], [0, 0, 1]])
        self.t_ns += 10**8
        self.tf.publish(mb.ego_pose_tf(np.eye(4), self.t_ns))
        for cam in CAMERAS:
            if cam not in self.silent:
                frame = mb.optical_frame_id(cam)
                self.infos[cam].publish(mb.camera_info_msg(K, 88, 48, self.t_ns, frame))
                self.images[cam].publish(self.rgb_to_image(np.zeros((48, 88, 3), np.uint8), "rgb8",
                                                           mb.header(self.t_ns, frame)))

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(5.0)
        self.node.destroy_node()


@pytest.fixture(scope="module")
def camera_rig() -> Iterator[CameraRig]:
    with ros_context() as ctx:
        rig = CameraRig(ctx)
        yield rig
        rig.close()


def test_live_camera_topics_and_tf_pass(capsys, files, camera_rig: CameraRig) -> None:
    code, out = run(capsys, files, "--wait", "1.5", graph=True)
    assert code == 0, out
    for cam in CAMERAS:
        ok = line(out, f"camera {cam}")
        assert ok.startswith("[ OK ]") and f"/cameras/{cam}/image_raw" in ok, out
        rate = float(ok.split("image_raw ")[1].split(" Hz")[0])
        assert 5.0 < rate < 15.0, ok
    assert line(out, "tf").startswith("[ OK ]") and line(out, "occupancy_node").startswith("[SKIP]")


def test_silent_camera_and_missing_topic_fail_with_the_topic_named(capsys, files, camera_rig: CameraRig) -> None:
    camera_rig.silent.add("CAM_BACK")
    try:
        code, out = run(capsys, files, "--wait", "1.5", "-p", "camera_info_topic_pattern:=/other/{camera}/info",
                        graph=True)
    finally:
        camera_rig.silent.clear()
    assert code == 1, out
    back = line(out, "camera CAM_BACK")
    assert back.startswith("[FAIL]") and "/cameras/CAM_BACK/image_raw has a publisher but no message" in back
    assert "no publisher on /other/CAM_BACK/info" in back
    assert "start the CAM_BACK driver" in fix_of(out, "camera CAM_BACK") and "QoS" in fix_of(out, "camera CAM_BACK")
    assert "no publisher on /other/CAM_FRONT/info" in line(out, "camera CAM_FRONT")
