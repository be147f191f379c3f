"""ONNX export of the single-frame inference graph (protoocc_ros.export) matches PyTorch under ONNX Runtime."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from protoocc_ros.config import PRINTED_READING, expected_num_prototypes, load_config, reading_overrides, validate_config
from protoocc_ros.data.preprocessing import lidar2img_from
from protoocc_ros.data.synthetic.rig import nuscenes_cameras
from protoocc_ros.export import ExportError, SingleFrameGraph, export_onnx, onnx_session, run_onnx
from protoocc_ros.export.onnx_export import _adaptive_avg_pool2d_matmul
from protoocc_ros.model import build_model

IMAGE_SIZE = (64, 112)  # small demo model: 6 cameras, stride-8 prototype grid 8 x 14 -> r=2: 4 x 7 = 28


def small_cfg(prototypes: bool = True, default_reading: bool = False):
    """The demo model (Eqs. 1a/1b/2 as printed, as the bundled checkpoint) or, with ``default_reading``, the
    schema's readings (one prototype per query: an argmax and a scatter in the graph)."""
    reading = reading_overrides({k: not v for k, v in PRINTED_READING.items()}) if default_reading else []
    cfg = load_config("demo", [f"model.prototypes.enabled={str(prototypes).lower()}",
                               f"model.prototypes.optimization={str(prototypes).lower()}", *reading])
    cfg.dataset.image_size = list(IMAGE_SIZE)
    cfg.model.prototypes.num_prototypes = expected_num_prototypes(cfg)
    validate_config(cfg)
    return cfg


def rig_inputs(cfg, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random normalised images and the nuScenes-like rig's lidar2img at the config's image size."""
    g = torch.Generator().manual_seed(seed)
    views = nuscenes_cameras(cfg.image_size)
    lidar2img = torch.from_numpy(np.stack([lidar2img_from(v.K, v.cam2ego) for v in views])).float()[None]
    images = torch.randn(1, len(views), 3, *cfg.image_size, generator=g)
    return images, lidar2img


@pytest.fixture(scope="module", params=["protoocc", "protoocc_default_reading", "baseline"])
def exported(request, tmp_path_factory) -> tuple:
    torch.manual_seed(0)
    cfg = small_cfg(request.param != "baseline", default_reading=request.param == "protoocc_default_reading")
    model = build_model(cfg).eval()
    with torch.no_grad():  # logits of a random decoder are tiny; larger weights make the comparison meaningful
        for p in model.decoder.parameters():
            p.mul_(4.0)
    images, lidar2img = rig_inputs(cfg, 0)
    path = export_onnx(model, images, lidar2img, tmp_path_factory.mktemp("onnx") / "model.onnx")
    return cfg, model, path, onnx_session(path, threads=1)


def test_onnx_matches_pytorch_on_new_images(exported) -> None:
    cfg, model, path, session = exported
    assert path.stat().st_size > 0
    graph = SingleFrameGraph(model)
    for seed in (1, 2):  # not the export example: the graph must not have folded the inputs in
        images, lidar2img = rig_inputs(cfg, seed)
        with torch.inference_mode():
            ref = graph(images, lidar2img).numpy()
        got = run_onnx(session, images, lidar2img)
        assert got.shape == (1, cfg.dataset.num_classes, *cfg.dataset.grid_size)
        assert np.abs(ref).max() > 1e-2  # a real signal to compare
        if cfg.model.prototypes.enabled and cfg.model.prototypes.hard_assignment:
            # One prototype per query: at random initialisation the best two affinities of a query are often
            # within 1e-5 (median gap 4e-5), so float noise of another runtime flips some assignments (perturbing
            # the images by 1e-6 in PyTorch alone changes ~1 % of the voxels). A broken graph differs everywhere.
            close = np.abs(got - ref) <= 2e-4 * np.abs(ref).max()
            assert close.mean() > 0.97 and (got.argmax(1) == ref.argmax(1)).mean() > 0.98
            continue
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-4 * np.abs(ref).max())
        assert (got.argmax(1) == ref.argmax(1)).mean() > 0.999


def test_export_leaves_the_model_as_it_was(tmp_path: Path) -> None:
    """Regression: the TorchScript exporter restored the wrapper's default "training" mode into the model, so a
    graph built before the export then ran with dropout on (max |ONNX - PyTorch| 2.2, 33 % argmax agreement)."""
    torch.manual_seed(0)
    cfg = small_cfg(True)
    model = build_model(cfg).eval()
    model.decoder.train()  # a mixed state must come back exactly
    modes = {name: m.training for name, m in model.named_modules()}
    model.decoder.eval()
    graph = SingleFrameGraph(model)  # built first, as a user comparing before / after would
    images, lidar2img = rig_inputs(cfg, 4)
    with torch.inference_mode():
        before = graph(images, lidar2img)
    model.decoder.train()
    path = export_onnx(model, images, lidar2img, tmp_path / "model.onnx")
    assert {name: m.training for name, m in model.named_modules()} == modes
    model.eval()
    with torch.inference_mode():
        torch.testing.assert_close(graph(images, lidar2img), before)
    np.testing.assert_allclose(run_onnx(onnx_session(path, threads=1), images, lidar2img), before.numpy(), rtol=0,
                               atol=2e-4 * before.abs().max().item())


def test_single_frame_graph_is_the_model_without_memory(exported) -> None:
    cfg, model, _, _ = exported
    images, lidar2img = rig_inputs(cfg, 3)
    with torch.inference_mode():
        direct = model(images, lidar2img, torch.eye(4, dtype=torch.float64)[None], torch.tensor([12.5],
                       dtype=torch.float64)).logits
        wrapped = SingleFrameGraph(model)(images, lidar2img)
    torch.testing.assert_close(wrapped, direct)


def test_wrong_input_shape_is_rejected(exported) -> None:
    cfg, _, _, session = exported
    images, lidar2img = rig_inputs(cfg, 0)
    with pytest.raises(ExportError, match="images"):
        run_onnx(session, images[:, :, :, :-8], lidar2img)


@pytest.mark.parametrize("size,out", [((12, 22), (6, 11)), ((7, 13), (3, 5)), ((5, 9), (5, 9)), ((4, 6), (1, 1))])
def test_pooling_by_matrices_equals_adaptive_avg_pool(size, out) -> None:
    x = torch.randn(2, 3, *size)
    torch.testing.assert_close(_adaptive_avg_pool2d_matmul(x, out), torch.nn.functional.adaptive_avg_pool2d(x, out))


def test_missing_file_is_an_export_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not found"):
        onnx_session(tmp_path / "nothing.onnx")
