"""Image backbone (paper Sec. 3.1): ResNet-50 / ResNet-18 with torchvision state_dict keys, and a small CNN.

The ResNets are written here (torchvision is not a dependency) with the exact module names of
``torchvision.models.resnet`` so an ImageNet checkpoint saved from torchvision loads by path with
:func:`load_backbone_checkpoint` (``fc.*`` is ignored). No weights are ever downloaded.
Every backbone returns the feature maps of the stages in ``out_indices`` (stage i has stride 4·2^i).
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from protoocc_ros.config import BackboneConfig
from protoocc_ros.model.errors import ModelError


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck (stride on the 3x3 conv)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class _StagedBackbone(nn.Module):
    """Shared behaviour: a stem, four stages, `out_indices`, frozen stages and norm_eval."""

    stage_names = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, out_indices: list[int], frozen_stages: int, norm_eval: bool) -> None:
        super().__init__()
        self.out_indices = list(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.out_channels: list[int] = []  # channels of the returned maps, filled by subclasses

    def stem(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def stem_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)  # (B, C0, H/4, W/4)
        outs = []
        for i, name in enumerate(self.stage_names):
            x = getattr(self, name)(x)  # stride 4 * 2^i
            if i in self.out_indices:
                outs.append(x)
            if i >= self.out_indices[-1]:
                break
        return outs

    def freeze(self) -> None:
        modules = self.stem_modules() if self.frozen_stages >= 0 else []
        modules += [getattr(self, self.stage_names[i]) for i in range(max(self.frozen_stages, 0))]
        for module in modules:
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> _StagedBackbone:
        super().train(mode)
        self.freeze()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self


class ResNet(_StagedBackbone):
    """ResNet-18/50 (He et al. 2016) with torchvision module names (conv1, bn1, layer1..4)."""

    configs: ClassVar[dict[str, tuple[type[BasicBlock] | type[Bottleneck], list[int]]]] = {
        "resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet50": (Bottleneck, [3, 4, 6, 3])}

    def __init__(self, depth: str, out_indices: list[int], frozen_stages: int = -1, norm_eval: bool = False) -> None:
        super().__init__(out_indices, frozen_stages, norm_eval)
        block, layers = self.configs[depth]
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (name, n) in enumerate(zip(self.stage_names, layers)):
            planes = 64 * 2 ** i
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or cin != planes * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(cin, planes * block.expansion, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes * block.expansion))
            blocks = [block(cin, planes, stride, downsample)]
            cin = planes * block.expansion
            blocks += [block(cin, planes) for _ in range(n - 1)]
            setattr(self, name, nn.Sequential(*blocks))
        self.out_channels = [64 * 2 ** i * block.expansion for i in self.out_indices]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.freeze()

    def stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def stem_modules(self) -> list[nn.Module]:
        return [self.conv1, self.bn1]


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(_conv3x3(cin, cout, stride), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(_StagedBackbone):
    """A few-hundred-k-parameter CNN with ResNet's strides (4, 8, 16, 32) for CPU demos and tests."""

    def __init__(self, width: int, out_indices: list[int], frozen_stages: int = -1, norm_eval: bool = False) -> None:
        super().__init__(out_indices, frozen_stages, norm_eval)
        self.conv1 = nn.Sequential(_conv_bn_relu(3, width, 2), _conv_bn_relu(width, width, 2))  # stride 4
        cin = width
        for i, name in enumerate(self.stage_names):
            cout = width * 2 ** i
            setattr(self, name, nn.Sequential(_conv_bn_relu(cin, cout, 1 if i == 0 else 2),
                                              _conv_bn_relu(cout, cout, 1)))
            cin = cout
        self.out_channels = [width * 2 ** i for i in self.out_indices]
        self.freeze()

    def stem(self, x: Tensor) -> Tensor:
        return self.conv1(x)

    def stem_modules(self) -> list[nn.Module]:
        return [self.conv1]


