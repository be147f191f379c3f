"""OccupancyPredictor without ROS: the model's output on a preprocessed set, the temporal memory and its reset
rules across real-magnitude stamps, warm-up, and a failing set that leaves no memory behind; the onnxruntime
backend gives the same outputs and resets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from protoocc_ros.checkpoints.format import save_checkpoint
from protoocc_ros.config import load_config
from protoocc_ros.data.preprocessing import preprocess_camera_set
from protoocc_ros.geometry import make_transform, optical_rotation
from protoocc_ros.inference import OccupancyPredictor, OnnxRuntimePredictor, PredictorError, load_predictor
from protoocc_ros.model import build_model

NUSCENES_T0_NS = 1_533_151_603_512_404_000  # a nuScenes-magnitude stamp (2018-08-01), ~1.53e9 s
HALF_S = 500_000_000


@pytest.fixture(scope="module")
def cfg():
    return load_config("demo", overrides=[
        "dataset.image_size=[48,96]", "dataset.cameras=[CAM_FRONT,CAM_BACK]", "model.prototypes.num_prototypes=18",
        "model.query_size=[20,20,4]", "dataset.grid_size=[40,40,8]", "dataset.voxel_size=2.0",
        "dataset.point_cloud_range=[-40.0,-40.0,-1.0,40.0,40.0,15.0]"])


@pytest.fixture()
def predictor(cfg) -> OccupancyPredictor:
    torch.manual_seed(0)
    return OccupancyPredictor(build_model(cfg), cfg, "cpu")


def camera_set(seed: int, n: int = 2, size: tuple[int, int] = (60, 120)):
    """Images as a driver delivers them (another size than the model's input), with K and cam2ego."""
    rng = np.random.default_rng(seed)
    h, w = size
    K = np.array([[w / 2.0, 0.0, (w - 1) / 2.0], [0.0, w / 2.0, (h - 1) / 2.0], [0.0, 0.0, 1.0]])
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]
    cam2ego = [make_transform(optical_rotation(np.pi * i), [0.0, 0.0, 1.6]) for i in range(n)]
    return images, [K] * n, cam2ego


def pose(x: float) -> np.ndarray:
    return make_transform(None, [x, 0.0, 0.0])


def test_step_equals_the_model_on_the_shared_preprocessing(predictor: OccupancyPredictor, cfg) -> None:
    images, Ks, cam2ego = camera_set(1)
    out = predictor.step(images, Ks, cam2ego, pose(0.0), NUSCENES_T0_NS)
    batch = preprocess_camera_set(images, Ks, cam2ego, cfg.image_size)
    labels, confidence, _ = predictor.model.predict(
        batch.images[None], batch.lidar2img[None], torch.from_numpy(pose(0.0))[None],
        torch.tensor([NUSCENES_T0_NS / 1e9], dtype=torch.float64))
    assert out.labels.shape == tuple(cfg.dataset.grid_size) and out.labels.dtype == np.uint8
    np.testing.assert_array_equal(out.labels, labels[0].numpy())
    np.testing.assert_allclose(out.confidence, confidence[0].numpy(), rtol=0, atol=0)
    assert out.reset_reason == "first_frame"


def test_memory_carries_over_real_magnitude_stamps_and_resets_by_rule(predictor: OccupancyPredictor) -> None:
    images, Ks, cam2ego = camera_set(2)
    t, reasons = NUSCENES_T0_NS, []
    for stamp, x in [(t, 0.0), (t + HALF_S, 1.0), (t + 2 * HALF_S, 2.0),    # 0.5 s apart at ~1.53e9 s: carried
                     (t + HALF_S, 2.5),                                      # earlier than the memory
                     (t + 20 * HALF_S, 3.0),                                 # a 9.5 s gap (> memory_max_gap_s)
                     (t + 21 * HALF_S, 300.0)]:                              # the ego jumped 297 m
        reasons.append(predictor.step(images, Ks, cam2ego, pose(x), stamp).reset_reason)
    assert reasons == ["first_frame", None, None, "time_backwards", "gap", "pose_jump"]
    assert predictor.reset() is True and predictor.memory is None
    assert predictor.step(images, Ks, cam2ego, pose(300.0), t + 22 * HALF_S).reset_reason == "first_frame"


