"""protoocc-info CLI and count_parameters_by_stage."""
from __future__ import annotations

import json

import pytest

from protoocc_ros.config import load_config
from protoocc_ros.model import build_model, count_parameters_by_stage, count_prototype_parameters
from protoocc_ros.tools.info import main


def test_info_prints_every_stage_and_the_total(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    counts = count_parameters_by_stage(build_model(load_config("demo")))
    for stage in ("backbone", "neck", "view_transformation", "temporal", "decoder", "total"):
        line = next(ln for ln in out.splitlines() if ln.startswith(stage))
        assert f"{counts[stage]:,}" in line


def test_stage_counts_add_up_and_match_the_model() -> None:
    model = build_model(load_config("demo"))
    counts = count_parameters_by_stage(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    assert counts["backbone"] == sum(p.numel() for p in model.backbone.parameters())
    assert counts["decoder"] == sum(p.numel() for p in model.decoder.parameters())


def test_prototypes_add_view_transformation_parameters_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["occ3d_small", "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert main(["occ3d_small", "--json", "--override", "model.prototypes.enabled=false",
                 "--override", "model.prototypes.optimization=false"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert base["prototypes"] == 0 and full["prototypes"] > 0
    assert full["view_transformation"] - base["view_transformation"] == full["prototypes"]
    for stage in ("backbone", "neck", "temporal", "decoder"):
        assert full[stage] == base[stage]
    # the 50x50x16 query embedding of d=256 is part of the view transformation (as in paper Table 3)
    assert base["view_transformation"] > 50 * 50 * 16 * 256
    assert full["backbone"] == 23_508_032  # torchvision ResNet-50 without fc


def test_info_rejects_a_bad_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--override", "model.encoder.num_heads=5"]) == 2
    assert "model.encoder.num_heads" in capsys.readouterr().err
    assert count_prototype_parameters(build_model(load_config("demo_baseline"))) == 0
