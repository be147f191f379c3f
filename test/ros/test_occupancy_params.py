"""occupancy_node parameters: defaults valid, ranges and cross-field checks named in the error, live changes
applied and restart-only ones refused with the reason (protoocc_ros.ros.nodes.occupancy_params + ros/runtime/params.py)."""
from __future__ import annotations

import pytest

from protoocc_ros.ros.nodes.occupancy_params import OccupancyNodeParams
from protoocc_ros.ros.runtime.params import ParamError, apply_change, live_parameters, param_specs, params_from_values

LIVE_PARAMETERS = live_parameters(OccupancyNodeParams)


def current_values(**changes: object) -> dict[str, object]:
    return {**{s.name: s.default for s in param_specs(OccupancyNodeParams)}, **changes}


def test_live_change_of_a_configured_node_gives_the_new_params() -> None:
    new = apply_change(OccupancyNodeParams, current_values(), {"score_threshold": 0.4, "publish_markers": False,
                                          "diagnostics.latency_budget_ms": 50.0}, configured=True)
    assert (new.score_threshold, new.publish_markers, new.diagnostics_latency_budget_ms) == (0.4, False, 50.0)


def test_restart_parameters_are_refused_while_configured_and_accepted_before() -> None:
    with pytest.raises(ParamError, match=r"'checkpoint' needs a restart.*ros2 lifecycle set /n deactivate"):
        apply_change(OccupancyNodeParams, current_values(), {"checkpoint": "m.safetensors"}, configured=True, node_name="/n")
    with pytest.raises(ParamError, match=r"parameters \['cameras', 'device'\] need a restart"):
        apply_change(OccupancyNodeParams, current_values(), {"device": "cpu", "cameras": ["A"], "score_threshold": 0.1}, configured=True)
    assert apply_change(OccupancyNodeParams, current_values(), {"checkpoint": "m.safetensors"}, configured=False).checkpoint == \
        "m.safetensors"
    assert {"checkpoint", "cameras", "device", "config_file"}.isdisjoint(LIVE_PARAMETERS)


def test_invalid_live_values_are_refused_with_the_parameter_named() -> None:
    with pytest.raises(ParamError, match=r"'score_threshold' = 2.0: expected a finite value in \[0.0, 1.0\]"):
        apply_change(OccupancyNodeParams, current_values(), {"score_threshold": 2.0}, configured=True)
    with pytest.raises(ParamError, match=r"'device' = 'tpu'"):
        apply_change(OccupancyNodeParams, current_values(), {"device": "tpu"}, configured=False)


def valid_params(**changes: object) -> OccupancyNodeParams:
    """Params from ROS names (missing ones take their defaults), validated (ranges, choices, cross-field)."""
    return params_from_values(OccupancyNodeParams, changes)


def test_defaults_are_valid_and_topics_follow_the_patterns() -> None:
    p = valid_params()
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
        ({"memory.max_gap_s": 0.0}, "'memory.max_gap_s'"),
        ({"tf_cache_s": 0.05, "tf_tolerance_s": 0.1}, "'tf_cache_s'"),
        ({"diagnostics_period_s": 0.0}, "'diagnostics_period_s'"),
        ({"max_rate_hz": -2.0}, "'max_rate_hz'"),
        ({"diagnostics.expected_rate_hz": -1.0}, "'diagnostics.expected_rate_hz'"),
        ({"foxglove.port": 70000}, "'foxglove.port'"),
    ],
)
def test_invalid_parameters_are_named_in_the_error(changes: dict, match: str) -> None:
    with pytest.raises(ParamError, match=match):
        valid_params(**changes)
