"""Evaluation of a checkpoint over a split (paper Sec. 4.1 metrics): Occ3D mIoU or SemanticKITTI IoU/mIoU.

Every scene is run in frame order with the temporal memory carried from frame to frame and reset at
the scene start, exactly as the ROS node runs a sequence. Prints the per-class IoU table, writes
``report.json`` (metric, per-class IoU, confusion matrix, checkpoint, timing) and PNG renders of
prediction vs ground truth.

    protoocc-eval --checkpoint models/protoocc_demo.safetensors --split val --output-dir outputs/eval_demo
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from protoocc_ros.checkpoints.errors import CheckpointError
from protoocc_ros.checkpoints.format import (
    check_checkpoint_path,
    default_checkpoint_path,
    export_checkpoint,
    load_checkpoint,
    runtime_config,
    stored_config,
    update_metadata,
)
from protoocc_ros.classes import class_table
from protoocc_ros.config import (
    ConfigError,
    ProtoOccConfig,
)
from protoocc_ros.inference.predictor import OccupancyPredictor
from protoocc_ros.metrics import OccupancyMetric, build_metric
from protoocc_ros.metrics.confusion import ConfusionMetric, nan_to_none
from protoocc_ros.model import ProtoOcc
from protoocc_ros.training.clips import frame_keys, scene_sequences
from protoocc_ros.training.distributed import pick_device
from protoocc_ros.training.errors import TrainingError

REPORT_NAME = "report.json"


def config_metric(cfg: ProtoOccConfig) -> ConfusionMetric:
    """The metric of a config's dataset: Occ3D mIoU (mask_camera when the config uses it) or SemanticKITTI SSC."""
    d = cfg.dataset
    return build_metric(d.num_classes, d.free_label, kind="occ3d" if d.kind == "occ3d" else "semantic_kitti",
                        use_mask="camera" if d.use_mask_camera else "none", ignore_index=d.ignore_index,
                        class_names=d.class_names)


def _default_dataset(cfg: ProtoOccConfig, split: str) -> Any:
    from protoocc_ros.data import build_dataset

    return build_dataset(cfg, split)


def _render_frame(cfg: ProtoOccConfig, sample: dict[str, Any], pred: np.ndarray, path: Path) -> list[str]:
    """Prediction | ground truth | errors in BEV, and the camera images beside prediction and ground truth."""
    from protoocc_ros.render import render_cameras_and_bev, render_comparison

    mask = np.asarray(sample["mask_camera"]) if cfg.dataset.use_mask_camera else None
    title = f"{sample.get('scene')} frame {sample.get('frame_index')}: prediction vs ground truth"
    gt = np.asarray(sample["semantics"])
    out = [render_comparison(path, pred, gt, mask, cfg.dataset.num_classes, title)]
    if sample.get("raw_images") is not None:
        out.append(render_cameras_and_bev(path.with_name(f"{path.stem}_cameras.png"), list(sample["raw_images"]),
                                          list(cfg.dataset.cameras), pred, gt, mask, cfg.dataset.num_classes, title))
    return [str(p) for p in out]


def render_summary(metric: ConfusionMetric, out_dir: Path) -> str:
    """Per-class IoU bar chart of the whole split."""
    from protoocc_ros.render import render_iou_bars

    result = metric.compute()
    colors = class_table(metric.num_classes).colors
    names = list(metric.class_names)
    bar_colors = [colors[names.index(n)] for n in result["per_class_iou"]]
    return str(render_iou_bars(out_dir / "per_class_iou.png", result["per_class_iou"], result["miou"], bar_colors))


