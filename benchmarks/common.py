"""Shared benchmark helpers (docs/benchmarks.md): machine facts, load average, timing statistics, config variants, inputs, JSON.

Every measurement records the CPU model, torch thread count and ``os.getloadavg()`` next to it, so
numbers taken on the shared 2-core machine can be judged (and retaken when the load was high).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(REPO))

from protoocc_ros.device import DeviceError, resolve_device as device_of  # noqa: E402
from protoocc_ros.config import (  # noqa: E402
    PRINTED_READING, ConfigError, ProtoOccConfig, expected_num_prototypes, load_config, reading_overrides,
    validate_config,
)

RESULTS_DIR = REPO / "benchmarks" / "results"

# Paper Table 4 flag sets (Proto. Mapping, Proto. Optimization, MOD) + temporal memory off on the full model.
ABLATIONS: dict[str, dict[str, bool]] = {
    "exp1_baseline": {"prototypes.enabled": False, "prototypes.optimization": False, "decoder.multi_perspective": False},
    "exp2_mapping": {"prototypes.enabled": True, "prototypes.optimization": False, "decoder.multi_perspective": False},
    "exp3_mapping_opt": {"prototypes.enabled": True, "prototypes.optimization": True,
                         "decoder.multi_perspective": False},
    "exp4_mod": {"prototypes.enabled": False, "prototypes.optimization": False, "decoder.multi_perspective": True},
    "exp5_full": {"prototypes.enabled": True, "prototypes.optimization": True, "decoder.multi_perspective": True},
    "exp5_no_temporal": {"prototypes.enabled": True, "prototypes.optimization": True,
                         "decoder.multi_perspective": True, "temporal.enabled": False},
}
# Readings of Eqs. 1a, 1b and 2 other than the defaults (docs/architecture.md "Readings"): the overrides that select
# one on top of the default ProtoOcc. "printed" is the equations read literally (every reading flag off: the model
# whose mapping collapses to one vector a camera); the others change one choice each.
_P = "model.prototypes."
READINGS: dict[str, list[str]] = {
    "printed": reading_overrides(PRINTED_READING),
    "soft_assignment": [f"{_P}hard_assignment=false"],
    "total_norm": [f"{_P}per_prototype_norm=false"],
    "plain_sigmoid": [f"{_P}learned_affinity_scale=false"],
    "pixel_linear": [f"{_P}pixel_softmax=false"],
    "dispatch_steers_only": [f"{_P}dispatch_to_output=false"],
    "dispatch_mlp_on_prototypes": [f"{_P}dispatch_mlp_on_prototypes=true"],
    "layers_0": [f"{_P}layers=[0]"],
    "cls_no_queries": [f"{_P}cls_trains_queries=false"],
}
# Paper Table 5: the voxel augmentations of the multi-perspective decoder on the baseline (Table 4 Exp. 4), each
# with the consistency regularisation (C.R., L_cons) and, as ``<name>_nocr``, without it (λ4 = 0).
TABLE5: dict[str, list[str]] = {
    "dropout": ["dropout"], "noise": ["noise"], "transpose": ["transpose"], "flip": ["flip"],
    "dropout_flip": ["dropout+flip"], "noise_transpose": ["noise+transpose"],
    "two_views": ["dropout+transpose", "noise+flip"],
}
CONFIGS = ("demo", "demo_baseline", "occ3d_tiny", "occ3d_small", "occ3d_base", "kitti_small", "kitti_base")


class BenchmarkError(RuntimeError):
    """A benchmark cannot run as asked; the message names the option/config and what was expected."""


# -- machine and load -----------------------------------------------------------------------------------
def cpu_model() -> str:
    """'model name' of /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """What the numbers were measured on: CPU, logical cores, torch and its thread counts, GPU if used."""
    info: dict[str, Any] = {
        "cpu_model": cpu_model(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def wait_for_low_load(max_load: float | None, timeout_s: float = 1800.0, poll_s: float = 30.0) -> list[float]:
    """Block until the 1-minute load average is <= max_load (None = don't wait); returns the load at start."""
    deadline = time.monotonic() + timeout_s
    while max_load is not None and os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        print(f"[bench] load {load_average()} > {max_load}: waiting {poll_s:.0f} s", flush=True)
        time.sleep(poll_s)
    return load_average()


def set_threads(threads: int | None) -> int:
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def resolve_device(name: str) -> torch.device:
    try:
        return device_of(name)
    except DeviceError as exc:
        raise BenchmarkError(f"--device: {exc}") from None


# -- timing ---------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (q in 0..100) of a non-empty list."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize_ms(seconds: list[float]) -> dict[str, float]:
    """median / p90 / mean / min / max in milliseconds of a list of durations in seconds."""
    if not seconds:
        raise BenchmarkError("summarize_ms: no samples (repeats must be >= 1)")
    ms = [1e3 * s for s in seconds]
    return {"median_ms": round(statistics.median(ms), 3), "p90_ms": round(percentile(ms, 90), 3),
            "mean_ms": round(statistics.fmean(ms), 3), "min_ms": round(min(ms), 3), "max_ms": round(max(ms), 3),
            "n": len(ms)}


def time_repeated(fn: Callable[[], Any], warmup: int, repeats: int, device: torch.device,
                  progress: str | None = None) -> list[float]:
    """Call fn warmup + repeats times (synchronising CUDA around each call); durations of the timed calls (s)."""
    from tqdm import tqdm

    times = []
    for i in tqdm(range(warmup + repeats), desc=progress, leave=False, disable=progress is None):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


# -- configs --------------------------------------------------------------------------------------------
def variant_config(name: str, flags: dict[str, bool] | None = None, image_size: tuple[int, int] | None = None,
                   extra: Iterable[str] = ()) -> ProtoOccConfig:
    """Config `name` with ablation flags (keys below model.), an optional input size and KEY=VALUE overrides.

    A different image size changes the number of prototypes M (ceil(h_f/r) x ceil(w_f/r), paper Table 6);
    it is recomputed so the config stays valid. The data root is the synthetic sample.
    """
    overrides = [f"model.{k}={'true' if v else 'false'}" for k, v in (flags or {}).items()]
    overrides += ["dataset.dataroot=synthetic", "model.backbone.pretrained=null", *extra]
    try:
        cfg = load_config(name, overrides)
    except ConfigError as exc:
        raise BenchmarkError(f"config {name!r} with {overrides}: {exc}") from None
    if cfg.dataset.kind == "occ3d":
        cfg.dataset.version = "v1.0-mini"
    if image_size is not None:
        cfg.dataset.image_size = [int(image_size[0]), int(image_size[1])]
        cfg.model.prototypes.num_prototypes = expected_num_prototypes(cfg)
        validate_config(cfg)
    return cfg


def inference_signature(cfg: ProtoOccConfig) -> str:
    """Configs with equal signatures run the same inference graph (optimization / MOD only act in training)."""
    d = dataclasses.asdict(cfg)
    d.pop("name"), d.pop("train"), d.pop("eval"), d.pop("loss")
    d["model"]["prototypes"].pop("optimization")
    d["model"]["decoder"] = {k: v for k, v in d["model"]["decoder"].items() if k in ("channels", "overlap")}
    d["dataset"] = {k: d["dataset"][k] for k in ("cameras", "image_size", "grid_size", "point_cloud_range",
                                                "num_classes")}
    return json.dumps(d, sort_keys=True)


# -- inputs ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FrameInputs:
    """One camera set in the model contract's layout (batch 1)."""

    images: torch.Tensor     # (1, N, 3, H, W) float32, normalised
    lidar2img: torch.Tensor  # (1, N, 4, 4) float32
    ego2global: torch.Tensor  # (1, 4, 4) float64
    timestamp: torch.Tensor  # (1,) float64

    def to(self, device: torch.device) -> FrameInputs:
        return FrameInputs(*(t.to(device) for t in dataclasses.astuple(self)))

    def args(self) -> tuple[torch.Tensor, ...]:
        return dataclasses.astuple(self)


def sample_frames(cfg: ProtoOccConfig, count: int = 2) -> list[FrameInputs]:
    """The first `count` consecutive frames of the first validation scene of the synthetic sample, at the
    config's image size (real camera geometry, so the hit-query counts K are those of the rig)."""
    from protoocc_ros.data.build import build_dataset

    ds = build_dataset(cfg, "val")
    frames = []
    for i in range(count):
        s = ds[i]
        frames.append(FrameInputs(s["images"][None], s["lidar2img"][None].float(),
                                  torch.as_tensor(s["ego2global"], dtype=torch.float64)[None],
                                  torch.tensor([float(s["timestamp"])], dtype=torch.float64)))
    return frames


# -- output ---------------------------------------------------------------------------------------------
def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"[bench] wrote {path}", flush=True)
    return path


def header(device: torch.device | None = None) -> dict[str, Any]:
    """Machine block + the time and load when the run started."""
    return {"machine": machine_info(device), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "load_average_start": load_average(), "command": " ".join(sys.argv)}


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    print(f"[bench] wrote {path}", flush=True)
    return path


def add_common_args(parser: argparse.ArgumentParser, out: Path, warmup: int, repeats: int) -> None:
    """--threads --warmup --repeats --max-load --seed --out, shared by the model-level scripts."""
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--max-load", type=float, default=None, help="wait until the 1-min load is below this")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--out", type=Path, default=out, help="JSON path (the PNG goes next to it)")


def finish(prog: str, run: Callable[[Any], dict], args: Any, table: Callable[[dict], str | None],
           plot: Callable[[dict, Path], Path], errors: tuple[type[BaseException], ...] = ()) -> int:
    """run(args) -> result; result['table'] = table(result); write the JSON and the PNG. Exit code 2 on
    a BenchmarkError (or one of `errors`) with its message."""
    try:
        result = run(args)
    except (BenchmarkError, *errors) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    text = table(result)
    if text is not None:
        result["table"] = text
    write_json(args.out, result)
    plot(result, args.out.with_suffix(".png"))
    return 0


def print_table(rows: list[list[Any]], headers: list[str]) -> str:
    """Markdown table text (also printed)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text
