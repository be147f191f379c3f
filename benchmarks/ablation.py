"""Paper Table 4 on the synthetic sample: the ProtoOcc components against the PanoOcc-style baseline, several seeds.

Every variant is the ablation config (config/ablation.yaml) with the Table 4 flags of benchmarks/common.py,
trained with the same steps, recipe and data for each seed, and evaluated on the held-out synthetic scenes
(Occ3D mIoU with the camera mask) at every checkpoint, so the learning curve shows whether a run converged.
``--coarsen k`` (default 2) trains and evaluates on the sample's labels coarsened k× per axis (100×100×8 voxels
of 0.8 m, data/synthetic/replicate.py): a step is ~4× cheaper, so runs converge within the CPU budget; the
model, images and the Table 4 parts are unchanged (the decoder upsamples 2× instead of 4×).
The paper's headline claim is the extra variant ``baseline_4x``: the baseline with a 4x larger voxel query.
Results: runs/ablation/<variant>_seed<k>/ (resumable: finished runs are kept), benchmarks/results/ablation.json
and ablation.png (``--out``) (per-seed values, mean ± std, paired differences against the baseline on the same seed).

    python benchmarks/ablation.py --steps 1000 --seeds 0 1 2 3 4               # nohup ... > runs/ablation.log &
    python benchmarks/ablation.py --variants exp1 exp5 baseline_4x --summary-only
    python benchmarks/ablation.py --variants exp2 exp3 exp4 --reference benchmarks/results/ablation.json  # stored exp1
    python benchmarks/ablation.py --variants read_printed read_soft_assignment --reference ...       # other readings
    python benchmarks/ablation.py --variants t5_dropout t5_flip t5_flip_nocr ... --out benchmarks/results/table5.json
    python benchmarks/ablation.py --validation ...   # choose on the training scenes' last two, never the held-out
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import ABLATIONS, READINGS, RESULTS_DIR, TABLE5, machine_info, pyplot, save_figure


def flags(name: str) -> list[str]:
    """--set overrides of a Table 4 flag set of benchmarks/common.py."""
    return [f"model.{key}={str(value).lower()}" for key, value in ABLATIONS[name].items()]


QUERY_4X = "model.query_size=[100,100,4]"
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "exp1": ("baseline (PanoOcc-style, Table 4 Exp. 1)", flags("exp1_baseline")),
    "exp2": ("+ prototype mapping (Exp. 2)", flags("exp2_mapping")),
    "exp3": ("+ prototype optimization (Exp. 3)", flags("exp3_mapping_opt")),
    "exp4": ("baseline + multi-perspective decoding (Exp. 4)", flags("exp4_mod")),
    "exp5": ("ProtoOcc (Exp. 5)", flags("exp5_full")),
    "baseline_4x": ("baseline, 4x larger query (100x100x4)", [*flags("exp1_baseline"), QUERY_4X]),
}
# ProtoOcc with another reading of Eqs. 1a/1b/2 (compared with exp5 on the same seeds).
VARIANTS.update({f"read_{name}": (f"ProtoOcc, reading {name}", [*flags("exp5_full"), *items])
                 for name, items in READINGS.items()})
# Paper Table 5: the baseline with multi-perspective decoding (Exp. 4) and one set of voxel augmentations.
for _name, _augs in TABLE5.items():
    _aug = f"model.decoder.augmentations=[{','.join(_augs)}]"
    VARIANTS[f"t5_{_name}"] = (f"baseline + MOD [{' ; '.join(_augs)}] + C.R.", [*flags("exp4_mod"), _aug])
    VARIANTS[f"t5_{_name}_nocr"] = (f"baseline + MOD [{' ; '.join(_augs)}], no C.R.",
                                    [*flags("exp4_mod"), _aug, "loss.lambda_cons=0"])


def coarse_dataroot(config: str, k: int, out_root: Path) -> list[str]:
    """Overrides that point every run at the synthetic sample with labels coarsened k× (made once, in out_root)."""
    if k == 1:
        return []
    from protoocc_ros.config import load_config
    from protoocc_ros.data.synthetic.replicate import replicate_sample
    from protoocc_ros.data.synthetic.sample import ensure_sample

    d = load_config(config).dataset
    root = (out_root / f"data_coarse{k}").resolve()
    if not (root / d.version).is_dir():
        tmp = root.with_name(root.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        replicate_sample(ensure_sample(), tmp, copies=1, coarsen=k, version=d.version)
        tmp.rename(root)
    grid = ",".join(str(g // k) for g in d.grid_size)
    return [f"dataset.dataroot={root}", f"dataset.grid_size=[{grid}]", f"dataset.voxel_size={d.voxel_size * k}"]


def validation_split(hold_out: int = 2) -> list[str]:
    """Overrides that train on the sample's training scenes but the last ``hold_out`` and validate on those: the
    split on which readings and recipes are chosen (the held-out scenes are never used for a choice)."""
    from protoocc_ros.data.synthetic.sample import SampleConfig

    train = SampleConfig().scene_names()["train"]
    fit, val = train[:-hold_out], train[-hold_out:]
    return [f"dataset.train_split=[{','.join(fit)}]", f"dataset.val_split=[{','.join(val)}]"]


def final_health(out: Path) -> dict[str, float]:
    """The prototype health figures (model/prototype_health.py) of the run's last logged step, if any."""
    log = out / "train_log.jsonl"
    if not log.is_file():
        return {}
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if any(k.startswith("health/") for k in line)), {})
    terms = {k.removeprefix("health/"): v for k, v in last.items() if k.startswith("health/") and v is not None}
    for key in ("cls", "cls_chance"):
        values = [line[key] for line in lines[-10:] if line.get(key) is not None]
        if values:
            terms[f"loss.{key}"] = statistics.mean(values)
    return terms


