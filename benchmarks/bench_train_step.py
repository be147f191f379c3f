"""One training step of a config (protoocc_ros.training.Trainer.train_step): time and peak memory (docs/benchmarks.md).

    python benchmarks/bench_train_step.py --device cuda                      # occ3d_small, 6 x 432x800, AMP as configured
    python benchmarks/bench_train_step.py --config demo --steps 3

The real Trainer on the synthetic sample (random initial weights, the config's clip length, batch size, AdamW,
AMP on CUDA when ``train.amp``): the first step's batch is taken from the trainer's own loader, ``--warmup``
untimed steps, then ``--steps`` timed ones (CUDA synchronised around each; forward + Eq. 6 loss + backward per
frame of the clip + clipping + optimizer step). Peak memory: ``torch.cuda.max_memory_allocated`` over the
timed steps on CUDA; the process' peak RSS on the CPU. Writes benchmarks/results/train_step.json (no chart).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    RESULTS_DIR, BenchmarkError, header, load_average, resolve_device, set_threads, summarize_ms, sync,
    variant_config, write_json,
)

from protoocc_ros.training.trainer import Trainer  # noqa: E402


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    threads = set_threads(args.threads)
    cfg = variant_config(args.config, None, tuple(args.image_size) if args.image_size else None,
                         ["train.num_workers=0", *args.overrides])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, output_dir=tmp, device=str(device), progress=False, tensorboard=False)
        frames = next(iter(trainer.epoch_loader(0)))
        times, terms = [], {}
        for i in range(args.warmup + args.steps):
            if i == args.warmup and device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            t0 = time.perf_counter()
            terms = trainer.train_step(frames)
            sync(device)
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
    peak = {"cuda_max_allocated_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
            "cuda_max_reserved_mb": round(torch.cuda.max_memory_reserved(device) / 2**20, 1)} \
        if device.type == "cuda" else {"process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                                                    / 1024, 1)}
    t = cfg.train
    return {**header(device), "device": str(device), "torch_threads": threads, "config": args.config,
            "image_size": cfg.image_size, "num_cameras": cfg.num_cameras, "query_size": cfg.model.query_size,
            "clip_length": t.clip_length, "batch_size": t.batch_size, "amp": bool(t.amp and device.type == "cuda"),
            "overrides": args.overrides, "step": summarize_ms(times), "peak_memory": peak,
            "loss_terms": {k: round(float(v), 4) for k, v in terms.items()}, "load_average_end": load_average()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="occ3d_small")
    ap.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "train_step.json")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")
    try:
        result = run(args)
    except BenchmarkError as exc:
        print(f"bench_train_step: {exc}", file=sys.stderr)
        return 2
    s, peak = result["step"], result["peak_memory"]
    print(f"[bench_train_step] {args.config} on {result['device']}: step median {s['median_ms']:.1f} ms "
          f"(n={s['n']}, clip {result['clip_length']} x batch {result['batch_size']}, amp {result['amp']}), "
          f"peak memory {peak}", flush=True)
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