def build_backbone(cfg: BackboneConfig) -> _StagedBackbone:
    """Backbone from config; loads `cfg.pretrained` (a local path) when set."""
    if cfg.type == "small_cnn":
        return SmallCNN(cfg.width, cfg.out_indices, cfg.frozen_stages, cfg.norm_eval)
    model = ResNet(cfg.type, cfg.out_indices, cfg.frozen_stages, cfg.norm_eval)
    if cfg.pretrained:
        load_backbone_checkpoint(model, cfg.pretrained)
    return model


CAFFE_STYLE_PROBLEM = (
    "caffe-style ResNet weights (MSRA/Detectron, mmdet style='caffe', e.g. FCOS3D's) expect BGR input on 0..255 "
    "minus the mean with std 1 and put the stride on the 1x1 convolution; this backbone feeds RGB normalised by "
    "the ImageNet mean and std (values ~58x smaller, channels reversed) with torchvision's stride on the 3x3 "
    "convolution, so they would load without error and compute wrong features. Use torchvision's ImageNet file "
    "(resnet50-0676ba61.pth / resnet18-f37072fd.pth)")


def _read_state_dict(path: Path) -> tuple[dict[str, Tensor], str]:
    """(state_dict, text of any metadata stored beside it)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as fh:
            meta = str(fh.metadata() or "")
        return load_file(str(path)), meta
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a weights-only torch checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    meta = ""
    if isinstance(state, dict):
        meta = " ".join(str(state[k]) for k in ("meta", "config", "cfg") if k in state)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state_dict (mapping of tensors), got {type(state).__name__}")
    return state, meta


def _caffe_style_reason(path: Path, state: dict[str, Tensor], meta: str) -> str | None:
    """Why ``state`` looks like caffe-style (or untrained) weights, None when it looks like torchvision's."""
    if "caffe" in path.name.lower():
        return f"the file name {path.name!r} says caffe"
    if "caffe" in meta.lower():
        return "its metadata names style='caffe'"
    means = [v for k, v in state.items() if k.endswith("running_mean")]
    variances = [v for k, v in state.items() if k.endswith("running_var")]
    if means and all(bool((m == 0).all()) for m in means) and all(bool((v == 1).all()) for v in variances):
        return ("every BatchNorm running_mean is 0 and running_var is 1: BatchNorm folded into scale/shift as in "
                "the caffe conversions, or a network that was never trained")
    return None


def load_backbone_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load torchvision-format ResNet weights (.pth/.pt via weights_only, or .safetensors) by path.

    Prefixes ``module.``/``backbone.``/``img_backbone.`` are stripped and ``fc.*`` is dropped;
    any other missing or unexpected key, or a shape mismatch, raises ModelError. Caffe-style files (a
    'caffe' file name or metadata, or BatchNorm statistics that are all 0 / 1) are refused: their shapes
    match but they expect BGR, unscaled input and another stride placement (``CAFFE_STYLE_PROBLEM``).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: backbone checkpoint not found (pretrained weights are never downloaded)")
    loaded, meta = _read_state_dict(path)
    state = {}
    for key, value in loaded.items():
        for prefix in ("module.", "img_backbone.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        if not key.startswith("fc."):
            state[key] = value
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ModelError(f"{path}: keys do not match the backbone: missing {missing[:5]}"
                         f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                         f"{'...' if len(unexpected) > 5 else ''}")
    wrong = [k for k in own if own[k].shape != state[k].shape]
    if wrong:
        raise ModelError(f"{path}: shape mismatch for {wrong[:5]} (e.g. {wrong[0]}: "
                         f"{tuple(state[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)})")
    reason = _caffe_style_reason(path, state, meta)
    if reason is not None:
        raise ModelError(f"{path}: refused as backbone weights: {reason}. {CAFFE_STYLE_PROBLEM}")
    model.load_state_dict(state)
