"""Backbone (ResNet with torchvision keys, small CNN) and FPN tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from protoocc_ros.config import BackboneConfig, ConfigError, load_config
from protoocc_ros.model.backbone import ResNet, SmallCNN, build_backbone, load_backbone_checkpoint
from protoocc_ros.model.errors import ModelError
from protoocc_ros.model.fpn import FPN

# torchvision.models.resnet{18,50}().parameters() minus the 1000-class fc layer (torchvision docs).
TORCHVISION_PARAMS = {"resnet18": 11_689_512 - (512 * 1000 + 1000), "resnet50": 25_557_032 - (2048 * 1000 + 1000)}


@pytest.mark.parametrize("depth", ["resnet18", "resnet50"])
def test_resnet_matches_torchvision_parameter_count_and_keys(depth: str) -> None:
    model = ResNet(depth, [0, 1, 2, 3])
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[depth]
    keys = set(model.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer4.1.bn2.weight",
            "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var"} <= keys
    if depth == "resnet50":
        assert "layer3.5.conv3.weight" in keys and "layer1.0.downsample.1.weight" in keys


def test_resnet_output_strides_and_channels() -> None:
    model = ResNet("resnet18", [1, 2, 3]).eval()
    outs = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape[1:]) for o in outs] == [(128, 8, 12), (256, 4, 6), (512, 2, 3)]
    assert model.out_channels == [128, 256, 512]
    cnn = SmallCNN(8, [1, 2, 3]).eval()
    outs = cnn(torch.randn(2, 3, 96, 176))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 12, 22), (2, 32, 6, 11), (2, 64, 3, 6)]


def test_frozen_stages_and_norm_eval() -> None:
    model = build_backbone(BackboneConfig(type="resnet18", frozen_stages=1, norm_eval=True)).train()
    assert not any(p.requires_grad for p in model.conv1.parameters())
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert not model.layer3[0].bn1.training  # BatchNorm statistics frozen
    free = build_backbone(BackboneConfig(type="small_cnn", frozen_stages=-1, norm_eval=False)).train()
    assert all(p.requires_grad for p in free.parameters()) and free.layer1[0][1].training


def _torchvision_style_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = {f"module.{k}": torch.randn_like(v.float()).to(v.dtype) for k, v in model.state_dict().items()}
    state["module.fc.weight"], state["module.fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    return state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_checkpoint_loads_by_path(tmp_path: Path, suffix: str) -> None:
    src = ResNet("resnet18", [1, 2, 3])
    state = _torchvision_style_state(src)
    path = tmp_path / f"r18{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": state}, path)
    else:
        save_file(state, str(path))
    model = build_backbone(BackboneConfig(type="resnet18", pretrained=str(path)))
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[f"module.{key}"]), key


def test_checkpoint_errors_name_the_problem(tmp_path: Path) -> None:
    model = ResNet("resnet18", [1, 2, 3])
    with pytest.raises(ModelError, match="not found"):
        load_backbone_checkpoint(model, tmp_path / "missing.pth")
    wrong = ResNet("resnet50", [1, 2, 3]).state_dict()
    torch.save(wrong, tmp_path / "r50.pth")
    with pytest.raises(ModelError, match="keys do not match|shape mismatch"):
        load_backbone_checkpoint(model, tmp_path / "r50.pth")


@pytest.mark.parametrize("name", ["occ3d_small", "kitti_small"])
def test_shipped_full_size_configs_train_the_whole_backbone_from_scratch(name: str) -> None:
    """No ImageNet file given: nothing may stay frozen at its random initialisation, BatchNorm must learn."""
    cfg = load_config(name)
    assert cfg.model.backbone.pretrained is None
    model = build_backbone(cfg.model.backbone).train()
    assert all(p.requires_grad for p in model.parameters())
    assert all(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize("override,key", [("model.backbone.frozen_stages=1", "model.backbone.frozen_stages"),
                                          ("model.backbone.norm_eval=true", "model.backbone.norm_eval")])
def test_freezing_random_weights_is_refused_with_the_reason(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key}: .*randomly initialised|{key}: .*random BatchNorm"):
        load_config("occ3d_small", [override])


def test_a_torchvision_file_enables_freezing_and_norm_eval(tmp_path: Path) -> None:
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(_torchvision_style_state(ResNet("resnet18", [1, 2, 3])), path)
    cfg = load_config("occ3d_small", ["model.backbone.type=resnet18", f"model.backbone.pretrained={path}",
                                      "model.backbone.frozen_stages=1", "model.backbone.norm_eval=true"])
    model = build_backbone(cfg.model.backbone).train()
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters()) and not model.layer2[0].bn1.training


def test_caffe_style_weights_are_refused_not_loaded(tmp_path: Path) -> None:
    """Same keys and shapes, other input convention (BGR, std 1) and stride placement: never load silently."""
    model = ResNet("resnet18", [1, 2, 3])
    folded = {k: (torch.zeros_like(v) if k.endswith("running_mean") else torch.ones_like(v)
                  if k.endswith("running_var") else torch.randn_like(v.float()).to(v.dtype))
              for k, v in model.state_dict().items()}  # BatchNorm folded into scale/shift, as caffe conversions
    torch.save(folded, tmp_path / "r18.pth")
    with pytest.raises(ModelError, match="refused as backbone weights: every BatchNorm.*BGR"):
        load_backbone_checkpoint(model, tmp_path / "r18.pth")
    good = _torchvision_style_state(model)
    torch.save(good, tmp_path / "resnet18_caffe.pth")
    with pytest.raises(ModelError, match="file name 'resnet18_caffe.pth' says caffe"):
        load_backbone_checkpoint(model, tmp_path / "resnet18_caffe.pth")
    torch.save({"state_dict": good, "meta": {"config": "img_backbone=dict(type='ResNet', style='caffe')"}},
               tmp_path / "fcos3d.pth")
    with pytest.raises(ModelError, match="metadata names style='caffe'"):
        load_backbone_checkpoint(model, tmp_path / "fcos3d.pth")
    torch.save({"state_dict": good}, tmp_path / "ok.pth")
    load_backbone_checkpoint(model, tmp_path / "ok.pth")  # the torchvision-style file loads


def test_fpn_levels_and_strides() -> None:
    feats = [torch.randn(2, c, 12 // 2 ** i, 22 // 2 ** i + (i > 0)) for i, c in enumerate([16, 32, 64])]
    fpn = FPN([16, 32, 64], 24, 4)
    outs = fpn(feats)
    assert [tuple(o.shape) for o in outs] == [(2, 24, 12, 22), (2, 24, 6, 12), (2, 24, 3, 6), (2, 24, 2, 3)]
    # the top-down path really mixes levels: the finest output depends on the coarsest input
    feats2 = [f.clone() for f in feats]
    feats2[2] += 1.0
    assert not torch.allclose(fpn(feats2)[0], outs[0])
