"""End-to-end ProtoOcc: forward shapes for every shipped config, gradients of Eq. 6, flags, predict."""
from __future__ import annotations

import pytest
import torch
from model_helpers import make_inputs, make_targets

from protoocc_ros.config import load_config, resolve_config_path
from protoocc_ros.model import ModelError, ProtoOcc, ProtoOccOutput, build_model, count_parameters_by_stage

SMALL = ["dataset.image_size=[64,112]", "model.backbone.type=small_cnn", "model.backbone.pretrained=null",
         "model.backbone.width=8", "model.embed_dims=16", "model.neck.channels=16", "model.encoder.num_layers=1",
         "model.encoder.num_heads=2", "model.encoder.ffn_dims=16", "model.decoder.channels=4",
         "model.prototypes.ratio=2", "model.prototypes.num_prototypes=28"]  # 8 x 14 features -> 4 x 7


@pytest.mark.parametrize("name", ["occ3d_base", "occ3d_small", "occ3d_tiny", "kitti_base", "kitti_small", "demo",
                                  "demo_baseline"])
def test_forward_shapes_for_every_config(name: str) -> None:
    cfg = load_config(resolve_config_path(name), overrides=SMALL)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(**make_inputs(cfg))
    assert isinstance(out, ProtoOccOutput)
    assert out.logits.shape == (1, cfg.dataset.num_classes, *cfg.dataset.grid_size)
    assert torch.isfinite(out.logits).all() and out.aux == {}
    assert out.memory.features.shape == (1, 16, *cfg.model.query_size)


def _leave_zero_init(model: torch.nn.Module) -> None:
    """Small random weights for the zero-initialised offset/weight projections (as after the first step).

    Deformable attention starts with zero projection weights (Deformable DETR), so at step 0 the query
    that drives them (Q̂ of Eq. 1b in a layer whose mapping only reaches the loss through the attention)
    gets no gradient; one optimiser step later it does.
    """
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("sampling_offsets.weight", "attention_weights.weight")):
                p.normal_(0.0, 0.01)


def test_every_trainable_parameter_gets_a_gradient_from_eq6(tiny_reading_cfg) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_reading_cfg).train()
    _leave_zero_init(model)
    out = model(**make_inputs(tiny_reading_cfg))
    assert len(out.aux["perspective_logits"]) == 3  # original + 2 augmented perspectives
    loss, terms = model.loss(out, make_targets(tiny_reading_cfg))
    assert set(terms) == {"ce", "lovasz", "cls", "cls_chance", "cons", "total"} and terms["cls"] > 0 and terms["cons"] > 0
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_demo_learns_a_fixed_frame(tiny_cfg) -> None:
    """A few optimiser steps on one frame reduce the loss (the whole graph trains)."""
    torch.manual_seed(0)
    model = build_model(tiny_cfg).train()
    inputs, targets = make_inputs(tiny_cfg), make_targets(tiny_cfg)
    sem = torch.full_like(targets["semantics"], 17)  # free above a road, with one car
    sem[..., :2] = 11
    sem[:, 22:28, 18:22, 2:4] = 4
    targets["semantics"] = sem
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses, semantic = [], []
    for _ in range(8):
        loss, terms = model.loss(model(**inputs), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        semantic.append(terms["ce"] + terms["lovasz"])
    # L_cls contrasts random pseudo masks here, so only the semantic terms must fall at every step
    assert losses[-1] < losses[0] - 1.0 and all(b < a for a, b in zip(semantic, semantic[1:]))


def test_baseline_flags_remove_the_protoocc_parts() -> None:
    cfg = load_config("demo_baseline", overrides=SMALL)
    model = build_model(cfg).train()
    names = [n for n, _ in model.named_parameters()]
    assert not any("prototype" in n or n.startswith("pixel_features") for n in names)
    out = model(**make_inputs(cfg))
    assert len(out.aux["perspective_logits"]) == 1 and "pixel_features" not in out.aux
    _, terms = model.loss(out, make_targets(cfg))
    assert set(terms) == {"ce", "lovasz", "total"}
    no_temporal = build_model(load_config("demo", overrides=SMALL + ["model.temporal.enabled=false"]))
    assert count_parameters_by_stage(no_temporal)["temporal"] == 0


def test_prototype_mapping_in_selected_layers_only(tiny_cfg) -> None:
    from protoocc_ros.config import config_from_dict, config_to_dict

    data = config_to_dict(tiny_cfg)
    data["model"]["prototypes"]["layers"] = [0]
    cfg = config_from_dict(data)
    model = build_model(cfg).train()
    assert model.encoder[0].prototype_mapping is not None and model.encoder[1].prototype_mapping is None
    loss, terms = model.loss(model(**make_inputs(cfg)), make_targets(cfg))
    loss.backward()
    assert "cls" in terms and model.pixel_features.h.weight.grad.any()


def test_mask_camera_and_ignore_are_respected(tiny_cfg) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg).eval()
    out = model(**make_inputs(tiny_cfg))
    targets = make_targets(tiny_cfg)
    base, _ = model.loss(out, targets)
    outside = ~targets["mask_camera"]
    relabelled = dict(targets, semantics=torch.where(outside, (targets["semantics"] + 1) % 18, targets["semantics"]))
    assert model.loss(out, relabelled)[0].item() == pytest.approx(base.item(), rel=1e-6)
    no_mask = {k: v for k, v in targets.items() if k != "mask_camera"}
    assert model.loss(out, no_mask)[0].item() != pytest.approx(base.item(), rel=1e-6)


