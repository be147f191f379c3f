"""protoocc-demo: the README's main job — the embedded synthetic sample through the real nodes over DDS.

    replay_node (held-out synthetic scenes, /tf, /tf_static, CameraInfo, /clock, ground truth)
      -> occupancy_node (demo config + bundled checkpoint)
      -> evaluation_node (running Occ3D mIoU, JSON report, BEV renders)
    replay_node also records the occupancy node's outputs to a rosbag2 (mcap) file, from which the
    markers' 3D view is rendered at the end.

Each node runs in its own process, exactly as `ros2 launch protoocc_ros demo.launch.py` starts them on a
ROS install. Outputs land in --output-dir (default outputs/demo); the paths are printed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from protoocc_ros.package_files import find_package_file

MARKERS_TOPIC = "/occupancy_node/markers"
GRID_TOPIC = "/occupancy_node/occupancy"
VOXELS_TOPIC = "/occupancy_node/occupied_voxels"


class DemoError(RuntimeError):
    """The demo pipeline could not run; the message says which step and where its log is."""


def _shipped(name: str) -> Path:
    """A parameter file of the package's config/ folder (checkout or install)."""
    path = find_package_file("config", name)
    if path is None:
        raise DemoError(f"config/{name} is not installed with protoocc_ros (reinstall the package)")
    return path


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="protoocc-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="outputs/demo", help="where results are written")
    parser.add_argument("--config", default="", help="config (a YAML path or a shipped name); '' = the checkpoint's")
    parser.add_argument("--checkpoint", default="", help="checkpoint (.safetensors); empty = bundled demo weights")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--max-frames", type=int, default=0, help="replay at most this many frames (0 = all)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    return parser.parse_args(argv)


def _last_recorded(bag_path: Path, topic: str, has_content: Callable[[Any], bool]) -> Any:
    """The last message on ``topic`` in the bag for which ``has_content(msg)`` is true (None if there is none)."""
    from protoocc_ros.ros.replay import bag_io

    if topic not in bag_io.bag_topics(bag_path):
        return None
    last = None
    for record in bag_io.read_bag(bag_path, topics=[topic]):
        msg = bag_io.deserialize(record)
        if has_content(msg):
            last = msg
    return last


def _render_markers_view(bag_path: Path, out_png: Path) -> Path | None:
    """3D render of the last non-empty MarkerArray recorded in ``bag_path`` (what RViz shows).

    Falls back to the recorded occupied-voxel cloud (same voxels, coloured by label) when no markers
    were recorded, e.g. when the recording stopped before the last frame's markers were built.
    """
    from protoocc_ros.classes import OCC3D_COLORS
    from protoocc_ros.render import render_voxels_3d
    from protoocc_ros.ros.publishing.pointcloud import read_points

    markers = _last_recorded(bag_path, MARKERS_TOPIC, lambda m: any(mk.points for mk in m.markers))
    if markers is not None:
        centers, colors = [], []
        for marker in markers.markers:
            if marker.points:
                pts = np.array([[p.x, p.y, p.z] for p in marker.points], dtype=np.float32)
                rgb = (np.array([marker.color.r, marker.color.g, marker.color.b]) * 255).astype(np.uint8)
                centers.append(pts)
                colors.append(np.broadcast_to(rgb, pts.shape))
        return render_voxels_3d(out_png, np.concatenate(centers), np.concatenate(colors),
                                title="occupancy_node markers (last frame of the replay)")
    cloud = _last_recorded(bag_path, VOXELS_TOPIC, lambda m: m.width * m.height > 0)
    if cloud is None:
        return None
    points = read_points(cloud)
    centers = np.stack([points["x"], points["y"], points["z"]], axis=1)
    colors = OCC3D_COLORS[np.minimum(points["label"], len(OCC3D_COLORS) - 1)]
    return render_voxels_3d(out_png, centers, colors, title="occupancy_node occupied voxels (last frame of the replay)")


def _render_cameras_and_bev(bag_path: Path, dataroot: Path, out_png: Path) -> Path | None:
    """The six camera images of the last evaluated frame beside its BEV prediction and ground truth (the
    layout of the paper's Fig. 3): the prediction from the recording, images and ground truth from the sample."""
    from protoocc_ros.data.occ3d_nuscenes import Occ3DNuScenesDataset, nuscenes_version
    from protoocc_ros.render import render_cameras_and_bev
    from protoocc_ros.ros.publishing.msg_builders import seconds_to_ns
    from protoocc_ros.ros.publishing.occupancy_msg import msg_to_grid

    grid_msg = _last_recorded(bag_path, GRID_TOPIC, lambda m: len(m.labels) > 0)
    if grid_msg is None:
        return None
    pred = msg_to_grid(grid_msg)
    dataset = Occ3DNuScenesDataset(dataroot, nuscenes_version(dataroot), split="val")  # images at the stored size
    index = next((i for i, f in enumerate(dataset.frames) if seconds_to_ns(f.timestamp) == pred.stamp_ns), None)
    if index is None:
        return None
    sample = dataset[index]
    return render_cameras_and_bev(out_png, list(sample["raw_images"]), list(dataset.cameras), pred.labels,
                                  np.asarray(sample["semantics"]), np.asarray(sample["mask_camera"]),
                                  title=f"{sample['scene']} frame {sample['frame_index']}: what the six cameras see, "
                                        "and the occupancy_node prediction vs ground truth (camera mask)")


