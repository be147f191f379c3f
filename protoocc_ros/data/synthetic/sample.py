"""The embedded synthetic sample (docs/architecture.md "Data"): generate it in nuScenes+Occ3D and SemanticKITTI
formats, cached.

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
from concurrent.futures import ProcessPoolExecutor, as_completed
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
from protoocc_ros.data.synthetic.frames import FrameOutput, FrameRenderer
from protoocc_ros.data.synthetic.nuscenes_writer import FrameRecord, NuScenesWriter
from protoocc_ros.data.synthetic.rig import (
    KITTI_LIDAR_ELEVATION,
    KITTI_VELO_HEIGHT,
    LIDAR_TRANSLATION,
    NUSCENES_LIDAR_ELEVATION,
    kitti_camera,
    nuscenes_cameras,
)
from protoocc_ros.layouts import KITTI, OCC3D

SAMPLE_FORMAT = "synthetic-v1"
MARKER = ".complete"
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
            _RENDERERS[key] = FrameRenderer(nuscenes_cameras(image_size), OCC3D.point_cloud_range,
                                            OCC3D.voxel_size, 0.0,
                                            LIDAR_TRANSLATION, NUSCENES_LIDAR_ELEVATION)
        else:
            view, _, _ = kitti_camera(image_size)
            _RENDERERS[key] = FrameRenderer([view], KITTI.point_cloud_range, KITTI.voxel_size,
                                            KITTI_VELO_HEIGHT, (0.0, 0.0, 0.0), KITTI_LIDAR_ELEVATION,
                                            lidar_rings=0)   # no point files in the KITTI layout
    return _RENDERERS[key]


def nuscenes_scene(cfg: SampleConfig, index: int) -> W.Scene:
    """Scene ``scene-<index>`` (1-based) of the sample."""
    return W.build_scene(f"scene-{index:04d}", cfg.scene_seed(index), cfg.frames_per_scene)


def render_nuscenes_frame(cfg: SampleConfig, scene: W.Scene, index: int, frame: int, images: bool = True
                          ) -> FrameOutput:
    """Frame ``frame`` of scene ``index`` exactly as written to disk (Occ3D labels, masks, images, lidar)."""
    renderer = _renderer("nuscenes", cfg.image_size)
    return renderer.render(scene, frame, scene.boxes.cls, None, OCC3D_FREE_LABEL, Noise(cfg.seed),
                           _frame_rng(cfg, index, frame), images=images)


def kitti_scene(cfg: SampleConfig, seq: str) -> W.Scene:
    """Scene of KITTI sequence ``seq``: the seed of the first scene of its split, rendered by the KITTI rig."""
    index = cfg.train_scenes + 1 if cfg.kitti_sequences[seq] == "val" else 1
    return W.build_scene(f"kitti-{seq}", cfg.scene_seed(index), cfg.kitti_frames)


def render_kitti_frame(cfg: SampleConfig, scene: W.Scene, seq: str, frame: int, images: bool = True
                       ) -> FrameOutput:
    """Frame of a KITTI sequence as written to disk (raw SemanticKITTI labels, camera / lidar visibility)."""
    renderer = _renderer("kitti", cfg.kitti_image_size)
    return renderer.render(scene, frame, scene.boxes.kitti_raw(), dict(W.KITTI_RAW), 0, Noise(cfg.seed),
                           _frame_rng(cfg, 1000 + int(seq), frame), label_dtype=np.uint16, images=images)


def _nuscenes_job(cfg: SampleConfig, root: Path, index: int) -> tuple[W.Scene, list[FrameRecord]]:
    scene = nuscenes_scene(cfg, index)
    writer = NuScenesWriter(root, cfg.version, cfg.seed)
    cameras = _renderer("nuscenes", cfg.image_size).cameras
    return scene, [writer.write_frame_files(scene, f, render_nuscenes_frame(cfg, scene, index, f), cameras,
                                            cfg.jpeg_quality) for f in range(scene.num_frames)]


def _kitti_job(cfg: SampleConfig, root: Path, seq: str) -> None:
    scene = kitti_scene(cfg, seq)
    _, P2, Tr = kitti_camera(cfg.kitti_image_size)
    seq_dir = root / KITTI_DIR / "sequences" / seq
    frames = list(range(scene.num_frames))
    kitti_writer.write_sequence_meta(seq_dir, scene, frames, P2, Tr, period_s=0.5)
    for f in frames:
        kitti_writer.write_frame(seq_dir, f, render_kitti_frame(cfg, scene, seq, f))


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
    workers = max(1, cfg.workers or min(4, os.cpu_count() or 1))
    # rough costs in seconds (renderer set-up + frames): a small sample gives KITTI its own process, so that
    # no process builds both renderers; a large one splits the nuScenes scenes over all processes
    nus_cost = 1.2 + 0.25 * len(names) * cfg.frames_per_scene
    kitti_cost = 3.0 + 0.3 * len(cfg.kitti_sequences) * cfg.kitti_frames if cfg.kitti else 0.0
    dedicated = cfg.kitti and workers > 1 and kitti_cost >= nus_cost / workers
    n_chunks = workers - 1 if dedicated else workers
    indices = list(range(1, len(names) + 1))
    jobs: list[tuple[str, list]] = [("nuscenes", indices[i::n_chunks]) for i in range(n_chunks) if indices[i::n_chunks]]
    if cfg.kitti:
        jobs.append(("kitti", list(cfg.kitti_sequences)))
    results: dict[int, tuple] = {}
    bar = tqdm(total=len(names) + (len(cfg.kitti_sequences) if cfg.kitti else 0), desc="synthetic sample",
               unit="scene", disable=not progress)
    if workers == 1:
        for job in jobs:
            results.update(_run(cfg, root, job))
            bar.update(len(job[1]))
    else:
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("fork")) as pool:
            futures = {pool.submit(_run, cfg, root, job): job for job in jobs}
            for fut in as_completed(futures):
                results.update(fut.result())
                bar.update(len(futures[fut][1]))
    bar.close()
    writer = NuScenesWriter(root, cfg.version, cfg.seed)
    scenes = []
    for i in range(len(names)):
        scene, records = results[i + 1]
        writer.add_scene(scene, records, nuscenes_cameras(cfg.image_size), cfg.image_size)
        scenes.append(scene)
    writer.finish(scenes, splits)
    info = {"format": SAMPLE_FORMAT, "config": asdict(cfg), "seconds": round(time.time() - start, 2),
            "splits": splits, "kitti_root": KITTI_DIR if cfg.kitti else None}
    (root / "synthetic.json").write_text(json.dumps(info, indent=2))
    (root / MARKER).write_text(json.dumps(_identity(cfg)))
    return root


def _identity(cfg: SampleConfig) -> dict:
    """What makes two samples the same (everything but the number of workers), as stored in the marker."""
    ident = json.loads(json.dumps(asdict(cfg)))
    ident.pop("workers")
    return {"format": SAMPLE_FORMAT, "config": ident}


def _run(cfg: SampleConfig, root: Path, job: tuple[str, list]) -> dict[int, tuple]:
    """Run a chunk of scenes of one kind; returns {scene index: (scene, frame records)} for nuScenes."""
    kind, args = job
    if kind == "nuscenes":
        return {i: _nuscenes_job(cfg, root, i) for i in args}
    for seq in args:
        _kitti_job(cfg, root, seq)
    return {}


def default_root(seed: int = 0) -> Path:
    """Cache directory of the default sample: $PROTOOCC_DATA_DIR or ~/.cache/protoocc_ros, per seed."""
    base = os.environ.get("PROTOOCC_DATA_DIR") or Path.home() / ".cache" / "protoocc_ros"
    return Path(base) / f"{SAMPLE_FORMAT}-seed{seed}"


def is_complete(root: Path) -> bool:
    return (Path(root) / MARKER).is_file()


def _check_identity(root: Path, cfg: SampleConfig) -> None:
    try:
        stored = json.loads((root / MARKER).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{root / MARKER}: unreadable completion marker ({exc})") from exc
    if stored != _identity(cfg):
        raise DatasetError(f"{root}: holds a synthetic sample made with {stored.get('config')}, not the requested "
                           f"{_identity(cfg)['config']}; delete it or generate elsewhere (protoocc-make-sample --out)")


def ensure_sample(root: str | Path | None = None, seed: int = 0, progress: bool = True,
                  cfg: SampleConfig | None = None) -> Path:
    """The nuScenes-style dataroot of the synthetic sample, generated into ``root`` (default: the cache
    directory) only when it is not complete yet. Generation goes to a temporary sibling directory that is
    renamed at the end, so concurrent callers never see a half-written sample."""
    cfg = cfg or SampleConfig(seed=seed)
    root = Path(root) if root is not None else default_root(cfg.seed)
    if is_complete(root):
        _check_identity(root, cfg)
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
        _check_identity(root, cfg)
    return root


def kitti_root(dataroot: str | Path) -> Path:
    """The SemanticKITTI-format variant inside a synthetic sample dataroot."""
    return Path(dataroot) / KITTI_DIR