def run_dir(out_root: Path, variant: str, seed: int) -> Path:
    return out_root / f"{variant}_seed{seed}"


def train(variant: str, seed: int, steps: int, every: int, out_root: Path, config: str, extra: list[str]) -> float:
    """Train one (variant, seed) unless its last checkpoint exists; returns the training seconds."""
    out = run_dir(out_root, variant, seed)
    if (out / "checkpoints" / f"step_{steps:07d}.safetensors").is_file():
        return float(json.loads((out / "train_seconds.json").read_text())) if (out / "train_seconds.json").is_file() \
            else float("nan")
    cmd = [sys.executable, "-m", "protoocc_ros.train", "--config", config, "--output-dir", str(out),
           "--set", f"train.max_steps={steps}", "--set", f"train.seed={seed}", "--set", f"train.checkpoint_every={every}",
           "--no-progress", "--no-tensorboard"]
    for item in [*VARIANTS[variant][1], *extra]:
        cmd += ["--set", item]
    interrupted = any((out / "checkpoints").glob("step_*.state.safetensors"))
    if interrupted:  # an interrupted run continues; its wall time is then not a training time
        cmd += ["--resume", str(out)]
    print(f"[ablation] {variant} seed {seed}: {' '.join(cmd)}", flush=True)
    start = time.monotonic()
    subprocess.run(cmd, check=True)
    seconds = math.nan if interrupted else time.monotonic() - start
    (out / "train_seconds.json").write_text(json.dumps(seconds))
    return seconds


def evaluate(variant: str, seed: int, step: int, out_root: Path) -> dict[str, Any]:
    """Held-out metric of one checkpoint (cached in its run directory)."""
    out = run_dir(out_root, variant, seed)
    report = out / f"eval_step{step}" / "report.json"
    if not report.is_file():
        ckpt = out / "checkpoints" / f"step_{step:07d}.safetensors"
        subprocess.run([sys.executable, "-m", "protoocc_ros.evaluate", "--checkpoint", str(ckpt), "--split", "val",
                        "--output-dir", str(report.parent), "--no-render", "--no-progress"], check=True,
                       stdout=subprocess.DEVNULL)
    data = json.loads(report.read_text())
    return {"health": final_health(out), "miou": 100 * data["results"]["miou"], "geometry_iou": 100 * data["results"].get("geometry_iou", math.nan),
            "per_class_iou": {k: (None if v is None else 100 * v) for k, v in data["results"]["per_class_iou"].items()}}


def paired(a: list[float], b: list[float]) -> dict[str, float | None]:
    """Paired comparison of b - a over seeds: mean, std, and the t statistic (seeds as pairs)."""
    diffs = [y - x for x, y in zip(a, b)]
    mean = statistics.mean(diffs)
    std = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    t = mean / (std / math.sqrt(len(diffs))) if std > 0 else None  # undefined for one seed (strict JSON: no inf)
    return {"mean_diff": mean, "std_diff": std, "t": t, "n": len(diffs), "wins": sum(d > 0 for d in diffs)}


