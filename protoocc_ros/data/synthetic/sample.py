"""The embedded synthetic sample (design §4): generate it in nuScenes+Occ3D and SemanticKITTI formats, cached.

``generate_sample(root, SampleConfig(...))`` writes a complete dataroot (scenes rendered in worker processes);
``ensure_sample(root=None, seed=0)`` returns the cached default sample, generating it only when its
completion marker is missing. Everything is deterministic given the seed (per-scene and per-frame seeds are
derived from it, so the result does not depend on the number of workers).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from protoocc_ros.classes import OCC3D_FREE_LABEL
from protoocc_ros.data.errors import DatasetError
from protoocc_ros.data.synthetic import kitti_writer
from protoocc_ros.data.synthetic import world as W
from protoocc_ros.data.synthetic.appearance import Noise
from protoocc_ros.data.synthetic.frames import FrameRenderer
from protoocc_ros.data.synthetic.nuscenes_writer import FrameRecord, NuScenesWriter
from protoocc_ros.data.synthetic.rig import (KITTI_LIDAR_ELEVATION, KITTI_VELO_HEIGHT, LIDAR_TRANSLATION,
                                             NUSCENES_LIDAR_ELEVATION, kitti_camera, nuscenes_cameras)

SAMPLE_FORMAT = "synthetic-v1"
MARKER = ".complete"
OCC3D_RANGE = [-40.0, -40.0, -1.0, 40.0, 40.0, 5.4]
KITTI_DIR = "semantic_kitti"


@dataclass
class SampleConfig:
    """Size of the generated sample; the defaults are the embedded demo / training sample."""

    seed: int = 0
    train_scenes: int = 8
    val_scenes: int = 2
    frames_per_scene: int = 10
    image_size: tuple[int, int] = (180, 320)           # (H, W) of the stored JPEGs
    version: str = "v1.0-mini"
    jpeg_quality: int = 92
    kitti: bool = True                                  # also write the SemanticKITTI variant
    kitti_sequences: dict[str, str] = field(default_factory=lambda: {"00": "train", "08": "val"})
    kitti_frames: int = 4
    kitti_image_size: tuple[int, int] = (120, 400)
    workers: int = 0                                     # 0 = min(4, cpu count); 1 = in-process

    def scene_names(self) -> dict[str, list[str]]:
        names = [f"scene-{i:04d}" for i in range(1, self.train_scenes + self.val_scenes + 1)]
        return {"train": names[:self.train_scenes], "val": names[self.train_scenes:]}

    def scene_seed(self, index: int) -> int:
        return int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])


def _frame_rng(cfg: SampleConfig, *parts: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([cfg.seed, *parts]))


_RENDERERS: dict[tuple, FrameRenderer] = {}


def _renderer(kind: str, image_size: tuple[int, int]) -> FrameRenderer:
    """Per-process cache of the renderers (their visibility tables take about a second to build)."""
    key = (kind, tuple(image_size))
    if key not in _RENDERERS:
        if kind == "nuscenes":
            _RENDERERS[key] = FrameRenderer(nuscenes_cameras(image_size), OCC3D_RANGE, W.VOXEL, 0.0,
                                            LIDAR_TRANSLATION, NUSCENES_LIDAR_ELEVATION)
        else:
            view, _, _ = kitti_camera(image_size)
            _RENDERERS[key] = FrameRenderer([view], kitti_writer.KITTI_RANGE, kitti_writer.KITTI_VOXEL,
                                            KITTI_VELO_HEIGHT, (0.0, 0.0, 0.0), KITTI_LIDAR_ELEVATION,
                                            lidar_rings=64, lidar_azimuths=512)
    return _RENDERERS[key]


def _nuscenes_job(cfg: SampleConfig, root: Path, index: int, name: str) -> tuple[W.Scene, list[FrameRecord]]:
    scene = W.build_scene(name, cfg.scene_seed(index), cfg.frames_per_scene)
    renderer = _renderer("nuscenes", cfg.image_size)
    writer = NuScenesWriter(root, cfg.version, cfg.seed)
    noise = Noise(cfg.seed)
    records = []
    for f in range(scene.num_frames):
        out = renderer.render(scene, f, scene.boxes.cls, None, OCC3D_FREE_LABEL, noise, _frame_rng(cfg, index, f))
        records.append(writer.write_frame_files(scene, f, out, renderer.cameras, cfg.jpeg_quality))
    return scene, records


def _kitti_job(cfg: SampleConfig, root: Path, seq: str, index: int) -> None:
    scene = W.build_scene(f"kitti-{seq}", cfg.scene_seed(index), cfg.kitti_frames)
    renderer = _renderer("kitti", cfg.kitti_image_size)
    _, P2, Tr = kitti_camera(cfg.kitti_image_size)
    seq_dir = root / KITTI_DIR / "sequences" / seq
    frames = list(range(scene.num_frames))
    kitti_writer.write_sequence_meta(seq_dir, scene, frames, P2, Tr, period_s=0.5)
    ground = {c: r for c, r in W.KITTI_RAW.items()}
    noise = Noise(cfg.seed)
    for f in frames:
        out = renderer.render(scene, f, scene.boxes.kitti_raw(), ground, 0, noise,
                              _frame_rng(cfg, 1000 + index, f), label_dtype=np.uint16)
        kitti_writer.write_frame(seq_dir, f, out)


def generate_sample(root: str | Path, cfg: SampleConfig | None = None, progress: bool = True) -> Path:
    """Write the synthetic sample into ``root`` (created; must be empty or absent). Returns ``root``."""
    cfg = cfg or SampleConfig()
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise DatasetError(f"{root}: output directory is not empty; expected a new or empty directory")
    root.mkdir(parents=True, exist_ok=True)
    start = time.time()
    splits = cfg.scene_names()
    names = splits["train"] + splits["val"]
    jobs = [("nuscenes", i + 1, n) for i, n in enumerate(names)]
    if cfg.kitti:
        # KITTI sequences reuse the seed of the first scene of their split, rendered by the KITTI rig
        jobs += [("kitti", seq, cfg.train_scenes + 1 if split == "val" else 1)
                 for seq, split in cfg.kitti_sequences.items()]
    workers = cfg.workers or min(4, os.cpu_count() or 1)
    results: dict[tuple, tuple | None] = {}
    bar = tqdm(total=len(jobs), desc="synthetic sample", unit="scene", disable=not progress)
    if workers <= 1:
        for job in jobs:
            results[job] = _run(cfg, root, job)
            bar.update()
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            futures = {pool.submit(_run, cfg, root, job): job for job in jobs}
            for fut in futures:
                results[futures[fut]] = fut.result()
                bar.update()
    bar.close()
    writer = NuScenesWriter(root, cfg.version, cfg.seed)
    scenes = []
    for i, name in enumerate(names):
        scene, records = results[("nuscenes", i + 1, name)]
        writer.add_scene(scene, records, nuscenes_cameras(cfg.image_size), cfg.image_size)
        scenes.append(scene)
    writer.finish(scenes, splits)
    info = {"format": SAMPLE_FORMAT, "config": asdict(cfg), "seconds": round(time.time() - start, 2),
            "splits": splits, "kitti_root": KITTI_DIR if cfg.kitti else None}
    (root / "synthetic.json").write_text(json.dumps(info, indent=2))
    (root / MARKER).write_text(json.dumps({"format": SAMPLE_FORMAT, "seed": cfg.seed}))
    return root


def _run(cfg: SampleConfig, root: Path, job: tuple):
    kind, a, b = job
    if kind == "nuscenes":
        return _nuscenes_job(cfg, root, a, b)
    return _kitti_job(cfg, root, a, b)


def default_root(seed: int = 0) -> Path:
    """Cache directory of the default sample: $PROTOOCC_DATA_DIR or ~/.cache/protoocc_ros, per seed."""
    base = os.environ.get("PROTOOCC_DATA_DIR") or Path.home() / ".cache" / "protoocc_ros"
    return Path(base) / f"{SAMPLE_FORMAT}-seed{seed}"


def is_complete(root: Path) -> bool:
    return (Path(root) / MARKER).is_file()


def ensure_sample(root: str | Path | None = None, seed: int = 0, progress: bool = True,
                  cfg: SampleConfig | None = None) -> Path:
    """The nuScenes-style dataroot of the synthetic sample, generated into ``root`` (default: the cache
    directory) only when it is not complete yet. Generation goes to a temporary sibling directory that is
    renamed at the end, so concurrent callers never see a half-written sample."""
    cfg = cfg or SampleConfig(seed=seed)
    root = Path(root) if root is not None else default_root(cfg.seed)
    if is_complete(root):
        return root
    if root.exists() and any(root.iterdir()):
        raise DatasetError(f"{root}: exists without the completion marker {MARKER}; delete it to regenerate")
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    generate_sample(tmp, cfg, progress=progress)
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        if root.exists():
            root.rmdir()
        tmp.rename(root)
    except OSError:
        if not is_complete(root):       # lost a race only if the winner finished
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def kitti_root(dataroot: str | Path) -> Path:
    """The SemanticKITTI-format variant inside a synthetic sample dataroot."""
    return Path(dataroot) / KITTI_DIR
