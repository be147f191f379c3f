"""occupancy_node's /diagnostics without a node: log throttle, rate meter, the message, health levels."""
from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from protoocc_ros.ros.runtime.diagnostics import (
    HealthLimits, NodeDiagnostics, RateMeter, ThrottledLog, status_level, status_values,
)

OK, WARN, ERROR = 0, 1, 2


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


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
