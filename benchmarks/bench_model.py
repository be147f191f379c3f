"""Model cost per stage (paper Table 3 columns; docs/benchmarks.md): parameters, FLOPs and latency of backbone, neck,
view transformation and decoder, for every config and every ablation flag set (paper Table 4 + no temporal).

    python benchmarks/bench_model.py                                  # all configs, CPU, full-size FLOPs
    python benchmarks/bench_model.py --configs demo occ3d_small --latency-image-size 216 400 --repeats 5
    python benchmarks/bench_model.py --device cuda                    # fp32 and fp16 (autocast) latency

FLOPs: torch.utils.flop_counter.FlopCounterMode (2 FLOPs per multiply-add; counts convolutions and
matrix products, not grid_sample / softmax / elementwise ops) at the config's full input size.
Latency: eval mode, torch.inference_mode, batch 1, the second frame of a synthetic scene with the
temporal memory of the first (steady state), warm-up calls then median / p90 over repeats; per
stage from forward hooks (CUDA synchronised at each hook). View transformation = total - backbone
- neck - decoder (voxel query, projection, hit gathering, prototype clustering, temporal warp,
encoder layers). Variants that run the same inference graph (prototype optimization and
multi-perspective decoding only act in training) share one latency / FLOP measurement.
Writes benchmarks/results/model.json and model.png.
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
from common import (  # noqa: E402
    ABLATIONS, CONFIGS, RESULTS_DIR, BenchmarkError, FrameInputs, add_common_args, finish, header,
    inference_signature, load_average, print_table, pyplot, resolve_device, sample_frames, save_figure, set_threads,
    summarize_ms, sync, time_repeated, variant_config, wait_for_low_load, write_json,
)

from protoocc_ros.model.protoocc import ProtoOcc, count_parameters_by_stage, count_prototype_parameters  # noqa: E402

STAGES = ("backbone", "neck", "view_transformation", "decoder")
VT_PARTS = ("prototype_clustering", "temporal_attn", "prototype_mapping", "cross_attn", "ffn")


def stage_group(name: str) -> str | None:
    """Timing/FLOP group of a module name of ProtoOcc (None = not a group root)."""
    parts = name.split(".")
    if len(parts) == 1 and parts[0] in ("backbone", "neck", "decoder", "prototype_clustering"):
        return parts[0]
    if len(parts) == 3 and parts[0] == "encoder" and parts[2] in VT_PARTS:
        return parts[2]
    return None


def breakdown(groups: dict[str, float], total: float) -> dict[str, float]:
    """Inclusive group totals -> the four stages plus view-transformation parts (cross_attn without the
    prototype mapping it calls; vt_other = projection, hit gathering, temporal warp, norms)."""
    out = {s: groups.get(s, 0.0) for s in ("backbone", "neck", "decoder")}
    out["view_transformation"] = total - out["backbone"] - out["neck"] - out["decoder"]
    parts = {p: groups.get(p, 0.0) for p in VT_PARTS}
    parts["cross_attn"] -= parts["prototype_mapping"]
    parts["vt_other"] = out["view_transformation"] - sum(parts.values())
    return {**{s: out[s] for s in STAGES}, "total": total, **{f"vt.{k}": v for k, v in parts.items()}}


class StageTimer:
    """Forward hooks that time every group root of a ProtoOcc (inclusive, summed over encoder layers)."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.device, self.groups, self._start = device, {}, {}
        self.handles = []
        for name, module in model.named_modules():
            group = stage_group(name)
            if group is not None:
                self.handles.append(module.register_forward_pre_hook(self._pre(name)))
                self.handles.append(module.register_forward_hook(self._post(name, group)))

    def _pre(self, name: str):
        def hook(module: nn.Module, args: Any) -> None:
            sync(self.device)
            self._start[name] = time.perf_counter()
        return hook

    def _post(self, name: str, group: str):
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            sync(self.device)
            self.groups[group] = self.groups.get(group, 0.0) + time.perf_counter() - self._start.pop(name)
        return hook

    def take(self) -> dict[str, float]:
        groups, self.groups = self.groups, {}
        return groups

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def build(cfg: Any, device: torch.device | str, seed: int = 0) -> ProtoOcc:
    """Random-weight ProtoOcc in eval mode without autograd state (FlopCounterMode's module tracker needs that);
    on the meta device only the structure (for parameter counts)."""
    torch.manual_seed(seed)
    if str(device) == "meta":
        with torch.device("meta"):
            return ProtoOcc.from_config(cfg)
    return ProtoOcc.from_config(cfg).to(device).eval().requires_grad_(False)