def test_stamps_straddling_a_float32_step_are_half_a_second_apart(predictor: OccupancyPredictor) -> None:
    """At 1.53e9 s float32 resolves 128 s: frames on either side of a multiple of 128 s would look 128 s apart."""
    boundary = (NUSCENES_T0_NS // 128_000_000_000 + 1) * 128_000_000_000
    images, Ks, cam2ego = camera_set(3)
    predictor.step(images, Ks, cam2ego, pose(0.0), boundary - HALF_S // 2)
    assert predictor.step(images, Ks, cam2ego, pose(0.5), boundary + HALF_S // 2).reset_reason is None
    assert float(predictor.memory.timestamp[0]) == pytest.approx((boundary + HALF_S // 2) / 1e9, abs=1e-6)


def test_without_memory_every_set_starts_fresh(predictor: OccupancyPredictor) -> None:
    predictor.memory_enabled = False
    images, Ks, cam2ego = camera_set(4)
    for k in range(3):
        assert predictor.step(images, Ks, cam2ego, pose(0.0), NUSCENES_T0_NS + k * HALF_S).reset_reason == \
            "first_frame"
    assert predictor.memory is None


def test_warm_up_leaves_no_memory(predictor: OccupancyPredictor) -> None:
    assert predictor.warm_up() > 0.0 and predictor.memory is None


def test_a_failing_set_drops_the_memory_and_the_next_one_runs(predictor: OccupancyPredictor) -> None:
    images, Ks, cam2ego = camera_set(5)
    predictor.step(images, Ks, cam2ego, pose(0.0), NUSCENES_T0_NS)
    assert predictor.memory is not None
    h, w = predictor.cfg.image_size
    bad = preprocess_camera_set(images, Ks, cam2ego, (h, w + 8))  # not the model's input size
    with pytest.raises(Exception, match="images: expected"):
        predictor.step_tensors(bad.images, bad.lidar2img, pose(0.0), NUSCENES_T0_NS / 1e9 + 0.5)
    assert predictor.memory is None
    assert predictor.step(images, Ks, cam2ego, pose(0.0), NUSCENES_T0_NS + 2 * HALF_S).reset_reason == "first_frame"


def test_load_predictor_names_the_bad_config_and_the_bad_checkpoint(tmp_path) -> None:
    with pytest.raises(PredictorError, match=r"'config_file' = 'no_such_config'.*not found"):
        load_predictor(None, "no_such_config", device="cpu")
    broken = tmp_path / "model.safetensors"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(PredictorError, match=r"model.safetensors.*cannot be loaded: CheckpointError"):
        load_predictor(broken, "demo", device="cpu")
    warnings: list[str] = []
    predictor = load_predictor(None, "demo", device="cpu", warn=warnings.append)
    assert predictor.classes.free_label == 17 and any("RANDOM WEIGHTS" in w for w in warnings)


# -- the onnxruntime backend ------------------------------------------------------------------------------------
OVERRIDES = ["dataset.image_size=[48,96]", "dataset.cameras=[CAM_FRONT,CAM_BACK]", "model.prototypes.num_prototypes=18",
             "model.query_size=[20,20,4]", "dataset.grid_size=[40,40,8]", "dataset.voxel_size=2.0",
             "dataset.point_cloud_range=[-40.0,-40.0,-1.0,40.0,40.0,15.0]"]


@pytest.fixture(scope="module")
def checkpoint(cfg, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():  # varied labels
        for weight in (p for p in model.parameters() if p.dim() > 1):
            weight.mul_(3.0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.safetensors", model, cfg)


def test_onnxruntime_backend_gives_the_torch_outputs_and_the_same_resets(checkpoint: Path) -> None:
    torch_p = load_predictor(checkpoint, "demo", OVERRIDES, "cpu")
    onnx_p = load_predictor(checkpoint, "demo", OVERRIDES, "cpu", backend="onnxruntime")  # exported here, any rig
    assert isinstance(onnx_p, OnnxRuntimePredictor) and onnx_p.providers == ["CPUExecutionProvider"]
    assert onnx_p.warm_up() > 0 and onnx_p.memory is None
    stamps = [0, HALF_S, 2 * HALF_S, HALF_S, 10 * HALF_S]  # memory, memory, time_backwards, gap
    reasons = ["first_frame", None, None, "time_backwards", "gap"]
    varied = 0
    for i, (stamp, reason) in enumerate(zip(stamps, reasons)):
        images, Ks, cam2ego = camera_set(20 + i)
        a = torch_p.step(images, Ks, cam2ego, pose(0.5 * i), NUSCENES_T0_NS + stamp)
        b = onnx_p.step(images, Ks, cam2ego, pose(0.5 * i), NUSCENES_T0_NS + stamp)
        assert a.reset_reason == b.reset_reason == reason
        assert (a.labels == b.labels).mean() > 0.999 and b.labels.dtype == np.uint8
        np.testing.assert_allclose(b.confidence, a.confidence, rtol=0, atol=1e-4)
        varied = max(varied, len(np.unique(a.labels)))
    assert varied >= 3


def test_onnx_file_of_another_architecture_is_refused_naming_the_key(checkpoint: Path, tmp_path: Path) -> None:
    import json

    from protoocc_ros.config import config_to_dict, load_config
    from protoocc_ros.export import export_temporal_onnx

    cfg = load_config("demo", OVERRIDES)
    model = build_model(cfg).eval()
    images, lidar2img = torch.zeros(1, 2, 3, 48, 96), torch.eye(4).expand(1, 2, 4, 4).clone()
    path = export_temporal_onnx(model, images, lidar2img, tmp_path / "g.onnx", 1600)
    other = config_to_dict(cfg)
    other["model"]["query_size"] = [10, 10, 4]
    path.with_suffix(".json").write_text(json.dumps({"config": other}))
    with pytest.raises(PredictorError, match=r"g.onnx was exported for another model .*model.query_size: graph \[10, 10, 4\]"):
        load_predictor(None, "demo", OVERRIDES, "cpu", backend="onnxruntime", onnx_file=path)
    path.with_suffix(".json").write_text(json.dumps({"config": config_to_dict(cfg)}))
    assert load_predictor(None, "demo", OVERRIDES, "cpu", backend="onnxruntime", onnx_file=path).runner.max_hits == 1600
    with pytest.raises(PredictorError, match=r"'onnx.file' = .*nothing.onnx': file not found"):
        load_predictor(None, "demo", OVERRIDES, "cpu", backend="onnxruntime", onnx_file=tmp_path / "nothing.onnx")
    predictor = load_predictor(None, "demo", OVERRIDES, "cpu", backend="onnxruntime", onnx_file=path)
    assert predictor.rig_note(["CAM_FRONT", "CAM_BACK"]) is None
    with pytest.raises(PredictorError, match=r"takes 2 cameras, the node has 3 .*export the graph for this rig"):
        predictor.rig_note(["CAM_FRONT", "CAM_BACK", "CAM_LEFT"])
    with pytest.raises(PredictorError, match=r"'backend' = 'tensorrt': expected one of \['torch', 'onnxruntime'\]"):
        load_predictor(None, "demo", OVERRIDES, "cpu", backend="tensorrt")
