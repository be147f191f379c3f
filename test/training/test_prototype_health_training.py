"""A short training run of the default ProtoOcc on the synthetic sample leaves its prototype mapping uncollapsed and
its contrastive loss below chance; the figures are logged per logged step (train_log.jsonl, tensorboard)."""
from __future__ import annotations

import json
from pathlib import Path

from protoocc_ros.config import load_config
from protoocc_ros.model.prototype_health import COLLAPSE_COSINE
from protoocc_ros.tools import health
from protoocc_ros.training.trainer import TRAIN_LOG, Trainer


def test_short_training_leaves_the_mapping_uncollapsed_and_l_cls_learning(tmp_path: Path, synthetic_dataroot: Path,
                                                                          capsys) -> None:
    cfg = load_config("ablation", [f"dataset.dataroot={synthetic_dataroot}", "train.max_steps=30", "train.log_every=10",
                                   "train.checkpoint_every=1000", "train.warmup_steps=5"])
    Trainer(cfg, output_dir=tmp_path, progress=False, tensorboard=False, command="pytest").fit()
    lines = [json.loads(line) for line in (tmp_path / TRAIN_LOG).read_text().splitlines()]
    assert [line["step"] for line in lines] == [10, 20, 30]
    for line in lines:
        assert {"health/layer0.proto_cosine", "health/layer0.dispatch_cosine", "health/layer0.dispatch_share",
                "health/layer0.prototypes_used", "health/cluster.entropy", "cls", "cls_chance"} <= set(line)
    last = lines[-1]
    assert last["health/layer0.proto_cosine"] < COLLAPSE_COSINE, last
    assert last["health/layer0.dispatch_cosine"] < COLLAPSE_COSINE, last
    assert last["health/layer0.dispatch_share"] > 0.01 and last["health/layer0.prototypes_used"] > 0.2
    assert last["cls"] < last["cls_chance"], last  # L_cls has learned something about the pseudo masks
    assert last["health/cluster.entropy"] < last["health/cluster.entropy_max"]
    # protoocc-health on the run's checkpoint agrees: not collapsed (exit 0)
    ckpt = next((tmp_path / "checkpoints").glob("step_0000030.safetensors"))
    assert health.main(["--checkpoint", str(ckpt), "--frames", "1"]) == 0
    assert "mapping not collapsed" in capsys.readouterr().out
