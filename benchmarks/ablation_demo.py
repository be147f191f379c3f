"""Ablation on the synthetic sample (paper Table 4, Exps. 1 vs 5): PanoOcc-style baseline vs full ProtoOcc.

Both configs share the demo's low query resolution (50x50x4), data, optimizer and step budget; each
(config, seed) pair is trained with protoocc-train and evaluated on the held-out synthetic scenes, one run at
a time. Results go to runs/ablation/<config>_seed<k>/ and the table to runs/ablation/summary.{json,md}.

    python benchmarks/ablation_demo.py --steps 60 --seeds 0 1 2          # nohup ... > runs/ablation.log &
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = {"demo_baseline": "baseline (PanoOcc-style, Table 4 Exp. 1)", "demo": "ProtoOcc (Table 4 Exp. 5)"}


def run_one(config: str, seed: int, steps: int, out_root: Path, extra: list[str]) -> dict:
    out = out_root / f"{config}_seed{seed}"
    report_path = out / "eval_val" / "report.json"
    if report_path.is_file():  # resumable: finished runs are kept
        return json.loads(report_path.read_text())
    cmd = [sys.executable, "-m", "protoocc_ros.train", "--config", config, "--output-dir", str(out),
           "--set", f"train.max_steps={steps}", "--set", f"train.seed={seed}",
           "--set", f"train.checkpoint_every={steps}", "--eval-split", "val", "--no-progress"]
    for item in extra:
        cmd += ["--set", item]
    start = time.monotonic()
    print(f"[ablation] {config} seed {seed}: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True)
    report = json.loads(report_path.read_text())
    report["train_seconds"] = time.monotonic() - start
    report_path.write_text(json.dumps(report, indent=2))
    return report


def summarise(results: dict[str, list[dict]]) -> tuple[dict, str]:
    rows, summary = [], {}
    for config, reports in results.items():
        mious = [100 * r["results"]["miou"] for r in reports]
        geo = [100 * r["results"].get("geometry_iou", float("nan")) for r in reports]
        mean, std = statistics.mean(mious), statistics.stdev(mious) if len(mious) > 1 else 0.0
        summary[config] = {"miou_per_seed": mious, "miou_mean": mean, "miou_std": std, "geometry_iou_per_seed": geo,
                           "train_seconds": [r.get("train_seconds") for r in reports]}
        rows.append(f"| {CONFIGS.get(config, config)} | {' / '.join(f'{m:.2f}' for m in mious)} | "
                    f"{mean:.2f} ± {std:.2f} | {statistics.mean(geo):.2f} |")
    table = "\n".join(["| model | mIoU per seed [%] | mean ± std [%] | geometry IoU [%] |", "|---|---|---|---|"]
                      + rows)
    return summary, table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per run (same for every run)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS))
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--set", dest="extra", action="append", default=[], help="extra override for every run")
    args = p.parse_args(argv)
    out_root = Path(args.out)
    results: dict[str, list[dict]] = {c: [] for c in args.configs}
    for seed in args.seeds:  # interleave configs so a partial run still compares like with like
        for config in args.configs:
            results[config].append(run_one(config, seed, args.steps, out_root, args.extra))
    summary, table = summarise(results)
    summary.update(steps=args.steps, seeds=args.seeds, extra=args.extra)
    (out_root / "summary.json").write_text(json.dumps(summary, indent=2))
    (out_root / "summary.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
