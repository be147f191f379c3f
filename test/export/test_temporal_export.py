"""The temporal ONNX graph (protoocc_ros.export.temporal): the memory as graph inputs/outputs, the reset rules in the
caller. The graph is pinned to ProtoOcc.forward with a TemporalMemory (in PyTorch), and ONNX Runtime is compared with
PyTorch frame by frame over a sequence with motion and resets."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_onnx_export import rig_inputs, small_cfg

from protoocc_ros.config import load_config
from protoocc_ros.export import ExportError, onnx_session, resolve_providers
from protoocc_ros.export.temporal import (
    TemporalGraph,
    TemporalOnnxRunner,
    compare_sequence,
    example_memory_inputs,
    export_temporal_onnx,
    hits_per_camera,
    max_hits_for,
    pillar_points,
)
from protoocc_ros.geometry import make_transform, yaw_matrix
from protoocc_ros.model import build_model
from protoocc_ros.model.voxel_query import VoxelQuery


def sequence(cfg, stamps: list[float]) -> list[tuple[torch.Tensor, ...]]:
    """Frames driving 1.5 m and turning 0.04 rad per frame, new random images each; the rig stays."""
    frames = []
    for i, stamp in enumerate(stamps):
        images, lidar2img = rig_inputs(cfg, 10 + i)
        pose = torch.from_numpy(make_transform(yaw_matrix(0.04 * i), [1.5 * i, 0.2 * i, 0.0]))[None]
        frames.append((images, lidar2img, pose, torch.tensor([stamp], dtype=torch.float64)))
    return frames


# first frame, two frames with memory, a stamp earlier than the memory (time_backwards), a gap (> 2 s), memory again
STAMPS = [100.0, 100.5, 101.0, 99.0, 103.5, 104.0]
REASONS = ["first_frame", None, None, "time_backwards", "gap", None]


@pytest.fixture(scope="module")
def model_and_cfg():
    torch.manual_seed(0)
    cfg = small_cfg(True)
    model = build_model(cfg).eval()
    with torch.no_grad():  # larger weights: varied labels, and a memory that changes the result
        for p in (p for p in model.parameters() if p.dim() > 1):
            p.mul_(2.0)
    return cfg, model


@pytest.fixture(scope="module")
def exported(model_and_cfg, tmp_path_factory):
    cfg, model = model_and_cfg
    images, lidar2img = rig_inputs(cfg, 0)
    k = max_hits_for(cfg, lidar2img)
    path = export_temporal_onnx(model, images, lidar2img, tmp_path_factory.mktemp("temporal") / "t.onnx", k)
    return path, TemporalOnnxRunner(onnx_session(path, threads=1), cfg, path)


def test_pillar_points_are_the_voxel_query_pillars(model_and_cfg) -> None:
    cfg, _ = model_and_cfg
    m = cfg.model
    vq = VoxelQuery(m.embed_dims, m.query_size, cfg.dataset.point_cloud_range, m.encoder.num_points_in_pillar)
    torch.testing.assert_close(pillar_points(cfg), vq.pillar_points, rtol=0, atol=0)


def test_graph_equals_the_model_with_its_memory_over_a_sequence_with_resets(model_and_cfg) -> None:
    """TemporalGraph in PyTorch, fed as the caller feeds it, gives ProtoOcc.forward's logits and memory."""
    cfg, model = model_and_cfg
    frames = sequence(cfg, STAMPS)
    graph = TemporalGraph(model, max_hits_for(cfg, frames[0][1]))
    memory = None
    prev_feats, _, _ = example_memory_inputs(cfg)
    prev_pose = None
    with torch.inference_mode():
        for (images, lidar2img, pose, stamp), reason in zip(frames, REASONS):
            out = model(images, lidar2img, pose, stamp, memory)
            assert out.memory.reset_reason == [reason]
            use = reason is None
            motion = torch.linalg.solve(prev_pose, pose) if use else torch.eye(4, dtype=torch.float64)[None]
            logits, feats = graph(images, lidar2img, prev_feats, torch.tensor([float(use)]), motion)
            torch.testing.assert_close(logits, out.logits, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(feats, out.memory.features, rtol=1e-5, atol=1e-5)
            memory, prev_feats, prev_pose = out.memory, feats, pose
    # the memory matters: the last frame without it differs
    with torch.inference_mode():
        fresh = model(*frames[-1]).logits
    assert (fresh.argmax(1) != out.logits.argmax(1)).float().mean() > 0.01


def test_onnx_runtime_matches_pytorch_frame_by_frame(model_and_cfg, exported) -> None:
    cfg, model = model_and_cfg
    _, runner = exported
    checks = compare_sequence(runner, model, sequence(cfg, STAMPS))
    assert [c["reset_reason"] for c in checks] == REASONS
    assert [c["onnx_reset_reason"] for c in checks] == REASONS
    for c in checks:
        assert c["max_abs_logit"] > 1.0
        assert c["max_abs_diff"] < 2e-4 * c["max_abs_logit"], c
        assert c["memory_max_abs_diff"] < 1e-4, c
        assert c["argmax_agreement"] > 0.999, c


def test_a_motion_onto_the_range_boundary_warps_as_in_pytorch(model_and_cfg, exported) -> None:
    """Regression: 1.5 query voxels (2.4 m) of straight motion puts a row of previous voxel centres exactly on the
    range boundary (unit coordinate 1.0, inside). With the voxel centres computed from the traced tensor's shape
    they were float32 in the graph, that row fell outside, and the logits differed by 0.64 (99.94 % agreement)."""
    cfg, model = model_and_cfg
    _, runner = exported
    frames = sequence(cfg, [100.0, 100.5])
    step = (cfg.dataset.point_cloud_range[3] - cfg.dataset.point_cloud_range[0]) / cfg.model.query_size[0] * 1.5
    frames[1] = (*frames[1][:2], torch.from_numpy(make_transform(None, [step, 0.0, 0.0]))[None], frames[1][3])
    frames[0] = (*frames[0][:2], torch.eye(4, dtype=torch.float64)[None], frames[0][3])
    checks = compare_sequence(runner, model, frames)
    assert checks[1]["reset_reason"] is None
    assert checks[1]["max_abs_diff"] < 2e-4 * checks[1]["max_abs_logit"], checks[1]
    assert checks[1]["memory_max_abs_diff"] < 1e-4


def test_graph_metadata_holds_max_hits_and_a_rig_seeing_more_is_refused(model_and_cfg, tmp_path: Path) -> None:
    cfg, model = model_and_cfg
    images, lidar2img = rig_inputs(cfg, 0)
    narrow = lidar2img.clone()
    narrow[..., :2, :] *= 4.0  # 4x the focal length (and principal point): a quarter of the field of view
    hits = hits_per_camera(cfg, narrow).max()
    assert 0 < hits < hits_per_camera(cfg, lidar2img).max()
    path = export_temporal_onnx(model, images, narrow, tmp_path / "narrow.onnx", int(hits))
    runner = TemporalOnnxRunner(onnx_session(path, threads=1), cfg, path)
    assert runner.max_hits == hits
    frame = sequence(cfg, [100.0])[0]
    with pytest.raises(ExportError, match=rf"camera CAM_\w+ sees \d+ query pillars, .* at most {hits}"):
        runner.step(*frame, None)
    with pytest.raises(ExportError, match="max_hits = 3 but a camera of the example frame sees"):
        export_temporal_onnx(model, images, lidar2img, tmp_path / "small.onnx", 3)


def test_graph_without_temporal_attention_has_no_memory_inputs_and_still_runs(tmp_path: Path) -> None:
    cfg = small_cfg(True)
    cfg.model.temporal.enabled = False
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    images, lidar2img = rig_inputs(cfg, 0)
    path = export_temporal_onnx(model, images, lidar2img, tmp_path / "nt.onnx", math.prod(cfg.model.query_size))
    session = onnx_session(path, threads=1)
    assert [i.name for i in session.get_inputs()] == ["images", "lidar2img"]
    runner = TemporalOnnxRunner(session, cfg, path)
    checks = compare_sequence(runner, model, sequence(cfg, STAMPS[:2]))
    assert all(c["argmax_agreement"] > 0.999 for c in checks)


def test_single_frame_graph_is_refused_by_the_runner(tmp_path: Path) -> None:
    from protoocc_ros.export import export_onnx

    cfg = small_cfg(False)
    model = build_model(cfg).eval()
    path = export_onnx(model, *rig_inputs(cfg, 0), tmp_path / "single.onnx")
    expected = r"inputs \['images', 'lidar2img'\], outputs \['logits'\]: expected the temporal graph"
    with pytest.raises(ExportError, match=expected):
        TemporalOnnxRunner(onnx_session(path, threads=1), cfg, path)


def test_providers_default_to_the_cpu_here_and_a_missing_one_is_named() -> None:
    assert resolve_providers((), "cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ExportError, match=r"\['NoSuchExecutionProvider'\] not available here"):
        resolve_providers(["NoSuchExecutionProvider"], "cuda")


def test_demo_rig_needs_fewer_slots_than_query_pillars() -> None:
    """Why K is rig-specific: on the demo rig a camera sees under a third of the pillars (the any-rig graph pads
    every camera to all of them)."""
    from protoocc_ros.data.preprocessing import lidar2img_from
    from protoocc_ros.data.synthetic.rig import nuscenes_cameras

    cfg = load_config("demo")
    views = nuscenes_cameras(cfg.image_size)
    lidar2img = np.stack([lidar2img_from(v.K, v.cam2ego) for v in views])[None]
    assert max_hits_for(cfg, lidar2img, margin=0.0) < math.prod(cfg.model.query_size) / 3


def test_temporal_export_leaves_the_model_as_it_was(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = small_cfg(True)
    model = build_model(cfg).eval()
    model.decoder.train()  # a mixed state must come back exactly
    modes = {name: m.training for name, m in model.named_modules()}
    images, lidar2img = rig_inputs(cfg, 0)
    export_temporal_onnx(model, images, lidar2img, tmp_path / "t.onnx", max_hits_for(cfg, lidar2img))
    assert {name: m.training for name, m in model.named_modules()} == modes
