"""occupancy_node with ``backend: onnxruntime`` over real DDS: the temporal ONNX graph exported for the test rig (with
its sidecar, as protoocc-export writes it) gives the grids of the PyTorch model called directly, memory included."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from test_occupancy_node import CAM2EGO, CAMERAS, MAIN, K, direct_prediction, running_node, small_model

from protoocc_ros.config import config_to_dict
from protoocc_ros.data.preprocessing import lidar2img_from
from protoocc_ros.export import export_temporal_onnx, max_hits_for
from protoocc_ros.inference.predictor import load_model
from protoocc_ros.ros.publishing.occupancy_msg import confidence_to_uint8, msg_to_grid


def export_for_the_rig(tmp: Path) -> Path:
    """The small model's temporal graph for the test rig (2 cameras, K at the model's input size) + sidecar."""
    _, checkpoint, cfg = small_model(tmp)
    model = load_model(checkpoint, cfg)
    lidar2img = torch.from_numpy(np.stack([lidar2img_from(K, CAM2EGO[c]) for c in CAMERAS])).float()[None]
    images = torch.zeros(1, len(CAMERAS), 3, *cfg.image_size)
    path = export_temporal_onnx(model, images, lidar2img, tmp / "small.onnx", max_hits_for(cfg, lidar2img))
    path.with_suffix(".json").write_text(json.dumps({"config": config_to_dict(cfg)}))
    return path


def test_onnxruntime_backend_publishes_the_grids_of_the_pytorch_model_with_its_memory(tmp_path: Path) -> None:
    (tmp_path / "export").mkdir()
    onnx_file = export_for_the_rig(tmp_path / "export")
    with running_node(tmp_path, backend="onnxruntime", **{"onnx.file": str(onnx_file)}) as running:
        rig = running.rig
        rig.spin_until(lambda: False, 1.0)  # let discovery match /tf and CameraInfo too, not only the images
        stamps = [rig.next_stamp(5.0), rig.next_stamp(0.5), rig.next_stamp(0.5)]  # fresh, then memory twice
        for stamp in stamps:
            rig.publish_set(stamp)
            rig.wait_grid(stamp)
        expected = direct_prediction(rig, running.model, stamps)
        for stamp, (labels, conf) in zip(stamps, expected):
            grid = msg_to_grid(rig.grids[stamp])
            assert (grid.labels == labels).mean() > 0.999
            got = np.frombuffer(rig.grids[stamp].confidence, np.uint8).astype(int)
            assert np.abs(got - confidence_to_uint8(conf).reshape(-1).astype(int)).max() <= 1
        assert len(np.unique(expected[-1][0])) >= 3
        without_memory = direct_prediction(rig, running.model, stamps[-1:])[0][0]
        assert (without_memory != expected[-1][0]).mean() > 0.01, "the memory must matter for this check"
        resets = lambda: rig.counts("memory resets", MAIN)  # noqa: E731  (from the next /diagnostics message)
        assert rig.spin_until(lambda: resets().get("memory.gap", 0) + resets().get("memory.first_frame", 0) >= 1,
                              5.0), resets()
        output = running.node.output()
    assert "backend onnxruntime" in output
