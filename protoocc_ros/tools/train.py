"""protoocc-train: train ProtoOcc from a config YAML with command-line overrides (paper Sec. 4.1, Eq. 6).

    protoocc-train --config demo --set train.max_steps=2000 --set train.lr=1e-3
    protoocc-train --config demo --resume runs/demo                 # latest checkpoint of a run
    torchrun --nproc_per_node=2 -m protoocc_ros.train --config occ3d_tiny --set dataset.dataroot=/data/nuscenes

After training, ``--eval-split val`` evaluates the final checkpoint and stores the metric in its metadata;
``--export models/x.safetensors`` writes a weights-only copy (with config, command, data seed, metric).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import yaml

from protoocc_ros.checkpoints.errors import CheckpointError
from protoocc_ros.checkpoints.format import export_checkpoint, update_metadata
from protoocc_ros.config import ConfigError, config_to_dict, load_config
from protoocc_ros.evaluation.evaluate import evaluate_checkpoint, metric_summary
from protoocc_ros.training.distributed import barrier, init_distributed, shutdown_distributed
from protoocc_ros.training.errors import TrainingError
from protoocc_ros.training.trainer import Trainer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="protoocc-train", description="Train ProtoOcc on sequential clips "
                                "(AdamW, warm-up + cosine, AMP on CUDA, DDP under torchrun).")
    p.add_argument("--config", required=True, help="config YAML path or name in config/ (e.g. demo, occ3d_tiny)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable (e.g. --set train.lr=1e-3)")
    p.add_argument("--output-dir", default=None, help="run directory (default: train.output_dir)")
    p.add_argument("--resume", default=None, metavar="CKPT|RUN_DIR",
                   help="continue from a checkpoint or the latest one of a run directory")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--eval-split", default=None, help="evaluate the final checkpoint on this split")
    p.add_argument("--render", action="store_true", help="with --eval-split: also write PNG renders")
    p.add_argument("--export", default=None, metavar="PATH.safetensors",
                   help="write a weights-only copy of the final model (e.g. models/protoocc_demo.safetensors)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--no-tensorboard", action="store_true", help="no tensorboard event files")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command = "protoocc-train " + shlex.join(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        ctx = init_distributed(args.device)
    except (ConfigError, TrainingError) as exc:
        print(f"protoocc-train: error: {exc}", file=sys.stderr)
        return 2
    try:
        trainer = Trainer(cfg, output_dir=args.output_dir, ctx=ctx, command=command,
                          progress=not args.no_progress, tensorboard=not args.no_tensorboard)
        if ctx.is_main:
            trainer.output_dir.mkdir(parents=True, exist_ok=True)
            (trainer.output_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        if args.resume:
            print(f"protoocc-train: resumed from {trainer.resume(args.resume)} at step {trainer.step}")
        result = trainer.fit()
        barrier(ctx)
        if not ctx.is_main:
            return 0
        ckpt = result["checkpoint"] or trainer.save()
        print(f"protoocc-train: {result['step']} steps in {result['seconds']:.0f} s; checkpoint {ckpt}")
        metric = None
        if args.eval_split:
            report = evaluate_checkpoint(ckpt, cfg, split=args.eval_split, render=args.render,
                                         output_dir=trainer.output_dir / f"eval_{args.eval_split}",
                                         device=str(ctx.device), progress=not args.no_progress)
            print(report["table"])
            metric = metric_summary(report)
            update_metadata(ckpt, metric=metric)
        if args.export:
            exported = export_checkpoint(ckpt, Path(args.export), metric=metric)
            print(f"protoocc-train: exported weights to {exported}")
    except (CheckpointError, ConfigError, TrainingError) as exc:
        print(f"protoocc-train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown_distributed()
    return 0
