"""ONNX export of the single-frame inference graph checked against PyTorch with ONNX Runtime (docs/benchmarks.md).

    python benchmarks/bench_export.py                                   # demo config
    python benchmarks/bench_export.py --configs demo occ3d_tiny --image-size 216 400

Per config: export (protoocc_ros.export, opset 20, fixed camera count / image size, no temporal
memory), then on two frames of the synthetic sample the max absolute logit difference and the
argmax label agreement between ONNX Runtime (CPU) and PyTorch, and the latency of both
(torch.inference_mode vs InferenceSession.run, same thread count, warm-up, median / p90).
Writes benchmarks/results/export.json and export.png.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import build  # noqa: E402
from common import (  # noqa: E402
    RESULTS_DIR, add_common_args, finish, header, load_average, print_table, pyplot, sample_frames, save_figure,
    set_threads, summarize_ms, time_repeated, variant_config, wait_for_low_load,
)

from protoocc_ros.export import (  # noqa: E402
    DEFAULT_OPSET, ExportError, SingleFrameGraph, compare_with_pytorch, export_onnx, onnx_session, run_onnx,
)


def bench_config(name: str, args: argparse.Namespace, threads: int, out_dir: Path) -> dict[str, Any]:
    """Export `name`, compare ONNX Runtime with PyTorch on two frames, time both."""
    size = tuple(args.image_size) if args.image_size and name != "demo" else None
    cfg = variant_config(name, None, size)
    frames = sample_frames(cfg, 2)
    model = build(cfg, "cpu", args.seed)
    graph = SingleFrameGraph(model)
    path = out_dir / f"protoocc_{name}.onnx"
    t0 = time.monotonic()
    export_onnx(model, frames[0].images, frames[0].lidar2img, path, args.opset)
    export_s = time.monotonic() - t0
    session = onnx_session(path, threads)
    checks = compare_with_pytorch(session, model, [(f.images, f.lidar2img) for f in frames])
    f = frames[1]
    if args.max_load is not None:
        wait_for_low_load(args.max_load)
    load_before = load_average()
    with torch.inference_mode():
        torch_times = time_repeated(lambda: graph(f.images, f.lidar2img), args.warmup, args.repeats,
                                    torch.device("cpu"), f"{name} pytorch")
    ort_times = time_repeated(lambda: run_onnx(session, f.images, f.lidar2img), args.warmup, args.repeats,
                              torch.device("cpu"), f"{name} onnxruntime")
    return {"config": name, "image_size": cfg.image_size, "num_cameras": cfg.num_cameras,
            "num_prototypes": cfg.model.prototypes.num_prototypes, "opset": args.opset,
            "onnx_file_mb": round(path.stat().st_size / 2**20, 2), "export_s": round(export_s, 2),
            "checks": checks, "max_abs_diff": max(c["max_abs_diff"] for c in checks),
            "latency_pytorch": summarize_ms(torch_times), "latency_onnxruntime": summarize_ms(ort_times),
            "load_average": [load_before, load_average()]}


def table(result: dict[str, Any]) -> str:
    rows = []
    for r in result["rows"]:
        pt, ox = r["latency_pytorch"], r["latency_onnxruntime"]
        rows.append([r["config"], f"{r['num_cameras']}×{r['image_size'][0]}×{r['image_size'][1]}",
                     f"{r['max_abs_diff']:.2e}", f"{min(c['argmax_agreement'] for c in r['checks']):.4f}",
                     f"{pt['median_ms']:.1f} / {pt['p90_ms']:.1f}", f"{ox['median_ms']:.1f} / {ox['p90_ms']:.1f}",
                     f"{pt['median_ms'] / ox['median_ms']:.2f}×", f"{r['onnx_file_mb']}"])
    return print_table(rows, ["config", "input", "max |ONNX - PyTorch|", "argmax agreement",
                              "PyTorch median / p90 [ms]", "ONNX Runtime median / p90 [ms]", "speed-up",
                              "file [MB]"])


def plot(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(rows), 3.4))
    x = np.arange(len(rows))
    for k, (key, label) in enumerate((("latency_pytorch", "PyTorch"), ("latency_onnxruntime", "ONNX Runtime"))):
        med = [r[key]["median_ms"] for r in rows]
        p90 = [r[key]["p90_ms"] for r in rows]
        ax.bar(x + (k - 0.5) * 0.38, med, 0.38, yerr=[np.zeros(len(med)), np.subtract(p90, med)], capsize=3,
               label=label)
    ax.set_xticks(x, [f"{r['config']}\n{r['image_size'][0]}×{r['image_size'][1]}\nΔmax {r['max_abs_diff']:.1e}"
                      for r in rows], fontsize=8)
    ax.set_ylabel("single-frame inference [ms] (median, bar to p90)")
    ax.set_title(f"{result['machine']['cpu_model']}, {result['torch_threads']} threads", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import onnxruntime

    threads = set_threads(args.threads)
    result: dict[str, Any] = {**header(), "torch_threads": threads, "onnxruntime_threads": threads,
                              "onnxruntime": onnxruntime.__version__,
                              "graph": "single frame (no temporal memory), fixed camera count and image size",
                              "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            result["rows"].append(bench_config(name, args, threads, args.keep_onnx or Path(tmp)))
    result["load_average_end"] = load_average()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", default=["demo"])
    ap.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                    help="input size of the non-demo configs (the graph is fixed to it)")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    ap.add_argument("--keep-onnx", type=Path, default=None, help="folder to keep the .onnx files in")
    add_common_args(ap, RESULTS_DIR / "export.json", warmup=3, repeats=30)
    return finish("bench_export", run, ap.parse_args(argv), table, plot, errors=(ExportError,))


if __name__ == "__main__":
    sys.exit(main())
