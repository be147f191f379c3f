"""protoocc-precompute-masks: parallel, resumable, sharded; the training loader reads what it wrote."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from protoocc_ros.config import load_config
from protoocc_ros.data import build_dataset
from protoocc_ros.tools import precompute_masks as pm
from protoocc_ros.training.loader import TrainingSamples, pseudo_mask_store

ARGS = ["--config", "demo", "--no-progress"]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.npz")}


def test_fills_the_store_in_parallel_and_training_reads_it(tmp_path: Path, capsys) -> None:
    out = tmp_path / "masks"
    assert pm.main(ARGS + ["--out", str(out), "--workers", "2", "--summary", str(tmp_path / "s.json")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    cfg = load_config("demo", [f"train.pseudo_mask_dir={out}"])
    dataset = build_dataset(cfg, "train")
    assert summary["computed_samples"] == len(dataset) == len(_files(out)) and summary["images"] == 6 * len(dataset)
    assert summary["ms_per_image_seeds"] > 0 and 0 < summary["bytes_per_image"] < 12 * 22 * 2
    assert summary["projection_occ3d_nuscenes"]["images"] == 28_130 * 6
    assert "per image: decode+resize" in capsys.readouterr().out
    assert not list(out.rglob("*.tmp"))
    store = pseudo_mask_store(cfg)
    sample = TrainingSamples(dataset, cfg, store).sample(7)
    assert store.loaded == 1 and store.computed == 0  # read, not recomputed
    assert np.array_equal(sample["pseudo_masks"].numpy(), store.spec.compute(dataset.raw_images(7)))


def test_rerun_computes_only_what_is_missing(tmp_path: Path) -> None:
    out = tmp_path / "masks"
    assert pm.main(ARGS + ["--out", str(out), "--workers", "1", "--limit", "5"]) == 0
    assert len(_files(out)) == 5
    victim = next(iter(out.rglob("*.npz")))
    victim.unlink()  # e.g. a run killed before it got there
    assert pm.main(ARGS + ["--out", str(out), "--workers", "2", "--summary", str(tmp_path / "s.json")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["skipped_existing"] == 4 and summary["computed_samples"] == summary["samples_in_shard"] - 4


def test_shards_are_disjoint_and_cover_the_split(tmp_path: Path) -> None:
    parts = []
    for k in range(3):
        out = tmp_path / f"machine{k}"
        assert pm.main(ARGS + ["--out", str(out), "--workers", "1", "--shard", f"{k}/3"]) == 0
        parts.append(_files(out))
    assert all(parts) and not (parts[0] & parts[1]) and not (parts[1] & parts[2]) and not (parts[0] & parts[2])
    cfg = load_config("demo")
    assert sum(map(len, parts)) == len(build_dataset(cfg, "train"))


def test_errors_exit_2_with_the_reason(tmp_path: Path, capsys) -> None:
    assert pm.main(["--config", "demo_baseline", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "L_cls is off" in capsys.readouterr().err
    assert pm.main(ARGS + ["--out", str(tmp_path), "--split", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
