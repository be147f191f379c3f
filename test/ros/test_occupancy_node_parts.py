"""Tests of occupancy_node's parts that need no running node: worker queue, diagnostics and health levels, log
throttle, parameters and runtime changes, transition error handling."""
from __future__ import annotations

import threading
import time

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from rclpy.lifecycle import TransitionCallbackReturn

from protoocc_ros.ros.diagnostics import (
    HealthLimits, NodeDiagnostics, RateMeter, ThrottledLog, status_level, status_values,
)
from protoocc_ros.ros.inference_worker import InferenceWorker
from protoocc_ros.ros.lifecycle import run_transition
from protoocc_ros.ros.params import (
    LIVE_PARAMETERS, PARAMETERS, OccupancyNodeParams, ParamError, apply_change, validate_params,
)

OK, WARN, ERROR = 0, 1, 2


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


def test_clear_discards_waiting_items_and_waits_for_the_running_one() -> None:
    gate, started = threading.Event(), threading.Event()
    done: list[int] = []

    def process(item: int) -> None:
        started.set()
        gate.wait(5.0)
        done.append(item)

    worker = InferenceWorker(process, max_queue=3)
    worker.submit(0)
    assert started.wait(5.0)
    worker.submit(1)
    worker.submit(2)
    threading.Timer(0.2, gate.set).start()
    assert worker.clear(timeout_s=5.0) == 2
    assert done == [0] and worker.idle
    worker.submit(3)  # still usable after clear
    assert worker.wait_idle(5.0)
    worker.stop()
    assert done == [0, 3]


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


def health(clock: FakeClock, **limits: float) -> NodeDiagnostics:
    diag = NodeDiagnostics("n", clock=clock, limits=HealthLimits(**limits), cameras=["CAM_FRONT", "CAM_BACK"])
    diag.state = "active"
    return diag


def level(diag: NodeDiagnostics, part: str) -> tuple[int | None, dict[str, str]]:
    msg = diag.to_msg()
    return status_level(msg, f"n: {part}"), status_values(msg, f"n: {part}")


def feed(diag: NodeDiagnostics, clock: FakeClock, hz: dict[str, float], seconds: float = 2.0) -> None:
    """Ticks of each camera at its rate for ``seconds`` (image stamps = clock)."""
    events = sorted((k / rate, cam) for cam, rate in hz.items() for k in range(int(seconds * rate)))
    start = clock.t
    for t, cam in events:
        clock.t = start + t
        diag.tick_input(cam, int(clock.t * 1e9))


def test_input_rate_below_the_expected_rate_warns_only_for_that_camera() -> None:
    clock = FakeClock()
    diag = health(clock, expected_rate_hz=5.0, window_s=2.0)
    feed(diag, clock, {"CAM_FRONT": 10.0, "CAM_BACK": 10.0})
    assert level(diag, "inputs")[0] == OK
    feed(diag, clock, {"CAM_FRONT": 10.0, "CAM_BACK": 2.0}, seconds=2.5)
    got, values = level(diag, "inputs")
    assert got == WARN and float(values["CAM_BACK"]) == pytest.approx(2.0)
    assert "CAM_BACK" in diag.to_msg().status[1].message and "CAM_FRONT " not in diag.to_msg().status[1].message


def test_missing_camera_warns_for_the_window_then_clears() -> None:
    clock = FakeClock()
    diag = health(clock, window_s=2.0)
    feed(diag, clock, {"CAM_FRONT": 10.0, "CAM_BACK": 10.0})
    diag.camera_missing("CAM_BACK", 2)
    got, values = level(diag, "inputs")
    assert got == WARN and values["missing_from_sets.CAM_BACK"] == "2"
    feed(diag, clock, {"CAM_FRONT": 10.0, "CAM_BACK": 10.0}, seconds=2.5)
    assert level(diag, "inputs")[0] == OK


def test_recent_mean_latency_above_the_budget_warns() -> None:
    clock = FakeClock()
    diag = health(clock, latency_budget_ms=100.0, window_s=2.0)
    diag.latency("total", 0.500)  # an old slow set leaves the window
    clock.t += 3.0
    for seconds in (0.05, 0.08):
        diag.latency("total", seconds)
    got, values = level(diag, "latency")
    assert got == OK and float(values["recent.total_mean_ms"]) == pytest.approx(65.0)
    diag.latency("total", 0.3)
    got, values = level(diag, "latency")
    assert got == WARN and float(values["budget_ms"]) == 100.0 and float(values["recent.total_mean_ms"]) > 100.0


