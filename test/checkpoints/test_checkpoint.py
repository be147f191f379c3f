"""Checkpoints: safetensors + JSON round trip, refusal of corrupt/mismatched files, exact training-state restore."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from protoocc_ros.config import ProtoOccConfig, load_config
from protoocc_ros.checkpoints.format import (
    architecture_differences, check_checkpoint_path, checkpoint_files, load_checkpoint, load_training_state,
    read_metadata, runtime_config, save_checkpoint,
)
from protoocc_ros.checkpoints.errors import CheckpointError
from protoocc_ros.training.schedule import build_optimizer, build_scheduler
from protoocc_ros.checkpoints.state_codec import flatten_state, unflatten_state


class TinyNet(nn.Module):
    """Stand-in for ProtoOcc where only the checkpoint mechanics are under test (sizes from the config)."""

    def __init__(self, cfg: ProtoOccConfig, extra_layer: bool = False) -> None:
        super().__init__()
        d = cfg.model.embed_dims
        self.backbone = nn.Sequential(nn.Conv2d(3, d, 3), nn.BatchNorm2d(d))
        self.head = nn.Linear(d, cfg.dataset.num_classes)
        if extra_layer:
            self.extra = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, 3, H, W) -> (B, C)
        return self.head(torch.relu(self.backbone(x)).mean((2, 3)))


@pytest.fixture()
def cfg() -> ProtoOccConfig:
    return load_config("demo", ["train.warmup_steps=2", "train.lr=1e-2"])


def _train_steps(model: nn.Module, opt, sched, steps: int, seed: int) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x = torch.randn(4, 3, 8, 8, generator=gen) + torch.rand(()) * 0.1  # global RNG is part of the state
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def test_roundtrip_restores_weights_and_metadata(tmp_path: Path, cfg: ProtoOccConfig) -> None:
    model = TinyNet(cfg)
    path = save_checkpoint(tmp_path / "ck.safetensors", model, cfg, step=7, epoch=1, command="protoocc-train x",
                           data_seed=3, metric={"miou": 0.25})
    loaded, meta = load_checkpoint(path, model_factory=TinyNet)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert not loaded.training
    assert (meta["step"], meta["epoch"], meta["data_seed"], meta["command"]) == (7, 1, 3, "protoocc-train x")
    assert meta["metric"] == {"miou": 0.25}
    assert meta["config"]["model"]["embed_dims"] == cfg.model.embed_dims
    assert meta["git_commit"] is None or len(meta["git_commit"]) >= 40
    assert meta["training_state"] is None and not checkpoint_files(path).state_tensors.exists()


def test_files_are_safetensors_and_json_not_pickle(tmp_path: Path, cfg: ProtoOccConfig) -> None:
    model = TinyNet(cfg)
    opt = build_optimizer(model, cfg.train)
    sched = build_scheduler(opt, cfg.train, 10)
    _train_steps(model, opt, sched, 2, seed=0)
    path = save_checkpoint(tmp_path / "ck.safetensors", model, cfg, optimizer=opt, scheduler=sched)
    files = checkpoint_files(path)
    for st in (files.weights, files.state_tensors):
        with safe_open(str(st), framework="pt") as f:
            assert len(list(f.keys())) > 0
    for js in (files.metadata, files.state_json):
        json.loads(js.read_text())
    for f in tmp_path.iterdir():
        assert f.read_bytes()[:1] != b"\x80", f"{f} starts with a pickle protocol marker"


def test_given_config_must_match_architecture_keys(tmp_path: Path, cfg: ProtoOccConfig) -> None:
    path = save_checkpoint(tmp_path / "ck.safetensors", TinyNet(cfg), cfg)
    other = load_config("demo", ["model.query_size=[25,25,4]"])
    with pytest.raises(CheckpointError, match=r"model\.query_size.*\[50, 50, 4\].*\[25, 25, 4\]"):
        load_checkpoint(path, other, model_factory=TinyNet)
    runtime_only = load_config("demo", ["model.temporal.memory_max_gap_s=0.5", "train.lr=3e-3"])
    model, _ = load_checkpoint(path, runtime_only, model_factory=TinyNet)
    assert isinstance(model, TinyNet)
    assert architecture_differences(cfg, load_config("demo_baseline")) == [
        "model.prototypes.enabled: checkpoint True, given False"]


def test_a_checkpoint_carries_its_config_and_a_config_changes_only_run_time_settings(
        tmp_path: Path, cfg: ProtoOccConfig) -> None:
    trained = load_config("demo", ["model.encoder.num_layers=2", "dataset.cameras=[CAM_FRONT,CAM_BACK]"])
    path = save_checkpoint(tmp_path / "ck.safetensors", TinyNet(trained), trained)
    alone = runtime_config(path)  # no config at all: the checkpoint's own
    assert alone.model.encoder.num_layers == 2 and alone.dataset.cameras == ["CAM_FRONT", "CAM_BACK"]
    run = runtime_config(path, None, ["dataset.dataroot=/data/nuscenes", "dataset.cameras=[front, left, right]",
                                      "model.temporal.memory_max_gap_s=3.0"])
    assert (run.dataset.dataroot, run.dataset.cameras, run.model.temporal.memory_max_gap_s) == \
        ("/data/nuscenes", ["front", "left", "right"], 3.0)  # other cameras are a run-time setting
    with pytest.raises(CheckpointError, match=r"config 'demo' changes 1 setting\(s\) that define the weights "
                                              r"\(model.encoder.num_layers: checkpoint 2, given 1\).*leave the "
                                              r"config empty"):
        runtime_config(path, "demo")
    with pytest.raises(CheckpointError, match=r"model.query_size: checkpoint \[50, 50, 4\], given \[25, 25, 4\]"):
        runtime_config(path, None, ["model.query_size=[25,25,4]"])


def test_missing_and_reshaped_keys_are_refused(tmp_path: Path, cfg: ProtoOccConfig) -> None:
    path = save_checkpoint(tmp_path / "ck.safetensors", TinyNet(cfg), cfg)
    with pytest.raises(CheckpointError, match=r"missing keys \(2\): \['extra.bias', 'extra.weight'\]"):
        load_checkpoint(path, model_factory=lambda c: TinyNet(c, extra_layer=True))

    def wider(c: ProtoOccConfig) -> nn.Module:
        m = TinyNet(c)
        m.head = nn.Linear(c.model.embed_dims, c.dataset.num_classes + 1)
        return m

    with pytest.raises(CheckpointError, match=r"shape mismatch.*head.weight: checkpoint \(18, 32\), model \(19, 32\)"):
        load_checkpoint(path, model_factory=wider)


def test_corrupt_or_incomplete_checkpoints_are_refused(tmp_path: Path, cfg: ProtoOccConfig) -> None:
    path = save_checkpoint(tmp_path / "ck.safetensors", TinyNet(cfg), cfg)
    files = checkpoint_files(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="sha256 .* does not match"):
        load_checkpoint(path, model_factory=TinyNet)
    meta = json.loads(files.metadata.read_text())  # an attacker/accident that also fixes the hash
    import hashlib
    meta["weights_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    files.metadata.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(path, model_factory=TinyNet)
    meta["config"]["model"]["embed_dims"] = 33
    files.metadata.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"stored config is invalid: model.embed_dims"):
        load_checkpoint(path, model_factory=TinyNet)
    files.metadata.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_metadata(path)
    files.metadata.unlink()
    with pytest.raises(CheckpointError, match=r"ck.json: metadata file is missing"):
        read_metadata(path)


def test_checkpoint_path_is_checked_before_use(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        check_checkpoint_path(tmp_path / "none.safetensors")
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(CheckpointError, match="not a regular file"):
        check_checkpoint_path(tmp_path / "dir.safetensors")
    (tmp_path / "model.pth").write_bytes(b"\x80\x04")
    with pytest.raises(CheckpointError, match=r"must end with '.safetensors' \(got '.pth'\)"):
        check_checkpoint_path(tmp_path / "model.pth")
    with pytest.raises(CheckpointError, match="empty"):
        check_checkpoint_path("")


def test_training_state_restores_the_exact_next_step(tmp_path: Path, cfg: ProtoOccConfig) -> None:
    torch.manual_seed(0)
    model = TinyNet(cfg)
    opt = build_optimizer(model, cfg.train)
    sched = build_scheduler(opt, cfg.train, 20)
    _train_steps(model, opt, sched, 3, seed=1)
    path = save_checkpoint(tmp_path / "ck.safetensors", model, cfg, optimizer=opt, scheduler=sched, step=3)
    expected_np, expected_py = np.random.rand(), random.random()
    expected = _train_steps(model, opt, sched, 2, seed=2)

    torch.manual_seed(123)  # a different process state
    model2 = TinyNet(cfg)
    opt2 = build_optimizer(model2, cfg.train)
    sched2 = build_scheduler(opt2, cfg.train, 20)
    meta = load_training_state(path, model2, opt2, sched2)
    assert (np.random.rand(), random.random()) == (expected_np, expected_py)
    assert meta["step"] == 3 and sched2.last_epoch == 3
    assert opt2.param_groups[0]["betas"] == opt.param_groups[0]["betas"]
    resumed = _train_steps(model2, opt2, sched2, 2, seed=2)
    assert resumed == expected
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_resume_from_weights_only_checkpoint_is_refused(tmp_path: Path, cfg: ProtoOccConfig) -> None:
    model = TinyNet(cfg)
    path = save_checkpoint(tmp_path / "ck.safetensors", model, cfg)
    opt = build_optimizer(model, cfg.train)
    with pytest.raises(CheckpointError, match="weights only"):
        load_training_state(path, model, opt)


def test_state_codec_roundtrips_nested_types() -> None:
    state = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.arange(4.0)}},
             "groups": [{"betas": (0.9, 0.999), "params": [0, 1], "lr": float("nan"), "name": None}],
             "numpy": ("MT19937", np.arange(5, dtype=np.uint32), 2, 0, 0.0),
             "python": (3, tuple(range(4)), None)}
    tensors, skeleton = flatten_state(state, "s")
    back = unflatten_state(json.loads(json.dumps(skeleton)), tensors)
    assert list(back["state"]) == [0] and torch.equal(back["state"][0]["exp_avg"], torch.arange(4.0))
    assert back["groups"][0]["betas"] == (0.9, 0.999) and np.isnan(back["groups"][0]["lr"])
    assert back["numpy"][1].dtype == np.uint32 and back["numpy"][1].tolist() == [0, 1, 2, 3, 4]
    assert back["python"] == (3, (0, 1, 2, 3), None)
    with pytest.raises(CheckpointError, match="missing from the safetensors file"):
        unflatten_state(skeleton, {})
    with pytest.raises(CheckpointError, match="cannot be stored without pickle"):
        flatten_state({"f": object()}, "s")


def test_loading_a_checkpoint_does_not_read_its_imagenet_file(tmp_path: Path) -> None:
    """The stored config names the ImageNet file training started from; the checkpoint's weights replace it."""
    from protoocc_ros.model import build_model
    from protoocc_ros.model.backbone import ResNet

    from training_helpers import tiny_config

    src = ResNet("resnet18", [1, 2, 3])
    imagenet = tmp_path / "resnet18-f37072fd.pth"
    torch.save({k: torch.randn_like(v.float()).to(v.dtype) for k, v in src.state_dict().items()}, imagenet)
    cfg = tiny_config("model.backbone.type=resnet18", f"model.backbone.pretrained={imagenet}",
                      "model.backbone.frozen_stages=1", "model.backbone.norm_eval=true")
    model = build_model(cfg)
    path = save_checkpoint(tmp_path / "run.safetensors", model, cfg)
    imagenet.unlink()  # e.g. evaluated on another machine
    loaded, meta = load_checkpoint(path)
    assert meta["config"]["model"]["backbone"]["pretrained"] == str(imagenet)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
