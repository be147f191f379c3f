"""The bad-input battery: one occupancy_node process (six cameras, small model) fed, over DDS, one bad input after
another, each between two valid camera sets (issue 13). Per case (one test each) the node must publish the good
sets around the bad input, count what was injected exactly once in each family of /diagnostics ('dropped
messages': input messages refused; 'dropped' sets not published), stay alive, and its peak RSS may not grow by
100 MB. The last test prints the totals (``python -m pytest -q -s test/ros/test_input_battery.py``).

The cases run in order: raw images first, then the node is reconfigured (lifecycle) to compressed images.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import yaml
from ros_helpers import REPO, NodeProcess, ros_context
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from test_occupancy_node import MAIN, OPTICAL, Rig, ego_pose, params_file

from protoocc_ros.checkpoints.format import save_checkpoint
from protoocc_ros.config import load_config
from protoocc_ros.data.preprocessing import preprocess_camera_set
from protoocc_ros.geometry import make_transform, yaw_matrix
from protoocc_ros.inference.predictor import load_model
from protoocc_ros.layouts import NUSCENES_CAMERAS
from protoocc_ros.model import build_model
from protoocc_ros.ros.inputs.tf_buffer import TfBuffer
from protoocc_ros.ros.publishing import msg_builders as mb
from protoocc_ros.ros.publishing.occupancy_msg import msg_to_grid
from protoocc_ros.ros.runtime.lifecycle import LifecycleClient
from protoocc_ros.ros.runtime.qos import reliable_qos

MODULE = "protoocc_ros.ros.nodes.occupancy_node"
CAMERAS = list(NUSCENES_CAMERAS)
H, W = 48, 88
K = np.array([[40.0, 0.0, 44.0], [0.0, 40.0, 24.0], [0.0, 0.0, 1.0]])
YAWS = {"CAM_FRONT": 0.0, "CAM_FRONT_RIGHT": -0.96, "CAM_FRONT_LEFT": 0.96, "CAM_BACK": math.pi,
        "CAM_BACK_LEFT": 1.9, "CAM_BACK_RIGHT": -1.9}
CAM2EGO = {c: make_transform(yaw_matrix(YAWS[c]) @ OPTICAL, [1.0 * math.cos(YAWS[c]), 1.0 * math.sin(YAWS[c]), 1.6])
           for c in CAMERAS}
CONFIG = {"dataset": {"cameras": CAMERAS, "image_size": [H, W], "grid_size": [40, 40, 16],
                      "point_cloud_range": [-8.0, -8.0, -1.0, 8.0, 8.0, 5.4]},
          "model": {"query_size": [20, 20, 4], "prototypes": {"num_prototypes": 18}}}
S = 1_000_000_000
RSS_LIMIT_MB = 100.0
DISTORTION = {"plumb_bob": [-0.30, 0.10, 0.001, -0.001, 0.0],
              "rational_polynomial": [-0.25, 0.08, 0.0005, 0.0005, 0.0, 0.02, 0.0, 0.0],
              "equidistant": [0.10, -0.05, 0.01, -0.002]}


def image(stamp_ns: int, cam: str, h: int = H, w: int = W) -> np.ndarray:
    rng = np.random.default_rng([stamp_ns % 2**32, zlib.crc32(cam.encode())])
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def info_msg(cam: str, stamp_ns: int, width: int = W, height: int = H, model: str = "plumb_bob",
             d: list[float] | None = None, k: np.ndarray = K) -> CameraInfo:
    msg = mb.camera_info_msg(k, width, height, stamp_ns, mb.optical_frame_id(cam))
    msg.distortion_model = model
    msg.d = list(d if d is not None else [0.0] * 5)
    return msg


def read_rss_mb(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, kb = line.split(":", 1)
            values[key] = int(kb.split()[0]) / 1024.0
    return values


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)


class Battery:
    """The rig (six cameras, TF, raw and compressed publishers) and the node under test."""

    def __init__(self, rig: Rig, node: NodeProcess, model: Any) -> None:
        self.rig, self.node, self.model = rig, node, model
        self.transport = "raw"
        self.compressed = {c: rig.node.create_publisher(CompressedImage, mb.image_topic(c, compressed=True),
                                                        reliable_qos(10)) for c in CAMERAS}
        self.results: dict[str, dict[str, Any]] = {}

    # -- inputs -----------------------------------------------------------------------------------------
    def publish_camera(self, cam: str, stamp_ns: int, rgb: np.ndarray | None = None, info: CameraInfo | None = None,
                       encoding: str = "rgb8", frame_id: str | None = None, data: bytes | None = None,
                       raw: Image | None = None) -> None:
        """CameraInfo (default: the rig's) then the image: ``rgb`` in ``encoding`` / PNG, or ``data`` / ``raw``."""
        from protoocc_ros.ros.inputs.image_conversion import rgb_to_compressed, rgb_to_image

        self.rig.infos[cam].publish(info if info is not None else info_msg(cam, stamp_ns))
        header = mb.header(stamp_ns, mb.optical_frame_id(cam) if frame_id is None else frame_id)
        pixels = image(stamp_ns, cam) if rgb is None else rgb
        if self.transport == "compressed":
            msg = rgb_to_compressed(pixels, "png", header=header)
            if data is not None:
                msg.data = data
            self.compressed[cam].publish(msg)
            return
        if raw is None:
            raw = rgb_to_image(pixels, encoding, header=header)
        raw.header = header
        self.rig.images[cam].publish(raw)

    def publish_set(self, stamp_ns: int, tf: bool = True, skip: tuple[str, ...] = (),
                    **per_camera: dict[str, Any]) -> None:
        if tf:
            self.rig.publish_tf(stamp_ns)
        for cam in CAMERAS:
            if cam not in skip:
                self.publish_camera(cam, stamp_ns, **per_camera.get(cam, {}))

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        return self.rig.counts("dropped messages"), self.rig.counts("dropped")

    # -- expected grids -----------------------------------------------------------------------------------
    def direct_labels(self, stamp_ns: int, images: dict[str, np.ndarray]) -> np.ndarray:
        """ProtoOcc on these images (K, TF of the rig, no temporal memory: the node runs with memory off)."""
        buf = TfBuffer()
        buf.add_message(self.rig.static_msg, static=True)
        cam2ego = [buf.lookup_matrix("base_link", mb.optical_frame_id(c), stamp_ns) for c in CAMERAS]
        batch = preprocess_camera_set([images[c] for c in CAMERAS], [K] * len(CAMERAS), cam2ego, (H, W))
        ego = torch.from_numpy(ego_pose(stamp_ns))
        labels, _, _ = self.model.predict(batch.images[None], batch.lidar2img[None], ego[None],
                                          torch.tensor([stamp_ns / 1e9], dtype=torch.float64), None)
        return labels[0].numpy()

    # -- lifecycle ------------------------------------------------------------------------------------------
    def switch_transport(self, transport: str) -> None:
        if transport == self.transport:
            return
        client = LifecycleClient(self.rig.node, f"/{MAIN}", self.rig.executor)
        assert client.change_state("deactivate") and client.change_state("cleanup"), self.node.output()[-2000:]
        assert self.rig.set_param("image_transport", transport).successful
        assert client.change_state("configure") and client.change_state("activate"), self.node.output()[-2000:]
        self.transport = transport
        pubs = self.compressed if transport == "compressed" else self.rig.images
        assert self.rig.spin_until(lambda: all(p.get_subscription_count() >= 1 for p in pubs.values()), 30.0)


def battery_model(tmp: Path) -> tuple[Path, Path, Any]:
    config_path = tmp / "battery.yaml"
    config_path.write_text(yaml.safe_dump({"base": str(REPO / "config" / "demo.yaml"), **CONFIG}))
    cfg = load_config(config_path)
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():  # varied predictions (see test_occupancy_node.small_model)
        for weight in (p for p in model.parameters() if p.dim() > 1):
            weight.mul_(3.0)
    return config_path, save_checkpoint(tmp / "battery.safetensors", model, cfg), cfg


@pytest.fixture(scope="module")
def battery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Battery]:
    tmp = tmp_path_factory.mktemp("battery")
    config_path, checkpoint, cfg = battery_model(tmp)
    params = params_file(tmp, config_path, checkpoint, **{"memory.enabled": False, "input_reliability": "reliable",
                                                          "inference_queue_size": 8, "log_throttle_s": 60.0})
    node = NodeProcess(MODULE, tmp / "node.log", params_file=params, node_name=MAIN)
    with ros_context() as ctx:
        rig = Rig(ctx, MAIN, cam2ego=CAM2EGO)
        up = lambda: all(p.get_subscription_count() >= 1 for p in rig.images.values()) and MAIN in rig.diag  # noqa: E731
        assert rig.spin_until(up, 90.0), f"node did not come up:\n{node.output()[-3000:]}"
        model = load_model(checkpoint, cfg)
        model.eval()
        yield Battery(rig, node, model)
        code = node.stop()
        rig.executor.shutdown()
        rig.node.destroy_node()
    assert code == 0 and "Traceback" not in node.output(), node.output()[-3000:]


