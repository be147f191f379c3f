"""protoocc-export: a checkpoint's inference graph to ONNX, with its temporal memory, checked against PyTorch.

    protoocc-export                                                   # bundled demo checkpoint -> protoocc_demo.onnx
    protoocc-export --checkpoint runs/occ3d/last.safetensors --output occ3d.onnx --set dataset.dataroot=/data/nuscenes
    protoocc-export --single-frame                                    # no memory: every call a first frame

The default graph (protoocc_ros.export.temporal) takes the memory as inputs and returns it
(prev_features, prev_valid, ego_motion -> logits, features); the reset rules stay with the caller
(OccupancyPredictor's onnxruntime backend, occupancy_node ``backend:=onnxruntime``). It is fixed to the
config's camera count and image size and to K query slots per camera: the largest per-camera hit count
of the example frame (the first frame of ``--split``) times 1 + ``--rig-margin``, or every query pillar
with ``--any-rig`` (any calibration, slower). Export with frames of the rig the graph will run on.

Check: the whole scene ``--check-scene`` (default: the first scene of ``--split``, held out from training)
runs frame by frame through ONNX Runtime and through ProtoOcc.forward with its TemporalMemory; per frame
the max |ONNX - PyTorch| of the logits, the argmax agreement and the reset reasons are printed and stored.
Exit code 1 when a frame agrees on fewer than ``--min-agreement`` of the voxels. ``<output>.json`` records
the inputs and outputs, normalisation, cameras, image size, grid, classes, K, opset and the check.
Exit code 2: bad checkpoint, config or data.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from protoocc_ros.checkpoints.format import (
    CheckpointError,
    check_checkpoint_path,
    default_checkpoint_path,
    load_checkpoint,
    read_metadata,
    runtime_config,
)
from protoocc_ros.classes import class_table
from protoocc_ros.config import ConfigError, ProtoOccConfig, config_to_dict
from protoocc_ros.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from protoocc_ros.export import (
    DEFAULT_OPSET,
    ExportError,
    TemporalOnnxRunner,
    compare_sequence,
    compare_with_pytorch,
    export_onnx,
    export_temporal_onnx,
    max_hits_for,
    onnx_session,
)
from protoocc_ros.training.errors import TrainingError

PROG = "protoocc-export"
Frame = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # images, lidar2img, ego2global, timestamp


def scene_frames(cfg: ProtoOccConfig, split: str, scene: str | None, limit: int = 0) -> tuple[str, list[Frame]]:
    """(scene name, its frames in time order) of ``split``: images (1, N, 3, H, W), lidar2img (1, N, 4, 4) f32,
    ego2global (1, 4, 4) f64, timestamp (1,) f64 s. ``scene`` None = the first scene; ``limit`` > 0 = at most so
    many frames."""
    from protoocc_ros.data import build_dataset

    dataset = build_dataset(cfg, split)
    scenes = dataset.scenes()
    if not scenes:
        raise ConfigError(f"dataset {cfg.dataset.dataroot!r} split {split!r} has no frames")
    name = scenes[0] if scene is None else scene
    if name not in scenes:
        raise ConfigError(f"--check-scene {name!r}: not a scene of split {split!r} (scenes: {scenes})")
    indices = dataset.scene_indices(name)
    frames = []
    for i in indices[:limit] if limit > 0 else indices:
        s = dataset[i]
        frames.append((s["images"][None].float(), torch.as_tensor(s["lidar2img"])[None].float(),
                       torch.as_tensor(s["ego2global"], dtype=torch.float64)[None],
                       torch.tensor([float(s["timestamp"])], dtype=torch.float64)))
    return name, frames


def sidecar(cfg: ProtoOccConfig, checkpoint: Path, output: Path, opset: int, split: str, temporal: bool,
            max_hits: int | None, check: dict[str, Any]) -> dict[str, Any]:
    """What a deployment needs to feed and read the graph."""
    d, m = cfg.dataset, cfg.model
    table = class_table(d.num_classes, d.class_names, d.free_label)
    h, w, z = m.query_size
    inputs = {"images": "float32 (1, N, 3, H, W): RGB resized to image_size, (x - mean) / std on 0..255",
              "mean": IMAGENET_MEAN.tolist(), "std": IMAGENET_STD.tolist(),
              "lidar2img": "float32 (1, N, 4, 4), ego (base_link) -> pixel of the resized image: "
                           "diag(sx, sy, 1, 1) @ K4 @ inv(cam2ego)"}
    outputs = {"logits": f"float32 (1, {d.num_classes}, {d.grid_size[0]}, {d.grid_size[1]}, {d.grid_size[2]}); "
                         "argmax over dim 1 = label, max softmax = confidence"}
    if temporal:
        inputs.update({
            "prev_features": f"float32 (1, {m.embed_dims}, {h}, {w}, {z}): 'features' of the previous frame; zeros "
                             "when prev_valid is 0",
            "prev_valid": "float32 (1,): 1 = use the memory, 0 = start fresh (first frame, or a reset rule fired)",
            "ego_motion": "float64 (1, 4, 4): inv(ego2global_prev) @ ego2global_cur (current ego -> previous ego); "
                          "identity when prev_valid is 0"})
        outputs["features"] = f"float32 (1, {m.embed_dims}, {h}, {w}, {z}): the memory for the next frame"
    t = m.temporal
    return {"onnx": output.name, "graph": "temporal" if temporal else "single_frame", "opset": opset,
            "checkpoint": str(checkpoint), "weights_sha256": read_metadata(checkpoint).get("weights_sha256"),
            "inputs": inputs, "outputs": outputs,
            "reset_rules": (f"caller side: first frame, time backwards, gap > {t.memory_max_gap_s} s, ego jump > "
                            f"{t.memory_max_pose_jump_m} m (TemporalMemory.reset_reasons)") if temporal else None,
            "max_hits_per_camera": max_hits,
            "cameras": list(d.cameras), "image_size": list(d.image_size), "grid_size": list(d.grid_size),
            "point_cloud_range": list(d.point_cloud_range), "voxel_size": d.voxel_size,
            "class_names": list(table.names), "free_label": table.free_label,
            "example_frames": f"{d.dataroot} / {split}", "check": check,
            "config": config_to_dict(cfg), "command": f"{PROG} " + shlex.join(sys.argv[1:])}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None, help="a .safetensors checkpoint (default: the bundled demo one)")
    p.add_argument("--config", default=None, help="config YAML or name; default: the config stored in the checkpoint")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable (e.g. --set dataset.dataroot=/data/nuscenes)")
    p.add_argument("--split", default="val", help="split of the example frame and the checked scene (default: val)")
    p.add_argument("--output", type=Path, default=None, help="ONNX path (default: <checkpoint name>.onnx here)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= 20; default {DEFAULT_OPSET})")
    p.add_argument("--single-frame", action="store_true", help="export the graph without temporal memory")
    p.add_argument("--rig-margin", type=float, default=0.1,
                   help="query slots per camera = largest hit count of the example frame x (1 + margin)")
    p.add_argument("--any-rig", action="store_true", help="a slot for every query pillar: any calibration, slower")
    p.add_argument("--check-scene", default=None,
                   help="scene of --split run through ONNX Runtime and PyTorch (default: its first); 'none' = no check")
    p.add_argument("--check-frames", type=int, default=0, help="at most this many frames of the scene (0 = all)")
    p.add_argument("--min-agreement", type=float, default=0.999, help="least argmax agreement per frame that passes")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.opset < 20:
        print(f"{PROG}: error: --opset {args.opset}: the graph needs opset >= 20 (5-D GridSample)", file=sys.stderr)
        return 2
    check_scene = None if args.check_scene in (None, "none") else args.check_scene
    try:
        ckpt = check_checkpoint_path(args.checkpoint if args.checkpoint else default_checkpoint_path())
        cfg = runtime_config(ckpt, args.config, args.overrides)
        model, _ = load_checkpoint(ckpt, cfg, device="cpu")
        model.eval()
        limit = 1 if args.check_scene == "none" else args.check_frames
        scene, frames = scene_frames(cfg, args.split, check_scene, limit)
        output = args.output or Path(ckpt.with_suffix(".onnx").name)
        images, lidar2img = frames[0][:2]
        t0 = time.monotonic()
        max_hits = None
        if args.single_frame:
            export_onnx(model, images, lidar2img, output, args.opset)
        else:
            import math

            max_hits = (math.prod(cfg.model.query_size) if args.any_rig
                        else max_hits_for(cfg, lidar2img, args.rig_margin))
            export_temporal_onnx(model, images, lidar2img, output, max_hits, args.opset)
        print(f"exported {output} ({output.stat().st_size / 2**20:.1f} MB, {time.monotonic() - t0:.1f} s): "
              f"{'single-frame' if args.single_frame else f'temporal, {max_hits} query slots per camera'}, "
              f"{cfg.num_cameras} cameras x {cfg.image_size[0]}x{cfg.image_size[1]}, grid {cfg.dataset.grid_size}")
        checks: list[dict[str, Any]] = []
        if args.check_scene != "none":
            session = onnx_session(output, threads=torch.get_num_threads())
            if args.single_frame:
                checks = compare_with_pytorch(session, model, [f[:2] for f in frames])
            else:
                checks = compare_sequence(TemporalOnnxRunner(session, cfg, output), model, frames)
    except (CheckpointError, ConfigError, TrainingError, ExportError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    check = {"scene": scene if checks else None, "split": args.split, "frames": checks,
             "min_argmax_agreement": min((c["argmax_agreement"] for c in checks), default=None),
             "max_abs_diff": max((c["max_abs_diff"] for c in checks), default=None)}
    meta = output.with_suffix(".json")
    meta.write_text(json.dumps(sidecar(cfg, ckpt, output, args.opset, args.split, not args.single_frame, max_hits,
                                       check), indent=2) + "\n")
    if checks:
        print(f"check: scene {scene} of {args.split}, {len(checks)} frames, ONNX Runtime vs PyTorch"
              + ("" if args.single_frame else " (memory carried by each, reset rules in the caller)"))
    for c in checks:
        reset = f", memory {c['reset_reason'] or 'used'}" if "reset_reason" in c else ""
        print(f"frame {c['frame']}: max |ONNX - PyTorch| {c['max_abs_diff']:.2e} (logits up to "
              f"{c['max_abs_logit']:.2f}), argmax agreement {100 * c['argmax_agreement']:.4f} %{reset}")
    print(f"metadata: {meta}")
    mismatched = [c["frame"] for c in checks if c.get("reset_reason", 0) != c.get("onnx_reset_reason", 0)]
    worst = check["min_argmax_agreement"]
    if mismatched or (worst is not None and worst < args.min_agreement):
        print(f"{PROG}: ONNX Runtime and PyTorch disagree: argmax agreement {worst:.4f} (least accepted "
              f"{args.min_agreement}), reset reasons differ on frames {mismatched}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
