"""occupancy_node as a managed node, driven from this process through the standard lifecycle services
(``/occupancy_node/change_state``, ``/get_state``, as ``ros2 lifecycle set`` does) over real DDS.

One node process started with ``autostart: false`` and a checkpoint that does not exist walks through
every transition; each test continues from the state the previous one left (they run in file order).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest
from test_occupancy_node import MAIN, Running, direct_prediction, running_node

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn

from protoocc_ros.ros.runtime.lifecycle import LifecycleClient, run_transition
from protoocc_ros.ros.publishing.occupancy_msg import msg_to_grid

ERROR = DiagnosticStatus.ERROR[0]


class Managed:
    """The rig plus a lifecycle client of the node under test."""

    def __init__(self, running: Running) -> None:
        self.rig, self.proc, self.model = running.rig, running.node, running.model
        self.checkpoint = str(running.checkpoint)
        self.lifecycle = LifecycleClient(self.rig.node, f"/{MAIN}", self.rig.executor)

    def subscribed(self) -> bool:
        return all(pub.get_subscription_count() >= 1 for pub in self.rig.images.values())


@pytest.fixture(scope="module")
def managed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Managed]:
    tmp = tmp_path_factory.mktemp("lifecycle")
    with running_node(tmp, active=False, autostart=False, checkpoint=str(tmp / "missing.safetensors")) as running:
        yield Managed(running)


def test_starts_unconfigured_without_outputs_or_subscriptions(managed: Managed) -> None:
    rig = managed.rig
    assert managed.lifecycle.get_state() == "unconfigured"
    assert rig.grid_sub.get_publisher_count() == 0 and not managed.subscribed()
    _, values = rig.wait_status("lifecycle", DiagnosticStatus.OK[0])
    assert values["state"] == "unconfigured"


def test_failed_configure_returns_failure_logs_the_reason_and_stays_unconfigured(managed: Managed) -> None:
    assert managed.lifecycle.change_state("configure") is False
    assert managed.lifecycle.get_state() == "unconfigured"
    assert "configure failed: parameter 'checkpoint' = '" in managed.proc.output()
    message, _ = managed.rig.wait_status("lifecycle", ERROR)
    assert "missing.safetensors" in message and "file not found" in message


def test_unconfigured_node_accepts_restart_parameters_but_validates_them(managed: Managed) -> None:
    refused = managed.rig.set_param("device", "tpu")
    assert not refused.successful and "'device' = 'tpu'" in refused.reason
    assert managed.rig.set_param("checkpoint", managed.checkpoint).successful


def test_configure_loads_the_model_and_inactive_publishes_nothing(managed: Managed) -> None:
    rig = managed.rig
    assert managed.lifecycle.change_state("configure") is True
    assert managed.lifecycle.get_state() == "inactive"
    assert rig.spin_until(lambda: rig.grid_sub.get_publisher_count() >= 1, 5.0)
    assert not managed.subscribed()
    stamp = rig.next_stamp()
    rig.publish_set(stamp)
    assert rig.no_grid(stamp)
    _, values = rig.wait_status("lifecycle", DiagnosticStatus.OK[0])
    assert values["state"] == "inactive"
    assert "warmup_ms" in rig.status("model")[2]


def test_activate_subscribes_and_publishes_the_model_output(managed: Managed) -> None:
    rig = managed.rig
    assert managed.lifecycle.change_state("activate") is True
    assert managed.lifecycle.get_state() == "active"
    assert rig.spin_until(managed.subscribed, 5.0)
    stamps = [rig.next_stamp(5.0), rig.next_stamp(0.5)]
    for stamp in stamps:
        rig.publish_set(stamp)
        rig.wait_grid(stamp)
    expected = direct_prediction(rig, managed.model, stamps)
    for stamp, (labels, _) in zip(stamps, expected):
        np.testing.assert_array_equal(msg_to_grid(rig.grids[stamp]).labels, labels)


def test_deactivate_stops_processing_and_resets_the_memory(managed: Managed) -> None:
    rig = managed.rig
    last = rig.t_ns
    assert managed.lifecycle.change_state("deactivate") is True
    assert managed.lifecycle.get_state() == "inactive"
    stamp = rig.next_stamp(0.5)
    rig.publish_set(stamp)
    assert rig.no_grid(stamp)
    assert rig.spin_until(lambda: not managed.subscribed(), 5.0)
    rig.wait_count("memory resets", "memory.deactivated", 1)
    assert managed.lifecycle.change_state("activate") is True
    assert rig.spin_until(managed.subscribed, 5.0)
    after = rig.next_stamp(0.5)  # 1 s after the last set the node saw: the memory would carry over
    rig.publish_set(after)
    grid = msg_to_grid(rig.wait_grid(after)).labels
    fresh = direct_prediction(rig, managed.model, [after])[0][0]
    carried = direct_prediction(rig, managed.model, [last, after])[1][0]
    assert (fresh != carried).mean() > 0.01, "the memory must matter for this check"
    np.testing.assert_array_equal(grid, fresh)


def test_cleanup_frees_the_model_and_removes_the_publishers(managed: Managed) -> None:
    rig = managed.rig
    assert managed.lifecycle.change_state("deactivate") is True
    assert managed.lifecycle.change_state("cleanup") is True
    assert managed.lifecycle.get_state() == "unconfigured"
    assert rig.spin_until(lambda: rig.grid_sub.get_publisher_count() == 0, 5.0)
    assert managed.lifecycle.change_state("activate") is False  # not a transition of 'unconfigured'


def test_shutdown_finalizes_and_the_process_exits(managed: Managed) -> None:
    assert managed.lifecycle.change_state("shutdown") is True
    assert managed.proc.wait(20.0) == 0


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
