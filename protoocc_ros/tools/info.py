"""protoocc-info: parameter counts of a config's ProtoOcc per stage (paper Table 3 "Params").

    protoocc-info config/occ3d_small.yaml
    protoocc-info occ3d_small --override model.prototypes.enabled=false --override model.prototypes.optimization=false

Stages: backbone, neck, view transformation (voxel query, positional embedding, spatial
cross-attention, FFNs and norms, prototype mapping and H of Eq. 2), temporal (temporal
self-attention), decoder (upsampler and classifier), and the total. The model is built on the
``meta`` device, so even the base configs are counted instantly and without memory.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from protoocc_ros.config import ConfigError, load_config, resolve_config_path
from protoocc_ros.model.protoocc import STAGES, ProtoOcc, count_parameters_by_stage, count_prototype_parameters


def _build_on_meta(cfg) -> ProtoOcc:
    cfg.model.backbone.pretrained = None  # counting needs no weights
    with torch.device("meta"):
        return ProtoOcc.from_config(cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="protoocc-info", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="config YAML path or name in config/ (e.g. occ3d_small)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable (e.g. model.query_size=[25,25,4])")
    parser.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    args = parser.parse_args(argv)
    try:
        path = resolve_config_path(args.config)
        cfg = load_config(path, overrides=args.override)
    except ConfigError as exc:
        print(f"protoocc-info: {exc}", file=sys.stderr)
        return 2
    model = _build_on_meta(cfg)
    counts = count_parameters_by_stage(model)
    prototypes = count_prototype_parameters(model)
    if args.json:
        print(json.dumps({"config": str(path), **counts, "prototypes": prototypes}))
        return 0
    m = cfg.model
    print(f"config   {path}")
    print(f"model    query {m.query_size}, d={m.embed_dims}, {m.encoder.num_layers} encoder layers, "
          f"backbone {m.backbone.type}, prototypes {'on' if m.prototypes.enabled else 'off'}"
          f"{f' (M={m.prototypes.num_prototypes})' if m.prototypes.enabled else ''}, "
          f"temporal {'on' if m.temporal.enabled else 'off'}, "
          f"multi-perspective {'on' if m.decoder.multi_perspective else 'off'}")
    print(f"{'stage':<24}{'parameters':>14}{'':>4}{'M':>8}")
    for stage in (*STAGES, "total"):
        print(f"{stage:<24}{counts[stage]:>14,}{'':>4}{counts[stage] / 1e6:>8.2f}")
        if stage == "view_transformation" and prototypes:
            print(f"{'  of which prototypes':<24}{prototypes:>14,}{'':>4}{prototypes / 1e6:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
