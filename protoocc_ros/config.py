"""One validated YAML schema (dataclasses) shared by the node, training and evaluation (docs/architecture.md "Configs").

A config file is a YAML mapping with the sections ``dataset``, ``model``, ``loss``, ``train`` and
``eval`` (plus an optional ``name``). A file may start with ``base: other.yaml`` (path relative to the
file): the base is loaded first and this file's keys are merged over it. Unknown keys, wrong types
and impossible values raise :class:`ConfigError` whose message names the key as a dotted path
(e.g. ``model.prototypes.num_prototypes``).

    cfg = load_config("config/demo.yaml", overrides=["train.lr=1e-3", "model.query_size=[25,25,4]"])
    d = config_to_dict(cfg)          # plain dict (stored in checkpoints as JSON)
    cfg2 = config_from_dict(d)       # validated again
"""
from __future__ import annotations

import copy
import dataclasses
import math
import reprlib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from protoocc_ros.layouts import NUSCENES_CAMERAS, OCC3D
from protoocc_ros.package_files import package_folders, share_dirs

# Output stride of ResNet / small-CNN stages layer1..layer4 (stage index 0..3).
STAGE_STRIDES = (4, 8, 16, 32)
# Voxel augmentations of the multi-perspective decoder (paper Sec. 3.3.1); a perspective is a
# '+'-joined combination, e.g. "dropout+transpose".
FEATURE_AUGMENTATIONS = ("dropout", "noise")
SPATIAL_AUGMENTATIONS = ("transpose", "flip_x", "flip_y", "flip")
AUGMENTATIONS = FEATURE_AUGMENTATIONS + SPATIAL_AUGMENTATIONS


MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a config YAML larger than this is refused unread
VALUE_PREVIEW = 80  # characters of a value shown in an error message


class ConfigError(ValueError):
    """Invalid configuration; the message starts with the dotted key (and file when known)."""


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 60, 60, 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 6


def preview(value: Any, limit: int = VALUE_PREVIEW) -> str:
    """repr(value) cut to ``limit`` characters, in time and memory bounded by the limit (nested containers
    and long strings are abbreviated before they are formatted): the only way a value enters a message."""
    try:
        text = _REPR.repr(value)
    except Exception:  # e.g. an int beyond sys.get_int_max_str_digits()
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------------
@dataclass
class DatasetConfig:
    """Which data, camera rig, network input size and label grid (ego frame, indexed [x, y, z])."""

    kind: Literal["occ3d", "kitti"] = "occ3d"
    dataroot: str = "synthetic"  # "synthetic" = the embedded synthetic sample
    version: str = "v1.0-mini"
    train_split: list[str] | str = "train"  # scene names or a split name
    val_split: list[str] | str = "val"
    cameras: list[str] = field(default_factory=lambda: list(NUSCENES_CAMERAS))
    image_size: list[int] = field(default_factory=lambda: [432, 800])  # [H, W] network input
    point_cloud_range: list[float] = field(default_factory=lambda: list(OCC3D.point_cloud_range))
    voxel_size: float = OCC3D.voxel_size  # metres
    grid_size: list[int] = field(default_factory=lambda: list(OCC3D.grid_size))  # [X, Y, Z]
    num_classes: int = 18  # Occ3D: 17 semantic + free; KITTI: 20 with 0 = empty
    class_names: list[str] | None = None
    free_label: int = 17
    ignore_index: int = 255
    use_mask_camera: bool = True


@dataclass
class BackboneConfig:
    """Image backbone; `pretrained` is a local checkpoint path (torchvision ResNet keys), never downloaded."""

    type: Literal["resnet50", "resnet18", "small_cnn"] = "resnet50"
    pretrained: str | None = None
    out_indices: list[int] = field(default_factory=lambda: [1, 2, 3])  # stages -> strides 8, 16, 32
    frozen_stages: int = -1  # -1: none, 0: stem, i: stem + layer1..i (>= 0 needs `pretrained`)
    norm_eval: bool = False  # keep BatchNorm statistics frozen while training (needs `pretrained`)
    width: int = 16  # small_cnn only: channels of the first stage (x1, x2, x4, x8)


