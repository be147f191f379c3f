"""Scale test of the training loop (issue 15): RSS of every process over epochs, pseudo masks reused from disk.

A few thousand Occ3D-format keyframes are made from the synthetic sample (``replicate_sample``: its
training scenes repeated with new tokens, labels coarsened 4x to 50x50x4 so a small model trains fast,
6 cameras at 96x176 as the demo), then ``--ranks`` DDP processes (gloo, CPU) x ``--workers`` DataLoader
workers train ``--epochs`` epochs with prototype optimization on (SEEDS masks made by the loader workers
into ``train.pseudo_mask_dir``). A thread of this process reads ``/proc/<pid>/status`` (VmRSS) of every
rank and worker every ``--interval`` s. Reported per process: peak growth over its value after the warm-up
(the first ``--warmup`` of the training time for a rank, of its life for a worker) and the least-squares
slope over the rest, in MB and MB/min; for the ranks also MB per 1000 frames. The mask folder is snapshotted at the start of the last epoch: the last epoch
must add or rewrite no file. ``--leak-control`` keeps, in each rank, every sample's full-resolution int32
masks in a dict (what ``PseudoMaskCache`` did) to show what an unbounded cache looks like here.

    taskset -c 1 python benchmarks/bench_training_memory.py --copies 30 --epochs 2   # 2400 frames
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results" / "training_memory.json"
SERIES_POINTS = 150  # RSS samples kept per process in the JSON (the statistics use all of them)
# The demo's rig and images on a coarse grid (replicated labels coarsened 4x) with a small model.
SCALE_OVERRIDES = [
    "dataset.voxel_size=1.6", "dataset.grid_size=[50,50,4]", "model.query_size=[25,25,2]",
    "model.embed_dims=16", "model.neck.channels=16", "model.backbone.width=8", "model.decoder.channels=8",
    "model.encoder.ffn_dims=32", "train.clip_length=2", "train.batch_size=1", "train.warmup_steps=10",
    "train.checkpoint_every=1000000", "train.log_every=100000", "train.lr=1e-3",
    "train.max_steps=null",  # the run is sized in epochs (the demo recipe's max_steps would override them)
]


def rss_mb(pid: int) -> tuple[float, float, float] | None:
    """(VmRSS, RssAnon, RssShmem) of a process in MB (shared-memory tensors from workers count as RssShmem)."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if line.startswith(("VmRSS:", "RssAnon:", "RssShmem:")))
        return tuple(int(fields[k].split()[0]) / 1024.0 for k in ("VmRSS", "RssAnon", "RssShmem"))  # type: ignore
    except (OSError, ValueError, KeyError):
        return None


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


class TreeMonitor(threading.Thread):
    """Samples VmRSS of the given rank pids and all their descendants (DataLoader workers)."""

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.ranks: dict[int, int] = {}  # pid -> rank
        self.samples: dict[int, list[tuple[float, float]]] = {}  # pid -> (t, VmRSS MB)
        self.split: dict[int, list[tuple[float, float]]] = {}    # pid -> (RssAnon, RssShmem) MB
        self.parent: dict[int, int] = {}
        self.stop = threading.Event()
        self.t0, self.wall0 = time.monotonic(), time.time()

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic() - self.t0
            for pid in list(self.ranks):
                for p in [pid] + self._descendants(pid):
                    value = rss_mb(p)
                    if value is not None:
                        self.samples.setdefault(p, []).append((now, value[0]))
                        self.split.setdefault(p, []).append(value[1:])
            self.stop.wait(self.interval)

    def _descendants(self, pid: int) -> list[int]:
        out = []
        for c in children(pid):
            self.parent.setdefault(c, pid)
            out += [c] + self._descendants(c)
        return out


def series_stats(points: list[tuple[float, float]], warmup: float, t_begin: float | None = None
                 ) -> dict[str, float] | None:
    """Peak growth after warm-up and least-squares slope (MB/min) of one process's RSS.

    The warm-up is the first ``warmup`` fraction of the time from ``t_begin`` (default: the first sample;
    for the ranks: the start of training, after imports and the dataset tables) to the last sample.
    """
    if len(points) < 4:
        return None
    t = np.array([p[0] for p in points])
    r = np.array([p[1] for p in points])
    begin = t[0] if t_begin is None else max(t[0], t_begin)
    keep = t >= begin + warmup * (t[-1] - begin)
    if keep.sum() < 3:
        return None
    base = float(r[keep][0])
    slope = float(np.polyfit(t[keep], r[keep], 1)[0]) * 60.0 if np.ptp(t[keep]) > 0 else 0.0
    return {"lifetime_s": float(t[-1] - t[0]), "rss_start_mb": float(r[0]), "rss_after_warmup_mb": base,
            "rss_peak_mb": float(r.max()), "peak_growth_after_warmup_mb": float(r[keep].max() - base),
            "slope_mb_per_min": slope, "rss_end_mb": float(r[-1]), "samples": int(len(points)),
            "measured_from_s": float(t[keep][0])}


