"""One mechanism for the parameters of every node: declared with a description and range, read, validated.

A node's parameters are a dataclass whose fields are made with :func:`param` (default, description, and
for numbers a finite inclusive ``range`` that goes into the ParameterDescriptor as floating_point_range /
integer_range, so ``ros2 param describe`` shows it and rclpy itself refuses values outside it)::

    @dataclass
    class EvaluationNodeParams:
        max_pending: int = param(200, "unpaired messages kept per topic", range=(1, 100_000))

        def validate(self) -> None: ...            # optional cross-field checks (raise ParamError)

``declare_params(node, Params)`` declares them, ``read_params(node, Params)`` reads and validates them
into an instance, ``params_from_values(Params, {name: value})`` does the same for plain values (a YAML
file, a test), and ``apply_change(Params, current, changes, configured)`` decides a ``ros2 param set``:
fields made with ``live=True`` change at once; the others only while the node holds no configuration.
Errors are :class:`ParamError` naming the parameter, its value and what was expected.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypeVar

from protoocc_ros.config import preview

__all__ = ["ParamError", "ParamSpec", "param", "param_specs", "declare_params", "read_params", "params_from_values",
           "apply_change", "check", "live_parameters", "VALUE_PREVIEW"]

P = TypeVar("P")
VALUE_PREVIEW = 80  # characters of a value shown in an error message


class ParamError(ValueError):
    """An invalid node parameter; the message starts with the parameter name."""


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter: ROS name, field of the params dataclass, default, description, limits."""

    name: str
    field: str
    default: Any
    description: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    live: bool = False

    @property
    def kind(self) -> type:
        return list if isinstance(self.default, (list, tuple)) else type(self.default)


def param(default: Any, description: str, *, name: str | None = None, range: tuple[float, float] | None = None,
          choices: tuple[str, ...] | None = None, live: bool = False) -> Any:
    """A dataclass field that is a ROS parameter (``name`` defaults to the field name with ``__`` -> ``.``)."""
    if isinstance(default, (int, float)) and not isinstance(default, bool) and range is None:
        raise TypeError(f"parameter with default {default!r}: numeric parameters need a finite range")
    meta = {"param": (name, description, range, choices, live)}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def param_specs(cls: type) -> list[ParamSpec]:
    """The ParamSpec of every :func:`param` field of a params dataclass, in declaration order."""
    specs = []
    for f in dataclasses.fields(cls):
        if "param" not in f.metadata:
            continue
        name, description, limits, choices, live = f.metadata["param"]
        factory: Any = f.default_factory
        default = factory() if f.default is dataclasses.MISSING else f.default
        specs.append(ParamSpec(name or f.name.replace("__", "."), f.name, default, description, limits, choices, live))
    return specs


def live_parameters(cls: type) -> frozenset[str]:
    """ROS names of the parameters a running node applies at once."""
    return frozenset(s.name for s in param_specs(cls) if s.live)


def check(ok: bool, name: str, value: Any, expected: str) -> None:
    """Raise ParamError("parameter 'name' = value: expected ...") unless ``ok``."""
    if not ok:
        raise ParamError(f"parameter {name!r} = {preview(value, VALUE_PREVIEW)}: expected {expected}")


def _coerce(spec: ParamSpec, value: Any) -> Any:
    """The value as the spec's type ([''] lists become []), or ParamError."""
    kind = spec.kind
    if kind is bool:
        check(isinstance(value, bool), spec.name, value, "true or false")
    elif kind is int:
        check(isinstance(value, int) and not isinstance(value, bool), spec.name, value, "an integer")
    elif kind is float:
        check(isinstance(value, (int, float)) and not isinstance(value, bool), spec.name, value, "a number")
        value = float(value)
    elif kind is str:
        check(isinstance(value, str), spec.name, value, "a string")
    else:
        check(isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value), spec.name, value,
              "a list of strings")
        value = [v for v in value if v]
    if spec.range is not None:
        lo, hi = spec.range
        check(math.isfinite(value) and lo <= value <= hi, spec.name, value, f"a finite value in [{lo}, {hi}]")
    if spec.choices is not None:
        check(value in spec.choices, spec.name, value, f"one of {list(spec.choices)}")
    return value