@dataclass
class NeckConfig:
    """FPN: `channels` = d of the paper, `num_levels` = T (extra levels by stride-2 convs)."""

    channels: int = 256
    num_levels: int = 4


@dataclass
class EncoderConfig:
    """Voxel-query encoder layers: temporal self-attn, spatial cross-attn (+ prototypes), FFN."""

    num_layers: int = 3
    num_heads: int = 8
    num_points: int = 8  # sampling points per head and level (split over the pillar anchors)
    num_points_in_pillar: int = 4  # reference heights per query inside its voxel's z extent
    ffn_dims: int = 512
    dropout: float = 0.1


@dataclass
class PrototypeConfig:
    """Prototype-aware view transformation (paper Sec. 3.2, Eqs. 1a, 1b, 2, 3)."""

    enabled: bool = True
    optimization: bool = True  # pseudo-mask contrastive loss L_cls (Eqs. 2-3)
    ratio: int = 4  # r: grid-cell size (feature pixels) of the initial prototypes
    num_prototypes: int = 350  # M = ceil(h_f / r) * ceil(w_f / r); validated
    iterations: int = 3  # K soft-assignment iterations
    feature_level: int = 0  # FPN level that is clustered
    cluster_temperature: float = 0.1  # softmax temperature of the soft assignment
    # Encoder layers that map prototypes onto the queries (Eqs. 1a-1b); null = every layer (the paper).
    # [0] (the first layer only) is a named speed variant.
    layers: list[int] | None = None
    # Readings of Eqs. 1a, 1b and 2 where the paper is open (docs/architecture.md "Readings"): the defaults are the
    # Feature Aggregation & Dispatch of the cited Context Clusters [31], chosen on the prototype health figures and
    # validation mIoU; all of them false is the paper as printed (a mapping that collapses to one vector a camera).
    learned_affinity_scale: bool = True  # Eq. 1a: σ(α·A + β) with learned α, β (off: σ(A))
    per_prototype_norm: bool = True  # Eq. 1a: R_m = 1 + Σ_k S_mk per prototype (off: one R = Σ_{m,k} S a camera)
    hard_assignment: bool = True  # Eq. 1a: each hit query joins its most similar prototype only (off: all M)
    dispatch_mlp_on_prototypes: bool = False  # Eq. 1b: S ᵀ·MLP(P_vox) / Σ_m S instead of MLP(Sᵀ·P_vox) (speed)
    dispatch_to_output: bool = True  # Eq. 1b: Q̂ - Q' also joins the attended feature (off: Q̂ only steers offsets)
    pixel_softmax: bool = True  # Eq. 2: softmax of the mass-normalised G·H(A), G detached, H = 10·I at init
    cls_trains_queries: bool = True  # Eq. 3: L_cls's gradient also reaches the voxel queries Q' (through A and P_vox)


# Eqs. 1a, 1b and 2 read literally: every reading flag of PrototypeConfig off (the defaults are all on). A model with
# this reading maps one vector per camera onto its queries (docs/architecture.md "Readings").
PRINTED_READING: dict[str, bool] = {"learned_affinity_scale": False, "per_prototype_norm": False,
                                    "hard_assignment": False, "pixel_softmax": False, "dispatch_to_output": False}


def reading_overrides(reading: Mapping[str, bool]) -> list[str]:
    """``--set`` overrides of a reading: ``model.prototypes.<flag>=<true|false>``."""
    return [f"model.prototypes.{k}={str(v).lower()}" for k, v in reading.items()]


@dataclass
class DecoderConfig:
    """Multi-perspective occupancy decoder (paper Sec. 3.3)."""

    multi_perspective: bool = True
    augmentations: list[str] = field(default_factory=lambda: ["dropout+transpose", "noise+flip"])
    channels: int = 32
    dropout_p: float = 0.1
    noise_std: float = 0.1
    overlap: bool = True  # ConvTranspose3d kernel larger than its stride (neighbouring voxels mix)
    classifier_layers: int = 2  # Linear layers of the per-voxel classifier G (1 = linear, cheapest)


