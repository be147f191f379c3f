"""protoocc-export: a checkpoint's single-frame inference graph to ONNX, checked against PyTorch with ONNX Runtime.

    protoocc-export                                                   # bundled demo checkpoint -> protoocc_demo.onnx
    protoocc-export --checkpoint runs/occ3d/last.safetensors --output occ3d.onnx --set dataset.dataroot=/data/nuscenes

The graph (protoocc_ros.export) is fixed to the config's camera count and image size and to the rig
of the example frame, the first frame of ``--split`` of the config's dataset: its lidar2img sets how
many query pillars each camera can see. Export with frames of the rig the graph will run on. The
temporal memory is not part of the graph (every call is a first frame).

After the export the graph runs under ONNX Runtime on the example frame and on ``--check-frames - 1``
more frames and is compared with PyTorch; exit code 1 when the argmax labels agree on fewer than
``--min-agreement`` of the voxels. ``<output>.json`` records the config, cameras, image size, classes,
opset and the check. Exit code 2: bad checkpoint, config or data.
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

from protoocc_ros.config import ConfigError, ProtoOccConfig, config_to_dict
from protoocc_ros.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from protoocc_ros.export import DEFAULT_OPSET, ExportError, compare_with_pytorch, export_onnx, onnx_session
from protoocc_ros.training.checkpoint import (
    CheckpointError,
    check_checkpoint_path,
    default_checkpoint_path,
    load_checkpoint,
    runtime_config,
)
from protoocc_ros.training.errors import TrainingError

PROG = "protoocc-export"


def example_inputs(cfg: ProtoOccConfig, split: str, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(images (1, N, 3, H, W), lidar2img (1, N, 4, 4) float32) of the first ``count`` frames of a split."""
    from protoocc_ros.data import build_dataset

    dataset = build_dataset(cfg, split)
    if len(dataset) == 0:
        raise ConfigError(f"dataset {cfg.dataset.dataroot!r} split {split!r} has no frames")
    frames = []
    for i in range(min(count, len(dataset))):
        sample = dataset[i]
        frames.append((sample["images"][None].float(), torch.as_tensor(sample["lidar2img"])[None].float()))
    return frames


def sidecar(cfg: ProtoOccConfig, checkpoint: Path, output: Path, opset: int, split: str,
            checks: list[dict]) -> dict[str, Any]:
    """What a deployment needs to feed and read the graph."""
    d = cfg.dataset
    return {"onnx": output.name, "checkpoint": str(checkpoint), "opset": opset,
            "inputs": {"images": "float32 (1, N, 3, H, W): RGB resized to image_size, (x - mean) / std",
                       "mean": IMAGENET_MEAN.tolist(), "std": IMAGENET_STD.tolist(),
                       "lidar2img": "float32 (1, N, 4, 4), ego (base_link) -> pixel of the resized image"},
            "outputs": {"logits": f"float32 (1, {d.num_classes}, {d.grid_size[0]}, {d.grid_size[1]}, "
                                  f"{d.grid_size[2]}); argmax over dim 1 = label"},
            "cameras": list(d.cameras), "image_size": list(d.image_size), "grid_size": list(d.grid_size),
            "point_cloud_range": list(d.point_cloud_range), "class_names": list(d.class_names or []),
            "temporal_memory": False, "example_frames": f"{d.dataroot} / {split}", "checks": checks,
            "config": config_to_dict(cfg),
            "command": f"{PROG} " + shlex.join(sys.argv[1:])}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None, help="a .safetensors checkpoint (default: the bundled demo one)")
    p.add_argument("--config", default=None, help="config YAML or name; default: the config stored in the checkpoint")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable (e.g. --set dataset.dataroot=/data/nuscenes)")
    p.add_argument("--split", default="val", help="split whose first frame is the export example (default: val)")
    p.add_argument("--output", type=Path, default=None, help="ONNX path (default: <checkpoint name>.onnx here)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= 20; default {DEFAULT_OPSET})")
    p.add_argument("--check-frames", type=int, default=2, help="frames compared with PyTorch (0 = no check)")
    p.add_argument("--min-agreement", type=float, default=0.999, help="least argmax agreement that passes")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.opset < 20:
        print(f"{PROG}: error: --opset {args.opset}: the graph needs opset >= 20 (5-D GridSample)", file=sys.stderr)
        return 2
    try:
        ckpt = check_checkpoint_path(args.checkpoint if args.checkpoint else default_checkpoint_path())
        cfg = runtime_config(ckpt, args.config, args.overrides)
        model, _ = load_checkpoint(ckpt, cfg, device="cpu")
        frames = example_inputs(cfg, args.split, max(args.check_frames, 1))
        output = args.output or Path(ckpt.with_suffix(".onnx").name)
        t0 = time.monotonic()
        export_onnx(model, *frames[0], output, args.opset)
        print(f"exported {output} ({output.stat().st_size / 2**20:.1f} MB, {time.monotonic() - t0:.1f} s): "
              f"{cfg.num_cameras} cameras x {cfg.image_size[0]}x{cfg.image_size[1]}, grid {cfg.dataset.grid_size}")
        checks = []
        if args.check_frames > 0:
            checks = compare_with_pytorch(onnx_session(output), model, frames[:args.check_frames])
    except (CheckpointError, ConfigError, TrainingError, ExportError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    meta = output.with_suffix(".json")
    meta.write_text(json.dumps(sidecar(cfg, ckpt, output, args.opset, args.split, checks), indent=2) + "\n")
    for c in checks:
        print(f"frame {c['frame']}: max |ONNX - PyTorch| {c['max_abs_diff']:.2e} (logits up to "
              f"{c['max_abs_logit']:.2f}), argmax agreement {100 * c['argmax_agreement']:.3f} %")
    print(f"metadata: {meta}")
    worst = min((c["argmax_agreement"] for c in checks), default=1.0)
    if worst < args.min_agreement:
        print(f"{PROG}: ONNX Runtime and PyTorch disagree: argmax agreement {worst:.4f} < {args.min_agreement}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
