"""protoocc-precompute-masks: SEEDS pseudo masks of L_cls (paper Sec. 3.2.2, Eq. 3) for a whole split, on disk.

    protoocc-precompute-masks --config occ3d_small --set dataset.dataroot=/data/nuscenes \\
        --out /data/protoocc_masks --workers 32
    protoocc-precompute-masks ... --shard 0/4        # machine 1 of 4 (disjoint shards, same --out folder)

Every keyframe's N camera images are decoded, resized to the network input, segmented by SEEDS and
stored on the pixel-feature grid (training/pseudo_masks.py: one compressed uint16 .npz per sample in
``<out>/<spec digest>/``). Worker processes share the work (tqdm shows it); a file is written under a
temporary name and renamed, so the command can be killed and rerun (what exists is skipped), and several
machines can fill one shared folder with ``--shard K/N`` (a sample belongs to shard ``sha1(token) mod N``).
Training reads the same folder with ``--set train.pseudo_mask_dir=<out>`` (and computes, in its loader
workers, whatever is still missing). Prints (and with ``--summary`` writes) CPU ms per image (process
time, so other load on the machine does not inflate it), bytes per image and the projection to
Occ3D-nuScenes (28,130 training samples x 6 cameras) on ``--workers`` cores.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from protoocc_ros.config import ConfigError, load_config
from protoocc_ros.data.errors import DatasetError
from protoocc_ros.training.errors import TrainingError
from protoocc_ros.training.loader import needs_pseudo_masks, pseudo_mask_store, single_threaded_cv2_before_fork
from protoocc_ros.training.pseudo_masks import PseudoMaskStore

OCC3D_TRAIN_SAMPLES = 28_130  # Occ3D-nuScenes / nuScenes v1.0-trainval training keyframes
OCC3D_CAMERAS = 6

_JOB: dict[str, Any] = {}  # the dataset and store of a worker process (set before forking / in the initializer)


def in_shard(token: str, shard: tuple[int, int]) -> bool:
    """Stable assignment of a sample to shard k of n (independent of dataset order and machine)."""
    k, n = shard
    return n == 1 or int(hashlib.sha1(token.encode()).hexdigest()[:8], 16) % n == k


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected K/N, e.g. 0/4") from exc
    if n < 1 or not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= K < N")
    return k, n




def _job(index: int) -> dict[str, float]:
    """Decode + resize + SEEDS + write one sample; timings in seconds."""
    dataset, store = _JOB["dataset"], _JOB["store"]
    clock = time.process_time  # CPU time of this process: the figure does not depend on other load
    t0 = clock()
    raw = dataset.raw_images(index)
    t1 = clock()
    masks = store.spec.compute(raw)
    t2 = clock()
    path = store.save(dataset.sample_token(index), masks)
    return {"index": index, "images": float(raw.shape[0]), "decode_s": t1 - t0, "seeds_s": t2 - t1,
            "write_s": clock() - t2, "bytes": float(path.stat().st_size)}


def precompute(dataset: Any, store: PseudoMaskStore, workers: int = 1, shard: tuple[int, int] = (0, 1),
               limit: int | None = None, progress: bool = True, desc: str = "pseudo masks") -> dict[str, Any]:
    """Fill ``store`` for every sample of ``dataset`` in ``shard`` that has no file yet; returns the figures."""
    if not (hasattr(dataset, "raw_images") and hasattr(dataset, "sample_token")):
        raise TrainingError(f"{type(dataset).__name__}: needs raw_images(i) and sample_token(i) to precompute masks")
    mine = [i for i in range(len(dataset)) if in_shard(dataset.sample_token(i), shard)]
    missing = [i for i in mine if not store.path(dataset.sample_token(i)).is_file()]
    todo = missing if limit is None else missing[:limit]
    store.ensure_folder()
    _JOB.update(dataset=dataset, store=store)
    start = time.perf_counter()
    results: list[dict[str, float]] = []
    bar = tqdm(total=len(todo), desc=desc, unit="sample", disable=not progress, dynamic_ncols=True)
    try:
        single_threaded_cv2_before_fork()  # one OpenCV thread per process (never set it in a forked child)
        if workers <= 1:
            for i in todo:
                results.append(_job(i))
                bar.update(1)
        else:
            with mp.get_context("fork").Pool(workers) as pool:
                for r in pool.imap_unordered(_job, todo, chunksize=2):
                    results.append(r)
                    bar.update(1)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    images = sum(r["images"] for r in results)
    summary: dict[str, Any] = {
        "store": str(store.folder), "spec": store.spec.to_json(), "samples_in_shard": len(mine),
        "skipped_existing": len(mine) - len(missing),
        "computed_samples": len(results), "images": int(images), "workers": workers, "shard": list(shard),
        "wall_s": seconds,
    }
    if results:
        per_image = {k: 1e3 * sum(r[k] for r in results) / images for k in ("decode_s", "seeds_s", "write_s")}
        cams = images / len(results)
        bytes_per_sample = sum(r["bytes"] for r in results) / len(results)
        cpu_ms = sum(per_image.values())
        summary.update({
            # CPU ms per image (process time of the worker); wall_ms_per_image also holds waiting for other load
            "ms_per_image_decode_resize": per_image["decode_s"], "ms_per_image_seeds": per_image["seeds_s"],
            "ms_per_image_write": per_image["write_s"], "ms_per_image_total_cpu": cpu_ms,
            "wall_ms_per_image": 1e3 * seconds / images,
            "bytes_per_sample": bytes_per_sample, "bytes_per_image": bytes_per_sample / cams,
            "projection_occ3d_nuscenes": {
                "samples": OCC3D_TRAIN_SAMPLES, "images": OCC3D_TRAIN_SAMPLES * OCC3D_CAMERAS,
                "cpu_hours": OCC3D_TRAIN_SAMPLES * OCC3D_CAMERAS * cpu_ms / 3.6e6,
                f"hours_on_{max(workers, 1)}_cores": OCC3D_TRAIN_SAMPLES * OCC3D_CAMERAS * cpu_ms / 3.6e6
                / max(workers, 1),
                "disk_gb": OCC3D_TRAIN_SAMPLES * bytes_per_sample / cams * OCC3D_CAMERAS / 1e9,
            },
        })
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="protoocc-precompute-masks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="config YAML path or name in config/ (e.g. occ3d_small)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable (e.g. --set dataset.dataroot=/data/nuscenes)")
    p.add_argument("--split", action="append", default=None,
                   help="split(s) to cover: train, val or a split name (repeatable; default: train)")
    p.add_argument("--out", default=None, help="mask folder (default: train.pseudo_mask_dir, else "
                                                "<train.output_dir>/pseudo_masks, i.e. where training looks)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    p.add_argument("--shard", type=_parse_shard, default=(0, 1), metavar="K/N",
                   help="only samples of shard K of N (several machines, one shared --out)")
    p.add_argument("--limit", type=int, default=None, help="at most this many samples (measurements)")
    p.add_argument("--summary", default=None, metavar="PATH.json", help="also write the figures as JSON")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = list(args.overrides) + ([f"train.pseudo_mask_dir={args.out}"] if args.out else [])
        cfg = load_config(args.config, overrides)
        if not needs_pseudo_masks(cfg):
            raise ConfigError("model.prototypes.optimization: L_cls is off in this config, it needs no pseudo masks")
        store = pseudo_mask_store(cfg)
        assert store is not None
        from protoocc_ros.data import build_dataset

        summaries = []
        for split in args.split or ["train"]:
            dataset = build_dataset(cfg, split)
            summary = precompute(dataset, store, args.workers, args.shard, args.limit, not args.no_progress,
                                 desc=f"pseudo masks ({split})")
            summary["split"] = split
            summaries.append(summary)
    except (ConfigError, DatasetError, TrainingError) as exc:
        print(f"protoocc-precompute-masks: error: {exc}", file=sys.stderr)
        return 2
    for s in summaries:
        line = (f"protoocc-precompute-masks: {s['split']}: {s['computed_samples']} samples computed, "
                f"{s['skipped_existing']} already there, in {s['wall_s']:.1f} s -> {s['store']}")
        if s["computed_samples"]:
            proj = s["projection_occ3d_nuscenes"]
            line += (f"\n  per image: decode+resize {s['ms_per_image_decode_resize']:.1f} ms, SEEDS "
                     f"{s['ms_per_image_seeds']:.1f} ms, write {s['ms_per_image_write']:.2f} ms; "
                     f"{s['bytes_per_image']:.0f} B on disk"
                     f"\n  Occ3D-nuScenes ({proj['images']} images): {proj['cpu_hours']:.2f} CPU-hours, "
                     f"{proj['disk_gb']:.2f} GB")
        print(line)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summaries if len(summaries) > 1 else summaries[0], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