@dataclass
class TemporalConfig:
    """Temporal self-attention over the previous frame's voxel features and its reset rules."""

    enabled: bool = True
    memory_max_gap_s: float = 1.5
    memory_max_pose_jump_m: float = 20.0


@dataclass
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    embed_dims: int = 256
    query_size: list[int] = field(default_factory=lambda: [50, 50, 16])  # [h, w, z]
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    prototypes: PrototypeConfig = field(default_factory=PrototypeConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)


@dataclass
class LossConfig:
    """Eq. 6 weights: lambda_ce (λ1), lambda_lovasz (λ2), lambda_cls (λ3), lambda_cons (λ4)."""

    lambda_ce: float = 1.0      # λ1: cross-entropy of every perspective
    lambda_lovasz: float = 1.0  # λ2: Lovász-softmax of every perspective
    lambda_cls: float = 0.1     # λ3: prototype contrastive loss (Eq. 3)
    lambda_cons: float = 0.5    # λ4: multi-perspective consistency (Eqs. 4-5)
    tau_cls: float = 0.1        # τ of Eq. 3
    tau_cons: float = 0.5       # sharpening temperature of Eq. 4
    class_weights: list[float] | None = None  # CE weight per class (None = 1 for all)


@dataclass
class AugmentationConfig:
    """Training-time image augmentation (data/augmentation.py; BEVFormer/PanoOcc pipelines), all off by default.

    Per camera: photometric distortion (mmdet PhotoMetricDistortion), then resize by a factor drawn from
    ``resize_range``, a crop back to the network input (random column, the bottom kept unless
    ``bottom_crop_range`` > 0), a horizontal flip with probability ``flip_prob`` and a rotation drawn from
    ±``rotate_deg``; lidar2img is updated with the same affine map, the 3D targets are unchanged.
    """

    photometric: bool = False
    brightness_delta: float = 32.0  # on 0..255
    contrast_range: list[float] = field(default_factory=lambda: [0.5, 1.5])
    saturation_range: list[float] = field(default_factory=lambda: [0.5, 1.5])
    hue_delta: float = 18.0  # degrees
    channel_swap: bool = True  # part of mmdet's PhotoMetricDistortion (p = 0.5)
    resize_range: list[float] = field(default_factory=lambda: [1.0, 1.0])
    bottom_crop_range: list[float] = field(default_factory=lambda: [0.0, 0.0])  # BEVDet bot_pct_lim
    flip_prob: float = 0.0
    rotate_deg: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 12
    max_steps: int | None = None
    batch_size: int = 1
    clip_length: int = 3  # frames per sequential clip (temporal memory carried inside a clip)
    lr: float = 2e-4
    backbone_lr_mult: float = 0.1
    weight_decay: float = 0.01
    warmup_steps: int = 500
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    grad_clip: float | None = 35.0
    amp: bool = False
    seed: int = 0
    num_workers: int = 2
    prefetch_factor: int = 2  # batches each DataLoader worker loads ahead (num_workers > 0)
    # SEEDS pseudo masks of L_cls on disk (protoocc-precompute-masks fills it; the loader computes what is
    # missing, in its workers); null = <output_dir>/pseudo_masks.
    pseudo_mask_dir: str | None = None
    # Fine-tuning: start from the weights of this checkpoint (a file, or a run directory: its latest one) with
    # a fresh optimizer and schedule; the architecture must match, the camera rig and data may differ.
    load_from: str | None = None
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    checkpoint_every: int = 1000
    log_every: int = 50
    output_dir: str = "runs/protoocc"


@dataclass
class EvalConfig:
    split: str = "val"
    render: bool = False
    output_dir: str = "outputs/eval"


@dataclass
class ProtoOccConfig:
    name: str = ""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def num_cameras(self) -> int:
        return len(self.dataset.cameras)

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.dataset.image_size[0], self.dataset.image_size[1])