def parameters(cfg: Any) -> dict[str, int]:
    """Parameter counts per stage (built on the meta device: instant, no memory)."""
    model = build(cfg, "meta")
    counts = count_parameters_by_stage(model)
    counts["prototypes"] = count_prototype_parameters(model)
    return counts


def flops(model: ProtoOcc, frame: FrameInputs) -> dict[str, float]:
    """FLOPs per stage (GFLOP) of one inference call, from FlopCounterMode's per-module counts."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, depth=None)
    with torch.inference_mode(), counter:
        model(*frame.args())
    groups: dict[str, float] = {}
    for name, per_op in counter.get_flop_counts().items():
        group = stage_group(name.split(".", 1)[1]) if name.startswith("ProtoOcc.") else None
        if group is not None:
            groups[group] = groups.get(group, 0.0) + sum(per_op.values())
    result = breakdown(groups, float(counter.get_total_flops()))
    return {k: round(v / 1e9, 4) for k, v in result.items()}


def latency(model: ProtoOcc, frames: list[FrameInputs], warmup: int, repeats: int, device: torch.device,
            fp16: bool, label: str) -> dict[str, Any]:
    """Per-stage latency of frame 1 with the memory of frame 0 (median / p90 over repeats, ms)."""
    from tqdm import tqdm

    f0, f1 = (f.to(device) for f in frames[:2])
    amp = torch.autocast("cuda", dtype=torch.float16) if fp16 else nullcontext()
    with torch.inference_mode(), amp:
        memory = model(*f0.args()).memory
        timer = StageTimer(model, device)
        load_before = load_average()
        samples: list[dict[str, float]] = []
        try:
            for i in tqdm(range(warmup + repeats), desc=label, leave=False):
                sync(device)
                t0 = time.perf_counter()
                out = model(*f1.args(), memory=memory)
                sync(device)
                total = time.perf_counter() - t0
                groups = timer.take()
                if i >= warmup:
                    samples.append(breakdown(groups, total))
        finally:
            timer.remove()
    if out.memory.reset_reason != [None]:
        raise BenchmarkError(f"{label}: the temporal memory was reset ({out.memory.reset_reason}); the timed "
                             "frame must follow frame 0 of the same scene")
    keys = samples[0].keys()
    stats = {k: summarize_ms([s[k] for s in samples]) for k in keys}
    result: dict[str, Any] = {"stages": stats, "warmup": warmup, "repeats": repeats,
                              "load_average": [load_before, load_average()]}
    if device.type == "cuda":  # the stage hooks synchronise at every stage; the end-to-end figure has none
        torch.cuda.reset_peak_memory_stats(device)
        with torch.inference_mode(), amp:
            plain = time_repeated(lambda: model(*f1.args(), memory=memory), 1, repeats, device)
        result["total_unhooked"] = summarize_ms(plain)
        result["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return result


class _Caches:
    """Measurements shared by variants with the same inference graph, and the input frames per size."""

    def __init__(self) -> None:
        self.flops: dict[str, dict] = {}
        self.latency: dict[str, dict] = {}
        self.frames: dict[tuple, list[FrameInputs]] = {}

    def frames_for(self, config: str, cfg: Any) -> list[FrameInputs]:
        key = (config, tuple(cfg.image_size))
        if key not in self.frames:
            self.frames[key] = sample_frames(cfg, 2)
        return self.frames[key]


def measure_flops(config: str, ablation: str, cfg: Any, caches: _Caches, args: argparse.Namespace) -> dict:
    sig = inference_signature(cfg)
    if sig not in caches.flops:
        t0 = time.monotonic()
        caches.flops[sig] = {"gflops": flops(build(cfg, "cpu", args.seed), caches.frames_for(config, cfg)[0]),
                             "image_size": cfg.image_size, "measured_for": f"{config}/{ablation}",
                             "seconds": round(time.monotonic() - t0, 1)}
    return caches.flops[sig]


def measure_latency(config: str, ablation: str, caches: _Caches, args: argparse.Namespace, device: torch.device,
                    precisions: list[str]) -> dict:
    big = config in args.reduce
    if big and ablation not in args.big_ablations:
        return {"skipped": f"{config} is in --reduce: latency only for {args.big_ablations}"}
    cfg = variant_config(config, ABLATIONS[ablation], args.latency_image_size or (args.small_image_size if big
                                                                                   else None), args.overrides)
    sig, out = inference_signature(cfg), {}
    repeats, warmup = (args.repeats_big, args.warmup_big) if big else (args.repeats, args.warmup)
    for precision in precisions:
        key = f"{sig}|{precision}"
        if key not in caches.latency:
            frames = caches.frames_for(config, cfg)
            if args.max_load is not None:
                wait_for_low_load(args.max_load)
            lat = latency(build(cfg, device, args.seed), frames, warmup, repeats, device, precision == "fp16",
                          f"{config}/{ablation}/{precision}")
            caches.latency[key] = {**lat, "precision": precision, "image_size": cfg.image_size,
                                   "num_prototypes": cfg.model.prototypes.num_prototypes,
                                   "measured_for": f"{config}/{ablation}"}
        out[precision] = caches.latency[key]
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    threads = set_threads(args.threads)
    precisions = ["fp32", "fp16"] if device.type == "cuda" and not args.no_fp16 else ["fp32"]
    result: dict[str, Any] = {**header(device), "device": str(device), "torch_threads": threads, "rows": [],
                              "notes": __doc__.split("\n\n")[2].replace("\n", " ")}
    caches = _Caches()
    for config in args.configs:
        for ablation in args.ablations:
            cfg = variant_config(config, ABLATIONS[ablation], None, args.overrides)
            row: dict[str, Any] = {"config": config, "ablation": ablation, "flags": ABLATIONS[ablation],
                                   "image_size_full": cfg.image_size, "num_cameras": cfg.num_cameras,
                                   "query_size": cfg.model.query_size,
                                   "num_prototypes_full": cfg.model.prototypes.num_prototypes,
                                   "parameters": parameters(cfg)}
            print(f"[bench_model] {config} / {ablation}: {row['parameters']['total'] / 1e6:.2f} M parameters",
                  flush=True)
            try:  # an out-of-memory big config must not cost the other rows
                if not args.no_flops:
                    row["flops"] = measure_flops(config, ablation, cfg, caches, args)
                if not args.no_latency:
                    row["latency"] = measure_latency(config, ablation, caches, args, device, precisions)
            except (RuntimeError, MemoryError) as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"[:500]
                print(f"[bench_model] {config} / {ablation}: {row['error']}", file=sys.stderr, flush=True)
            result["rows"].append(row)
        write_json(args.out.with_suffix(".partial.json"), result)  # progress survives a killed run
    result["load_average_end"] = load_average()
    args.out.with_suffix(".partial.json").unlink(missing_ok=True)
    return result


def tables(result: dict[str, Any]) -> str:
    """Markdown tables: parameters / GFLOPs / latency (median, p90) per stage and config."""
    rows = []
    for r in result["rows"]:
        p = r["parameters"]
        g = r.get("flops", {}).get("gflops", {})
        lat = r.get("latency", {}).get("fp32", {})
        st = lat.get("stages", {})
        size = "×".join(map(str, lat.get("image_size", []))) or "-"
        rows.append([r["config"], r["ablation"], f"{p['total'] / 1e6:.2f}",
                     " / ".join(f"{p[s] / 1e6:.2f}" for s in STAGES),
                     f"{g.get('total', float('nan')):.1f}", " / ".join(f"{g.get(s, float('nan')):.1f}" for s in STAGES),
                     size, f"{st.get('total', {}).get('median_ms', float('nan')):.1f}",
                     f"{st.get('total', {}).get('p90_ms', float('nan')):.1f}",
                     " / ".join(f"{st.get(s, {}).get('median_ms', float('nan')):.1f}" for s in STAGES)])
    return print_table(rows, ["config", "flags", "params [M]", "params bb / neck / VT / dec [M]", "GFLOPs",
                              "GFLOPs bb / neck / VT / dec", "latency input", "median [ms]", "p90 [ms]",
                              "median bb / neck / VT / dec [ms]"])


def plot(result: dict[str, Any], path: Path) -> Path:
    """Stage shares of latency and FLOPs (100 % bars, absolute total written at the bar end) per config."""
    plt = pyplot()

    def own(r: dict) -> bool:  # not a copy of another config's measurement (demo_baseline with exp5 = demo/exp5)
        measured = r.get("latency", {}).get("fp32", {}).get("measured_for", f"{r['config']}/{r['ablation']}")
        return measured.split("/")[0] == r["config"]

    rows = [r for r in result["rows"] if r["ablation"] in ("exp1_baseline", "exp5_full") and own(r)]
    labels = [f"{r['config']} / {r['ablation'].split('_', 1)[1]}" for r in rows]
    colors = ["#4c72b0", "#55a868", "#c44e52", "#8172b2"]
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.45 * len(rows) + 2), sharey=True)
    panels = [("latency", lambda r: r.get("latency", {}).get("fp32", {}).get("stages"), "median_ms", "ms"),
              ("FLOPs", lambda r: r.get("flops", {}).get("gflops"), None, "GFLOP")]
    for ax, (title, get, field, unit) in zip(axes, panels):
        for i, r in enumerate(rows):
            data = get(r)
            if not data:
                continue
            vals = [data[s][field] if field else data[s] for s in STAGES]
            total = sum(vals)
            left = 0.0
            for s, v, c in zip(STAGES, vals, colors):
                ax.barh(i, 100 * v / total, left=left, color=c, label=s if i == 0 else None)
                left += 100 * v / total
            ax.text(101, i, f"{total:.4g} {unit}", va="center", fontsize=8)
        ax.set_xlim(0, 125)
        ax.set_xlabel(f"share of {title} [%] (total at the bar end)")
        ax.set_title(title + (" (fp32, median)" if field else " (full input size)"))
    axes[0].set_yticks(range(len(rows)), labels, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].legend(loc="upper center", bbox_to_anchor=(1.0, -0.07), ncol=4, fontsize=8)
    m = result["machine"]
    fig.suptitle(f"ProtoOcc cost per stage — {m['cpu_model']}, {result['torch_threads']} torch threads, "
                 f"device {result['device']}", fontsize=10)
    return save_figure(fig, path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS))
    p.add_argument("--ablations", nargs="+", default=list(ABLATIONS), choices=list(ABLATIONS))
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--no-fp16", action="store_true", help="CUDA: skip the fp16 (autocast) latency")
    add_common_args(p, RESULTS_DIR / "model.json", warmup=2, repeats=20)
    p.add_argument("--latency-image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="input size for latency of every config (FLOPs stay at full size)")
    p.add_argument("--reduce", nargs="*", default=["occ3d_base", "occ3d_small", "occ3d_tiny", "kitti_base",
                                                   "kitti_small"],
                   help="configs whose latency uses --small-image-size and --repeats-big (slow on a small CPU)")
    p.add_argument("--small-image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="latency input size of the --reduce configs (default: full size)")
    p.add_argument("--repeats-big", type=int, default=3)
    p.add_argument("--warmup-big", type=int, default=0, help="the untimed first frame (memory) warms up too")
    p.add_argument("--big-ablations", nargs="+", default=["exp1_baseline", "exp5_full"], choices=list(ABLATIONS),
                   help="flag sets whose latency is measured for the --reduce configs")
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every config, repeatable (e.g. model.query_size=[25,25,4])")
    args = p.parse_args(argv)
    for name in args.configs:
        if name not in CONFIGS:
            print(f"[bench_model] note: {name!r} is not one of the standard configs {CONFIGS}", file=sys.stderr)
    if args.repeats < 1 or args.repeats_big < 1 or args.warmup < 0 or args.warmup_big < 0:
        p.error("--repeats / --repeats-big must be >= 1 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    return finish("bench_model", run, parse_args(argv), tables, plot)


if __name__ == "__main__":
    sys.exit(main())
