"""Tests of occupancy_node's parts that need no running node: worker queue, diagnostics, log throttle, params."""
from __future__ import annotations

import threading
import time

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from protoocc_ros.ros.diagnostics import NodeDiagnostics, RateMeter, ThrottledLog, status_values
from protoocc_ros.ros.inference_worker import InferenceWorker
from protoocc_ros.ros.params import PARAMETERS, OccupancyNodeParams, ParamError, validate_params


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_worker_drops_oldest_when_busy_and_runs_the_newest() -> None:
    gate, started = threading.Event(), threading.Event()
    done: list[int] = []
    dropped: list[int] = []

    def process(item: int) -> None:
        started.set()
        gate.wait(5.0)
        done.append(item)

    worker = InferenceWorker(process, max_queue=1, on_drop=dropped.append)
    worker.submit(0)  # picked up at once, blocks on the gate
    assert started.wait(5.0) and not worker.idle
    results = [worker.submit(i) for i in range(1, 5)]
    assert results == [True, False, False, False]
    gate.set()
    assert worker.wait_idle(5.0)
    worker.stop()
    assert done == [0, 4] and dropped == [1, 2, 3] and worker.dropped == 3 and worker.processed == 2


def test_worker_survives_errors_and_reports_them() -> None:
    errors: list[tuple[int, str]] = []

    def process(item: int) -> None:
        if item == 1:
            raise RuntimeError("boom")

    worker = InferenceWorker(process, max_queue=4, on_error=lambda i, e: errors.append((i, str(e))))
    for i in range(3):
        worker.submit(i)
    assert worker.wait_idle(5.0)
    worker.stop()
    assert errors == [(1, "boom")] and worker.errors == 1 and worker.processed == 3
    with pytest.raises(RuntimeError, match="after stop"):
        worker.submit(5)
    with pytest.raises(ValueError, match="max_queue"):
        InferenceWorker(process, max_queue=0)


def test_worker_survives_a_failing_error_handler(capfd: pytest.CaptureFixture[str]) -> None:
    done: list[int] = []

    def process(item: int) -> None:
        if item == 0:
            raise RuntimeError("bad set")
        done.append(item)

    def handler(item: int, exc: BaseException) -> None:
        raise ValueError("handler broke")

    worker = InferenceWorker(process, max_queue=4, on_error=handler)
    worker.submit(0)
    worker.submit(1)
    assert worker.wait_idle(5.0)
    worker.stop()
    assert done == [1]
    assert "handler broke" in capfd.readouterr().err


def test_submit_does_not_block_while_the_model_runs() -> None:
    gate = threading.Event()
    worker = InferenceWorker(lambda item: gate.wait(5.0), max_queue=1)
    start = time.monotonic()
    for i in range(50):
        worker.submit(i)
    assert time.monotonic() - start < 0.5
    gate.set()
    worker.stop()


def test_throttled_log_emits_first_then_once_per_period_with_suppressed_count() -> None:
    clock = FakeClock()
    log = ThrottledLog(period_s=5.0, clock=clock)
    assert log("a", "first a") == "first a" and log("b", "first b") == "first b"
    assert log("a", "again") is None and log("a", "again") is None
    clock.t += 5.0
    assert log("a", "later a") == "later a (2 more like this since the last message)"
    assert log("b", "b again") == "b again"  # nothing of b was suppressed


def test_rate_meter_measures_events_per_second() -> None:
    clock = FakeClock()
    meter = RateMeter(window_s=5.0, clock=clock)
    for _ in range(11):
        meter.tick()
        clock.t += 0.1
    assert meter.rate() == pytest.approx(10.0)
    clock.t += 10.0
    assert meter.rate() == 0.0 and meter.count == 11


def test_diagnostics_message_reports_drops_resets_latency_and_rates() -> None:
    clock = FakeClock()
    diag = NodeDiagnostics("occupancy_node", clock=clock)
    for _ in range(3):
        diag.tick_input("CAM_FRONT")
        clock.t += 0.5
    diag.latency("inference", 0.020)
    diag.latency("inference", 0.040)
    diag.drop("image_encoding")
    diag.drop("image_encoding")
    diag.reset("memory.gap")
    msg = diag.to_msg()
    drops = status_values(msg, "occupancy_node: dropped")
    assert drops == {"image_encoding": "2"}
    assert status_values(msg, "occupancy_node: memory resets") == {"memory.gap": "1"}
    lat = status_values(msg, "occupancy_node: latency")
    assert float(lat["inference.mean_ms"]) == pytest.approx(30.0) and float(lat["inference.max_ms"]) == 40.0
    assert float(status_values(msg, "occupancy_node: inputs")["CAM_FRONT"]) == pytest.approx(2.0)
    levels = {s.name: s.level for s in msg.status}
    assert levels["occupancy_node: dropped"] == DiagnosticStatus.WARN
    assert {s.name: s.level for s in diag.to_msg().status}["occupancy_node: dropped"] == DiagnosticStatus.OK


def valid_params(**changes: object) -> OccupancyNodeParams:
    values = {name.replace(".", "_"): default for name, (default, _) in PARAMETERS.items()}
    values["cameras"], values["config_overrides"] = [], []
    values.update(changes)
    return OccupancyNodeParams(**values)


def test_defaults_are_valid_and_topics_follow_the_patterns() -> None:
    p = valid_params()
    validate_params(p)
    assert p.image_topic("CAM_FRONT") == "/cameras/CAM_FRONT/image_raw"
    assert valid_params(image_transport="compressed").image_topic("X") == "/cameras/X/image_raw/compressed"
    assert p.camera_info_topic("CAM_BACK") == "/cameras/CAM_BACK/camera_info"


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"device": "gpu"}, "'device'"),
        ({"cameras": ["A", "A"]}, "'cameras'"),
        ({"image_topic_pattern": "/cameras/image"}, "'image_topic_pattern'"),
        ({"camera_info_topic_pattern": "/c/{camera}/{other}"}, "'camera_info_topic_pattern'"),
        ({"image_transport": "theora"}, "'image_transport'"),
        ({"base_frame": "odom"}, "base_frame"),
        ({"sync_slop_s": -0.1}, "'sync_slop_s'"),
        ({"inference_queue_size": 0}, "'inference_queue_size'"),
        ({"score_threshold": 1.5}, "'score_threshold'"),
        ({"memory_max_gap_s": 0.0}, "'memory.max_gap_s'"),
        ({"tf_cache_s": 0.05, "tf_tolerance_s": 0.1}, "'tf_cache_s'"),
        ({"diagnostics_period_s": 0.0}, "'diagnostics_period_s'"),
    ],
)
def test_invalid_parameters_are_named_in_the_error(changes: dict, match: str) -> None:
    with pytest.raises(ParamError, match=match):
        validate_params(valid_params(**changes))
