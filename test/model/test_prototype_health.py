"""Health figures of the prototype path (model/prototype_health.py): they measure what they say, and they tell a
collapsed mapping (the paper's equations read with one soft σ and one R per camera) from a working one."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from model_helpers import make_inputs, make_targets
from protoocc_ros.config import (
    LEGACY_VALUES, PRINTED_READING, config_to_dict, load_config, reading_overrides, stored_config_from_dict,
)
from protoocc_ros.model import build_model
from protoocc_ros.model.losses import contrastive_chance, prototype_contrastive_loss
from protoocc_ros.model.prototype_health import collapsed_layers, mean_pairwise_cosine, recording

PRINTED = reading_overrides(PRINTED_READING)


def test_mean_pairwise_cosine_matches_a_loop() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 7, 5)
    mask = torch.rand(3, 7) > 0.4
    mask[2] = False
    mask[2, 3] = True  # one row: no pair
    got = mean_pairwise_cosine(x, mask)
    for s in range(2):
        rows = [x[s, i] for i in range(7) if mask[s, i]]
        pairs = [float(F.cosine_similarity(a, b, dim=0)) for i, a in enumerate(rows) for j, b in enumerate(rows)
                 if i != j]
        assert math.isclose(float(got[s]), sum(pairs) / len(pairs), rel_tol=1e-5, abs_tol=1e-6)
    assert math.isnan(float(got[2]))
    same = torch.ones(1, 4, 3)
    assert math.isclose(float(mean_pairwise_cosine(same, torch.ones(1, 4, dtype=torch.bool))[0]), 1.0, rel_tol=1e-6)


def _health(*overrides: str) -> dict[str, float]:
    cfg = load_config("ablation", ["dataset.cameras=[CAM_FRONT,CAM_BACK]", *overrides])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    with recording(model) as rec:
        out = model(**make_inputs(cfg))
    _, terms = model.loss(out, make_targets(cfg))
    return {**rec.summary(), **{f"loss.{k}": v for k, v in terms.items()}}


def test_printed_reading_is_a_constant_per_camera_and_the_default_is_not() -> None:
    """As printed (σ(A) over all M·K pairs, R = Σ_{m,k} σ(A) per camera) every prototype and every dispatched
    update of a camera is nearly one vector; the default reading (one prototype per query, R per prototype)
    is not. Measured at initialisation, where the collapse already shows."""
    printed = _health(*PRINTED)
    assert printed["layer0.proto_cosine"] > 0.99 and printed["layer0.dispatch_cosine"] > 0.99
    assert collapsed_layers(printed) == ["layer0"]
    default = _health()
    assert default["layer0.proto_cosine"] < 0.9 and default["layer0.dispatch_cosine"] < 0.9, default
    assert collapsed_layers(default) == []
    assert 0.0 < default["layer0.prototypes_used"] <= 1.0 and default["layer0.dispatch_share"] > 0.0
    assert 0.0 < default["cluster.entropy"] < default["cluster.entropy_max"] == math.log(66)


def _backbone_gradient_ratio(*overrides: str) -> tuple[float, dict[str, float]]:
    """|∇ λ3·L_cls| / |∇ (the rest of Eq. 6)| on the backbone at initialisation (the 6-camera ablation model), and
    the loss terms."""
    cfg = load_config("ablation", list(overrides))
    torch.manual_seed(0)
    model = build_model(cfg).train()
    targets = make_targets(cfg)
    out = model(**make_inputs(cfg))
    total, terms = model.loss(out, targets)
    cls = cfg.loss.lambda_cls * prototype_contrastive_loss(out.aux["pixel_features"], out.aux["coverage"],
                                                           targets["pseudo_masks"].flatten(0, 1), cfg.loss.tau_cls)
    params = list(model.backbone.parameters())

    def norm(loss: torch.Tensor) -> float:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return math.sqrt(sum(float(g.square().sum()) for g in grads if g is not None))

    return norm(cls) / norm(total - cls), terms


def test_contrastive_loss_does_not_swamp_the_other_gradients_and_starts_at_chance() -> None:
    """Eq. 2 read literally (X = G·H(A)·P_vox, unnormalised, G with its gradient) gives λ3·L_cls a gradient on the
    backbone many times that of the occupancy losses (cosines of tiny vectors); the default reading (X a convex
    mixture of the prototypes per cell, G detached) keeps it of the same order and starts L_cls at chance."""
    printed, _ = _backbone_gradient_ratio(*PRINTED)
    default, terms = _backbone_gradient_ratio()
    assert printed > 10.0, printed
    assert default < 3.0, default
    assert abs(terms["cls"] - terms["cls_chance"]) < 0.1 * terms["cls_chance"], terms


def test_contrastive_chance_is_ln_of_the_masks_present_per_image() -> None:
    coverage = torch.zeros(2, 2, 2)
    coverage[0] = 1.0
    coverage[1, 0, 0] = 1.0
    masks = torch.tensor([[[0, 1], [2, 3]], [[5, 1], [1, 1]]])
    # image 0: 4 covered cells, 4 masks; image 1: 1 covered cell, 1 mask -> (4 ln 4 + 1 ln 1) / 5
    assert math.isclose(float(contrastive_chance(coverage, masks)), 4 * math.log(4) / 5, rel_tol=1e-6)


def test_stored_configs_without_a_new_key_keep_their_old_reading() -> None:
    """A checkpoint written before ``hard_assignment`` existed was trained without it: its stored config must
    rebuild that model, while YAML configs get today's default."""
    cfg = load_config("ablation")
    stored = config_to_dict(cfg)
    del stored["model"]["prototypes"]["hard_assignment"]
    assert stored_config_from_dict(stored).model.prototypes.hard_assignment is LEGACY_VALUES[
        "model.prototypes.hard_assignment"] is False
    assert cfg.model.prototypes.hard_assignment is True
    kept = config_to_dict(cfg)
    assert stored_config_from_dict(kept).model.prototypes.hard_assignment is True


def _cls_gradients(trains_queries: bool) -> dict[str, float]:
    """Gradient norms of L_cls alone on the voxel query, the image MLP and the backbone."""
    cfg = load_config("ablation", ["dataset.cameras=[CAM_FRONT,CAM_BACK]",
                                   f"model.prototypes.cls_trains_queries={str(trains_queries).lower()}"])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    targets = make_targets(cfg)
    out = model(**make_inputs(cfg))
    prototype_contrastive_loss(out.aux["pixel_features"], out.aux["coverage"], targets["pseudo_masks"].flatten(0, 1),
                               cfg.loss.tau_cls).backward()

    def norm(prefix: str) -> float:
        return math.sqrt(sum(float(p.grad.square().sum()) for n, p in model.named_parameters()
                             if n.startswith(prefix) and p.grad is not None))

    return {"query": norm("voxel_query."), "img_mlp": norm("encoder.0.prototype_mapping.img_mlp"),
            "backbone": norm("backbone.")}


def test_cls_reaches_the_voxel_queries_only_when_asked() -> None:
    """``cls_trains_queries: false``: L_cls trains the prototypes (image MLP, clustered features, backbone) and
    leaves the voxel queries to the occupancy losses."""
    with_queries, without = _cls_gradients(True), _cls_gradients(False)
    assert with_queries["query"] > 0 and without["query"] == 0.0
    assert without["img_mlp"] > 0 and without["backbone"] > 0
