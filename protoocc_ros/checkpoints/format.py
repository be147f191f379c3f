"""Safe checkpoints: safetensors weights + JSON metadata, never pickle (docs/architecture.md "Checkpoints").

A checkpoint ``<dir>/<name>.safetensors`` comes with
  ``<name>.json``               metadata: format, config dict, step, epoch, git commit, command, data seed,
                                metric, sha256 of the weights file, name of the training state (or null);
  ``<name>.state.safetensors``  optional training state tensors (optimizer moments, RNG states ...);
  ``<name>.state.json``         its JSON skeleton (param groups, scheduler counters, ...), see state_codec.
Loading reads safetensors and JSON only. ``load_checkpoint(path, cfg=None)`` rebuilds the model from the
stored config (or from ``cfg`` after checking that it matches the stored one on every key that changes the
architecture) and refuses a corrupt, edited or mismatched checkpoint with :class:`CheckpointError`.
"""
from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from protoocc_ros.checkpoints.errors import CheckpointError
from protoocc_ros.checkpoints.state_codec import flatten_state, unflatten_state
from protoocc_ros.config import (
    ConfigError,
    ProtoOccConfig,
    config_to_dict,
    load_config,
    stored_config_from_dict,
    with_overrides,
)
from protoocc_ros.package_files import find_package_file, package_file_candidates

if TYPE_CHECKING:
    from protoocc_ros.model import ProtoOcc

FORMAT = "protoocc_ros.checkpoint"
FORMAT_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHECKPOINT_NAME = "protoocc_demo.safetensors"

# model.* keys that only matter while training or at run time; every other model.* key, and the dataset
# keys in _DATASET_ARCH_KEYS, changes the weights' meaning and must match the stored config.
_RUNTIME_MODEL_KEYS = frozenset({
    "model.backbone.pretrained", "model.backbone.frozen_stages", "model.backbone.norm_eval",
    "model.encoder.dropout", "model.prototypes.optimization", "model.decoder.multi_perspective",
    "model.decoder.augmentations", "model.decoder.dropout_p", "model.decoder.noise_std",
    "model.temporal.memory_max_gap_s", "model.temporal.memory_max_pose_jump_m",
})
_DATASET_ARCH_KEYS = ("kind", "image_size", "point_cloud_range", "voxel_size", "grid_size", "num_classes",
                      "free_label")

ModelFactory = Callable[[ProtoOccConfig], "ProtoOcc"]


@dataclass(frozen=True)
class CheckpointFiles:
    """The files of one checkpoint (see the module docstring)."""

    weights: Path
    metadata: Path
    state_tensors: Path
    state_json: Path


def checkpoint_files(path: str | Path) -> CheckpointFiles:
    p = Path(path)
    if p.suffix != WEIGHTS_SUFFIX:
        raise CheckpointError(f"{p}: a checkpoint path must end with {WEIGHTS_SUFFIX!r} (got {p.suffix!r})")
    stem = p.with_suffix("")
    return CheckpointFiles(p, Path(f"{stem}.json"), Path(f"{stem}.state.safetensors"), Path(f"{stem}.state.json"))


def check_checkpoint_path(path: str | Path | None) -> Path:
    """Validate a user-given checkpoint path (parameter / CLI): extension, exists, is a file."""
    if path is None or str(path).strip() == "":
        raise CheckpointError("checkpoint path is empty (expected a .safetensors file)")
    files = checkpoint_files(Path(str(path)).expanduser())
    if not files.weights.exists():
        raise CheckpointError(f"{files.weights}: checkpoint file does not exist")
    if not files.weights.is_file():
        raise CheckpointError(f"{files.weights}: not a regular file (expected a .safetensors checkpoint)")
    return files.weights


def default_checkpoint_path() -> Path:
    """The bundled demo checkpoint: models/ of this checkout, else share/protoocc_ros/models of an install
    (the checkout's path when neither exists, for the error message)."""
    return (find_package_file("models", DEFAULT_CHECKPOINT_NAME)
            or package_file_candidates("models", DEFAULT_CHECKPOINT_NAME)[0])


