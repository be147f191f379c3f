"""The bundled demo checkpoint: safe format, complete metadata, and its recorded held-out mIoU is reproduced."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from protoocc_ros.config import load_config
from protoocc_ros.checkpoints.format import (
    architecture_differences, checkpoint_files, default_checkpoint_path, read_metadata, stored_config,
)
from protoocc_ros.data import build_dataset
from protoocc_ros.evaluation.evaluate import evaluate_checkpoint, prior_baseline_results

BUNDLED = default_checkpoint_path()
MIOU_TOLERANCE = 0.005  # absolute, as a fraction (0.5 mIoU points)
CHANCE_FACTOR = 3.0  # the checkpoint's mIoU must be this many times that of the label-prior chance predictor
# Floors the bundled model reached on the held-out scenes (a retrained one must not fall below them); the
# project's goal (40 % mIoU, car 30 %, every present class > 0) is not reached yet: docs/training.md.
MIOU_FLOOR, CAR_FLOOR = 0.38, 0.23
OBJECTS_SEEN = ("car", "truck", "barrier", "pedestrian", "traffic_cone")


def test_bundled_checkpoint_is_small_and_fully_described() -> None:
    files = checkpoint_files(BUNDLED)
    assert files.weights.is_file() and files.metadata.is_file(), f"{BUNDLED} missing: train it (docs/training.md)"
    assert files.weights.stat().st_size < 5 * 2**20
    meta = read_metadata(BUNDLED)
    cfg = stored_config(meta, BUNDLED)
    assert architecture_differences(cfg, load_config("demo")) == []  # the shipped demo config loads it
    assert "protoocc-train --config demo" in meta["command"] and "protoocc-make-sample" in meta["command"]
    assert isinstance(meta["data_seed"], int) and meta["git_commit"]
    metric = meta["metric"]
    assert metric["split"] == "val" and metric["dataroot"] == "synthetic" and metric["num_frames"] > 0
    assert not files.state_tensors.exists()  # weights only: no optimizer state shipped
    json.loads(files.metadata.read_text())


def test_bundled_checkpoint_predicts_far_better_than_chance() -> None:
    meta = read_metadata(BUNDLED)
    cfg = stored_config(meta, BUNDLED)
    chance = prior_baseline_results(cfg, build_dataset(cfg, "train"), build_dataset(cfg, meta["metric"]["split"]))
    assert meta["metric"]["miou"] > CHANCE_FACTOR * chance["miou"], (meta["metric"]["miou"], chance["miou"])


def test_bundled_checkpoint_predicts_the_objects_of_the_held_out_scenes() -> None:
    metric = read_metadata(BUNDLED)["metric"]
    present = {name: iou for name, iou in metric["per_class_iou"].items() if iou is not None}
    assert set(OBJECTS_SEEN) <= set(present) and len(present) >= 8, present
    assert all(present[name] > 0 for name in OBJECTS_SEEN), present
    assert metric["miou"] >= MIOU_FLOOR and present["car"] >= CAR_FLOOR, (metric["miou"], present["car"])


def test_bundled_checkpoint_reaches_its_recorded_held_out_miou(tmp_path: Path) -> None:
    recorded = read_metadata(BUNDLED)["metric"]
    report = evaluate_checkpoint(BUNDLED, split=recorded["split"], output_dir=tmp_path, render=False,
                                 device="cpu", progress=False)
    assert report["num_frames"] == recorded["num_frames"]
    assert report["results"]["miou"] == pytest.approx(recorded["miou"], abs=MIOU_TOLERANCE)
    for name, iou in recorded["per_class_iou"].items():
        got = report["results"]["per_class_iou"][name]
        assert (got is None) == (iou is None) and (iou is None or got == pytest.approx(iou, abs=2 * MIOU_TOLERANCE)), \
            (name, got, iou)
