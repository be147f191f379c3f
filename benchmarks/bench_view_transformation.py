"""Paper Table 3 on one machine in one run: baseline (PanoOcc-S) vs prototype-aware (ProtoOcc-S) view transformation.

    python benchmarks/bench_view_transformation.py                       # occ3d_small, 6 x 432x800, CPU
    python benchmarks/bench_view_transformation.py --image-size 216 400 --repeats 10

Both variants are occ3d_small: baseline = Table 4 Exp. 1 flags (no prototype mapping), ProtoOcc =
Exp. 5 (all on); the temporal self-attention is on in both, as in PanoOcc. The backbone and FPN
run once per variant and their outputs are cached, so each timed call is the view transformation
(voxel query, projection, hit gathering, prototype clustering, temporal warp and attention, spatial
cross-attention with prototype mapping, FFN) plus the small decoder, which is timed by a hook and
subtracted. Calls alternate baseline / ProtoOcc so that load drift hits both alike. FLOPs with
FlopCounterMode (matrix products and convolutions, 2 per multiply-add); parameters of the view
transformation = view_transformation + temporal stages of count_parameters_by_stage. A profiler
pass lists the ops whose time grows most from baseline to ProtoOcc (what the prototype path costs).
Writes benchmarks/results/view_transformation.json and .png.
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import StageTimer, breakdown, build, flops, parameters  # noqa: E402
from common import (  # noqa: E402
    ABLATIONS, READINGS, RESULTS_DIR, FrameInputs, add_common_args, finish, header, load_average, print_table, pyplot,
    resolve_device, sample_frames, save_figure, set_threads, summarize_ms, sync, variant_config, wait_for_low_load,
)

PAPER = {"time_ms": (66.0, 105.0), "gflops": (330.0, 378.0), "params_m": (15.52, 16.11)}  # PanoOcc-S, ProtoOcc-S
VARIANTS: dict[str, tuple[str, list[str]]] = {"baseline": ("exp1_baseline", []), "protoocc": ("exp5_full", [])}
VT_PARAM_STAGES = ("view_transformation", "temporal")


class Cached(nn.Module):
    """Stands in for a stage whose output was computed once (the backbone / FPN of a VT benchmark)."""

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value

    def forward(self, *args: Any) -> Any:
        return self.value


def vt_only(model: nn.Module, frame: FrameInputs) -> nn.Module:
    """Run backbone + FPN once on `frame` and replace both by their cached outputs (in place)."""
    with torch.inference_mode():
        feats = model.neck(model.backbone(frame.images.flatten(0, 1)))
    model.backbone, model.neck = Cached(None), Cached(feats)
    return model


def time_interleaved(models: dict[str, nn.Module], frames: dict[str, list[FrameInputs]], warmup: int,
                     repeats: int, device: torch.device, fp16: bool) -> dict[str, dict[str, Any]]:
    """Median / p90 of the stage breakdown per variant; one call of each variant per repeat, alternating."""
    from tqdm import tqdm

    amp = torch.autocast("cuda", dtype=torch.float16) if fp16 else nullcontext()
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in models}
    with torch.inference_mode(), amp:
        memories = {k: m(*frames[k][0].args()).memory for k, m in models.items()}
        timers = {k: StageTimer(m, device) for k, m in models.items()}
        try:
            for i in tqdm(range(warmup + repeats), desc=" / ".join(models), leave=False):
                order = list(models) if i % 2 == 0 else list(reversed(models))
                for k in order:
                    sync(device)
                    start = time.perf_counter()
                    models[k](*frames[k][1].args(), memory=memories[k])
                    sync(device)
                    total = time.perf_counter() - start
                    groups = timers[k].take()
                    if i >= warmup:
                        samples[k].append(breakdown(groups, total))
        finally:
            for t in timers.values():
                t.remove()
    return {k: {key: summarize_ms([s[key] for s in v]) for key in v[0]} for k, v in samples.items()}


def profile_ops(models: dict[str, nn.Module], frames: dict[str, list[FrameInputs]], calls: int,
                top: int = 12) -> dict[str, Any]:
    """Self CPU time per aten op and variant (ms per call), and the ops whose time grows most with prototypes."""
    from torch.profiler import ProfilerActivity, profile

    per: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for k, m in models.items():
            memory = m(*frames[k][0].args()).memory
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(calls):
                    m(*frames[k][1].args(), memory=memory)
            per[k] = {e.key: e.self_cpu_time_total / 1e3 / calls for e in prof.key_averages()}
    names = set(per["baseline"]) | set(per["protoocc"])
    delta = sorted(((n, per["protoocc"].get(n, 0.0) - per["baseline"].get(n, 0.0)) for n in names),
                   key=lambda x: -x[1])
    return {"calls": calls,
            "top_protoocc_ms": dict(sorted(per["protoocc"].items(), key=lambda x: -x[1])[:top]),
            "top_baseline_ms": dict(sorted(per["baseline"].items(), key=lambda x: -x[1])[:top]),
            "largest_increase_ms": {n: round(d, 3) for n, d in delta[:top]},
            "largest_decrease_ms": {n: round(d, 3) for n, d in delta[-4:]}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    threads = set_threads(args.threads)
    size = tuple(args.image_size) if args.image_size else None
    variants = dict(VARIANTS)
    if args.readings:  # ProtoOcc with another reading of Eqs. 1a/1b/2, timed in the same interleaved run
        variants.update({f"protoocc+{name}": ("exp5_full", items) for name, items in READINGS.items()})
    cfgs = {k: variant_config(args.config, ABLATIONS[a], size, [*args.overrides, *extra])
            for k, (a, extra) in variants.items()}
    cfgs_full = {k: variant_config(args.config, ABLATIONS[a], None, [*args.overrides, *extra])
                 for k, (a, extra) in variants.items()}
    frames = {k: sample_frames(c, 2) for k, c in cfgs.items()}
    result: dict[str, Any] = {**header(device), "device": str(device), "torch_threads": threads,
                              "config": args.config, "image_size": cfgs["protoocc"].image_size,
                              "num_cameras": cfgs["protoocc"].num_cameras,
                              "num_prototypes": cfgs["protoocc"].model.prototypes.num_prototypes,
                              "prototype_layers": cfgs["protoocc"].model.prototypes.layers, "overrides": args.overrides,
                              "paper_table3": PAPER, "variants": {}}
    params = {k: parameters(c) for k, c in cfgs_full.items()}
    models = {k: vt_only(build(c, device, args.seed), frames[k][0].to(device)) for k, c in cfgs.items()}
    frames_dev = {k: [f.to(device) for f in v] for k, v in frames.items()}
    if args.flops_at_timing_size:  # quick runs (gpu_check --dry-run): FLOPs of the timed input, not the config's
        cfgs_full = cfgs
    full_frames = frames if size is None or args.flops_at_timing_size else {
        k: sample_frames(c, 1) for k, c in cfgs_full.items()}
    gflops = {k: flops(build(c, "cpu", args.seed), full_frames[k][0]) for k, c in cfgs_full.items()}  # full size
    if args.max_load is not None:
        wait_for_low_load(args.max_load)
    load_before = load_average()
    precisions = ["fp32"] + (["fp16"] if device.type == "cuda" and not args.no_fp16 else [])
    timing = {p: time_interleaved(models, frames_dev, args.warmup, args.repeats, device, p == "fp16")
              for p in precisions}
    result["load_average"] = [load_before, load_average()]
    for k, (ablation, extra) in variants.items():
        vt_params = sum(params[k][s] for s in VT_PARAM_STAGES)
        result["variants"][k] = {"flags": ABLATIONS[ablation], "overrides": extra, "parameters": params[k],
                                 "vt_parameters": vt_params, "gflops": gflops[k],
                                 "latency": {p: timing[p][k] for p in precisions}}
    b, p = result["variants"]["baseline"], result["variants"]["protoocc"]
    result["ratios"] = {
        "vt_time": {prec: round(p["latency"][prec]["view_transformation"]["median_ms"]
                                / b["latency"][prec]["view_transformation"]["median_ms"], 3) for prec in precisions},
        "vt_gflops": round(p["gflops"]["view_transformation"] / b["gflops"]["view_transformation"], 3),
        "vt_params": round(p["vt_parameters"] / b["vt_parameters"], 3),
        "model_gflops": round(p["gflops"]["total"] / b["gflops"]["total"], 3),
        "model_params": round(p["parameters"]["total"] / b["parameters"]["total"], 3),
        "paper_time": round(PAPER["time_ms"][1] / PAPER["time_ms"][0], 3),
        "paper_gflops": round(PAPER["gflops"][1] / PAPER["gflops"][0], 3),
        "paper_params": round(PAPER["params_m"][1] / PAPER["params_m"][0], 3),
    }
    result["reading_ratios"] = {  # another reading's cost relative to the default ProtoOcc
        k.split("+", 1)[1]: {
            "vt_time": round(v["latency"]["fp32"]["view_transformation"]["median_ms"]
                             / p["latency"]["fp32"]["view_transformation"]["median_ms"], 3),
            "vt_gflops": round(v["gflops"]["view_transformation"] / p["gflops"]["view_transformation"], 3),
            "vt_params": round(v["vt_parameters"] / p["vt_parameters"], 3)}
        for k, v in result["variants"].items() if k.startswith("protoocc+")}
    if device.type == "cpu" and args.profile_calls > 0:
        pair = {k: models[k] for k in VARIANTS}
        result["profile"] = profile_ops(pair, {k: frames_dev[k] for k in pair}, args.profile_calls)
    return result


def table(result: dict[str, Any]) -> str:
    b, p, r = result["variants"]["baseline"], result["variants"]["protoocc"], result["ratios"]
    lat = lambda v: v["latency"]["fp32"]["view_transformation"]  # noqa: E731
    rows = [
        ["baseline (PanoOcc-S, Exp. 1)", f"{lat(b)['median_ms']:.1f}", f"{lat(b)['p90_ms']:.1f}",
         f"{b['gflops']['view_transformation']:.2f}", f"{b['vt_parameters'] / 1e6:.3f}",
         f"{PAPER['time_ms'][0]:.0f} ms / {PAPER['gflops'][0]:.0f} / {PAPER['params_m'][0]}M"],
        ["ProtoOcc-S (Exp. 5)", f"{lat(p)['median_ms']:.1f}", f"{lat(p)['p90_ms']:.1f}",
         f"{p['gflops']['view_transformation']:.2f}", f"{p['vt_parameters'] / 1e6:.3f}",
         f"{PAPER['time_ms'][1]:.0f} ms / {PAPER['gflops'][1]:.0f} / {PAPER['params_m'][1]}M"],
        ["ratio ProtoOcc / baseline", f"{r['vt_time']['fp32']:.3f}×", "", f"{r['vt_gflops']:.3f}×",
         f"{r['vt_params']:.3f}×", f"{r['paper_time']:.2f}× / {r['paper_gflops']:.2f}× / {r['paper_params']:.3f}×"],
    ]
    for name, d in result.get("reading_ratios", {}).items():
        v = result["variants"][f"protoocc+{name}"]
        rows.append([f"ProtoOcc, reading {name}", f"{lat(v)['median_ms']:.1f}", f"{lat(v)['p90_ms']:.1f}",
                     f"{v['gflops']['view_transformation']:.2f}", f"{v['vt_parameters'] / 1e6:.3f}",
                     f"{d['vt_time']:.3f}× / {d['vt_gflops']:.3f}× / {d['vt_params']:.3f}× of ProtoOcc"])
    return print_table(rows, ["view transformation", "median [ms]", "p90 [ms]", "GFLOPs", "params [M]",
                              "paper Table 3 (time / GFLOPs / params)"])


def plot(result: dict[str, Any], path: Path) -> Path:
    """Stacked VT time per part, baseline vs ProtoOcc, with the ratios in the title."""
    plt = pyplot()

    parts = ["vt.prototype_clustering", "vt.temporal_attn", "vt.prototype_mapping", "vt.cross_attn", "vt.ffn",
             "vt.vt_other"]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for i, k in enumerate(("baseline", "protoocc")):
        stages = result["variants"][k]["latency"]["fp32"]
        left = 0.0
        for j, part in enumerate(parts):
            v = stages[part]["median_ms"]
            ax.barh(i, v, left=left, color=plt.cm.tab10(j), label=part[3:] if i == 0 else None)
            left += v
        ax.text(left * 1.01, i, f"{stages['view_transformation']['median_ms']:.1f} ms", va="center", fontsize=9)
    ax.set_yticks([0, 1], ["baseline (Exp. 1)", "ProtoOcc (Exp. 5)"])
    ax.invert_yaxis()
    ax.set_xlabel("view transformation time, median of parts [ms]")
    r = result["ratios"]
    layers = result.get("prototype_layers", "all")
    ax.set_title(f"{result['config']} (prototype layers {'all' if layers is None else layers}) "
                 f"{result['num_cameras']}×{result['image_size'][0]}×{result['image_size'][1]}: "
                 f"time {r['vt_time']['fp32']:.2f}× (paper {r['paper_time']:.2f}×), FLOPs {r['vt_gflops']:.2f}×, "
                 f"params {r['vt_params']:.3f}× — {result['machine']['cpu_model']}, {result['torch_threads']} threads",
                 fontsize=8)
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="occ3d_small")
    ap.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                    help="input size of the timing (default: the config's); FLOPs always at the config's size")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--no-fp16", action="store_true", help="CUDA: skip the fp16 (autocast) timing")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every variant, e.g. model.prototypes.layers=[0] (mapping in layer 0)")
    ap.add_argument("--profile-calls", type=int, default=2, help="profiled calls per variant (0 = no profile)")
    ap.add_argument("--readings", action="store_true",
                    help="also time ProtoOcc with each other reading of Eqs. 1a/1b/2 (docs/architecture.md 'Readings')")
    ap.add_argument("--flops-at-timing-size", action="store_true",
                    help="count FLOPs at --image-size instead of the config's size (quick check runs)")
    add_common_args(ap, RESULTS_DIR / "view_transformation.json", warmup=2, repeats=10)
    return finish("bench_view_transformation", run, ap.parse_args(argv), table, plot)


if __name__ == "__main__":
    sys.exit(main())