def git_commit(repo: Path = REPO_ROOT) -> str | None:
    """HEAD commit of the checkout (with '-dirty' when tracked files changed), None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def _write_json(path: Path, data: Any) -> None:
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n"))


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} file is missing (expected next to the .safetensors weights)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: {what} file is not valid JSON ({exc})") from None


def _load_tensors(path: Path, what: str) -> dict[str, Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: {what} is not a readable safetensors file ({exc})") from None


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


# --------------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Global RNG states: torch CPU, every CUDA device, numpy, python ``random``."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(tuple(state["numpy"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------
# save
# --------------------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, model: nn.Module, cfg: ProtoOccConfig, *, step: int = 0, epoch: int = 0,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any | None = None,
                    scaler: Any | None = None, metric: dict[str, Any] | None = None,
                    command: str | None = None, data_seed: int | None = None,
                    extra: dict[str, Any] | None = None, save_rng: bool = True) -> Path:
    """Write the weights, metadata and (when an optimizer is given) the training state; returns ``path``.

    ``extra`` is free JSON (e.g. the position inside the epoch) stored under ``metadata["extra"]``.
    """
    files = checkpoint_files(path)
    files.weights.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in unwrap(model).state_dict().items()}
    _atomic(files.weights, lambda tmp: save_file(weights, str(tmp), metadata={"format": FORMAT,
                                                                               "format_version": str(FORMAT_VERSION)}))
    state_name = None
    if optimizer is not None:
        state = {"optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict() if scheduler is not None else None,
                 "scaler": scaler.state_dict() if scaler is not None else None,
                 "rng": rng_state() if save_rng else None}
        tensors, skeleton = flatten_state(state, "state")
        _atomic(files.state_tensors, lambda tmp: save_file(tensors, str(tmp)))
        _write_json(files.state_json, {"format": FORMAT, "format_version": FORMAT_VERSION,
                                       "state_sha256": _sha256(files.state_tensors), "state": skeleton})
        state_name = files.state_tensors.name
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "step": int(step),
        "epoch": int(epoch),
        "git_commit": git_commit(),
        "command": command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "data_seed": data_seed,
        "metric": metric,
        "torch_version": torch.__version__,
        "num_parameters": int(sum(v.numel() for v in weights.values())),
        "weights_sha256": _sha256(files.weights),
        "training_state": state_name,
        "extra": extra or {},
        "config": config_to_dict(cfg),
    }
    _write_json(files.metadata, metadata)
    return files.weights


def update_metadata(path: str | Path, **fields: Any) -> dict[str, Any]:
    """Set top-level metadata fields (e.g. ``metric`` after evaluation) without touching the weights."""
    files = checkpoint_files(check_checkpoint_path(path))
    metadata = read_metadata(files.weights)
    metadata.update(fields)
    _write_json(files.metadata, metadata)
    return metadata


def export_checkpoint(source: str | Path, target: str | Path, **fields: Any) -> Path:
    """Weights-only copy of a checkpoint (no optimizer/RNG state) with its metadata, ``fields`` updated."""
    src = checkpoint_files(check_checkpoint_path(source))
    dst = checkpoint_files(target)
    metadata = read_metadata(src.weights)
    dst.weights.parent.mkdir(parents=True, exist_ok=True)
    _atomic(dst.weights, lambda tmp: tmp.write_bytes(src.weights.read_bytes()))
    metadata.update(fields, training_state=None, exported_from=str(src.weights))
    _write_json(dst.metadata, metadata)
    return dst.weights


# --------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------
def read_metadata(path: str | Path) -> dict[str, Any]:
    """Metadata of a checkpoint, checked for format and for the weights' sha256."""
    files = checkpoint_files(check_checkpoint_path(path))
    metadata = _read_json(files.metadata, "metadata")
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(f"{files.metadata}: not a protoocc_ros checkpoint metadata file "
                              f"(expected format {FORMAT!r})")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{files.metadata}: format_version {metadata.get('format_version')!r} "
                              f"is not supported (expected {FORMAT_VERSION})")
    for key in ("config", "weights_sha256", "step"):
        if key not in metadata:
            raise CheckpointError(f"{files.metadata}: missing key {key!r}")
    actual = _sha256(files.weights)
    if actual != metadata["weights_sha256"]:
        raise CheckpointError(f"{files.weights}: sha256 {actual[:12]}… does not match the metadata's "
                              f"weights_sha256 {str(metadata['weights_sha256'])[:12]}… (file corrupt or replaced)")
    return metadata


