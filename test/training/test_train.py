"""protoocc-train / protoocc-eval end to end on the synthetic sample: train, resume, evaluate, export."""
from __future__ import annotations

import json
from pathlib import Path

from protoocc_ros.checkpoints.format import load_checkpoint, read_metadata
from protoocc_ros.evaluation import evaluate as evaluate_cli
from protoocc_ros.tools import train as train_cli

# the demo baseline (no pseudo masks or extra perspectives) at low query resolution, one scene per split
SMALL = ["model.query_size=[25,25,2]", "dataset.image_size=[48,88]", "model.prototypes.num_prototypes=18",
         "dataset.train_split=[scene-0001]", "dataset.val_split=[scene-0009]",
         "train.clip_length=2", "train.checkpoint_every=1", "train.warmup_steps=0", "train.seed=3"]


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def test_train_resume_evaluate_export(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    base = ["--config", "demo_baseline", "--output-dir", str(run), "--no-progress", "--no-tensorboard"]
    assert train_cli.main(base + _sets(SMALL + ["train.max_steps=1"])) == 0
    export = tmp_path / "export" / "small.safetensors"
    assert train_cli.main(base + _sets(SMALL + ["train.max_steps=2"]) + ["--resume", str(run), "--eval-split", "val",
                                                                      "--export", str(export)]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "step_0000001.safetensors at step 1" in out and "mIoU" in out

    meta = read_metadata(export)
    assert meta["step"] == 2 and meta["training_state"] is None
    assert meta["data_seed"] == 0 and meta["extra"]["train_seed"] == 3  # synthetic sample seed vs clip order
    assert meta["command"].startswith("protoocc-train --config demo_baseline") and "--resume" in meta["command"]
    assert meta["metric"]["split"] == "val" and meta["metric"]["num_frames"] == 10
    assert meta["config"]["model"]["query_size"] == [25, 25, 2]
    model, _ = load_checkpoint(export)
    assert not model.training

    eval_dir = tmp_path / "eval"
    assert evaluate_cli.main(["--checkpoint", str(export), "--output-dir", str(eval_dir), "--no-render",
                              "--no-progress", "--max-frames", "4", "--update-metadata"]) == 0
    report = json.loads((eval_dir / "report.json").read_text())
    assert report["num_frames"] == 4 and report["checkpoint_step"] == 2
    assert read_metadata(export)["metric"]["num_frames"] == 4
    assert "protoocc-eval" in read_metadata(export)["metric"]["command"]


def test_train_cli_reports_config_errors(capsys) -> None:
    assert train_cli.main(["--config", "demo", "--set", "train.lr=-1"]) == 2
    assert "train.lr: must be > 0" in capsys.readouterr().err
