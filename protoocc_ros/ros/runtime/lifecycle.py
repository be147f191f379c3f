"""Managed-node plumbing (ROS 2 lifecycle, as nav2 / Autoware nodes are run; docs/operating.md "Lifecycle").

``run_transition`` runs one transition body and turns any exception into FAILURE with the reason
logged (rclpy would turn it into an unexplained ERROR). :class:`ManagedNode` maps the lifecycle callbacks
onto four bodies (``configure_body``, ``activate_body``, ``deactivate_body``, ``release_body``) and records
state and failure reasons; :func:`run_managed_node` is the ``main()`` of such a node (autostart, exit code).
``LifecycleClient`` drives a node from another node through the standard services ``<node>/change_state``
and ``<node>/get_state`` — what ``ros2 lifecycle set`` / ``get`` call — for tests, tools and scripts.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from protoocc_ros.ros.runtime.spin import spin_until

__all__ = ["LifecycleError", "LifecycleClient", "ManagedNode", "TRANSITIONS", "run_managed_node", "run_transition"]

# Labels of `ros2 lifecycle set <node> <label>` (sent by label: the node picks the shutdown of its state).
TRANSITIONS = ("configure", "cleanup", "activate", "deactivate", "shutdown")


class LifecycleError(RuntimeError):
    """A lifecycle service of a node could not be reached or answered; the message names node and service."""


def run_transition(logger: Any, name: str, body: Callable[[], None],
                   on_failure: Callable[[str], None] | None = None,
                   explained: tuple[type[BaseException], ...] = ()) -> TransitionCallbackReturn:
    """Run ``body``; SUCCESS, or FAILURE with ``"<name> failed: <reason>"`` logged and ``on_failure(reason)``.

    The message of an ``explained`` error (raised on purpose, naming what and why) is the reason as is;
    anything else is prefixed with its type.
    """
    try:
        body()
    except Exception as exc:
        reason = str(exc) if isinstance(exc, explained) else f"{type(exc).__name__}: {exc}"
        logger.error(f"{name} failed: {reason}")
        if on_failure is not None:
            on_failure(reason)
        return TransitionCallbackReturn.FAILURE
    return TransitionCallbackReturn.SUCCESS


class ManagedNode(LifecycleNode):
    """A lifecycle node whose transitions run ``*_body`` methods; failures are logged and kept in ``last_error``.

    ``explained`` errors (raised on purpose, naming what and why) are reported by their message alone.
    ``on_state(state)`` / ``on_transition_error(text)`` let a subclass report them (e.g. in /diagnostics).
    """

    explained: tuple[type[BaseException], ...] = ()

    def __init__(self, name: str, **node_kwargs: Any) -> None:
        super().__init__(name, **node_kwargs)
        self.last_error = ""  # reason of the last failed transition
        self.finalized = False
        self.autostart = True

    def configure_body(self) -> None: ...
    def activate_body(self) -> None: ...
    def deactivate_body(self) -> None: ...
    def release_body(self) -> None: ...
    def on_state(self, state: str) -> None: ...
    def on_transition_error(self, text: str) -> None: ...

    def _transition(self, name: str, body: Callable[[], None], target: str,
                    undo: Callable[[], None] | None = None) -> TransitionCallbackReturn:
        def failed(reason: str) -> None:
            self.last_error = reason
            self.on_transition_error(f"{name}: {reason}")
            if undo is not None:
                undo()

        result = run_transition(self.get_logger(), name, body, failed, explained=self.explained)
        if result == TransitionCallbackReturn.SUCCESS:
            self.last_error = ""
            self.on_transition_error("")
            self.on_state(target)
        return result

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("configure", self.configure_body, "inactive", undo=self.release_body)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition("activate", self.activate_body, "active", undo=self.deactivate_body)
        return super().on_activate(state) if result == TransitionCallbackReturn.SUCCESS else result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition("deactivate", self.deactivate_body, "inactive")
        return super().on_deactivate(state) if result == TransitionCallbackReturn.SUCCESS else result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("cleanup", self.release_body, "unconfigured")

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.finalized = True
        return self._transition("shutdown", self.release_body, "finalized")

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._transition("error recovery", self.release_body, "unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def start(self) -> str:
        """Configure and activate (autostart); returns '' or the reason it failed."""
        for transition in (self.trigger_configure, self.trigger_activate):
            if transition() != TransitionCallbackReturn.SUCCESS:
                return self.last_error or f"{transition.__name__} failed"
        return ""


def run_managed_node(factory: Callable[[], ManagedNode], name: str, start_error: type[BaseException],
                     argv: Sequence[str] | None = None) -> int:
    """``main()`` of a managed node: init, create, autostart, spin until the shutdown transition; exit code
    2 with one FATAL line when it cannot start."""
    rclpy.init(args=list(sys.argv if argv is None else argv))
    node: ManagedNode | None = None
    try:
        try:
            node = factory()
            reason = node.start() if node.autostart else ""
        except start_error as exc:
            reason = str(exc)
        if reason:
            rclpy.logging.get_logger(name).fatal(f"cannot start: {reason}")
            return 2
        assert node is not None
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spin_until(executor, lambda: node.finalized)  # the shutdown transition ends the process
        return 0
    finally:
        if node is not None:
            node.release_body()
            node.destroy_node()
        rclpy.try_shutdown()


# Transition label -> state label it leads to on success.
GOAL = {"configure": "inactive", "cleanup": "unconfigured", "activate": "active", "deactivate": "inactive",
        "shutdown": "finalized"}


class LifecycleClient:
    """Calls the lifecycle services of ``target`` (e.g. '/occupancy_node') from ``node``, spinning ``executor``.

    A service answer can be lost while discovery is still matching the response path (seen on loaded
    machines), so a call that gets no answer within ``attempt_s`` is checked and sent again: get_state is
    simply repeated; for change_state the node's state tells whether the transition already ran.
    """

    def __init__(self, node: Any, target: str, executor: Any, attempt_s: float = 5.0) -> None:
        self.node = node
        self.target = target.rstrip("/")
        self.executor = executor
        self.attempt_s = attempt_s
        self._change = node.create_client(ChangeState, f"{self.target}/change_state")
        self._get = node.create_client(GetState, f"{self.target}/get_state")

    def _once(self, client: Any, request: Any, deadline: float) -> Any:
        """One request; its response, or None when none came within attempt_s (or by the deadline)."""
        remaining = deadline - time.monotonic()
        if not client.wait_for_service(timeout_sec=max(remaining, 0.0)):
            raise LifecycleError(f"{client.srv_name}: service not available (is the node running?)")
        future = client.call_async(request)
        self.executor.spin_until_future_complete(
            future, timeout_sec=max(0.0, min(self.attempt_s, deadline - time.monotonic())))
        if future.done() and future.result() is not None:
            return future.result()
        client.remove_pending_request(future)
        return None

    def get_state(self, timeout_s: float = 10.0) -> str:
        """Label of the current state: unconfigured, inactive, active or finalized."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            answer = self._once(self._get, GetState.Request(), deadline)
            if answer is not None:
                return answer.current_state.label
        raise LifecycleError(f"{self._get.srv_name}: no answer within {timeout_s} s")

    def change_state(self, transition: str, timeout_s: float = 60.0) -> bool:
        """Trigger ``transition`` (a TRANSITIONS label); True when the node reports success."""
        if transition not in TRANSITIONS:
            raise LifecycleError(f"transition {transition!r}: expected one of {TRANSITIONS}")
        deadline = time.monotonic() + timeout_s
        before = self.get_state(timeout_s)
        request = ChangeState.Request()
        request.transition.label = transition
        while time.monotonic() < deadline:
            answer = self._once(self._change, request, deadline)
            if answer is not None:
                return bool(answer.success)
            now = self.get_state(max(deadline - time.monotonic(), self.attempt_s))  # waits while it runs
            if now != before:  # the transition ran; only its answer was lost
                return now == GOAL[transition]
        raise LifecycleError(f"{self._change.srv_name}: no answer to {transition!r} within {timeout_s} s")
