"""The GPU check in one run (benchmarks/gpu_check.sh; docs/benchmarks.md "GPU check"): CUDA tests, model latency per
stage, paper Table 3, one training step, the demo through the node; a summary against the paper's 105 ms.

    bash benchmarks/gpu_check.sh                      # on a CUDA machine: writes benchmarks/results/gpu_*.json
    bash benchmarks/gpu_check.sh --dry-run            # this CPU machine: the same steps at tiny sizes, in runs/

Steps (each a subprocess with its own time limit; a failing step is recorded and the others still run):
  cuda_tests     pytest of the CUDA checks (test/model/test_cuda.py: CPU vs CUDA outputs, AMP training step)
  model          bench_model.py: occ3d_tiny / occ3d_small / occ3d_base, full ProtoOcc (Exp. 5), fp32 and fp16
                 autocast, batch 1, the second frame of a scene with the first frame's memory, CUDA synchronised;
                 per-stage shares from forward hooks, the end-to-end median without hooks, peak memory
  table3         bench_view_transformation.py: occ3d_small baseline (PanoOcc-S) vs ProtoOcc-S view transformation
  train_step     bench_train_step.py: one Trainer step of occ3d_small (clip, AdamW, AMP as configured): time, peak memory
  demo           protoocc-demo --device cuda: replay -> occupancy_node -> evaluation over DDS; frames, time, mIoU
Summary (gpu_check.json): per step ok / failed / seconds, and the goal: occ3d_small fp16 end to end <= 105 ms
(ProtoOcc-S in the paper; PanoOcc-S 66 ms), with the share of each stage of the view transformation, so the next
step (a fused deformable-attention kernel) is aimed by figures.

--dry-run runs every step on the CPU at tiny sizes (64x112 images, a 25x25x4 query, one encoder layer, one repeat;
the training step with a one-frame clip and one perspective; the demo on 3 frames; the goal read from fp32) to check
the whole chain; its figures mean nothing (at these sizes the three configs are one graph, measured once) and it
writes to runs/gpu_check_dry_run unless --out says otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
CONFIGS = ("occ3d_tiny", "occ3d_small", "occ3d_base")
PAPER_MS = {"ProtoOcc-S": 105.0, "PanoOcc-S": 66.0}
GOAL = ("occ3d_small", "fp16", PAPER_MS["ProtoOcc-S"])
DRY_MODEL = ["--set", "model.query_size=[25,25,4]", "--set", "model.encoder.num_layers=1"]
DRY_TRAIN = ["--set", "train.clip_length=1", "--set", "model.decoder.multi_perspective=false"]
DRY_IMAGE = ["64", "112"]
VT_PARTS = ("vt.temporal_attn", "vt.cross_attn", "vt.prototype_mapping", "vt.prototype_clustering", "vt.ffn",
            "vt.vt_other")


class GpuCheckError(RuntimeError):
    """The check cannot run here (no CUDA, no environment); the message says what to install or pass."""


def steps(dry: bool, out: Path, device: str) -> list[tuple[str, list[str], float]]:
    """(name, command, time limit s) of every step."""
    py = sys.executable
    size = ["--image-size", *DRY_IMAGE] if dry else []
    light = ["--warmup", "0", "--repeats", "1", "--threads", "1"] if dry else ["--warmup", "5", "--repeats", "20"]
    return [
        ("cuda_tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test/model/test_cuda.py",
                        f"--junitxml={out / 'gpu_cuda_tests.xml'}"], 240.0),
        ("model", [py, str(BENCH / "bench_model.py"), "--device", device, "--configs", *CONFIGS, "--ablations",
                   "exp5_full", "--big-ablations", "exp5_full", "--no-flops", "--reduce",
                   *(["--latency-image-size", *DRY_IMAGE, *DRY_MODEL] if dry else []), *light,
                   *(["--repeats-big", "1"] if dry else ["--repeats-big", "20", "--warmup-big", "5"]),
                   "--out", str(out / "gpu_model.json")], 300.0),
        ("table3", [py, str(BENCH / "bench_view_transformation.py"), "--device", device, "--config", "occ3d_small",
                    *(size + DRY_MODEL + ["--flops-at-timing-size"] if dry else []), "--profile-calls",
                    "0" if dry else "1", *light, "--out", str(out / "gpu_view_transformation.json")], 240.0),
        ("train_step", [py, str(BENCH / "bench_train_step.py"), "--device", device, "--config", "occ3d_small",
                        *(size + DRY_MODEL + DRY_TRAIN + ["--steps", "1", "--warmup", "0", "--threads", "1"]
                          if dry else ["--steps", "3", "--warmup", "1"]),
                        "--out", str(out / "gpu_train_step.json")], 240.0),
        ("demo", [py, "-m", "protoocc_ros.tools.demo", "--device", device, "--output-dir", str(out / "gpu_demo"),
                  *(["--max-frames", "3"] if dry else []), "--timeout", "200"], 240.0),
    ]


def run_step(name: str, cmd: list[str], limit_s: float, log_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    log = log_dir / f"gpu_{name}.log"
    t0 = time.monotonic()
    with log.open("w") as f:
        try:
            code = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=limit_s, env=env).returncode
        except subprocess.TimeoutExpired:
            code = None
    seconds = round(time.monotonic() - t0, 1)
    status = "ok" if code == 0 else ("timeout" if code is None else f"failed (exit {code})")
    print(f"[gpu_check] {name}: {status} in {seconds} s (log {log})", flush=True)
    return {"status": status, "seconds": seconds, "limit_s": limit_s, "log": str(log), "command": cmd}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def model_summary(model: dict[str, Any] | None) -> dict[str, Any]:
    """Per config and precision: end-to-end median (unhooked on CUDA), peak memory, share of each stage."""
    out: dict[str, Any] = {}
    for row in (model or {}).get("rows", []):
        for precision, lat in row.get("latency", {}).items():
            if not isinstance(lat, dict) or "stages" not in lat:
                continue
            st = lat["stages"]
            total = st["total"]["median_ms"]
            shares = {k: round(100 * st[k]["median_ms"] / total, 1) for k in
                      ("backbone", "neck", "view_transformation", "decoder", *VT_PARTS) if k in st and total > 0}
            out[f"{row['config']}/{precision}"] = {
                "end_to_end_median_ms": lat.get("total_unhooked", st["total"])["median_ms"],
                "hooked_total_median_ms": total, "peak_memory_mb": lat.get("peak_memory_mb"),
                "image_size": lat.get("image_size"), "stage_share_percent": shares}
    return out


def junit_counts(path: Path) -> dict[str, int] | None:
    """tests / failures / errors / skipped of a pytest junit XML."""
    import xml.etree.ElementTree as ET

    try:
        suite = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    if suite is None:
        return None
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}


def summarize(out: Path, results: dict[str, dict[str, Any]], dry: bool, device: str) -> dict[str, Any]:
    models = model_summary(_read(out / "gpu_model.json"))
    goal_key = f"{GOAL[0]}/{'fp32' if dry else GOAL[1]}"  # the CPU has no fp16 autocast run
    goal = models.get(goal_key)
    vt = _read(out / "gpu_view_transformation.json") or {}
    train = _read(out / "gpu_train_step.json") or {}
    demo = _read(out / "gpu_demo" / "demo_summary.json") or {}
    summary: dict[str, Any] = {
        "dry_run": dry, "device": device, "steps": results, "cuda_tests": junit_counts(out / "gpu_cuda_tests.xml"),
        "model": models,
        "goal": {"what": f"{goal_key} end to end <= {GOAL[2]} ms (paper ProtoOcc-S; PanoOcc-S {PAPER_MS['PanoOcc-S']} ms)",
                 "measured_ms": goal["end_to_end_median_ms"] if goal else None,
                 "met": (goal["end_to_end_median_ms"] <= GOAL[2]) if goal and not dry else None,
                 "stage_share_percent": goal["stage_share_percent"] if goal else None},
        "table3": {"ratios": vt.get("ratios"), "paper": vt.get("paper_table3")},
        "train_step": {"config": train.get("config"), "step_ms": train.get("step"),
                       "peak_memory": train.get("peak_memory"), "amp": train.get("amp")},
        "demo": {k: demo.get(k) for k in ("frames_replayed", "frames_evaluated", "seconds", "miou")},
    }
    if not dry:
        gpu = (_read(out / "gpu_model.json") or {}).get("machine", {}).get("gpu")
        summary["gpu"] = gpu
    return summary


def check_cuda() -> str:
    import torch

    if not torch.cuda.is_available():
        raise GpuCheckError(f"torch {torch.__version__} sees no CUDA device (requirements.txt installs the CPU build): "
                            "install the CUDA build of the same torch version (pip install torch==<version> "
                            "--index-url https://download.pytorch.org/whl/cu128) and an NVIDIA driver, or run with "
                            "--dry-run")
    return torch.cuda.get_device_name(0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: check the chain, not the GPU")
    ap.add_argument("--out", type=Path, default=None,
                    help="result folder (default benchmarks/results; --dry-run: runs/gpu_check_dry_run)")
    ap.add_argument("--only", nargs="+", default=None, help="run only these steps (cuda_tests model table3 ...)")
    args = ap.parse_args(argv)
    out = (args.out or (REPO / "runs" / "gpu_check_dry_run" if args.dry_run else BENCH / "results")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.dry_run else "cuda"
    try:
        gpu = None if args.dry_run else check_cuda()
    except GpuCheckError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    print(f"[gpu_check] {'dry run on the CPU' if args.dry_run else f'GPU {gpu}'}: results in {out}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.dry_run:
        env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    t0 = time.monotonic()
    results = {}
    for name, cmd, limit in steps(args.dry_run, out, device):
        if args.only is None or name in args.only:
            results[name] = run_step(name, cmd, limit, out, env)
    summary = summarize(out, results, args.dry_run, device)
    summary["seconds"] = round(time.monotonic() - t0, 1)
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    goal = summary["goal"]
    print(f"[gpu_check] {goal['what']}: measured {goal['measured_ms']} ms, met {goal['met']}; stage shares "
          f"{goal['stage_share_percent']}", flush=True)
    print(f"[gpu_check] summary {out / 'gpu_check.json'} ({summary['seconds']} s)", flush=True)
    return 0 if all(r["status"] == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