def stored_config(metadata: dict[str, Any], where: str | Path = "checkpoint") -> ProtoOccConfig:
    try:
        return stored_config_from_dict(metadata["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{where}: stored config is invalid: {exc}") from None


def _leaves(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_leaves(v, f"{prefix}.{k}"))
        return out
    return {prefix: value}


def architecture_signature(cfg: ProtoOccConfig) -> dict[str, Any]:
    """Dotted key -> value for every setting that changes the weights' shapes or meaning."""
    d = config_to_dict(cfg)
    sig = {k: v for k, v in _leaves(d["model"], "model").items() if k not in _RUNTIME_MODEL_KEYS}
    sig.update({f"dataset.{k}": d["dataset"][k] for k in _DATASET_ARCH_KEYS})
    return sig  # the camera list is not architecture: the weights serve any rig (docs/operating.md "Camera rigs")


def architecture_differences(stored: ProtoOccConfig, given: ProtoOccConfig) -> list[str]:
    """Human-readable 'key: stored X, given Y' lines for the architecture keys that differ."""
    a, b = architecture_signature(stored), architecture_signature(given)
    return [f"{k}: checkpoint {a.get(k)!r}, given {b.get(k)!r}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def runtime_config(checkpoint: str | Path, config: str | Path | ProtoOccConfig | None = None,
                   overrides: Sequence[str] = ()) -> ProtoOccConfig:
    """The config to run a checkpoint with: its stored config, or ``config`` (a file, shipped name or loaded
    config), with ``overrides``; either may change only what does not alter the weights (dataset paths,
    cameras, thresholds, memory rules ...). CheckpointError names every architecture key that differs and
    what to do.
    """
    path = check_checkpoint_path(checkpoint)
    stored = stored_config(read_metadata(path), path)
    try:
        if isinstance(config, ProtoOccConfig):
            cfg, given = config, f"config {config.name!r}"
        elif config is None or str(config) == "":
            cfg = with_overrides(stored, overrides)
            given = f"overrides {list(overrides)}"
        else:
            cfg = load_config(config, list(overrides))
            given = f"config {str(config)!r}" + (f" with overrides {list(overrides)}" if overrides else "")
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    diffs = architecture_differences(stored, cfg)
    if diffs:
        raise CheckpointError(
            f"{path}: {given} changes {len(diffs)} setting(s) that define the weights ({'; '.join(diffs)}). "
            "The checkpoint carries its architecture: leave the config empty to run it as trained (a config may "
            "change only dataset paths, cameras, thresholds and other run-time settings), or train / fine-tune "
            "a checkpoint for that architecture (docs/training.md)")
    return cfg


def _default_factory(cfg: ProtoOccConfig) -> ProtoOcc:
    from protoocc_ros.model.protoocc import ProtoOcc

    if cfg.model.backbone.pretrained:  # the checkpoint's weights replace the ImageNet ones: do not read that file
        cfg = copy.deepcopy(cfg)
        cfg.model.backbone.pretrained = None
    return ProtoOcc.from_config(cfg)


def load_weights_into(model: nn.Module, path: str | Path) -> None:
    """Load a checkpoint's weights into ``model`` (strict: missing, unexpected or reshaped keys refused)."""
    files = checkpoint_files(check_checkpoint_path(path))
    weights = _load_tensors(files.weights, "weights file")
    target = unwrap(model).state_dict()
    missing = sorted(set(target) - set(weights))
    unexpected = sorted(set(weights) - set(target))
    reshaped = [f"{k}: checkpoint {tuple(weights[k].shape)}, model {tuple(target[k].shape)}"
                for k in sorted(set(target) & set(weights)) if weights[k].shape != target[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {missing[:8]}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {unexpected[:8]}")
    if reshaped:
        problems.append(f"shape mismatch ({len(reshaped)}): {reshaped[:8]}")
    if problems:
        raise CheckpointError(f"{files.weights}: weights do not fit the model: " + "; ".join(problems))
    unwrap(model).load_state_dict(weights, strict=True)


def load_checkpoint(path: str | Path, cfg: ProtoOccConfig | None = None, device: str | torch.device = "cpu",
                    model_factory: ModelFactory | None = None) -> tuple[ProtoOcc, dict[str, Any]]:
    """Rebuild the model of a checkpoint; returns ``(model in eval mode on device, metadata)``.

    ``cfg`` None: the stored config is used. Otherwise ``cfg`` must agree with the stored config on every
    architecture key (see :func:`architecture_signature`), else CheckpointError names the differing keys;
    the model is then built from ``cfg`` (so run-time settings such as memory reset thresholds apply).
    ``model_factory`` (default ``ProtoOcc.from_config``) builds the module from a config.
    """
    weights_path = check_checkpoint_path(path)
    metadata = read_metadata(weights_path)
    stored = stored_config(metadata, weights_path)
    if cfg is not None:
        diffs = architecture_differences(stored, cfg)
        if diffs:
            raise CheckpointError(f"{weights_path}: the given config does not match the checkpoint's on "
                                  f"{len(diffs)} architecture key(s): " + "; ".join(diffs))
    use_cfg = cfg if cfg is not None else stored
    model = (model_factory or _default_factory)(use_cfg)
    load_weights_into(model, weights_path)
    model.to(device).eval()
    return model, metadata


def load_training_state(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                        scheduler: Any | None = None, scaler: Any | None = None,
                        restore_rng: bool = True) -> dict[str, Any]:
    """Resume: load weights into ``model`` and the optimizer/scheduler/scaler/RNG states; returns metadata."""
    weights_path = check_checkpoint_path(path)
    metadata = read_metadata(weights_path)
    load_weights_into(model, weights_path)
    if optimizer is None:
        return metadata
    files = checkpoint_files(weights_path)
    if not metadata.get("training_state"):
        raise CheckpointError(f"{weights_path}: holds weights only (no optimizer/scheduler state); "
                              "cannot resume from it")
    doc = _read_json(files.state_json, "training-state JSON")
    if not isinstance(doc, dict) or "state" not in doc or doc.get("format") != FORMAT:
        raise CheckpointError(f"{files.state_json}: not a protoocc_ros training-state file")
    if not files.state_tensors.is_file():
        raise CheckpointError(f"{files.state_tensors}: training-state tensors file is missing")
    if _sha256(files.state_tensors) != doc.get("state_sha256"):
        raise CheckpointError(f"{files.state_tensors}: sha256 does not match {files.state_json.name} "
                              "(file corrupt or replaced)")
    state = unflatten_state(doc["state"], _load_tensors(files.state_tensors, "training-state file"),
                            str(files.state_json))
    try:
        optimizer.load_state_dict(_check_optimizer_structure(state["optimizer"], optimizer.state_dict()))
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{files.state_json}: optimizer/scheduler state does not fit "
                              f"(different parameters or optimizer?): {exc}") from None
    if restore_rng and state.get("rng") is not None:
        set_rng_state(state["rng"])
    return metadata


def _check_optimizer_structure(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Check the optimizer structure (group count and sizes) before handing the state to torch."""
    groups, now = saved.get("param_groups", []), current["param_groups"]
    if len(groups) != len(now) or any(len(g["params"]) != len(n["params"]) for g, n in zip(groups, now)):
        raise CheckpointError(f"optimizer state has groups of sizes {[len(g['params']) for g in groups]}, "
                              f"the optimizer has {[len(n['params']) for n in now]}")
    return saved