def params_from_values(cls: type[P], values: dict[str, Any]) -> P:
    """ROS parameter name -> value (missing names take their default) to a validated params instance."""
    specs = param_specs(cls)
    known = {s.name for s in specs}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParamError(f"parameters {unknown}: not parameters of this node (known: {sorted(known)})")
    kwargs = {s.field: _coerce(s, values.get(s.name, s.default)) for s in specs}
    params = cls(**kwargs)
    validate = getattr(params, "validate", None)
    if validate is not None:
        validate()
    return params


def _descriptor(spec: ParamSpec) -> Any:
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    ros_types = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                 float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
                 list: ParameterType.PARAMETER_STRING_ARRAY}
    text = spec.description
    if spec.choices:
        text += f" One of {list(spec.choices)}."
    text += " Changeable while running." if spec.live else " Read at configure."
    desc = ParameterDescriptor(name=spec.name, type=ros_types[spec.kind], description=text)
    if spec.range is not None and spec.kind is float:
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.range[0]),
                                                        to_value=float(spec.range[1]), step=0.0)]
    elif spec.range is not None and spec.kind is int:
        desc.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=1)]
    return desc


def declare_params(node: Any, cls: type) -> None:
    """Declare every parameter of ``cls`` on ``node``; ParamError when a launch/YAML override does not fit."""
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
    from rclpy.parameter import Parameter

    for spec in param_specs(cls):
        default = spec.default
        if spec.kind is list and not default:
            default = Parameter.Type.STRING_ARRAY  # declare the type; unset means []
        try:
            node.declare_parameter(spec.name, default, _descriptor(spec))
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            kind = "list of strings" if spec.kind is list else spec.kind.__name__
            limits = f" in [{spec.range[0]}, {spec.range[1]}]" if spec.range else ""
            raise ParamError(f"parameter {spec.name!r}: expected a {kind}{limits} ({exc})") from None


def _value(node: Any, name: str) -> Any:
    from rclpy.exceptions import ParameterUninitializedException
    from rclpy.parameter import Parameter

    try:
        p = node.get_parameter(name)
    except ParameterUninitializedException:  # a list declared by type only and never set: empty
        return []
    return [] if p.type_ == Parameter.Type.NOT_SET else p.value


def current_values(node: Any, cls: type) -> dict[str, Any]:
    """Every declared parameter's present value (ROS names)."""
    return {s.name: _value(node, s.name) for s in param_specs(cls)}


def read_params(node: Any, cls: type[P]) -> P:
    """Read and validate every parameter of ``cls`` (declared before with declare_params)."""
    return params_from_values(cls, current_values(node, cls))


def declared_params(node: Any, cls: type[P], error: type[Exception], node_name: str) -> P:
    """declare_params + read_params at a plain node's start; a refused value raises ``error`` naming the node."""
    try:
        declare_params(node, cls)
        return read_params(node, cls)
    except ParamError as exc:
        raise error(f"{node_name}: {exc}") from None


def apply_change(cls: type[P], current: dict[str, Any], changes: dict[str, Any], configured: bool,
                 node_name: str = "/node") -> P:
    """The params after a runtime change, or ParamError with the reason it is refused.

    current: every parameter's present value (ROS names); changes: the new values (ROS names).
    configured: the node holds a configuration (inactive or active): then only live parameters may change.
    """
    live = live_parameters(cls)
    refused = sorted(set(changes) - live) if configured else []
    if refused:
        what = f"parameter {refused[0]!r} needs" if len(refused) == 1 else f"parameters {refused} need"
        raise ParamError(
            f"{what} a restart: read when the node is configured (model, topics, frames, server); deactivate and "
            f"clean up the node (ros2 lifecycle set {node_name} deactivate, then cleanup), set it, then configure "
            f"and activate again, or restart the node. Changeable while running: {sorted(live)}")
    return params_from_values(cls, {**current, **changes})
