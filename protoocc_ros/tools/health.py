"""protoocc-health: the prototype path's health figures of a checkpoint, and the picture of its prototypes.

    protoocc-health                                              # bundled checkpoint, 4 frames of its val split
    protoocc-health --checkpoint runs/x/checkpoints/step_0001000.safetensors --split val --frames 8 --json
    protoocc-health --render docs/images/demo_prototypes.png     # paper Fig. 2/4 style picture of one frame

Per encoder layer (model/prototype_health.py): mean cosine between the voxel prototypes P_vox of a camera, mean
cosine between the dispatched updates Q̂ − Q' of different queries, the dispatch share |Q̂ − Q'| / |Q'|, the
fraction of prototypes used; the clustering's assignment entropy against ln M; L_cls (Eq. 3) against chance
(ln of the number of pseudo masks). Exit status 1 when a layer's mapping is collapsed (a cosine >= 0.9).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoocc_ros.checkpoints.errors import CheckpointError
from protoocc_ros.checkpoints.format import default_checkpoint_path, load_checkpoint, stored_config
from protoocc_ros.config import ConfigError, ProtoOccConfig
from protoocc_ros.data import build_dataset
from protoocc_ros.data.errors import DatasetError
from protoocc_ros.model import ProtoOcc
from protoocc_ros.model.losses import contrastive_chance, prototype_contrastive_loss
from protoocc_ros.model.prototype_health import COLLAPSE_COSINE, MAPPING_FIGURES, collapsed_layers, recording
from protoocc_ros.render import RenderError, render_prototypes
from protoocc_ros.training.errors import TrainingError
from protoocc_ros.training.pseudo_masks import PseudoMaskSpec


def _frames(dataset: Any, count: int) -> list[int]:
    """``count`` frame indices spread evenly over the split."""
    n = len(dataset)
    if n == 0:
        raise DatasetError("the split has no frames")
    return sorted({(2 * k + 1) * n // (2 * min(count, n)) for k in range(min(count, n))})


def _query_prototypes(model: ProtoOcc, index: torch.Tensor, assign: torch.Tensor, valid: torch.Tensor) -> np.ndarray:
    """(N, h, w, z) prototype of each voxel query per camera (-1 where the camera does not hit it)."""
    h, w, z = model.cfg.model.query_size
    n = index.shape[0]
    out = np.full((n, h * w * z), -1, dtype=np.int64)
    for cam in range(n):
        keep = valid[cam].numpy()
        out[cam, index[cam].numpy()[keep]] = assign[cam].numpy()[keep]
    return out.reshape(n, h, w, z)


def measure(model: ProtoOcc, cfg: ProtoOccConfig, dataset: Any, frames: list[int], render: Path | None = None
            ) -> dict[str, Any]:
    """Health figures averaged over ``frames`` (each a single frame, no temporal memory); with ``render`` the
    prototype picture of the first frame."""
    model.eval()
    spec = PseudoMaskSpec.from_config(cfg) if model.pixel_features is not None else None
    cls, chance = [], []
    picture: tuple[dict[str, Any], Any, dict[str, tuple[torch.Tensor, torch.Tensor]], torch.Tensor | None] | None = None
    with torch.no_grad(), recording(model, capture=render is not None) as rec:
        for i, idx in enumerate(frames):
            sample = dataset[idx]
            images = torch.as_tensor(sample["images"])[None].float()
            lidar2img = torch.as_tensor(sample["lidar2img"])[None].float()
            enc = model.encode_images(images, lidar2img)
            _volume, aux = model.encode_volume(enc, enc.query)
            pixels = model.prototype_pixel_features(enc.feats, aux)
            if pixels is not None and spec is not None:
                raw = np.asarray(sample["raw_images"]) if "raw_images" in sample else dataset.raw_images(idx)
                masks = torch.from_numpy(spec.compute(raw).astype(np.int64))
                cls.append(float(prototype_contrastive_loss(pixels[0], pixels[1], masks, cfg.loss.tau_cls)))
                chance.append(float(contrastive_chance(pixels[1], masks)))
            if render is not None and i == 0:
                picture = (sample, enc.cams, dict(rec.query_prototype), rec.pixel_prototype)
    figures: dict[str, Any] = dict(rec.summary())
    if cls:
        figures["loss.cls"], figures["loss.cls_chance"] = float(np.mean(cls)), float(np.mean(chance))
    sample, cams, per_layer, pixel = picture if picture is not None else ({}, None, {}, None)
    if render is not None and pixel is not None and cams is not None and per_layer:
        last = sorted(per_layer)[-1]
        assign, valid = per_layer[last]
        raw = np.asarray(sample["raw_images"]) if "raw_images" in sample else dataset.raw_images(frames[0])
        queries = _query_prototypes(model, cams.index[0], assign, valid)
        figures["render"] = str(render_prototypes(
            render, list(raw), pixel.numpy(), queries, list(cfg.dataset.cameras), cfg.model.prototypes.num_prototypes,
            title=f"prototypes of {last} (M = {cfg.model.prototypes.num_prototypes}); frame {frames[0]}"))
    return figures


def table(figures: dict[str, Any]) -> str:
    layers = sorted({k.split(".", 1)[0] for k in figures if k.startswith("layer")})
    rows = [f"{'layer':<8}" + "".join(f"{f:>17}" for f in MAPPING_FIGURES)]
    rows += [f"{layer:<8}" + "".join(f"{figures.get(f'{layer}.{f}', math.nan):>17.3f}" for f in MAPPING_FIGURES)
             for layer in layers]
    if "cluster.entropy" in figures:
        rows.append(f"clustering assignment entropy {figures['cluster.entropy']:.3f} nats "
                    f"(uniform: ln M = {figures['cluster.entropy_max']:.3f})")
    if "loss.cls" in figures:
        rows.append(f"L_cls {figures['loss.cls']:.3f} (chance: ln #masks = {figures['loss.cls_chance']:.3f})")
    bad = collapsed_layers(figures)
    rows.append(f"mapping collapsed (a cosine >= {COLLAPSE_COSINE}) in: {', '.join(bad)}" if bad
                else "mapping not collapsed" if layers else "no prototype mapping in this model")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="protoocc-health", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="a .safetensors checkpoint (default: the bundled demo model)")
    p.add_argument("--split", default="val", help="split of the checkpoint's dataset (default: val)")
    p.add_argument("--frames", type=int, default=4, help="frames spread over the split (default 4)")
    p.add_argument("--render", type=Path, default=None, help="write the prototype picture of the first frame (PNG)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = p.parse_args(argv)
    if args.frames < 1:
        p.error("--frames must be >= 1")
    try:
        ckpt = Path(args.checkpoint) if args.checkpoint else default_checkpoint_path()
        model, metadata = load_checkpoint(ckpt)
        cfg = stored_config(metadata, ckpt)
        dataset = build_dataset(cfg, args.split)
        figures = measure(model, cfg, dataset, _frames(dataset, args.frames), args.render)
    except (CheckpointError, ConfigError, DatasetError, RenderError, TrainingError) as exc:
        print(f"protoocc-health: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"checkpoint": str(ckpt), **{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                                   for k, v in figures.items()}})
          if args.json else table(figures))
    return 1 if collapsed_layers(figures) else 0


if __name__ == "__main__":
    sys.exit(main())
