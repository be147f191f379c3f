"""Evaluation: scenes run in order with memory, deterministic reports, metric stored in checkpoint metadata."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from protoocc_ros.evaluation import evaluate as ev
from protoocc_ros.checkpoints.format import read_metadata, save_checkpoint
from protoocc_ros.training.trainer import Trainer

from training_helpers import SequenceDataset, tiny_config


@pytest.fixture()
def trained(tmp_path: Path):
    cfg = tiny_config("train.max_steps=4")
    dataset = SequenceDataset(cfg, num_scenes=3, frames_per_scene=3)
    trainer = Trainer(cfg, dataset=dataset, output_dir=tmp_path / "run", progress=False, tensorboard=False)
    trainer.fit()
    path = save_checkpoint(tmp_path / "model.safetensors", trainer.module, cfg, step=trainer.step)
    return cfg, dataset, path


def test_scenes_run_in_order_with_memory_reset_only_at_scene_start(tmp_path: Path, trained) -> None:
    cfg, dataset, path = trained
    report = ev.evaluate_checkpoint(path, dataset=dataset, output_dir=tmp_path / "eval", render=False,
                                    progress=False)
    assert report["num_frames"] == 9 and report["num_scenes"] == 3
    assert report["memory_resets"] == {"first_frame": 3}
    written = json.loads((tmp_path / "eval" / ev.REPORT_NAME).read_text())
    assert written["results"]["num_voxels"] == 9 * int(np.prod(cfg.dataset.grid_size)) * 7 // 8  # mask_camera
    hist = np.array(written["confusion_matrix"])
    assert hist.sum() == written["results"]["num_voxels"]
    assert "mIoU" in written["table"] and written["split"] == "val"


def test_evaluation_is_deterministic_and_matches_stored_metric(tmp_path: Path, trained) -> None:
    _, dataset, path = trained
    first = ev.evaluate_checkpoint(path, dataset=dataset, output_dir=tmp_path / "a", render=False, progress=False)
    ev.update_metadata(path, metric=ev.metric_summary(first))
    second = ev.evaluate_checkpoint(path, dataset=dataset, output_dir=tmp_path / "b", render=False, progress=False)
    assert second["confusion_matrix"] == first["confusion_matrix"]
    stored = read_metadata(path)["metric"]
    assert stored["miou"] == pytest.approx(second["results"]["miou"], abs=1e-9)
    assert stored["num_frames"] == 9


def test_renders_prediction_vs_ground_truth(tmp_path: Path, trained) -> None:
    _, dataset, path = trained
    report = ev.evaluate_checkpoint(path, dataset=dataset, output_dir=tmp_path, render=True, progress=False)
    names = sorted(Path(p).name for p in report["renders"])
    assert names == ["per_class_iou.png"] + [f"scene-{s:04d}_001{suffix}.png" for s in range(3)
                                             for suffix in ("", "_cameras")]
    for p in report["renders"]:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(p).stat().st_size > 5000


def test_prior_baseline_is_the_expected_metric_of_random_prior_predictions() -> None:
    cfg = tiny_config()
    train, val = SequenceDataset(cfg, num_scenes=2, seed=1), SequenceDataset(cfg, num_scenes=2, seed=2)
    expected = ev.prior_baseline_results(cfg, train, val)
    labels = np.concatenate([train[i]["semantics"].numpy()[train[i]["mask_camera"].numpy()] for i in range(len(train))])
    prior = np.bincount(labels, minlength=cfg.dataset.num_classes) / labels.size
    rng = np.random.default_rng(0)
    metric = ev.config_metric(cfg)
    for i in range(len(val)):
        sample = val[i]
        pred = rng.choice(cfg.dataset.num_classes, size=sample["semantics"].shape, p=prior)
        metric.update(pred, sample["semantics"], sample["mask_camera"])
    sampled = metric.compute()
    assert 0.0 < expected["miou"] < 0.5
    assert sampled["miou"] == pytest.approx(expected["miou"], abs=0.01)
    assert sampled["geometry_iou"] == pytest.approx(expected["geometry_iou"], abs=0.01)


def test_cli_refuses_a_bad_checkpoint_path(tmp_path: Path, capsys) -> None:
    (tmp_path / "weights.pt").write_bytes(b"\x80\x02")
    assert ev.main(["--checkpoint", str(tmp_path / "weights.pt"), "--no-progress"]) == 2
    assert "must end with '.safetensors'" in capsys.readouterr().err