def reference_finals(path: Path | None, steps: int) -> dict[str, dict[int, float]]:
    """Final mIoU per seed of every variant of an earlier results JSON (``--reference``), same step count only."""
    if path is None:
        return {}
    data = json.loads(path.read_text())
    if data.get("setup", {}).get("steps") != steps:
        raise SystemExit(f"--reference {path}: its runs have {data.get('setup', {}).get('steps')} steps, not {steps}")
    return {v: dict(zip(s["seeds"], s["miou_per_seed"])) for v, s in data.items()
            if isinstance(s, dict) and "miou_per_seed" in s}


def summarise(results: dict[str, dict[int, dict[int, dict[str, Any]]]], steps: int,
              reference: dict[str, dict[int, float]] | None = None) -> dict[str, Any]:
    """Per-variant mean ± std and curves; paired differences against exp1 and exp5 on the same seeds.

    A reference variant not trained in this invocation is taken from ``reference`` (final mIoU per seed of an
    earlier results JSON), so deviations can be compared with the stored exp5 runs without retraining them.
    """
    out: dict[str, Any] = {}
    finals = {v: {s: r[s][steps]["miou"] for s in r} for v, r in results.items()}
    for variant, by_seed in results.items():
        final = [by_seed[s][steps]["miou"] for s in sorted(by_seed)]
        out[variant] = {
            "label": VARIANTS[variant][0], "flags": VARIANTS[variant][1], "seeds": sorted(by_seed),
            "miou_per_seed": final, "miou_mean": statistics.mean(final),
            "miou_std": statistics.stdev(final) if len(final) > 1 else 0.0,
            "geometry_iou_mean": statistics.mean(by_seed[s][steps]["geometry_iou"] for s in by_seed),
            "curve": {str(step): statistics.mean(by_seed[s][step]["miou"] for s in by_seed)
                      for step in sorted(next(iter(by_seed.values())))},
            "health": _mean_health([by_seed[s][steps].get("health", {}) for s in sorted(by_seed)]),
        }
    for ref, key in (("exp1", "vs_baseline"), ("exp5", "vs_full")):
        base = finals.get(ref) or (reference or {}).get(ref)
        if not base:
            continue
        for variant, by_seed in finals.items():
            seeds = sorted(set(by_seed) & set(base))
            compared = variant.startswith("read_") if ref == "exp5" else variant != "exp1"
            if compared and seeds:
                out[variant][key] = paired([base[s] for s in seeds], [by_seed[s] for s in seeds])
                if ref not in finals:
                    out[variant][key]["reference"] = {"variant": ref, "miou_per_seed": [base[s] for s in seeds]}
    return out