def _wait_for_pipeline(nodes: dict, finishers: tuple[str, ...], timeout_s: float) -> None:
    """Poll the node processes until every one in ``finishers`` exited 0; fail fast when any node fails."""
    deadline = time.monotonic() + timeout_s
    while True:
        for name, node in nodes.items():
            code = node.proc.poll()
            if code is not None and (code != 0 or name not in finishers):
                raise DemoError(f"{name} stopped (exit code {code}); log: {node.log_path}\n{node.output()[-2000:]}")
        if all(nodes[name].proc.poll() == 0 for name in finishers):
            return
        if time.monotonic() > deadline:
            raise DemoError(f"the pipeline did not finish within {timeout_s:.0f} s; logs: "
                            f"{', '.join(str(n.log_path) for n in nodes.values())}")
        time.sleep(0.5)


def run_demo(args: argparse.Namespace) -> dict:
    """Start the three nodes, wait for the replay and the evaluation to finish, render; returns the summary."""
    from protoocc_ros.checkpoints.format import default_checkpoint_path
    from protoocc_ros.data.synthetic import ensure_sample
    from protoocc_ros.ros.runtime.dds import dds_profile_env
    from protoocc_ros.tools.processes import NodeProcess

    out = Path(args.output_dir).resolve()
    logs = out / "logs"
    out.mkdir(parents=True, exist_ok=True)
    dataroot = ensure_sample()
    bundled = default_checkpoint_path()
    checkpoint = args.checkpoint or (str(bundled) if bundled.is_file() else "")
    print(f"protoocc-demo: synthetic sample {dataroot}\nprotoocc-demo: checkpoint "
          f"{checkpoint or 'NONE (bundled weights missing: random initialisation, expect chance-level mIoU)'}",
          flush=True)
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
           **dds_profile_env()}
    recording = out / "recording"
    if recording.exists():
        import shutil
        shutil.rmtree(recording)

    evaluation = NodeProcess("protoocc_ros.ros.nodes.evaluation_node", logs / "evaluation_node.log",
                             params_file=_shipped("evaluation_node.yaml"),
                             params={"output_dir": str(out / "evaluation")}, env=env)
    occupancy = NodeProcess("protoocc_ros.ros.nodes.occupancy_node", logs / "occupancy_node.log",
                            params_file=_shipped("occupancy_node.yaml"),
                            params={"config_file": args.config, "checkpoint": checkpoint, "device": args.device,
                                    "input_reliability": "reliable"},
                            env=env)
    replay = NodeProcess("protoocc_ros.ros.nodes.replay_node", logs / "replay_node.log",
                         params_file=_shipped("replay_demo.yaml"),
                         params={"dataroot": str(dataroot), "record_path": str(recording), "record_drain_s": 3.0,
                                 "max_frames": args.max_frames}, env=env)
    nodes = {"replay_node": replay, "occupancy_node": occupancy, "evaluation_node": evaluation}
    started = time.monotonic()
    try:
        _wait_for_pipeline(nodes, finishers=("replay_node", "evaluation_node"), timeout_s=args.timeout)
    finally:
        for node in nodes.values():
            node.stop()
    elapsed = time.monotonic() - started
    report_path = out / "evaluation" / "evaluation.json"
    if not report_path.exists():
        raise DemoError(f"evaluation_node wrote no report at {report_path}; log: {evaluation.log_path}")
    report = json.loads(report_path.read_text())
    if not report.get("counts", {}).get("paired") or report.get("results") is None:
        raise DemoError(f"evaluation_node paired no prediction with its ground truth (counts {report.get('counts')}); "
                        f"logs: {', '.join(str(n.log_path) for n in nodes.values())}")
    markers_png = _render_markers_view(recording, out / "markers_view.png")
    cameras_png = _render_cameras_and_bev(recording, dataroot, out / "cameras_and_bev.png")
    summary = {
        "frames_replayed": report.get("replay", {}).get("frames"),
        "frames_evaluated": report["counts"]["paired"],
        "replay_resends": report.get("replay", {}).get("resends"),
        "miou": report["results"]["miou"],
        "per_class_iou": report["results"]["per_class_iou"],
        "seconds": round(elapsed, 1),
        "report": str(report_path),
        "renders": [*sorted(str(p) for p in (out / "evaluation").glob("*.png")),
                    *[str(p) for p in (markers_png, cameras_png) if p]],
        "recording": str(recording),
        "logs": str(logs),
        "checkpoint": checkpoint,
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        summary = run_demo(args)
    except DemoError as exc:
        print(f"protoocc-demo: FAILED: {exc}", file=sys.stderr)
        return 1
    miou = summary["miou"]
    print(f"protoocc-demo: {summary['frames_replayed']} held-out frames replayed through occupancy_node in "
          f"{summary['seconds']} s, {summary['frames_evaluated']} evaluated; "
          f"mIoU {100 * miou:.2f} % (Occ3D, camera mask)")
    print(f"protoocc-demo: report     {summary['report']}")
    for png in summary["renders"]:
        print(f"protoocc-demo: render     {png}")
    print(f"protoocc-demo: recording  {summary['recording']} (rosbag2, mcap)")
    print(f"protoocc-demo: node logs  {summary['logs']}")
    print(f"protoocc-demo: summary    {Path(args.output_dir) / 'demo_summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