# -- cases ------------------------------------------------------------------------------------------------
Inject = Callable[[Battery, int], None]


@dataclass
class Case:
    name: str
    inject: Inject                       # publishes the bad input at stamp ``slot`` (between two good sets)
    messages: dict[str, int] = field(default_factory=dict)  # expected 'dropped messages' increments
    sets: dict[str, int] = field(default_factory=dict)      # expected 'dropped' (sets) increments
    transport: str = "raw"
    published: tuple[int, ...] = ()      # offsets (ns) from ``slot`` of sets the injection sent that must come out
    check: Callable[[Battery, int], None] | None = None  # more checks after the case (e.g. the grid)
    counted_first: bool = False          # wait for the counts before the next good set (whose TF would heal it)
    settle_s: float = 0.0                # and this long (the next set's TF must not be there to interpolate with)


def crafted_jpeg(width: int, height: int) -> bytes:
    """A 8x8 JPEG whose frame header claims width x height (the 631-byte bomb of the issue)."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    i = 2
    while data[i + 1] != 0xC0:
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    data[i + 5:i + 7], data[i + 7:i + 9] = height.to_bytes(2, "big"), width.to_bytes(2, "big")
    return bytes(data)


def crafted_png(width: int, height: int) -> bytes:
    """A 8x8 PNG whose IHDR (with a valid CRC) claims width x height."""
    data = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    data[16:20], data[20:24] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def distorted(rgb: np.ndarray, model: str) -> np.ndarray:
    """What a camera with this distortion delivers for the pinhole image ``rgb`` (forward model)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    pts = np.stack([xx.ravel(), yy.ravel()], -1)[:, None, :]
    D = np.array(DISTORTION[model])
    undistort = cv2.fisheye.undistortPoints if model == "equidistant" else cv2.undistortPoints
    maps = undistort(pts, K, D, P=K).reshape(H, W, 2).astype(np.float32)
    return cv2.remap(rgb, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def rectified(raw: np.ndarray, model: str) -> np.ndarray:
    """image_proc's rectification of ``raw`` (OpenCV maps, CV_16SC2, bilinear), written out here."""
    D = np.array(DISTORTION[model])
    if model == "equidistant":
        m1, m2 = cv2.fisheye.initUndistortRectifyMap(K, D, np.eye(3), K, (W, H), cv2.CV_16SC2)
    else:
        m1, m2 = cv2.initUndistortRectifyMap(K, D, np.eye(3), K, (W, H), cv2.CV_16SC2)
    return cv2.remap(raw, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def inject_distorted(model: str) -> Inject:
    def inject(b: Battery, slot: int) -> None:
        raw = distorted(image(slot, "CAM_FRONT"), model)
        b.publish_set(slot, CAM_FRONT={"rgb": raw, "info": info_msg("CAM_FRONT", slot, model=model,
                                                                      d=DISTORTION[model])})
    return inject


def check_rectified(model: str) -> Callable[[Battery, int], None]:
    def check(b: Battery, slot: int) -> None:
        raw = distorted(image(slot, "CAM_FRONT"), model)
        images = {c: image(slot, c) for c in CAMERAS}
        node = msg_to_grid(b.rig.grids[slot]).labels
        expected = b.direct_labels(slot, {**images, "CAM_FRONT": rectified(raw, model)})
        as_if_rectified = b.direct_labels(slot, {**images, "CAM_FRONT": raw})
        assert (expected != as_if_rectified).any(), "the distortion must change the grid for this check"
        np.testing.assert_array_equal(node, expected)
    return check


def inject_resolution_change(b: Battery, slot: int) -> None:
    """CAM_FRONT switches to 176x96 at slot + 0.25 s; that CameraInfo arrives before the last 88x48 image."""
    later = slot + S // 4
    big = K.copy()
    big[:2] *= 2.0
    b.rig.publish_tf(slot)
    b.rig.publish_tf(later)
    b.rig.infos["CAM_FRONT"].publish(info_msg("CAM_FRONT", slot))
    b.rig.infos["CAM_FRONT"].publish(info_msg("CAM_FRONT", later, 2 * W, 2 * H, k=big))  # ahead of its image
    b.publish_set(slot, tf=False)
    b.publish_set(later, tf=False, CAM_FRONT={"rgb": image(later, "CAM_FRONT", 2 * H, 2 * W),
                                              "info": info_msg("CAM_FRONT", later, 2 * W, 2 * H, k=big)})


def binned_info(cam: str, stamp_ns: int) -> CameraInfo:
    """What an industrial driver sends for CAM_FRONT streaming a 2W x 2H ROI at offset (40, 20) of a
    (2W + 64) x (2H + 40) sensor with 2x2 binning: the calibration of the full sensor, the image W x H; by
    image_geometry's rule its K is exactly the rig's K."""
    full = np.array([[2 * K[0, 0], 0.0, 2 * K[0, 2] + 40], [0.0, 2 * K[1, 1], 2 * K[1, 2] + 20], [0.0, 0.0, 1.0]])
    msg = info_msg(cam, stamp_ns, 2 * W + 64, 2 * H + 40, k=full)
    msg.binning_x = msg.binning_y = 2
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = 40, 20, 2 * W, 2 * H
    return msg


def check_binned(b: Battery, slot: int) -> None:
    np.testing.assert_array_equal(msg_to_grid(b.rig.grids[slot]).labels,
                                  b.direct_labels(slot, {c: image(slot, c) for c in CAMERAS}))


def inject_refused_distortion(b: Battery, slot: int) -> None:
    assert b.rig.set_param("rectification", "refuse_distorted").successful
    try:
        b.publish_set(slot, CAM_FRONT={"info": info_msg("CAM_FRONT", slot, d=DISTORTION["plumb_bob"])})
        b.rig.spin_until(lambda: b.counts()[0].get("distorted_camera_info", 0) > 0, 3.0)
    finally:
        assert b.rig.set_param("rectification", "rectify").successful


def tf_message(parent: str, child: str, stamp_ns: int, pose: np.ndarray, scale_quaternion: float = 1.0) -> Any:
    msg = mb.tf_message([mb.transform_msg(pose, parent, child, stamp_ns)])
    rot = msg.transforms[0].transform.rotation
    rot.x, rot.y, rot.z, rot.w = (scale_quaternion * v for v in (rot.x, rot.y, rot.z, rot.w))
    return msg


def inject_late_tf(b: Battery, slot: int) -> None:
    """The set at slot, with a valid transform 5 s old (inside the 10 s cache) between its TF and its images."""
    b.rig.publish_tf(slot)
    late = slot - 5 * S - S // 8  # a stamp no other message had
    b.rig.tf_pub.publish(tf_message("odom", "base_link", late, ego_pose(late)))
    b.publish_set(slot, tf=False)


def no_tf_reset(b: Battery, slot: int) -> None:
    resets = b.rig.counts("memory resets")
    assert "tf.time_jump_backwards" not in resets, f"a late transform reset the TF history: {resets}"


def inject_nan_tf(b: Battery, slot: int) -> None:
    pose = ego_pose(slot)
    pose[0, 3] = float("nan")
    b.rig.tf_pub.publish(tf_message("odom", "base_link", slot, pose))
    b.publish_set(slot, tf=False)


def huge_raw(b: Battery, slot: int) -> None:
    msg = Image(height=20000, width=20000, encoding="rgb8", step=60000)
    msg.data = bytes(12)  # claims 1.2 GB
    b.publish_set(slot, CAM_FRONT={"raw": msg})


def late_set(b: Battery, slot: int) -> None:
    """A whole set stamped before the last published one (as after a network stall)."""
    b.publish_set(slot - 3 * S // 4, tf=False)


def repeated_set(b: Battery, slot: int) -> None:
    b.publish_set(slot - S // 2, tf=False)  # the good set just before, again


def bad_info(**fields: Any) -> Inject:
    def inject(b: Battery, slot: int) -> None:
        info = info_msg("CAM_FRONT", slot)
        for name, value in fields.items():
            setattr(info, name, value)
        b.publish_set(slot, CAM_FRONT={"info": info})
    return inject


def encoded(encoding: str) -> Case:
    return Case(f"encoding_{encoding}", lambda b, slot: b.publish_set(
        slot, **{c: {"encoding": encoding} for c in CAMERAS}), published=(0,))


CASES = [
    # memory and time bounds (raw)
    Case("raw_image_claims_20000x20000", huge_raw, {"image_size_mismatch": 1}, {"image_size_mismatch": 1}),
    Case("raw_image_smaller_than_camera_info", lambda b, slot: b.publish_set(
        slot, CAM_BACK={"rgb": image(slot, "CAM_BACK", H // 2, W // 2)}),
        {"image_size_mismatch": 1}, {"image_size_mismatch": 1}),
    Case("unsupported_encoding", lambda b, slot: b.publish_set(slot, CAM_BACK={"raw": _nv21(slot)}),
         {"image_encoding": 1}, {"image_encoding": 1}),
    Case("two_bad_images_in_one_set", lambda b, slot: b.publish_set(
        slot, CAM_BACK={"raw": _nv21(slot)}, CAM_FRONT={"rgb": image(slot, "CAM_FRONT", H // 2, W // 2)}),
        {"image_encoding": 1, "image_size_mismatch": 1}, {"image_size_mismatch": 1}),
    # encodings real cameras send: decoded, the set published, nothing counted
    *(encoded(e) for e in ("bayer_rggb8", "bayer_grbg16", "yuv422", "yuyv", "mono16", "16UC1")),
    # TF that heals
    Case("tf_wrong_way_edge", lambda b, slot: b.rig.tf_pub.publish(
        tf_message("base_link", "odom", slot, np.linalg.inv(ego_pose(slot)))), {"tf_rejected_loop": 1}),
    Case("tf_late_valid_transform", inject_late_tf, published=(0,), settle_s=0.6, check=no_tf_reset),
    Case("tf_unnormalised_quaternion", lambda b, slot: b.rig.tf_pub.publish(
        tf_message("odom", "base_link", slot, ego_pose(slot), scale_quaternion=1.5)),
        {"tf_rejected_unnormalised_quaternion": 1}),
    Case("tf_nan_at_the_set_stamp", inject_nan_tf, {"tf_rejected_nan": 1}, {"tf_stale": 1}, counted_first=True),
    Case("frame_not_in_tf", lambda b, slot: b.publish_set(slot, CAM_BACK={"frame_id": "ghost_optical_frame"}),
         sets={"tf_missing": 1}),
    # CameraInfo as cameras publish it
    Case("camera_info_resolution_change", inject_resolution_change, published=(0, S // 4)),
    Case("camera_info_zero_size", bad_info(width=0, height=0), {"bad_camera_info": 1}, {"bad_camera_info": 1}),
    Case("camera_info_not_pinhole", bad_info(k=[0.0] * 9), {"bad_camera_info": 1}, {"bad_camera_info": 1}),
    *(Case(f"camera_info_{m}_rectified", inject_distorted(m), published=(0,), check=check_rectified(m))
      for m in ("plumb_bob", "rational_polynomial", "equidistant")),
    Case("camera_info_binning_2_and_roi", lambda b, slot: b.publish_set(
        slot, CAM_FRONT={"info": binned_info("CAM_FRONT", slot)}), published=(0,), check=check_binned),
    Case("camera_info_distorted_refused", inject_refused_distortion,
         {"distorted_camera_info": 1}, {"distorted_camera_info": 1}),
    # counting exactly once
    Case("repeated_set", repeated_set, {"out_of_order": 6}, {"out_of_order_set": 1}),
    Case("set_older_than_the_last", late_set, {"out_of_order": 6}, {"out_of_order_set": 1}),
    Case("camera_80ms_late", lambda b, slot: b.publish_set(slot, skip=("CAM_BACK_RIGHT",)) or b.publish_camera(
        "CAM_BACK_RIGHT", slot + 80_000_000), {"unmatched": 1}, {"incomplete_set": 1}),
    Case("camera_stamped_zero", lambda b, slot: b.publish_set(slot, skip=("CAM_BACK",)) or b.publish_camera(
        "CAM_BACK", 0), {"out_of_order": 1}, {"incomplete_set": 1}),
    Case("camera_missing", lambda b, slot: b.publish_set(slot, skip=("CAM_FRONT_LEFT",)), sets={"incomplete_set": 1}),
    # compressed images (the node is reconfigured once)
    Case("jpeg_claims_20000x20000", lambda b, slot: b.publish_set(slot, CAM_FRONT={"data": crafted_jpeg(20000, 20000)}),
         {"image_size_mismatch": 1}, {"image_size_mismatch": 1}, transport="compressed"),
    Case("png_claims_20000x20000", lambda b, slot: b.publish_set(slot, CAM_FRONT={"data": crafted_png(20000, 20000)}),
         {"image_size_mismatch": 1}, {"image_size_mismatch": 1}, transport="compressed"),
    Case("jpeg_and_camera_info_claim_20000x20000", lambda b, slot: b.publish_set(
        slot, CAM_FRONT={"data": crafted_jpeg(20000, 20000), "info": info_msg("CAM_FRONT", slot, 20000, 20000)}),
        {"bad_camera_info": 1}, {"bad_camera_info": 1}, transport="compressed"),
    Case("compressed_not_jpeg_or_png", lambda b, slot: b.publish_set(
        slot, CAM_FRONT={"data": cv2.imencode(".bmp", image(slot, "CAM_FRONT"))[1].tobytes()}),
        {"image_encoding": 1}, {"image_encoding": 1}, transport="compressed"),
]


def _nv21(slot: int) -> Image:
    msg = Image(height=H, width=W, encoding="nv21", step=W)
    msg.data = bytes(W * H * 3 // 2)
    return msg


def changed(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_is_counted_once_and_good_sets_go_on(battery: Battery, case: Case) -> None:
    b, rig = battery, battery.rig
    b.switch_transport(case.transport)
    good = [rig.next_stamp()]
    b.publish_set(good[0])
    rig.wait_grid(good[0], 20.0)
    rig.spin_until(lambda: False, 0.5)  # the report after that set
    before = b.counts()
    pid = b.node.proc.pid
    reset_peak(pid)
    rss0 = read_rss_mb(pid)["VmRSS"]
    slot = rig.next_stamp()
    case.inject(b, slot)
    expected = (case.messages, case.sets)
    if case.counted_first:
        rig.spin_until(lambda: tuple(changed(a, bf) for a, bf in zip(b.counts(), before)) == expected, 6.0)
    rig.spin_until(lambda: False, case.settle_s)
    good.append(rig.next_stamp())
    b.publish_set(good[1])
    published = {stamp: rig.spin_until(lambda stamp=stamp: stamp in rig.grids, 20.0) for stamp in good[1:]
                 + [slot + offset for offset in case.published]}
    rig.spin_until(lambda: tuple(changed(a, bf) for a, bf in zip(b.counts(), before)) == expected, 6.0)
    rig.spin_until(lambda: False, 0.6)  # nothing more may be counted
    got = tuple(changed(a, bf) for a, bf in zip(b.counts(), before))
    peak = read_rss_mb(pid)["VmHWM"] - rss0
    alive = b.node.running()
    b.results[case.name] = {"messages": (sum(case.messages.values()), sum(got[0].values())),
                            "sets": (sum(case.sets.values()), sum(got[1].values())),
                            "good_published": 1 + sum(published.values()), "good": 1 + len(published),
                            "peak_rss_growth_mb": peak, "alive": alive, "ok": False}
    assert alive, b.node.output()[-3000:]
    assert peak < RSS_LIMIT_MB, f"{case.name}: peak RSS grew {peak:.0f} MB"
    assert all(published.values()), f"{case.name}: not published {[s for s, ok in published.items() if not ok]}, " \
                                    f"drops {got}\n{b.node.output()[-1500:]}"
    assert got == expected, f"{case.name}: counted (messages, sets) {got}, injected {expected}"
    if case.check is not None:
        case.check(b, slot)
    b.results[case.name]["ok"] = True


def test_battery_totals(battery: Battery) -> None:
    """The summary of the cases above: injected = counted per family, good sets published, RSS, node alive."""
    res = battery.results  # the cases that ran (all of them in the full suite; a subset under -k)
    assert res, "no battery case ran before the totals"
    lines = [f"{'case':42s} {'messages inj/cnt':>17s} {'sets inj/cnt':>13s} {'good sets':>10s} {'peak RSS MB':>12s}"]
    for name, r in res.items():
        lines.append(f"{name:42s} {r['messages'][0]:>8d}/{r['messages'][1]:<8d} {r['sets'][0]:>6d}/{r['sets'][1]:<6d} "
                     f"{r['good_published']:>4d}/{r['good']:<5d} {r['peak_rss_growth_mb']:>12.1f}")
    total = {f: tuple(sum(r[f][i] for r in res.values()) for i in (0, 1)) for f in ("messages", "sets")}
    good = (sum(r["good_published"] for r in res.values()), sum(r["good"] for r in res.values()))
    peak = max(r["peak_rss_growth_mb"] for r in res.values())
    lines.append(f"TOTAL {len(res)} cases: messages injected {total['messages'][0]} counted {total['messages'][1]}; "
                 f"sets injected {total['sets'][0]} counted {total['sets'][1]}; good sets published "
                 f"{good[0]}/{good[1]}; max peak RSS growth {peak:.1f} MB; node alive {battery.node.running()}")
    print("\n" + "\n".join(lines))
    assert all(r["ok"] for r in res.values())
    assert total["messages"][0] == total["messages"][1] and total["sets"][0] == total["sets"][1]
    assert good[0] == good[1] and peak < RSS_LIMIT_MB and battery.node.running()