def _mean_health(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Mean over seeds of each health figure that every seed has (finite values only)."""
    keys = set.intersection(*(set(h) for h in per_seed)) if per_seed else set()
    return {k: statistics.mean(h[k] for h in per_seed) for k in sorted(keys)
            if all(math.isfinite(h[k]) for h in per_seed)}


def _health_text(h: dict[str, float]) -> str:
    """The last encoder layer's prototype cosines and L_cls against chance, '—' without prototypes."""
    layers = sorted(k.split(".", 1)[0] for k in h if k.endswith(".proto_cosine"))
    if not layers:
        return "—"
    text = f"{h[f'{layers[-1]}.proto_cosine']:.2f} / {h.get(f'{layers[-1]}.dispatch_cosine', math.nan):.2f}"
    return text + (f" / {h['loss.cls']:.2f} ({h['loss.cls_chance']:.2f})" if "loss.cls" in h else " / —")


def _paired_text(vs: dict[str, float] | None) -> str:
    return f"{vs['mean_diff']:+.2f} ± {vs['std_diff']:.2f} ({vs['wins']}/{vs['n']})" if vs else "—"


def table(summary: dict[str, Any]) -> str:
    rows = ["| model | mIoU per seed [%] | mean ± std [%] | vs baseline, paired (mean ± std, wins) | "
            "vs ProtoOcc, paired | geometry IoU [%] | train time per run [s] | P_vox cos / dispatch cos / L_cls (chance) |",
            "|---|---|---|---|---|---|---|---|"]
    times = summary.get("setup", {}).get("train_seconds", {})
    for variant, s in summary.items():
        if not isinstance(s, dict) or "miou_per_seed" not in s:
            continue
        vs = [_paired_text(s.get(key)) for key in ("vs_baseline", "vs_full")]
        run_s = [t for t in times.get(variant, []) if t is not None and math.isfinite(t)]
        rows.append(f"| {s['label']} | {' / '.join(f'{m:.2f}' for m in s['miou_per_seed'])} | "
                    f"{s['miou_mean']:.2f} ± {s['miou_std']:.2f} | {vs[0]} | {vs[1]} | {s['geometry_iou_mean']:.2f} | "
                    f"{statistics.median(run_s) if run_s else math.nan:.0f} | {_health_text(s.get('health', {}))} |")
    return "\n".join(rows)


def plot(summary: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    variants = [v for v, s in summary.items() if isinstance(s, dict) and "miou_per_seed" in s]
    fig, (ax, curve) = plt.subplots(1, 2, figsize=(13, 4.8))
    for i, v in enumerate(variants):
        s = summary[v]
        ax.bar(i, s["miou_mean"], yerr=s["miou_std"], color="tab:orange" if v == "exp5" else "tab:blue", alpha=0.6,
               capsize=4)
        ax.scatter([i] * len(s["miou_per_seed"]), s["miou_per_seed"], color="black", s=12, zorder=3)
        steps = [int(k) for k in s["curve"]]
        curve.plot(steps, list(s["curve"].values()), marker="o", label=s["label"])
    ax.set_xticks(range(len(variants)), [summary[v]["label"] for v in variants], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("held-out mIoU [%] (seeds as dots)")
    ax.set_title("paper Table 4 on the synthetic sample")
    curve.set_xlabel("training step")
    curve.set_ylabel("held-out mIoU [%], mean over seeds")
    curve.set_title("learning curves (convergence)")
    curve.legend(fontsize=7)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="ablation", help="base config of every variant (default config/ablation.yaml)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps per run (the same for every run)")
    p.add_argument("--eval-every", type=int, default=200, help="checkpoint and evaluate every this many steps")
    p.add_argument("--coarsen", type=int, default=2, help="labels coarsened k× per axis (1 = the 0.4 m grid)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--variants", nargs="+", default=["exp1", "exp5", "baseline_4x"], choices=list(VARIANTS))
    p.add_argument("--runs", type=Path, default=Path("runs/ablation"), help="run directories (resumable)")
    p.add_argument("--set", dest="extra", action="append", default=[], help="extra override for every run")
    p.add_argument("--validation", action="store_true",
                   help="train on the training scenes but the last two and evaluate on those two (choosing readings "
                        "and recipes; the held-out scenes are never used for a choice)")
    p.add_argument("--data", type=Path, default=None,
                   help="folder of the coarsened sample (default: --runs), to share it between run folders")
    p.add_argument("--summary-only", action="store_true", help="no training: summarise the finished runs")
    p.add_argument("--reference", type=Path, default=None,
                   help="earlier results JSON whose exp1/exp5 per-seed values are the paired reference for variants "
                        "whose reference is not trained here (e.g. benchmarks/results/ablation.json)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "ablation.json",
                   help="results JSON (the PNG chart beside it; default benchmarks/results/ablation.json)")
    args = p.parse_args(argv)
    args.runs.mkdir(parents=True, exist_ok=True)
    extra = [*coarse_dataroot(args.config, args.coarsen, args.data or args.runs), *(validation_split() if args.validation else []),
             *args.extra]
    results: dict[str, dict[int, dict[int, dict[str, Any]]]] = {v: {} for v in args.variants}
    seconds: dict[str, list[float]] = {v: [] for v in args.variants}
    for seed in args.seeds:  # interleave variants so a partial run still compares like with like
        for variant in args.variants:
            done = (run_dir(args.runs, variant, seed) / "checkpoints" / f"step_{args.steps:07d}.safetensors").is_file()
            if not done and args.summary_only:
                continue
            seconds[variant].append(train(variant, seed, args.steps, args.eval_every, args.runs, args.config, extra))
            results[variant][seed] = {step: evaluate(variant, seed, step, args.runs)
                                      for step in range(args.eval_every, args.steps + 1, args.eval_every)}
    results = {v: r for v, r in results.items() if r}
    summary = summarise(results, args.steps, reference_finals(args.reference, args.steps))
    summary["setup"] = {"config": args.config, "steps": args.steps, "eval_every": args.eval_every,
                        "evaluated_on": "validation scenes of the training data" if args.validation else "held-out",
                        "reference": None if args.reference is None else str(args.reference),
                        "coarsen": args.coarsen, "extra": extra, "machine": machine_info(),
                        "train_seconds": {v: [t if math.isfinite(t) else None for t in ts] for v, ts in seconds.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    plot(summary, args.out.with_suffix(".png"))
    print(table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
