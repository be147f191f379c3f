"""The model-level benchmark scripts run end to end on the demo config and write their JSON + PNG.

No timing is asserted (figures come from running the scripts on a quiet machine, docs/benchmarks.md);
this keeps the scripts from rotting as the model changes. They read the default synthetic sample
(generated once into ~/.cache/protoocc_ros, as the demo test does).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_script(name: str, out: Path, *args: str) -> dict:
    cmd = [sys.executable, str(REPO / "benchmarks" / name), "--out", str(out), "--threads", "1", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert out.with_suffix(".png").stat().st_size > 1000
    return json.loads(out.read_text())


def test_bench_model_reports_every_stage(tmp_path: Path) -> None:
    result = run_script("bench_model.py", tmp_path / "model.json", "--configs", "demo", "--ablations",
                        "exp1_baseline", "exp5_full", "--repeats", "1", "--warmup", "0")
    rows = {r["ablation"]: r for r in result["rows"]}
    assert set(rows) == {"exp1_baseline", "exp5_full"}
    for row in rows.values():
        assert row["parameters"]["total"] == sum(row["parameters"][s] for s in
                                                 ("backbone", "neck", "view_transformation", "temporal", "decoder"))
        assert row["flops"]["gflops"]["total"] > 0
        stages = row["latency"]["fp32"]["stages"]
        assert stages["total"]["median_ms"] > 0 and stages["view_transformation"]["n"] == 1
    assert rows["exp5_full"]["parameters"]["prototypes"] > 0 == rows["exp1_baseline"]["parameters"]["prototypes"]
    assert result["machine"]["torch_threads"] == 1 and "| demo |" in result["table"]


def test_bench_view_transformation_gives_the_three_ratios(tmp_path: Path) -> None:
    result = run_script("bench_view_transformation.py", tmp_path / "vt.json", "--config", "demo", "--repeats", "1",
                        "--warmup", "0", "--profile-calls", "0")
    ratios = result["ratios"]
    assert ratios["vt_time"]["fp32"] > 0 and ratios["vt_gflops"] > 1.0 and ratios["vt_params"] > 1.0


def test_bench_view_transformation_prices_each_named_deviation(tmp_path: Path) -> None:
    result = run_script("bench_view_transformation.py", tmp_path / "vt.json", "--config", "ablation", "--repeats",
                        "1", "--warmup", "0", "--profile-calls", "0", "--deviations",
                        "--set", "model.encoder.num_layers=2")
    dev = result["deviation_ratios"]
    assert set(dev) == {"layers_0", "learned_affinity_scale", "per_prototype_norm", "dispatch_mlp_on_prototypes",
                        "dispatch_to_output", "pixel_softmax", "all"}
    assert dev["layers_0"]["vt_gflops"] < 1.0  # mapping in one of two layers: fewer FLOPs than the paper's all
    assert dev["dispatch_mlp_on_prototypes"]["vt_gflops"] < 1.0  # the MLP on M prototypes, not N*K queries
    assert result["variants"]["protoocc+all"]["overrides"][0] == "model.prototypes.layers=[0]"
    assert "ProtoOcc + deviation all" in result["table"]


def test_bench_export_matches_pytorch(tmp_path: Path) -> None:
    result = run_script("bench_export.py", tmp_path / "export.json", "--repeats", "1", "--warmup", "0")
    (row,) = result["rows"]
    assert row["config"] == "demo"
    assert min(c["argmax_agreement"] for c in row["checks"]) > 0.999
    assert row["latency_onnxruntime"]["n"] == 1