# --------------------------------------------------------------------------------------------
# derived sizes (also used by the model)
# --------------------------------------------------------------------------------------------
def level_strides(model: ModelConfig) -> list[int]:
    """Output stride of every FPN level (extra levels double the stride of the last one)."""
    base = [STAGE_STRIDES[i] for i in model.backbone.out_indices]
    extra = [base[-1] * 2 ** (k + 1) for k in range(model.neck.num_levels - len(base))]
    return (base + extra)[: model.neck.num_levels]


def feature_size(image_size: tuple[int, int] | list[int], stride: int) -> tuple[int, int]:
    """Feature-map size at `stride` for stride-2 convs with padding (= ceil division)."""
    return (math.ceil(image_size[0] / stride), math.ceil(image_size[1] / stride))


def prototype_grid(cfg: ProtoOccConfig) -> tuple[int, int]:
    """(rows, cols) of the initial prototype grid: ceil(h_f / r) x ceil(w_f / r)."""
    stride = level_strides(cfg.model)[cfg.model.prototypes.feature_level]
    hf, wf = feature_size(cfg.dataset.image_size, stride)
    r = cfg.model.prototypes.ratio
    return (math.ceil(hf / r), math.ceil(wf / r))


def expected_num_prototypes(cfg: ProtoOccConfig) -> int:
    rows, cols = prototype_grid(cfg)
    return rows * cols


