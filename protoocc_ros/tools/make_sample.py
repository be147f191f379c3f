"""protoocc-make-sample: generate the synthetic sample (docs/architecture.md "Data") as a nuScenes + Occ3D dataroot
with a
SemanticKITTI-format variant in ``<out>/semantic_kitti``.

Default: 8 training + 2 validation scenes x 10 keyframes (2 Hz), six 180x320 JPEG cameras, Occ3D 200x200x16
ground truth, plus SemanticKITTI sequences 00 / 08 with 4 frames each; about 70 MB, generated in well under a
minute on two CPU cores. Without --out it fills the cache used by ``dataset.dataroot: synthetic``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from protoocc_ros.data.errors import DatasetError
from protoocc_ros.data.synthetic.sample import SampleConfig, default_root, ensure_sample, generate_sample


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HxW, e.g. 180x320") from exc
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError(f"{text!r}: height and width must be >= 16")
    return h, w


def build_parser() -> argparse.ArgumentParser:
    d = SampleConfig()
    p = argparse.ArgumentParser(prog="protoocc-make-sample", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="output directory (new or empty); default: the sample cache "
                                 f"({default_root(0).parent}/synthetic-v1-seed<seed>)")
    p.add_argument("--seed", type=int, default=d.seed, help="generator seed (default %(default)s)")
    p.add_argument("--train-scenes", type=int, default=d.train_scenes, help="default %(default)s")
    p.add_argument("--val-scenes", type=int, default=d.val_scenes, help="default %(default)s")
    p.add_argument("--frames", type=int, default=d.frames_per_scene, help="keyframes per scene (default %(default)s)")
    p.add_argument("--image-size", type=_size, default=d.image_size, help="stored camera images HxW (default 180x320)")
    p.add_argument("--version", default=d.version, help="nuScenes version folder (default %(default)s)")
    p.add_argument("--no-kitti", action="store_true", help="skip the SemanticKITTI-format variant")
    p.add_argument("--kitti-frames", type=int, default=d.kitti_frames, help="frames per KITTI sequence "
                                                                             "(default %(default)s)")
    p.add_argument("--kitti-image-size", type=_size, default=d.kitti_image_size, help="default 120x400")
    p.add_argument("--workers", type=int, default=0, help="processes (0 = up to 4, 1 = no subprocesses)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("train_scenes", "frames", "kitti_frames"):
        if getattr(args, name) < 1:
            print(f"protoocc-make-sample: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    cfg = SampleConfig(seed=args.seed, train_scenes=args.train_scenes, val_scenes=max(args.val_scenes, 0),
                       frames_per_scene=args.frames, image_size=args.image_size, version=args.version,
                       kitti=not args.no_kitti, kitti_frames=args.kitti_frames,
                       kitti_image_size=args.kitti_image_size, workers=args.workers)
    if args.val_scenes < 1:
        cfg.kitti_sequences = {"00": "train"}
    default = SampleConfig(seed=cfg.seed, workers=cfg.workers)
    if not args.out and cfg != default:
        print("protoocc-make-sample: the cache holds the default sample only; pass --out DIR for other sizes",
              file=sys.stderr)
        return 2
    start = time.time()
    try:
        root = (generate_sample(args.out, cfg, progress=not args.quiet) if args.out
                else ensure_sample(cfg=cfg, progress=not args.quiet))
    except DatasetError as exc:
        print(f"protoocc-make-sample: {exc}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    print(json.dumps({"dataroot": str(root), "version": cfg.version, "seconds": round(time.time() - start, 1),
                      "megabytes": round(size / 2**20, 1), "splits": cfg.scene_names()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