def _rank_main(rank: int, world: int, port: int, args: dict[str, Any]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    import torch

    torch.set_num_threads(1)
    from protoocc_ros.config import load_config
    from protoocc_ros.training.distributed import init_distributed, shutdown_distributed
    from protoocc_ros.training.pseudo_masks import compute_pseudo_masks
    from protoocc_ros.training.trainer import Trainer

    events = Path(args["events"])

    def log(**kw: Any) -> None:
        with open(events, "a") as fh:
            fh.write(json.dumps({"rank": rank, "pid": os.getpid(), "t": time.time(), **kw}) + "\n")

    class ProbedTrainer(Trainer):
        """Records epoch starts (and the mask folder then) and the frames seen; optionally leaks like the old cache."""

        leak: dict[str, np.ndarray] = {}
        seen_epoch = -1
        frames = 0

        def train_step(self, frames: list[list[dict[str, Any]]]) -> dict[str, float]:
            if self.epoch != self.seen_epoch:
                self.seen_epoch = self.epoch
                files = sorted(self.mask_store.folder.rglob("*.npz")) if self.mask_store.folder.is_dir() else []
                log(event="epoch_start", epoch=self.epoch, step=self.step, mask_files=len(files),
                    mask_mtime_sum=sum(f.stat().st_mtime_ns for f in files) % (1 << 62))
            if args["leak_control"]:
                for samples in frames:
                    for s in samples:
                        raw = self.dataset.raw_images(self.dataset_index[s["sample_token"]])
                        self.leak[s["sample_token"]] = np.stack([compute_pseudo_masks(im, 66, 0) for im in raw])
            self.frames += sum(len(s) for s in frames)
            return super().train_step(frames)

    ctx = init_distributed("cpu")
    try:
        cfg = load_config("demo", SCALE_OVERRIDES + args["overrides"])
        trainer = ProbedTrainer(cfg, output_dir=args["run_dir"], ctx=ctx, progress=False, tensorboard=False)
        trainer.dataset_index = {trainer.dataset.sample_token(i): i for i in range(len(trainer.dataset))}
        log(event="start", frames_total=len(trainer.dataset), steps=trainer.total_steps)
        result = trainer.fit()
        files = sorted(trainer.mask_store.folder.rglob("*.npz"))
        log(event="end", step=trainer.step, frames=trainer.frames, seconds=result["seconds"],
            mask_files=len(files), mask_mtime_sum=sum(f.stat().st_mtime_ns for f in files) % (1 << 62),
            computed_in_rank=trainer.mask_store.computed, leaked=len(trainer.leak))
    finally:
        shutdown_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(copies: int, epochs: int, ranks: int, workers: int, work: Path, interval: float = 0.5,
        warmup: float = 0.2, leak_control: bool = False, extra: list[str] | None = None) -> dict[str, Any]:
    import torch.multiprocessing as mp

    from protoocc_ros.data.synthetic import ensure_sample
    from protoocc_ros.data.synthetic.replicate import replicate_sample

    root = work / "dataroot"
    if not (root / "replicated.json").is_file() or json.loads((root / "replicated.json").read_text())["copies"] != copies:
        replicate_sample(ensure_sample(progress=False), root, copies, coarsen=4)
    frames = json.loads((root / "replicated.json").read_text())["train_samples"]
    events = work / "events.jsonl"
    events.unlink(missing_ok=True)
    overrides = [f"dataset.dataroot={root}", f"train.epochs={epochs}", f"train.num_workers={workers}",
                 f"train.pseudo_mask_dir={work / 'masks'}"] + list(extra or [])
    monitor = TreeMonitor(interval)
    ctx = mp.start_processes(_rank_main, args=(ranks, _free_port(), {
        "events": str(events), "run_dir": str(work / "run"), "overrides": overrides, "leak_control": leak_control}),
        nprocs=ranks, join=False, start_method="spawn")
    for rank, pid in enumerate(ctx.pids()):
        monitor.ranks[pid] = rank
    start = time.time()
    monitor.start()
    while not ctx.join(timeout=1.0):
        pass
    monitor.stop.set()
    monitor.join()
    wall = time.time() - start
    log = [json.loads(line) for line in events.read_text().splitlines()]
    rank_pids = {e["pid"]: e["rank"] for e in log if e["event"] == "start"}
    train_begin = {e["pid"]: e["t"] - monitor.wall0 for e in log if e["event"] == "epoch_start" and e["epoch"] == 0}
    epoch_marks_by_pid: dict[int, list[tuple[int, float]]] = {}
    for e in log:
        if e["event"] == "epoch_start":
            epoch_marks_by_pid.setdefault(e["pid"], []).append((e["epoch"], e["t"] - monitor.wall0))
    processes = []
    for pid, points in monitor.samples.items():
        stats = series_stats(points, warmup, train_begin.get(pid))
        if stats is None:
            continue
        role = f"rank{monitor.ranks[pid]}" if pid in monitor.ranks else \
            f"rank{monitor.ranks.get(monitor.parent.get(pid, -1), '?')}-worker"
        step = max(1, len(points) // SERIES_POINTS)
        entry = {"pid": pid, "role": role, **stats,
                 "series": [(round(t, 2), round(v, 1)) for t, v in points[::step]],
                 "anon_shmem_series": [(round(a, 1), round(b, 1)) for a, b in monitor.split[pid][::step]]}
        if pid in train_begin:  # a rank: the same figures per epoch (the first epoch after its warm-up)
            marks = [m for e, m in epoch_marks_by_pid.get(pid, [])] + [points[-1][0]]
            entry["per_epoch"] = []
            for k in range(len(marks) - 1):
                window = [pt for pt in points if marks[k] <= pt[0] <= marks[k + 1]]
                ep = series_stats(window, warmup if k == 0 else 0.0)
                if ep is not None:
                    entry["per_epoch"].append({"epoch": k, **{key: ep[key] for key in (
                        "rss_after_warmup_mb", "peak_growth_after_warmup_mb", "slope_mb_per_min", "rss_end_mb")}})
        processes.append(entry)
    ends = {e["rank"]: e for e in log if e["event"] == "end"}
    starts = [e for e in log if e["event"] == "epoch_start" and e["rank"] == 0]
    last = starts[-1] if len(starts) >= 2 else None
    for p in processes:
        if p["role"].startswith("rank") and "worker" not in p["role"]:
            n = ends[monitor.ranks[p["pid"]]]["frames"]
            p["frames"] = n
            p["peak_growth_mb_per_1000_frames"] = 1000.0 * p["peak_growth_after_warmup_mb"] / max(n, 1)
    end0 = ends[0]
    reuse = None if last is None else {
        "mask_files_at_last_epoch_start": last["mask_files"], "mask_files_at_end": end0["mask_files"],
        "files_added_in_last_epoch": end0["mask_files"] - last["mask_files"],
        "files_rewritten_in_last_epoch": int(end0["mask_mtime_sum"] != last["mask_mtime_sum"]
                                             and end0["mask_files"] == last["mask_files"])}
    epoch_marks = [(e["epoch"], round(e["t"] - monitor.wall0, 2)) for e in starts]
    return {"epoch_start_s": epoch_marks, "frames": frames, "epochs": epochs, "ranks": ranks, "workers_per_rank": workers, "wall_s": wall,
            "leak_control": leak_control, "rank_pids": rank_pids, "processes": sorted(processes, key=lambda p: p["role"]),
            "masks_computed_in_rank_processes": sum(e["computed_in_rank"] for e in ends.values()),
            "mask_reuse": reuse, "steps_per_rank": end0["step"],
            "seconds_per_step": end0["seconds"] / max(end0["step"], 1)}


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = [f"{result['frames']} training frames, {result['epochs']} epochs, {result['ranks']} DDP ranks x "
             f"{result['workers_per_rank']} workers, {result['wall_s']:.0f} s wall, "
             f"{result['seconds_per_step']:.2f} s/step{' [LEAK CONTROL]' if result['leak_control'] else ''}"]
    for p in result["processes"]:
        lines.append(f"  {p['role']:>14} pid {p['pid']:>7}: RSS {p['rss_after_warmup_mb']:7.1f} MB after warm-up, "
                     f"peak +{p['peak_growth_after_warmup_mb']:6.1f} MB, slope {p['slope_mb_per_min']:+7.2f} MB/min "
                     f"over {p['lifetime_s']:.0f} s")
        for ep in p.get("per_epoch", []):
            lines.append(f"  {'':>14}   epoch {ep['epoch']}: from {ep['rss_after_warmup_mb']:7.1f} MB, peak "
                         f"+{ep['peak_growth_after_warmup_mb']:6.1f} MB, slope {ep['slope_mb_per_min']:+7.2f} MB/min, "
                         f"end {ep['rss_end_mb']:7.1f} MB")
    lines.append(f"  masks computed in the rank processes: {result['masks_computed_in_rank_processes']}; "
                 f"last epoch: {result['mask_reuse']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--copies", type=int, default=30, help="copies of the 8 training scenes (80 frames each)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--interval", type=float, default=0.5, help="RSS sampling period (s)")
    p.add_argument("--warmup", type=float, default=0.2,
                   help="fraction of the training time (ranks) / of the life (workers) left out as warm-up")
    p.add_argument("--leak-control", action="store_true", help="keep full-resolution masks in memory (old cache)")
    p.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    p.add_argument("--out", default=str(RESULTS), help="result JSON")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="protoocc_scale_") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(args.copies, args.epochs, args.ranks, args.workers, work, args.interval, args.warmup,
                     args.leak_control)
    result["command"] = "python benchmarks/bench_training_memory.py " + " ".join(argv if argv is not None
                                                                                 else sys.argv[1:])
    from common import load_average, machine_info  # noqa: E402 (benchmarks/common.py)

    result["machine"], result["load_average_end"] = machine_info(), load_average()
    print("\n".join(summary_lines(result)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result) + "\n")  # one line: the RSS series are long
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
