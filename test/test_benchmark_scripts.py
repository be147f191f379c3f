"""The model-level benchmark scripts run end to end on the demo config and write their JSON + PNG; the GPU check
(benchmarks/gpu_check.sh) runs end to end in its --dry-run mode.

No timing is asserted (figures come from running the scripts on a quiet machine, docs/benchmarks.md);
this keeps the scripts from rotting as the model changes. They read the default synthetic sample
(generated once into ~/.cache/protoocc_ros, as the demo test does).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_bench_view_transformation_prices_each_other_reading(tmp_path: Path) -> None:
    result = run_script("bench_view_transformation.py", tmp_path / "vt.json", "--config", "ablation", "--repeats",
                        "1", "--warmup", "0", "--profile-calls", "0", "--readings",
                        "--set", "model.encoder.num_layers=2")
    dev = result["reading_ratios"]
    assert set(dev) == {"printed", "soft_assignment", "total_norm", "plain_sigmoid", "pixel_linear",
                        "dispatch_steers_only", "dispatch_mlp_on_prototypes", "layers_0", "cls_no_queries"}
    assert dev["layers_0"]["vt_gflops"] < 1.0  # mapping in one of two layers: fewer FLOPs than the paper's all
    assert dev["dispatch_mlp_on_prototypes"]["vt_gflops"] < 1.0  # the MLP on M prototypes, not N*K queries
    assert result["variants"]["protoocc+printed"]["overrides"][0] == "model.prototypes.learned_affinity_scale=false"
    assert "ProtoOcc, reading printed" in result["table"]


def test_bench_export_matches_pytorch(tmp_path: Path) -> None:
    result = run_script("bench_export.py", tmp_path / "export.json", "--repeats", "1", "--warmup", "0")
    rows = {r["graph"]: r for r in result["rows"]}
    assert set(rows) == {"temporal", "single_frame"} and {r["config"] for r in rows.values()} == {"demo"}
    assert len(rows["temporal"]["checks"]) == 10  # the whole first validation scene, memory carried
    assert [c["reset_reason"] for c in rows["temporal"]["checks"]][:2] == ["first_frame", None]
    for row in rows.values():
        assert min(c["argmax_agreement"] for c in row["checks"]) > 0.999
        assert row["latency_onnxruntime"]["n"] == 1 and row["latency_pytorch"]["n"] == 1


def test_gpu_check_dry_run_runs_every_step_and_summarizes(tmp_path: Path) -> None:
    """benchmarks/gpu_check.sh --dry-run: every step of the GPU check on this CPU at tiny sizes, and the summary."""
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["dry_run"] is True and summary["device"] == "cpu"
    assert {k: v["status"] for k, v in summary["steps"].items()} == dict.fromkeys(
        ("cuda_tests", "model", "table3", "train_step", "demo"), "ok")
    assert summary["cuda_tests"]["tests"] >= 2 and summary["cuda_tests"]["failures"] == 0
    assert set(summary["model"]) == {"occ3d_tiny/fp32", "occ3d_small/fp32", "occ3d_base/fp32"}
    shares = summary["goal"]["stage_share_percent"]
    assert summary["goal"]["measured_ms"] > 0 and summary["goal"]["met"] is None  # no verdict from a dry run
    assert abs(sum(shares[s] for s in ("backbone", "neck", "view_transformation", "decoder")) - 100) < 1
    assert summary["table3"]["ratios"]["vt_time"]["fp32"] > 0
    assert summary["train_step"]["step_ms"]["n"] == 1 and summary["train_step"]["peak_memory"]
    assert summary["demo"]["frames_evaluated"] == 3 and summary["demo"]["miou"] > 0.05
    for name in ("gpu_model.json", "gpu_view_transformation.json", "gpu_train_step.json"):
        assert json.loads((tmp_path / name).read_text())["machine"]["torch_threads"] == 1


def test_gpu_check_without_cuda_says_what_to_install(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("the message is for machines without CUDA")
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2 and "sees no CUDA device" in proc.stderr and "--dry-run" in proc.stderr
    assert not (tmp_path / "gpu_check.json").exists()


def test_ablation_trains_evaluates_and_compares_on_the_coarsened_sample(tmp_path: Path) -> None:
    out = tmp_path / "ablation.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "ablation.py"), "--steps", "2", "--eval-every", "1",
           "--seeds", "0", "1", "--variants", "exp1", "exp5", "read_printed", "--runs", str(tmp_path / "runs"),
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 1000
    assert result["setup"]["coarsen"] == 2 and "dataset.grid_size=[100,100,8]" in result["setup"]["extra"]
    assert len(result["exp5"]["miou_per_seed"]) == 2 and list(result["exp5"]["curve"]) == ["1", "2"]
    assert result["exp5"]["vs_baseline"]["n"] == 2 and result["read_printed"]["vs_full"]["n"] == 2
    assert {"layer0.proto_cosine", "layer0.dispatch_cosine", "cluster.entropy"} <= set(result["exp5"]["health"])
    report = json.loads((tmp_path / "runs" / "exp1_seed1" / "eval_step2" / "report.json").read_text())
    assert len(report["confusion_matrix"]) == 18 and report["results"]["num_frames"] == 20
    assert "| ProtoOcc, reading printed |" in proc.stdout
    # the reading alone, paired with the exp5 values stored in the first results JSON (no exp5 run here)
    again = subprocess.run([*cmd[:cmd.index("--variants")], "--variants", "read_printed", "--runs", str(tmp_path / "runs"),
                            "--summary-only", "--reference", str(out), "--out", str(tmp_path / "dev.json")],
                           capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    dev = json.loads((tmp_path / "dev.json").read_text())
    assert "exp5" not in dev and dev["read_printed"]["vs_full"] == result["read_printed"]["vs_full"] | {
        "reference": {"variant": "exp5", "miou_per_seed": result["exp5"]["miou_per_seed"]}}