def test_predict_returns_labels_confidence_and_memory(tiny_cfg) -> None:
    model = build_model(tiny_cfg).train()
    labels, conf, memory = model.predict(**make_inputs(tiny_cfg))
    assert model.training  # mode restored
    assert labels.dtype == torch.uint8 and labels.shape == (1, 40, 40, 8) and int(labels.max()) < 18
    assert conf.dtype == torch.float32 and (conf > 0).all() and (conf <= 1).all()
    assert labels.is_contiguous() and conf.is_contiguous()
    assert memory.reset_reason == ["first_frame"]


def test_bad_inputs_raise_model_error(tiny_cfg) -> None:
    model = build_model(tiny_cfg).eval()
    inp = make_inputs(tiny_cfg)
    h, w = tiny_cfg.image_size
    with pytest.raises(ModelError, match=rf"images: expected \(B, N, 3, {h}, {w}\)"):
        model(**dict(inp, images=inp["images"][..., :-8]))
    with pytest.raises(ModelError, match=r"lidar2img: expected shape \(1, 1, 4, 4\), got \(1, 2, 4, 4\)"):
        model(**dict(inp, images=inp["images"][:, :1]))  # one camera's image, two cameras' calibration
    with pytest.raises(ModelError, match="timestamp"):
        model(**dict(inp, timestamp=torch.zeros(3, dtype=torch.float64)))
    with pytest.raises(ModelError, match="semantics"):
        model.loss(model(**inp), {})


def test_any_camera_count_runs_the_same_weights(tiny_cfg) -> None:
    """The weights do not depend on the number of cameras: 1, 2 or 3 cameras of the same rig all run, and a
    copy of a camera whose view overlaps no other camera's leaves the prediction unchanged."""
    model = build_model(tiny_cfg).eval()
    inp = make_inputs(tiny_cfg)
    with torch.no_grad():
        two = model(**inp).logits
        one = model(**dict(inp, images=inp["images"][:, :1], lidar2img=inp["lidar2img"][:, :1])).logits
        copy = model(**dict(inp, images=inp["images"][:, [0, 1, 1]], lidar2img=inp["lidar2img"][:, [0, 1, 1]])).logits
    assert one.shape == two.shape and not torch.allclose(one, two)
    torch.testing.assert_close(copy, two, rtol=1e-4, atol=1e-4)


def test_batch_of_two_matches_two_single_frames(tiny_cfg) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg).eval()
    inp = make_inputs(tiny_cfg, batch=2)
    both = model(**inp).logits
    for i in range(2):
        single = model(**{k: v[i:i + 1] for k, v in inp.items()}).logits
        torch.testing.assert_close(single, both[i:i + 1], rtol=1e-4, atol=1e-4)


def test_from_config_equals_build_model(tiny_cfg) -> None:
    assert isinstance(ProtoOcc.from_config(tiny_cfg), ProtoOcc)
    assert count_parameters_by_stage(ProtoOcc.from_config(tiny_cfg)) == count_parameters_by_stage(build_model(tiny_cfg))


def test_autocast_bfloat16_trains_and_carries_memory(tiny_cfg) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg).train()
    inp = make_inputs(tiny_cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**inp)
        loss, terms = model.loss(out, make_targets(tiny_cfg))
        nxt = model(**dict(inp, timestamp=inp["timestamp"] + 0.5), memory=out.memory)
    loss.backward()
    assert torch.isfinite(loss) and set(terms) >= {"cls", "cons"}
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert nxt.memory.reset_reason == [None]
