"""Managed-node plumbing for occupancy_node (design §5; ROS 2 lifecycle, as nav2 / Autoware nodes are run).

``run_transition`` runs one transition body and turns any exception into FAILURE with the reason
logged (rclpy would turn it into an unexplained ERROR). ``LifecycleClient`` drives a node from
another node through the standard services ``<node>/change_state`` and ``<node>/get_state`` — what
``ros2 lifecycle set`` / ``get`` call — for tests, tools and scripts.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.lifecycle import TransitionCallbackReturn

__all__ = ["LifecycleError", "LifecycleClient", "TRANSITIONS", "run_transition"]

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
    except Exception as exc:  # noqa: BLE001 - every failure of a transition is reported, never raised
        reason = str(exc) if isinstance(exc, explained) else f"{type(exc).__name__}: {exc}"
        logger.error(f"{name} failed: {reason}")
        if on_failure is not None:
            on_failure(reason)
        return TransitionCallbackReturn.FAILURE
    return TransitionCallbackReturn.SUCCESS


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
