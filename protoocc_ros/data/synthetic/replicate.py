"""A large Occ3D-format dataroot from a small one: scenes repeated with new tokens (scale tests, no new images).

``replicate_sample(src, dst, copies, coarsen=k)`` writes ``dst/<version>/`` tables in which every training
scene of ``src`` appears ``copies`` times (new scene / sample / sample_data tokens, timestamps moved by
``copies`` x the scene length so every stamp is distinct and stays at nuScenes magnitude; the first copy
keeps the original tokens, so the annotation tables stay valid) and the validation scenes once. The images
are shared (``sample_data.filename`` points into ``src``: a symlink ``dst/samples``); every sample gets its
own ``gts/<scene>/<token>/labels.npz``, a hard link to one file per source frame, optionally coarsened by
``k`` on every axis (a voxel is the most frequent occupied class of its k^3 block, else free; masks: any),
so a cheap model can train on it. The loaders see an ordinary nuScenes + Occ3D dataroot of
``copies x frames`` training keyframes and almost no disk is used.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from protoocc_ros.classes import OCC3D_FREE_LABEL, OCC3D_NUM_CLASSES
from protoocc_ros.data.errors import DatasetError
from protoocc_ros.data.io import load_npz, read_json

SHARED_TABLES = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose", "log",
                 "map", "sample_annotation")


def _token(*parts: object) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def coarsen_labels(semantics: np.ndarray, masks: dict[str, np.ndarray], k: int) -> tuple[np.ndarray, dict]:
    """(X, Y, Z) uint8 labels -> (X/k, Y/k, Z/k): most frequent non-free class of each block, else free."""
    X, Y, Z = semantics.shape
    if X % k or Y % k or Z % k:
        raise DatasetError(f"grid {semantics.shape} is not divisible by the coarsening factor {k}")
    blocks = semantics.reshape(X // k, k, Y // k, k, Z // k, k).transpose(0, 2, 4, 1, 3, 5).reshape(-1, k ** 3)
    counts = np.zeros((blocks.shape[0], OCC3D_NUM_CLASSES), dtype=np.int32)
    np.add.at(counts, (np.repeat(np.arange(blocks.shape[0]), k ** 3), blocks.reshape(-1).astype(np.int64)), 1)
    counts[:, OCC3D_FREE_LABEL] = 0
    coarse = np.where(counts.max(1) > 0, counts.argmax(1), OCC3D_FREE_LABEL).astype(np.uint8)
    shape = (X // k, Y // k, Z // k)
    out = {name: m.reshape(X // k, k, Y // k, k, Z // k, k).any(axis=(1, 3, 5)) for name, m in masks.items()}
    return coarse.reshape(shape), out


def replicate_sample(src: str | Path, dst: str | Path, copies: int, coarsen: int = 1,
                     version: str = "v1.0-mini") -> Path:
    """Write the replicated dataroot (see module docstring); returns ``dst``."""
    src, dst = Path(src), Path(dst)
    if copies < 1 or coarsen < 1:
        raise DatasetError(f"replicate_sample: copies={copies} and coarsen={coarsen} must be >= 1")
    names = (*SHARED_TABLES, "scene", "sample", "sample_data")
    tables = {name: read_json(src / version / f"{name}.json") for name in names}
    splits = read_json(src / version / "splits.json")
    if (dst / version).exists():
        raise DatasetError(f"{dst / version}: exists; replicate into a new folder")
    (dst / version).mkdir(parents=True)
    os.symlink((src / "samples").resolve(), dst / "samples")
    if (src / "maps").is_dir():
        os.symlink((src / "maps").resolve(), dst / "maps")
    samples = {s["token"]: s for s in tables["sample"]}
    data_by_sample: dict[str, list[dict]] = {}
    for sd in tables["sample_data"]:
        data_by_sample.setdefault(sd["sample_token"], []).append(sd)
    by_name = {s["name"]: s for s in tables["scene"]}
    stamps = [s["timestamp"] for s in tables["sample"]]
    span = max(stamps) - min(stamps) + 1_000_000  # µs: copies never overlap in time
    linked: dict[str, Path] = {}

    def labels_for(scene_name: str, token: str) -> Path:
        """One (coarsened) labels file per source frame, hard-linked into every copy."""
        if token not in linked:
            path = src / "gts" / scene_name / token / "labels.npz"
            arrays = load_npz(path, ("semantics", "mask_camera", "mask_lidar"))
            sem = arrays["semantics"]
            masks = {"mask_camera": arrays["mask_camera"].astype(bool), "mask_lidar": arrays["mask_lidar"].astype(bool)}
            if coarsen > 1:
                sem, masks = coarsen_labels(sem, masks, coarsen)
            out = dst / ".labels" / f"{token}.npz"
            out.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(out, semantics=sem, **masks)
            linked[token] = out
        return linked[token]

    scenes, out_samples, out_data, new_splits = [], [], [], {"train": [], "val": list(splits.get("val", []))}
    jobs = [(name, r) for r in range(copies) for name in splits["train"]]
    jobs += [(name, 0) for name in splits.get("val", [])]
    for name, r in jobs:
        scene = by_name[name]
        new_name = name if r == 0 else f"{name}-r{r:04d}"
        if name in splits["train"]:
            new_splits["train"].append(new_name)
        order, token = [], scene["first_sample_token"]
        while token:
            order.append(token)
            token = samples[token]["next"]
        tok = (lambda t: t) if r == 0 else (lambda t, r=r: _token(t, r))
        for i, t in enumerate(order):
            s = samples[t]
            out_samples.append({**s, "token": tok(t), "timestamp": s["timestamp"] + r * span,
                                "prev": tok(order[i - 1]) if i > 0 else "",
                                "next": tok(order[i + 1]) if i + 1 < len(order) else "",
                                "scene_token": tok(scene["token"])})
            for sd in data_by_sample[t]:
                out_data.append({**sd, "token": tok(sd["token"]), "sample_token": tok(t),
                                 "timestamp": sd["timestamp"] + r * span,
                                 "prev": tok(sd["prev"]) if sd["prev"] else "",
                                 "next": tok(sd["next"]) if sd["next"] else ""})
            target = dst / "gts" / new_name / tok(t) / "labels.npz"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(labels_for(name, t), target)
        scenes.append({**scene, "token": tok(scene["token"]), "name": new_name,
                       "first_sample_token": tok(order[0]), "last_sample_token": tok(order[-1])})
    for name in SHARED_TABLES:
        shutil.copyfile(src / version / f"{name}.json", dst / version / f"{name}.json")
    for name, rows in (("scene", scenes), ("sample", out_samples), ("sample_data", out_data)):
        (dst / version / f"{name}.json").write_text(json.dumps(rows))
    (dst / version / "splits.json").write_text(json.dumps(new_splits))
    train = set(new_splits["train"])
    count = sum(1 for s in out_samples if s["scene_token"] in {sc["token"] for sc in scenes if sc["name"] in train})
    (dst / "replicated.json").write_text(json.dumps({"source": str(src), "copies": copies, "coarsen": coarsen,
                                                     "train_samples": count}))
    return dst
