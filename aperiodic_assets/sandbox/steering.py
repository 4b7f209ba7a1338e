"""The steering API, described once: clock, listings, republished months, corruption and shapes,
faults, the network, request log.

Owns :data:`ACTIONS`, the one table of steering actions, and everything served from it: the
admin endpoints under ``/_sandbox/`` and :class:`Steering`, the methods both handles share
(``Sandbox`` calls the state directly, ``RemoteSandbox`` calls the admin endpoints). An action's
JSON fields are the parameters of its :class:`SandboxState` method. Never imports dagster.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from ..core.months import Month
from .messages import Reply, Request, error_reply, json_reply
from .state import SandboxState, UnknownSymbol

ADMIN_PREFIX = "/_sandbox/"


@dataclass(frozen=True)
class Action:
    """One steering action: the state method it calls and how the admin endpoint serves it."""

    call: Callable[..., Any]
    #: Reads only: served on GET. Every other action changes the sandbox and is served on POST.
    reads: bool = False
    #: Its path under ``/_sandbox/`` when that is not the method's name.
    served_as: str | None = None

    @property
    def name(self) -> str:
        return self.call.__name__

    @property
    def path(self) -> str:
        return self.served_as or self.name

    def arguments(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments for :attr:`call` from an admin request's JSON object.

        A parameter without a default is a required field (``KeyError`` when absent). A method
        taking ``**params`` also takes every other field and those of a nested ``params`` object.
        """
        parameters = list(inspect.signature(self.call).parameters.values())[1:]  # after self
        named = [p for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
        kwargs = {
            p.name: fields[p.name] if p.default is p.empty else fields.get(p.name, p.default)
            for p in named
        }
        if all(p.kind is not p.VAR_KEYWORD for p in parameters):
            return kwargs
        known = {p.name for p in named} | {"params"}
        extra = {k: v for k, v in fields.items() if k not in known}
        # dict(**a, **b) refuses a field given twice (TypeError), as the method call would.
        return dict(**kwargs, **dict(fields.get("params") or {}), **extra)


ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action(SandboxState.set_today),
        Action(SandboxState.set_daily_from),
        Action(SandboxState.list_symbol),
        Action(SandboxState.delist_symbol),
        Action(SandboxState.republish),
        Action(SandboxState.corrupt),
        Action(SandboxState.clear_corruption),
        Action(SandboxState.inject),
        Action(SandboxState.clear_faults),
        Action(SandboxState.network),
        Action(SandboxState.reset_log),
        Action(SandboxState.requests, reads=True),
        Action(SandboxState.snapshot, reads=True, served_as="state"),
    )
}
#: Admin endpoint path (after ``/_sandbox/``) -> action.
BY_PATH: dict[str, Action] = {action.path: action for action in ACTIONS.values()}


def admin(state: SandboxState, request: Request) -> Reply:
    """Serve ``/_sandbox/<path>``: GET a read action, POST a change with a JSON object body."""
    path = request.path[len(ADMIN_PREFIX) :]
    action = BY_PATH.get(path)
    if request.method == "GET" and action is not None and action.reads:
        return json_reply(200, action.call(state))
    if request.method != "POST":
        return error_reply(
            405,
            "Method Not Allowed",
            [f"use POST {ADMIN_PREFIX}{path}"],
            "method_not_allowed",
            Allow="POST",
        )
    try:
        fields = json.loads(request.body or b"{}")
        if not isinstance(fields, dict):
            raise ValueError("the body must be a JSON object")
        if action is None or action.reads:
            changes = sorted(p for p, a in BY_PATH.items() if not a.reads)
            return error_reply(
                404,
                "Not Found",
                [f"no admin action {path!r}; expected one of {changes}"],
                "not_found",
            )
        action.call(state, **action.arguments(fields))
    except UnknownSymbol as exc:
        return error_reply(404, "Not Found", [str(exc)], "symbol_not_found")
    except (ValueError, KeyError, TypeError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        return error_reply(400, "Invalid admin request", [detail], "invalid_admin_request")
    return json_reply(200, {"ok": True, "state": state.snapshot()})


class Steering(ABC):
    """The steering methods of both handles; see :class:`SandboxState` for what each does.

    Each method names its action in :data:`ACTIONS` and passes its arguments by keyword to
    :meth:`_call`, the one place a handle says how it reaches the state.
    """

    @abstractmethod
    def _call(self, name: str, **kwargs: Any) -> Any:
        """Run action ``name`` with ``kwargs`` (its state method's parameters)."""

    def set_today(self, today: date | str | None) -> None:
        self._call("set_today", today=today)

    def set_daily_from(self, daily_from: date | str) -> None:
        self._call("set_daily_from", daily_from=daily_from)

    def list_symbol(self, exchange: str, symbol: str, listed: date | str) -> None:
        self._call("list_symbol", exchange=exchange, symbol=symbol, listed=listed)

    def delist_symbol(self, exchange: str, symbol: str, delisted: date | str) -> None:
        self._call("delist_symbol", exchange=exchange, symbol=symbol, delisted=delisted)

    def republish(self, exchange: str, symbol: str, month: str | Month, revision: int) -> None:
        self._call("republish", exchange=exchange, symbol=symbol, month=month, revision=revision)

    def corrupt(
        self,
        mode: str,
        exchange: str | None = None,
        symbol: str | None = None,
        month: str | Month | None = None,
        days: list[int] | None = None,
    ) -> None:
        filters = {"exchange": exchange, "symbol": symbol, "month": month, "days": days}
        self._call("corrupt", mode=mode, **filters)

    def clear_corruption(self) -> None:
        self._call("clear_corruption")

    def inject(
        self,
        fault: str,
        count: int = 1,
        exchange: str | None = None,
        symbol: str | None = None,
        month: str | Month | None = None,
        **params: Any,
    ) -> None:
        filters = {"exchange": exchange, "symbol": symbol, "month": month}
        self._call("inject", fault=fault, count=count, **filters, **params)

    def clear_faults(self) -> None:
        self._call("clear_faults")

    def network(self, latency_ms: float = 0.0, mbps: float | None = None) -> None:
        self._call("network", latency_ms=latency_ms, mbps=mbps)

    def faults(self) -> list[dict[str, Any]]:
        return list(self.snapshot()["faults"])

    def requests(self) -> list[dict[str, Any]]:
        return list(self._call("requests"))

    def reset_log(self) -> None:
        self._call("reset_log")

    def snapshot(self) -> dict[str, Any]:
        return dict(self._call("snapshot"))
