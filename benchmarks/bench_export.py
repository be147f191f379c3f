"""ONNX export checked against PyTorch with ONNX Runtime, and the latency of both (docs/benchmarks.md "ONNX export").

    python benchmarks/bench_export.py                                   # demo config
    python benchmarks/bench_export.py --configs demo occ3d_tiny --image-size 216 400

Per config, two graphs (protoocc_ros.export, opset 20, fixed camera count / image size):
* temporal: the memory as inputs / outputs, the reset rules in the caller (TemporalOnnxRunner), K query slots per
  camera from the rig of the example frame + 10 %. Checked over the whole first validation scene of the synthetic
  sample frame by frame against ProtoOcc.forward with its TemporalMemory (max |logit difference|, argmax
  agreement, reset reasons); latency of a frame with the previous frame's memory: ONNX Runtime (the runner: reset
  rules, hit check, the run) vs PyTorch (the model with its memory, torch.inference_mode).
* single_frame: no memory (every call a first frame); checked on two frames; latency of both.
Same thread count for both, calls alternating, warm-up, median / p90.
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
    set_threads, summarize_ms, variant_config, wait_for_low_load,
)

from protoocc_ros.export import (  # noqa: E402
    DEFAULT_OPSET, ExportError, SingleFrameGraph, TemporalOnnxRunner, compare_sequence, compare_with_pytorch,
    export_onnx, export_temporal_onnx, max_hits_for, onnx_session, run_onnx,
)
from protoocc_ros.tools.export import scene_frames  # noqa: E402


def _timed(fn_torch: Any, fn_ort: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Latency of both, the calls alternating (PyTorch, ONNX Runtime, PyTorch, ...) so that load drift on a shared
    machine hits both alike; the median of the per-pair ratios next to the medians."""
    if args.max_load is not None:
        wait_for_low_load(args.max_load)
    load_before = load_average()
    torch_times, ort_times = [], []
    for i in range(args.warmup + args.repeats):
        with torch.inference_mode():
            t0 = time.perf_counter()
            fn_torch()
            t1 = time.perf_counter()
        fn_ort()
        t2 = time.perf_counter()
        if i >= args.warmup:
            torch_times.append(t1 - t0)
            ort_times.append(t2 - t1)
    ratios = sorted(a / b for a, b in zip(torch_times, ort_times))
    return {"latency_pytorch": summarize_ms(torch_times), "latency_onnxruntime": summarize_ms(ort_times),
            "speedup_median_of_pairs": round(ratios[len(ratios) // 2], 3), "load_average": [load_before, load_average()]}


def bench_config(name: str, args: argparse.Namespace, threads: int, out_dir: Path) -> list[dict[str, Any]]:
    """Both graphs of `name`: export, compare with PyTorch, time both."""
    size = tuple(args.image_size) if args.image_size and name != "demo" else None
    cfg = variant_config(name, None, size)
    model = build(cfg, "cpu", args.seed)
    rows = []
    common = {"config": name, "image_size": cfg.image_size, "num_cameras": cfg.num_cameras,
              "num_prototypes": cfg.model.prototypes.num_prototypes, "opset": args.opset}

    # temporal graph, a whole held-out scene
    scene, frames = scene_frames(cfg, "val", None, args.scene_frames)
    path = out_dir / f"protoocc_{name}_temporal.onnx"
    k = max_hits_for(cfg, frames[0][1])
    t0 = time.monotonic()
    export_temporal_onnx(model, frames[0][0], frames[0][1], path, k, args.opset)
    export_s = time.monotonic() - t0
    runner = TemporalOnnxRunner(onnx_session(path, threads), cfg, path)
    checks = compare_sequence(runner, model, frames)
    with torch.inference_mode():
        torch_memory = model(*frames[0]).memory
    _, onnx_memory = runner.step(*frames[0], None)
    f1 = frames[1]
    timing = _timed(lambda: model(*f1, torch_memory), lambda: runner.step(*f1, onnx_memory), args)
    rows.append({**common, "graph": "temporal", "max_hits_per_camera": k, "scene": scene,
                 "onnx_file_mb": round(path.stat().st_size / 2**20, 2), "export_s": round(export_s, 2),
                 "checks": checks, "max_abs_diff": max(c["max_abs_diff"] for c in checks), **timing})

    # single-frame graph
    single = sample_frames(cfg, 2)
    graph = SingleFrameGraph(model)
    path = out_dir / f"protoocc_{name}.onnx"
    t0 = time.monotonic()
    export_onnx(model, single[0].images, single[0].lidar2img, path, args.opset)
    export_s = time.monotonic() - t0
    session = onnx_session(path, threads)
    checks = compare_with_pytorch(session, model, [(f.images, f.lidar2img) for f in single])
    f = single[1]
    timing = _timed(lambda: graph(f.images, f.lidar2img), lambda: run_onnx(session, f.images, f.lidar2img), args)
    rows.append({**common, "graph": "single_frame", "onnx_file_mb": round(path.stat().st_size / 2**20, 2),
                 "export_s": round(export_s, 2), "checks": checks,
                 "max_abs_diff": max(c["max_abs_diff"] for c in checks), **timing})
    return rows


def table(result: dict[str, Any]) -> str:
    rows = []
    for r in result["rows"]:
        pt, ox = r["latency_pytorch"], r["latency_onnxruntime"]
        rows.append([r["config"], r["graph"], f"{r['num_cameras']}×{r['image_size'][0]}×{r['image_size'][1]}",
                     len(r["checks"]),
                     f"{r['max_abs_diff']:.2e}", f"{min(c['argmax_agreement'] for c in r['checks']):.4f}",
                     f"{pt['median_ms']:.1f} / {pt['p90_ms']:.1f}", f"{ox['median_ms']:.1f} / {ox['p90_ms']:.1f}",
                     f"{r['speedup_median_of_pairs']:.2f}×", f"{r['onnx_file_mb']}"])
    return print_table(rows, ["config", "graph", "input", "frames checked", "max |ONNX - PyTorch|",
                              "least argmax agreement",
                              "PyTorch median / p90 [ms]", "ONNX Runtime median / p90 [ms]",
                              "ONNX Runtime speed-up (median of pairs)",
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
    ax.set_xticks(x, [f"{r['config']} {r['graph']}\n{r['image_size'][0]}×{r['image_size'][1]}\n"
                      f"Δmax {r['max_abs_diff']:.1e}" for r in rows], fontsize=8)
    ax.set_ylabel("inference [ms] (median, bar to p90)")
    ax.set_title(f"{result['machine']['cpu_model']}, {result['torch_threads']} threads", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import onnxruntime

    threads = set_threads(args.threads)
    result: dict[str, Any] = {**header(), "torch_threads": threads, "onnxruntime_threads": threads,
                              "onnxruntime": onnxruntime.__version__,
                              "graphs": "temporal (memory as inputs/outputs, reset rules in the caller) and "
                                        "single frame; fixed camera count and image size", "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            result["rows"] += bench_config(name, args, threads, args.keep_onnx or Path(tmp))
    result["load_average_end"] = load_average()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", default=["demo"])
    ap.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                    help="input size of the non-demo configs (the graph is fixed to it)")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    ap.add_argument("--keep-onnx", type=Path, default=None, help="folder to keep the .onnx files in")
    ap.add_argument("--scene-frames", type=int, default=0, help="frames of the checked scene (0 = the whole scene)")
    add_common_args(ap, RESULTS_DIR / "export.json", warmup=3, repeats=30)
    return finish("bench_export", run, ap.parse_args(argv), table, plot, errors=(ExportError,))


if __name__ == "__main__":
    sys.exit(main())