@torch.no_grad()
def evaluate_model(model: ProtoOcc, cfg: ProtoOccConfig, dataset: Any, *, device: torch.device | str = "cpu",
                   render_dir: Path | None = None, renders_per_scene: int = 1, max_frames: int | None = None,
                   progress: bool = True) -> tuple[ConfusionMetric, dict[str, Any]]:
    """Run every scene of ``dataset`` in order with memory; returns (metric, info with timing and renders)."""
    predictor = OccupancyPredictor(model, cfg, device)  # the node's per-set inference, memory rules included
    metric = config_metric(cfg)
    sequences = scene_sequences(frame_keys(dataset))
    total = sum(map(len, sequences.values())) if max_frames is None else min(max_frames, len(dataset))
    renders: list[str] = []
    resets: dict[str, int] = {}  # why the memory started empty, counted over frames
    done, model_seconds = 0, 0.0
    bar = tqdm(total=total, desc="evaluate", disable=not progress, dynamic_ncols=True)
    for scene, indices in sequences.items():
        predictor.reset()  # every scene starts without memory
        n = min(renders_per_scene, len(indices))
        picks = {indices[(2 * k + 1) * len(indices) // (2 * n)] for k in range(n)}  # evenly spaced, middle first
        for index in indices:
            if done >= total:
                break
            sample = dataset[index]
            start = time.perf_counter()
            out = predictor.step_tensors(torch.as_tensor(sample["images"]), torch.as_tensor(sample["lidar2img"]),
                                         np.asarray(sample["ego2global"], dtype=np.float64),
                                         float(np.asarray(sample["timestamp"], dtype=np.float64)))  # f64 seconds
            model_seconds += time.perf_counter() - start
            if out.reset_reason is not None:
                resets[out.reset_reason] = resets.get(out.reset_reason, 0) + 1
            pred = out.labels
            mask = sample["mask_camera"] if isinstance(metric, OccupancyMetric) and metric.use_mask == "camera" \
                else None
            metric.update(pred, sample["semantics"], mask)
            if render_dir is not None and index in picks:
                name = f"{scene}_{sample.get('frame_index', 0):03d}.png"
                renders += _render_frame(cfg, sample, pred, render_dir / name)
            done += 1
            bar.update(1)
    bar.close()
    if done == 0:
        raise TrainingError("evaluation split has no frames")
    if render_dir is not None:
        renders.append(render_summary(metric, render_dir))
    return metric, {"num_frames": done, "num_scenes": len(sequences), "memory_resets": resets,
                    "model_seconds_per_frame": model_seconds / done, "renders": renders}


def _targets(dataset: Any, index: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(semantics, mask_camera or None) of one frame, without decoding images when the loader allows it."""
    loaded = dataset.load_targets(index) if hasattr(dataset, "load_targets") else dataset[index]
    if isinstance(loaded, dict):
        mask = loaded.get("mask_camera")
        return np.asarray(loaded["semantics"]), None if mask is None else np.asarray(mask)
    return np.asarray(loaded), None


def prior_baseline_results(cfg: ProtoOccConfig, train_dataset: Any, eval_dataset: Any) -> dict[str, Any]:
    """Metric of a chance predictor that draws each voxel's class from the training labels' frequencies.

    Exact expectation, no sampling: E[confusion[gt=g, pred=p]] = count_eval(g) * prior(p), with both counted
    over the voxels the metric uses (mask_camera for Occ3D when configured, ignore label excluded).
    """
    n = cfg.dataset.num_classes
    metric = config_metric(cfg)
    use_mask = isinstance(metric, OccupancyMetric) and metric.use_mask == "camera"

    def counts(dataset: Any) -> np.ndarray:
        total = np.zeros(n, dtype=np.float64)
        for i in range(len(dataset)):
            sem, mask = _targets(dataset, i)
            labels = sem[mask.astype(bool)] if use_mask and mask is not None else sem.reshape(-1)
            total += np.bincount(labels[labels < n], minlength=n)[:n]
        return total

    prior = counts(train_dataset)
    expected = np.outer(counts(eval_dataset), prior / prior.sum())  # rows = gt, cols = pred
    metric.hist = expected if isinstance(metric, OccupancyMetric) else expected.T  # SSC rows = pred
    metric.num_frames = len(eval_dataset)
    return metric.compute()


def report_dict(metric: ConfusionMetric, info: dict[str, Any], cfg: ProtoOccConfig, split: str,
                checkpoint: str | None, metadata: dict[str, Any] | None) -> dict[str, Any]:
    return nan_to_none({
        "checkpoint": checkpoint,
        "checkpoint_step": None if metadata is None else metadata.get("step"),
        "config_name": cfg.name,
        "dataset": cfg.dataset.kind,
        "dataroot": cfg.dataset.dataroot,
        "split": split,
        "metric_name": type(metric).__name__,
        "results": metric.compute(),
        "table": metric.table(),
        "confusion_matrix": metric.hist.tolist(),
        **info,
    })


def evaluate_checkpoint(checkpoint: str | Path | None = None, cfg: ProtoOccConfig | None = None, *,
                        split: str | None = None, output_dir: str | Path | None = None, render: bool | None = None,
                        device: str | None = None, dataset: Any | None = None, max_frames: int | None = None,
                        progress: bool = True) -> dict[str, Any]:
    """Load a checkpoint (default: the bundled demo), evaluate it on ``split`` and write the report + renders."""
    ckpt = Path(checkpoint) if checkpoint is not None else default_checkpoint_path()
    model, metadata = load_checkpoint(ckpt, cfg, device="cpu")
    cfg = cfg if cfg is not None else stored_config(metadata, ckpt)
    split = split or cfg.eval.split
    dev = pick_device(device)
    model.to(dev)
    out_dir = Path(output_dir if output_dir is not None else cfg.eval.output_dir)
    do_render = cfg.eval.render if render is None else render
    data = dataset if dataset is not None else _default_dataset(cfg, split)
    metric, info = evaluate_model(model, cfg, data, device=dev, render_dir=out_dir / "renders" if do_render else None,
                                  max_frames=max_frames, progress=progress)
    report = report_dict(metric, info, cfg, split, str(ckpt), metadata)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_NAME).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    report["report_path"] = str(out_dir / REPORT_NAME)
    return report


def metric_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The compact metric stored in checkpoint metadata."""
    r = report["results"]
    summary = {"split": report["split"], "dataroot": report["dataroot"], "num_frames": report["num_frames"],
               "miou": r["miou"]}
    for key in ("geometry_iou", "completion_iou", "per_class_iou"):
        if key in r:
            summary[key] = r[key]
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="protoocc-eval", description="Evaluate a ProtoOcc checkpoint over a split "
                                "(Occ3D mIoU or SemanticKITTI IoU/mIoU); writes report.json and PNG renders.")
    p.add_argument("--checkpoint", default=None, help="a .safetensors checkpoint (default: the bundled demo "
                   f"{default_checkpoint_path()})")
    p.add_argument("--config", default=None, help="config YAML or name; default: the config stored in the checkpoint")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable (e.g. --set dataset.dataroot=/data/nuscenes)")
    p.add_argument("--split", default=None, help="split to evaluate (default: eval.split of the config)")
    p.add_argument("--output-dir", default=None, help="where report.json and renders go (default: eval.output_dir)")
    p.add_argument("--render", dest="render", action="store_true", default=None, help="write PNG renders")
    p.add_argument("--no-render", dest="render", action="store_false", help="do not write PNG renders")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames (smoke tests)")
    p.add_argument("--update-metadata", action="store_true",
                   help="store the resulting metric in the checkpoint's JSON metadata")
    p.add_argument("--export", default=None, metavar="PATH.safetensors",
                   help="write a weights-only copy of the checkpoint with this evaluation as its metric")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ckpt = check_checkpoint_path(args.checkpoint if args.checkpoint else default_checkpoint_path())
        cfg = runtime_config(ckpt, args.config, args.overrides)
        report = evaluate_checkpoint(ckpt, cfg, split=args.split, output_dir=args.output_dir, render=args.render,
                                     device=args.device, max_frames=args.max_frames, progress=not args.no_progress)
    except (CheckpointError, ConfigError, TrainingError) as exc:
        print(f"protoocc-eval: error: {exc}", file=sys.stderr)
        return 2
    print(report["table"])
    print(f"report: {report['report_path']}" + (f"; {len(report['renders'])} renders" if report["renders"] else ""))
    summary = metric_summary(report)
    summary["command"] = "protoocc-eval " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.update_metadata:
        update_metadata(ckpt, metric=summary)
        print(f"metric stored in {ckpt.with_suffix('.json')}")
    if args.export:
        print(f"exported to {export_checkpoint(ckpt, args.export, metric=summary)}")
    return 0