def test_ego_pose_older_than_the_limit_is_an_error() -> None:
    clock = FakeClock()
    diag = health(clock, tf_stale_error_s=0.5)
    assert level(diag, "tf")[0] == OK  # no images yet
    diag.tick_input("CAM_FRONT", 10_000_000_000)
    assert level(diag, "tf")[0] == ERROR  # images but never an ego pose
    diag.ego_pose(9_800_000_000)
    got, values = level(diag, "tf")
    assert got == OK and float(values["ego_pose_age_s"]) == pytest.approx(0.2)
    diag.tick_input("CAM_FRONT", 10_400_000_000)
    got, values = level(diag, "tf")
    assert got == ERROR and float(values["ego_pose_age_s"]) == pytest.approx(0.6)


def test_model_failure_and_failed_transition_are_errors_until_fixed() -> None:
    diag = health(FakeClock())
    diag.model_failure("RuntimeError: CUDA out of memory")
    got, values = level(diag, "model")
    assert got == ERROR and values == {"failures": "1", "last_error": "RuntimeError: CUDA out of memory"}
    diag.model_ok()
    assert level(diag, "model") == (OK, {"failures": "1"})
    diag.transition_error, diag.state = "configure: checkpoint not found", "unconfigured"
    assert level(diag, "lifecycle") == (ERROR, {"state": "unconfigured"})


def test_inputs_are_not_checked_while_inactive_and_rate_limiting_never_warns() -> None:
    diag = health(FakeClock(), expected_rate_hz=5.0)
    diag.state = "inactive"
    assert level(diag, "inputs")[0] == OK and level(diag, "tf")[0] == OK
    diag.drop("rate_limited", 3)
    got, values = level(diag, "dropped")
    assert got == OK and values == {"rate_limited": "3"}


def test_run_transition_turns_an_exception_into_failure_with_the_reason(capfd: pytest.CaptureFixture[str]) -> None:
    from rclpy.logging import get_logger

    reasons: list[str] = []

    def boom() -> None:
        raise ValueError("parameter 'checkpoint' = 'x': file not found")

    log = get_logger("transition_test")
    assert run_transition(log, "configure", lambda: None, reasons.append) == TransitionCallbackReturn.SUCCESS
    assert run_transition(log, "configure", boom, reasons.append) == TransitionCallbackReturn.FAILURE
    assert run_transition(log, "activate", boom, reasons.append, explained=(ValueError,)) == \
        TransitionCallbackReturn.FAILURE
    assert reasons == ["ValueError: parameter 'checkpoint' = 'x': file not found",
                       "parameter 'checkpoint' = 'x': file not found"]
    assert "configure failed: ValueError: parameter 'checkpoint'" in capfd.readouterr().err


def current_values(**changes: object) -> dict[str, object]:
    return {**{name: default for name, (default, _) in PARAMETERS.items()}, **changes}


def test_live_change_of_a_configured_node_gives_the_new_params() -> None:
    new = apply_change(current_values(), {"score_threshold": 0.4, "publish_markers": False,
                                          "diagnostics.latency_budget_ms": 50.0}, configured=True)
    assert (new.score_threshold, new.publish_markers, new.diagnostics_latency_budget_ms) == (0.4, False, 50.0)


def test_restart_parameters_are_refused_while_configured_and_accepted_before() -> None:
    with pytest.raises(ParamError, match=r"'checkpoint' needs a restart.*ros2 lifecycle set /n deactivate"):
        apply_change(current_values(), {"checkpoint": "m.safetensors"}, configured=True, node_name="/n")
    with pytest.raises(ParamError, match=r"parameters \['cameras', 'device'\] need a restart"):
        apply_change(current_values(), {"device": "cpu", "cameras": ["A"], "score_threshold": 0.1}, configured=True)
    assert apply_change(current_values(), {"checkpoint": "m.safetensors"}, configured=False).checkpoint == \
        "m.safetensors"
    assert {"checkpoint", "cameras", "device", "config_file"}.isdisjoint(LIVE_PARAMETERS)


def test_invalid_live_values_are_refused_with_the_parameter_named() -> None:
    with pytest.raises(ParamError, match=r"'score_threshold' = 2.0: expected a probability"):
        apply_change(current_values(), {"score_threshold": 2.0}, configured=True)
    with pytest.raises(ParamError, match=r"'device' = 'tpu'"):
        apply_change(current_values(), {"device": "tpu"}, configured=False)


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
        ({"torch_threads": -1}, "'torch_threads'"),
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
        ({"max_rate_hz": -2.0}, "'max_rate_hz'"),
        ({"diagnostics_expected_rate_hz": -1.0}, "'diagnostics.expected_rate_hz'"),
        ({"foxglove_port": 70000}, "'foxglove.port'"),
    ],
)
def test_invalid_parameters_are_named_in_the_error(changes: dict, match: str) -> None:
    with pytest.raises(ParamError, match=match):
        validate_params(valid_params(**changes))