def upsample_factors(cfg: ProtoOccConfig) -> tuple[int, int, int]:
    return tuple(g // q for g, q in zip(cfg.dataset.grid_size, cfg.model.query_size))  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# dict <-> dataclass with type checks
# --------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; return the converted value or raise ConfigError."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping (section), got {preview(value)}")
        return _build(typing.cast(type, tp), value, key)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{key}: must not be null (expected {_type_name(tp)})")
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {preview(value)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {list(choices)}, got {preview(value)}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list of {_type_name(item_tp)}, got {preview(value)}")
        return [_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected a boolean (true/false), got {preview(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {preview(value)}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {preview(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {preview(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {preview(value)}")
        return value
    raise ConfigError(f"{key}: unsupported schema type {tp!r}")  # pragma: no cover - schema bug


def _build(cls: type, data: Mapping, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            where = f"{prefix}.{str(key)[:60]}" if prefix else str(key)[:60]
            raise ConfigError(f"{where}: unknown key (expected one of {names})")
    kwargs = {
        name: _coerce(hints[name], data[name], f"{prefix}.{name}" if prefix else name)
        for name in names if name in data
    }
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any]) -> ProtoOccConfig:
    """Build and validate a config from a plain dict (e.g. the one stored in a checkpoint)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"<root>: expected a mapping, got {type(data).__name__}")
    cfg = _build(ProtoOccConfig, data, "")
    validate_config(cfg)
    return cfg


# Keys added to the schema after checkpoints were first written, each with the value that reproduces a stored
# config written before it existed (the reading that checkpoint was trained with). YAML files get the defaults.
LEGACY_VALUES: dict[str, Any] = {"model.prototypes.hard_assignment": False}


def stored_config_from_dict(data: Mapping[str, Any]) -> ProtoOccConfig:
    """Build and validate a config stored with a checkpoint or an exported graph: keys it lacks that were added
    later (``LEGACY_VALUES``) take their old value, so an older checkpoint keeps the model it was trained as."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"<root>: expected a mapping, got {type(data).__name__}")
    upgraded = copy.deepcopy(dict(data))
    for dotted, value in LEGACY_VALUES.items():
        *parents, leaf = dotted.split(".")
        node: Any = upgraded
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf not in node:
            node[leaf] = value
    return config_from_dict(upgraded)


def config_to_dict(cfg: ProtoOccConfig) -> dict[str, Any]:
    """Plain, JSON/YAML-serialisable dict of a config."""
    return dataclasses.asdict(cfg)


# --------------------------------------------------------------------------------------------
# YAML loading, `base:` inheritance and command-line overrides
# --------------------------------------------------------------------------------------------
def resolve_config_path(path_or_name: str | Path) -> Path:
    """A path, or a bare name of a shipped config ("demo" -> config/demo.yaml of the checkout or install)."""
    p = Path(path_or_name).expanduser()
    if p.is_file():
        return p
    if p.exists():
        raise ConfigError(f"{path_or_name}: is a directory, not a config file")
    for folder in package_folders("config"):
        for candidate in (folder / p, folder / f"{p}.yaml"):
            if candidate.is_file():
                return candidate
    looked = [str(root / "config") for root in share_dirs()]
    raise ConfigError(f"{path_or_name}: config file not found (looked here and in {looked})")


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses aliases: ``*name`` would let a few hundred bytes stand for billions of
    items (an alias bomb) once anything walks or prints the value; a config never needs one."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{str(event.anchor)[:40]} refused: anchors and aliases are not allowed in "
                            "config files (write the value out)", event.start_mark)
        return super().compose_node(parent, index)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: 'line L, column C: <problem>' of a PyYAML error (its str() spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    text = " ".join(f"{context}: {problem}".split() if context else problem.split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{text[:200]}"


def safe_yaml(text: str, where: str) -> Any:
    """Parse untrusted YAML: safe_load without aliases; ConfigError('<where>: line L, column C: not valid YAML:
    <problem>') on one line otherwise."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader subclass: no Python tags
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {_yaml_problem(exc)}") from None
    except ValueError as exc:  # e.g. an integer literal longer than sys.get_int_max_str_digits()
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(exc).split())[:200]}") from None


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: base: cycle through {[str(s) for s in seen]}")
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size} bytes, larger than a config can be ({MAX_CONFIG_BYTES} bytes)")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({type(exc).__name__}: {preview(str(exc), 120)})") from None
    data = safe_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected a file name, got {preview(base)}")
    return _deep_merge(_read_yaml(path.parent / base, (*seen, path)), data)


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply "a.b.c=value" strings (value parsed as YAML) to a raw config dict; returns a new dict."""
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {preview(item)}: expected KEY=VALUE (e.g. train.lr=1e-3)")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not key or any(not p for p in parts):
            raise ConfigError(f"override {preview(item)}: empty key")
        _check_override_key(parts, key)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part} is not a section")
        node[parts[-1]] = safe_yaml(raw, f"override {preview(item)}") if raw.strip() else None
    return out


def with_overrides(cfg: ProtoOccConfig, overrides: Sequence[str]) -> ProtoOccConfig:
    """A validated copy of ``cfg`` with "a.b.c=value" overrides applied (e.g. a checkpoint's stored config)."""
    return config_from_dict(apply_overrides(config_to_dict(cfg), list(overrides)))


def _check_override_key(parts: list[str], key: str) -> None:
    cls: Any = ProtoOccConfig
    for depth, part in enumerate(parts):
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"{key}: {'.'.join(parts[:depth])} is not a section")
        fields_ = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields_:
            raise ConfigError(f"{key}: unknown key (expected one of {list(fields_)})")
        cls = typing.get_type_hints(cls)[part]


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ProtoOccConfig:
    """Load a YAML config (with `base:` inheritance), apply overrides, validate."""
    resolved = resolve_config_path(path)
    data = apply_overrides(_read_yaml(resolved), overrides)
    data.setdefault("name", resolved.stem)
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{exc} [in {resolved}]") from None


# --------------------------------------------------------------------------------------------
# semantic validation
# --------------------------------------------------------------------------------------------
def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _length(values: list, n: int, key: str) -> None:
    _require(len(values) == n, key, f"expected {n} values, got {len(values)} ({preview(values)})")


def _positive(value: float | int | None, key: str, allow_zero: bool = False) -> None:
    if value is None:
        return
    _require(value >= 0 if allow_zero else value > 0, key,
             f"must be {'>= 0' if allow_zero else '> 0'}, got {preview(value)}")


def validate_config(cfg: ProtoOccConfig) -> None:
    """Cross-field checks; raises ConfigError naming the dotted key."""
    _validate_dataset(cfg.dataset)
    _validate_model(cfg)
    _validate_loss(cfg)
    _validate_train(cfg.train)


def _validate_dataset(d: DatasetConfig) -> None:
    _require(len(d.cameras) > 0, "dataset.cameras", "needs at least one camera")
    _require(len(set(d.cameras)) == len(d.cameras), "dataset.cameras", f"duplicate names in {preview(d.cameras)}")
    _length(d.image_size, 2, "dataset.image_size")
    _require(all(v >= 16 for v in d.image_size), "dataset.image_size",
             f"[H, W] must be >= 16, got {preview(d.image_size)}")
    _length(d.point_cloud_range, 6, "dataset.point_cloud_range")
    pcr = d.point_cloud_range
    _require(all(pcr[i + 3] > pcr[i] for i in range(3)), "dataset.point_cloud_range",
             f"max must exceed min on every axis, got {preview(pcr)}")
    _positive(d.voxel_size, "dataset.voxel_size")
    _length(d.grid_size, 3, "dataset.grid_size")
    _require(all(g > 0 for g in d.grid_size), "dataset.grid_size", f"must be positive, got {preview(d.grid_size)}")
    implied = [round((pcr[i + 3] - pcr[i]) / d.voxel_size) for i in range(3)]
    _require(list(d.grid_size) == implied and all(
        abs((pcr[i + 3] - pcr[i]) / d.voxel_size - implied[i]) < 1e-3 for i in range(3)),
        "dataset.grid_size", f"{preview(d.grid_size)} does not match point_cloud_range / voxel_size = "
        f"{[(pcr[i + 3] - pcr[i]) / d.voxel_size for i in range(3)]}")
    _require(d.num_classes >= 2, "dataset.num_classes", f"must be >= 2, got {d.num_classes}")
    _require(0 <= d.free_label < d.num_classes, "dataset.free_label",
             f"must be in [0, num_classes={d.num_classes}), got {d.free_label}")
    _require(d.num_classes <= d.ignore_index <= 255, "dataset.ignore_index",
             f"must be in [num_classes, 255] (labels are uint8), got {d.ignore_index}")
    if d.class_names is not None:
        _length(d.class_names, d.num_classes, "dataset.class_names")


def _validate_model(cfg: ProtoOccConfig) -> None:
    m, d = cfg.model, cfg.dataset
    b = m.backbone
    _require(len(b.out_indices) > 0 and all(0 <= i <= 3 for i in b.out_indices), "model.backbone.out_indices",
             f"stages must be in 0..3, got {preview(b.out_indices)}")
    _require(list(b.out_indices) == list(range(b.out_indices[0], b.out_indices[0] + len(b.out_indices))),
             "model.backbone.out_indices", f"must be consecutive and increasing, got {preview(b.out_indices)}")
    _require(-1 <= b.frozen_stages <= 4, "model.backbone.frozen_stages", f"must be in -1..4, got {b.frozen_stages}")
    _require(b.type != "small_cnn" or b.pretrained is None, "model.backbone.pretrained",
             "small_cnn has no pretrained weights; use null")
    # Freezing and frozen BatchNorm statistics keep ImageNet features; on random weights they would keep the
    # stem (and layers) random for the whole run and BatchNorm would never learn its statistics.
    _require(b.pretrained is not None or b.frozen_stages == -1, "model.backbone.frozen_stages",
             f"{b.frozen_stages} freezes the randomly initialised {b.type} (model.backbone.pretrained is null): "
             "use -1 when training from scratch, or give a local ImageNet checkpoint in model.backbone.pretrained")
    _require(b.pretrained is not None or not b.norm_eval, "model.backbone.norm_eval",
             f"true keeps the random BatchNorm statistics of the {b.type} fixed (model.backbone.pretrained is "
             "null): use false when training from scratch, or give a local ImageNet checkpoint")
    _positive(b.width, "model.backbone.width")
    _positive(m.neck.channels, "model.neck.channels")
    _require(m.neck.num_levels >= len(b.out_indices), "model.neck.num_levels",
             f"must be >= len(backbone.out_indices) = {len(b.out_indices)}, got {m.neck.num_levels}")
    _positive(m.embed_dims, "model.embed_dims")
    _require(m.embed_dims == m.neck.channels, "model.embed_dims",
             f"must equal model.neck.channels ({m.neck.channels}), got {m.embed_dims}")
    e = m.encoder
    _positive(e.num_layers, "model.encoder.num_layers")
    _positive(e.num_heads, "model.encoder.num_heads")
    _require(m.embed_dims % e.num_heads == 0, "model.encoder.num_heads",
             f"embed_dims {m.embed_dims} is not divisible by {e.num_heads}")
    _positive(e.num_points_in_pillar, "model.encoder.num_points_in_pillar")
    _require(e.num_points > 0 and e.num_points % e.num_points_in_pillar == 0, "model.encoder.num_points",
             f"must be a positive multiple of num_points_in_pillar ({e.num_points_in_pillar}), got {e.num_points}")
    _positive(e.ffn_dims, "model.encoder.ffn_dims")
    _require(0.0 <= e.dropout < 1.0, "model.encoder.dropout", f"must be in [0, 1), got {e.dropout}")
    _length(m.query_size, 3, "model.query_size")
    for axis, (q, g) in enumerate(zip(m.query_size, d.grid_size)):
        _require(q > 0, "model.query_size", f"must be positive, got {preview(m.query_size)}")
        _require(q <= g, "model.query_size", f"query larger than grid on axis {'xyz'[axis]}: "
                 f"{preview(m.query_size)} vs "
                 f"dataset.grid_size {preview(d.grid_size)}")
        _require(g % q == 0, "model.query_size", f"dataset.grid_size {preview(d.grid_size)} is not a multiple of "
                 f"{preview(m.query_size)} on axis {'xyz'[axis]}")
    _validate_prototypes(cfg)
    _validate_decoder(cfg)
    t = m.temporal
    _positive(t.memory_max_gap_s, "model.temporal.memory_max_gap_s")
    _positive(t.memory_max_pose_jump_m, "model.temporal.memory_max_pose_jump_m")


def _validate_prototypes(cfg: ProtoOccConfig) -> None:
    p = cfg.model.prototypes
    _require(p.enabled or not p.optimization, "model.prototypes.optimization",
             "needs model.prototypes.enabled = true")
    _require(0 <= p.feature_level < cfg.model.neck.num_levels, "model.prototypes.feature_level",
             f"must be in [0, neck.num_levels={cfg.model.neck.num_levels}), got {p.feature_level}")
    _positive(p.ratio, "model.prototypes.ratio")
    _positive(p.iterations, "model.prototypes.iterations", allow_zero=True)
    _positive(p.cluster_temperature, "model.prototypes.cluster_temperature")
    n_layers = cfg.model.encoder.num_layers
    if p.layers is not None:
        _require(len(p.layers) > 0 and len(set(p.layers)) == len(p.layers)
                 and all(0 <= i < n_layers for i in p.layers), "model.prototypes.layers",
                 f"must be distinct encoder layer indices in [0, {n_layers}) or null, got {preview(p.layers)}")
    expected = expected_num_prototypes(cfg)
    rows, cols = prototype_grid(cfg)
    _require(p.num_prototypes == expected, "model.prototypes.num_prototypes",
             f"{p.num_prototypes} does not match image_size {preview(cfg.dataset.image_size)} at FPN level "
             f"{p.feature_level} (stride {level_strides(cfg.model)[p.feature_level]}) with ratio r={p.ratio}: "
             f"expected {rows} x {cols} = {expected}")


def _validate_decoder(cfg: ProtoOccConfig) -> None:
    dec, m = cfg.model.decoder, cfg.model
    _positive(dec.channels, "model.decoder.channels")
    _positive(dec.classifier_layers, "model.decoder.classifier_layers")
    _require(0.0 <= dec.dropout_p < 1.0, "model.decoder.dropout_p", f"must be in [0, 1), got {dec.dropout_p}")
    _positive(dec.noise_std, "model.decoder.noise_std", allow_zero=True)
    _require(not dec.multi_perspective or len(dec.augmentations) > 0, "model.decoder.augmentations",
             "multi_perspective needs at least one augmentation")
    for i, spec in enumerate(dec.augmentations):
        ops = spec.split("+")
        for op in ops:
            _require(op in AUGMENTATIONS, f"model.decoder.augmentations[{i}]",
                     f"unknown augmentation {preview(op)} in {preview(spec)} (expected '+'-joined names from "
                     f"{list(AUGMENTATIONS)})")
        _require(len(set(ops)) == len(ops), f"model.decoder.augmentations[{i}]",
                 f"repeated operation in {preview(spec)}")
        if "transpose" in ops:
            _require(m.query_size[0] == m.query_size[1] and cfg.dataset.grid_size[0] == cfg.dataset.grid_size[1],
                     f"model.decoder.augmentations[{i}]",
                     f"transpose needs a square query and grid, got {preview(m.query_size)} / "
                     f"{preview(cfg.dataset.grid_size)}")


def _validate_loss(cfg: ProtoOccConfig) -> None:
    lo = cfg.loss
    for name in ("lambda_ce", "lambda_lovasz", "lambda_cls", "lambda_cons"):
        _positive(getattr(lo, name), f"loss.{name}", allow_zero=True)
    _positive(lo.tau_cls, "loss.tau_cls")
    _positive(lo.tau_cons, "loss.tau_cons")
    if lo.class_weights is not None:
        _length(lo.class_weights, cfg.dataset.num_classes, "loss.class_weights")
        _require(all(w >= 0 for w in lo.class_weights), "loss.class_weights", "weights must be >= 0")


def _validate_train(t: TrainConfig) -> None:
    for name in ("epochs", "batch_size", "clip_length", "checkpoint_every", "log_every"):
        _positive(getattr(t, name), f"train.{name}")
    _positive(t.max_steps, "train.max_steps")
    _positive(t.lr, "train.lr")
    _positive(t.backbone_lr_mult, "train.backbone_lr_mult", allow_zero=True)
    _positive(t.weight_decay, "train.weight_decay", allow_zero=True)
    _positive(t.warmup_steps, "train.warmup_steps", allow_zero=True)
    _positive(t.grad_clip, "train.grad_clip")
    _positive(t.num_workers, "train.num_workers", allow_zero=True)
    _positive(t.prefetch_factor, "train.prefetch_factor")
    _validate_augmentation(t.augmentation)


def _validate_augmentation(a: AugmentationConfig) -> None:
    key = "train.augmentation"
    _positive(a.brightness_delta, f"{key}.brightness_delta", allow_zero=True)
    _positive(a.hue_delta, f"{key}.hue_delta", allow_zero=True)
    for name in ("contrast_range", "saturation_range", "resize_range", "bottom_crop_range"):
        values = getattr(a, name)
        _length(values, 2, f"{key}.{name}")
        _require(values[0] <= values[1], f"{key}.{name}", f"expected [low, high] with low <= high, got {values}")
    for name in ("contrast_range", "saturation_range", "resize_range"):
        _require(getattr(a, name)[0] > 0, f"{key}.{name}", f"factors must be > 0, got {getattr(a, name)}")
    _require(a.bottom_crop_range[0] >= 0.0 and a.bottom_crop_range[1] < 1.0, f"{key}.bottom_crop_range",
             f"fractions must be in [0, 1), got {a.bottom_crop_range}")
    _require(0.0 <= a.flip_prob <= 1.0, f"{key}.flip_prob", f"must be in [0, 1], got {a.flip_prob}")
    _require(0.0 <= a.rotate_deg <= 180.0, f"{key}.rotate_deg", f"must be in [0, 180], got {a.rotate_deg}")
