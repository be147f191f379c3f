"""Training-loader throughput at nuScenes image size (issue 15): samples/s and per-stage cost of one sample.

A synthetic Occ3D-nuScenes dataroot with real nuScenes camera images (6 x 1600x900 JPEG, quality 92,
textured and noisy like the demo sample) is generated once into ``--data`` (or a cache folder). Then
``TrainingSamples`` of ``--config`` (default occ3d_small: 432x800 network input) is read through a
``DataLoader`` with each ``--workers`` count: decode, resize, normalise, lidar2img, Occ3D targets and the
pseudo masks (precomputed with protoocc-precompute-masks, or computed by the workers with
``--masks compute``), optionally with the recipe's augmentation (``--augment``). Samples/s are counted
after the first ``--skip`` samples (worker start-up); the JPEGs are in the page cache (disk reads are not
part of the figure). The per-stage table times the same steps in this process in CPU time (process time:
what one worker costs on a core of its own, whatever else runs on the machine); the wall-clock samples/s
of the DataLoader rows depend on the free cores (``load_average`` is recorded). The result says how many
workers keep a GPU fed for a given GPU time per frame (no GPU was measured here: ``--gpu-frame-s``).

    taskset -c 1 python benchmarks/bench_loader.py --workers 0 1 2
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from common import load_average, machine_info  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "loader.json"
DEFAULT_DATA = Path.home() / ".cache" / "protoocc_ros" / "synthetic-fullsize-1600x900"
RECIPE_AUGMENTATION = ["train.augmentation.photometric=true", "train.augmentation.flip_prob=0.5",
                       "train.augmentation.resize_range=[0.94,1.11]"]


def ensure_fullsize(root: Path, frames: int) -> Path:
    from protoocc_ros.data.synthetic.sample import SampleConfig, generate_sample, is_complete

    if not is_complete(root):
        cfg = SampleConfig(train_scenes=1, val_scenes=1, frames_per_scene=frames, image_size=(900, 1600),
                           kitti=False, workers=1)
        generate_sample(root, cfg)
    return root


def _loader_rate(samples: Any, workers: int, count: int, skip: int) -> dict[str, float]:
    import torch
    from torch.utils.data import DataLoader

    from protoocc_ros.training.loader import worker_init

    n = len(samples)
    order = [i % n for i in range(count + skip)]

    class _Ordered(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(order)

        def __getitem__(self, k: int) -> dict:
            return samples.sample(order[k], epoch=k // n)

    extra = {"prefetch_factor": 2, "worker_init_fn": worker_init} if workers > 0 else {}
    loader = DataLoader(_Ordered(), batch_size=None, num_workers=workers, collate_fn=lambda x: x, **extra)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    main0 = time.process_time()
    start = None
    for k, _ in enumerate(loader):
        if k == skip - 1:
            start = time.perf_counter()
    seconds = time.perf_counter() - start
    main_cpu = time.process_time() - main0
    del loader  # joins the workers: their CPU time appears in RUSAGE_CHILDREN
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    total = count + skip
    return {"workers": workers, "samples": count, "seconds": seconds, "samples_per_s": count / seconds,
            "worker_cpu_ms_per_sample": 1e3 * worker_cpu / total if workers else None,
            "main_cpu_ms_per_sample": 1e3 * main_cpu / total}


def _stages(dataset: Any, cfg: Any, store: Any, repeats: int) -> dict[str, float]:
    """CPU ms per sample of each step, in this process (what one worker does; process time, so other load on
    the machine does not inflate it)."""
    from protoocc_ros.data.augmentation import augment_camera_set, draw_camera_augmentation, is_enabled
    from protoocc_ros.data.io import read_rgb
    from protoocc_ros.data.preprocessing import lidar2img_from, normalize_images, resize_images

    times: dict[str, list[float]] = {k: [] for k in ("decode", "resize", "normalise", "lidar2img", "targets",
                                                     "masks_read", "augment", "seeds_compute")}
    size = tuple(cfg.dataset.image_size)
    for r in range(repeats):
        i = r % len(dataset)
        f = dataset.frames[i]
        t0 = time.process_time()
        images = [read_rgb(p) for p in f.image_paths]
        t1 = time.process_time()
        raw = resize_images(images, size)
        t2 = time.process_time()
        normalize_images(raw)
        t3 = time.process_time()
        [lidar2img_from(K, T, (size[1] / im.shape[1], size[0] / im.shape[0]))
         for K, T, im in zip(f.intrinsics, f.cam2ego, images)]
        t4 = time.process_time()
        dataset.load_targets(i)
        t5 = time.process_time()
        if store is not None:
            store.load(f.sample_token)
        t6 = time.process_time()
        aug = cfg.train.augmentation
        if is_enabled(aug):
            rng = np.random.default_rng(r)
            params = [draw_camera_augmentation(aug, size, rng) for _ in range(raw.shape[0])]
            out, _ = augment_camera_set(raw, np.eye(4)[None].repeat(raw.shape[0], 0), params)
            normalize_images(out)
        t7 = time.process_time()
        if r < 2 and store is not None:
            store.spec.compute(raw)
        t8 = time.process_time()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6, t8 - t7)):
            times[key].append(dt)
    out = {k: 1e3 * float(np.median(v)) for k, v in times.items() if k != "seeds_compute"}
    out["seeds_compute"] = 1e3 * float(np.mean(times["seeds_compute"][:2]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="occ3d_small")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="full-size synthetic dataroot (generated if missing)")
    p.add_argument("--frames", type=int, default=10, help="keyframes of the generated training scene")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=40, help="samples timed per worker count")
    p.add_argument("--skip", type=int, default=6, help="samples before the clock starts (worker start-up)")
    p.add_argument("--masks", choices=["precomputed", "compute", "off"], default="precomputed")
    p.add_argument("--augment", action="store_true", help="the recipe's photometric + resize/crop + flip")
    p.add_argument("--gpu-frame-s", type=float, nargs="+", default=[0.1, 0.25, 0.5],
                   help="GPU time of one training frame to feed (not measured here: assumptions)")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)

    import cv2
    import torch

    from protoocc_ros.config import load_config
    from protoocc_ros.data import build_dataset
    from protoocc_ros.tools.precompute_masks import precompute
    from protoocc_ros.training.loader import TrainingSamples, pseudo_mask_store

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    root = ensure_fullsize(Path(args.data), args.frames)
    overrides = [f"dataset.dataroot={root}", "dataset.version=v1.0-mini",
                 f"train.pseudo_mask_dir={root / 'pseudo_masks'}"] + (RECIPE_AUGMENTATION if args.augment else [])
    if args.masks == "off":
        overrides.append("model.prototypes.optimization=false")
    cfg = load_config(args.config, overrides)
    dataset = build_dataset(cfg, "train")
    store = pseudo_mask_store(cfg)
    jpeg = [Path(f).stat().st_size for fr in dataset.frames for f in fr.image_paths]
    if store is not None and args.masks == "precomputed":
        precompute(dataset, store, workers=1, progress=False)
    elif store is not None:  # compute: an empty store folder the workers fill (and refill: cleared per run)
        import shutil

        shutil.rmtree(store.folder, ignore_errors=True)
    samples = TrainingSamples(dataset, cfg, store)
    stages = _stages(dataset, cfg, store, repeats=min(len(dataset), 10))
    rows = []
    for w in args.workers:
        if store is not None and args.masks == "compute":
            import shutil

            shutil.rmtree(store.folder, ignore_errors=True)
        rows.append(_loader_rate(samples, w, args.samples, args.skip))
        r = rows[-1]
        cpu = "" if not w else f"; workers {r['worker_cpu_ms_per_sample']:.0f} CPU ms/sample"
        print(f"num_workers={w}: {r['samples_per_s']:.2f} samples/s wall ({r['samples']} samples in "
              f"{r['seconds']:.1f} s); training process {r['main_cpu_ms_per_sample']:.0f} CPU ms/sample{cpu}")
    cpu_ms = sum(v for k, v in stages.items() if k != "seeds_compute")
    loader_cpu = [r["worker_cpu_ms_per_sample"] for r in rows if r["workers"]]
    worker_ms = max(loader_cpu) if loader_cpu else cpu_ms  # through the DataLoader: + pickling / shared memory
    per_worker = 1e3 / worker_ms  # samples/s one worker sustains on a core of its own
    feed = [{"gpu_frame_s": g, "samples_per_s_needed": 1.0 / g,
             "workers_per_gpu": math.ceil((1.0 / g) / per_worker)} for g in args.gpu_frame_s]
    result = {
        "config": args.config, "image_size": cfg.dataset.image_size, "source_image_size": [900, 1600],
        "cameras": len(cfg.dataset.cameras), "masks": args.masks, "augment": args.augment,
        "jpeg_bytes_mean": float(np.mean(jpeg)), "train_frames": len(dataset), "rows": rows,
        "stages_cpu_ms_per_sample": stages, "cpu_ms_per_sample": cpu_ms, "worker_cpu_ms_per_sample": worker_ms,
        "per_worker_samples_per_s": per_worker,
        "feed": feed,
        "command": "python benchmarks/bench_loader.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(), "load_average_end": load_average(),
    }
    print("CPU ms per sample (6 cameras): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    print(f"JPEG {np.mean(jpeg) / 1e3:.0f} kB mean; stages {cpu_ms:.0f} CPU ms/sample, a DataLoader worker "
          f"{worker_ms:.0f} CPU ms/sample = {per_worker:.2f} samples/s on a core of its own")
    for f in feed:
        print(f"  GPU frame {f['gpu_frame_s']} s -> {f['samples_per_s_needed']:.1f} samples/s -> "
              f"{f['workers_per_gpu']} worker(s) per GPU")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
