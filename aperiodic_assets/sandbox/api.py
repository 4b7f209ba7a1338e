"""Aperiodic's API endpoints: the file list (full and preview) and the symbol list.

Owns API-key checks, query validation with Aperiodic's error codes (401 before anything else,
400 for bad parameters, 403 for intervals the plan does not include, 404 for unknown symbols),
list faults (status, 429, reset, plan, expired URLs, foreign hosts, withdrawn months) and signing
the file URLs it hands out. Never imports dagster.
"""

from __future__ import annotations

import hmac
import time
from datetime import date

from ..core.months import Month
from ..core.schema import INTERVALS, METRIC, TIMESTAMP_MODES
from . import faults as fx
from .catalog import object_path
from .messages import Reply, Request, apply_wire_fault, error_reply, fault_reply, json_reply
from .state import SandboxState, as_date

API_PREFIX = "/api/v1"
LIST_PATHS = (f"{API_PREFIX}/data/{METRIC}", f"{API_PREFIX}/data/preview/{METRIC}")
SYMBOLS_PATH = f"{API_PREFIX}/metadata/symbols"
#: The official client's shared demo key; accepted on the preview endpoint only.
DEMO_API_KEY = "DEMO-KEY"
LIST_PARAMS = ("timestamp", "interval", "exchange", "symbol", "start_date", "end_date")
#: Intervals the real service has for higher tiers only: always 403 here, never data.
HIGHER_TIER_INTERVALS = ("15s", "30s")


def _authorize(state: SandboxState, request: Request, preview: bool = False) -> Reply | None:
    key = request.headers.get("X-API-KEY")
    if not key:
        return error_reply(
            401,
            "Authorization Required",
            ["send your API key in the X-API-KEY header"],
            "missing_api_key",
        )
    accepted = [state.config.api_key] + ([DEMO_API_KEY] if preview else [])
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in accepted):
        return error_reply(401, "Authorization Required", ["invalid API key"], "invalid_api_key")
    return None


def plan_reply(
    interval: str, error: str = fx.PLAN_ERROR, code: str = fx.PLAN_CODE, detail: str | None = None
) -> Reply:
    """403 as the API answers a request its plan does not cover (``error``/``details``/``code``)."""
    return error_reply(403, error, [detail or f"interval {interval} requires a higher plan"], code)


def list_files(state: SandboxState, request: Request) -> Reply:
    """``GET /data/[preview/]l1_imbalance``: presigned URLs of the files covering the dates."""
    preview = "/preview/" in request.path
    denied = _authorize(state, request, preview)
    if denied:
        return denied
    query = request.query
    missing = [p for p in LIST_PARAMS if not query.get(p)]
    if missing:
        return error_reply(
            400,
            "Missing required parameter(s)",
            [f"missing query parameter: {p}" for p in missing],
            "missing_parameter",
        )
    problems: list[tuple[str, str]] = []
    # The exchanges are whatever the catalogue lists, as on the real service.
    intervals = [*INTERVALS, *HIGHER_TIER_INTERVALS]
    choices = {"interval": intervals, "timestamp": TIMESTAMP_MODES, "exchange": state.exchanges}
    for name, allowed in choices.items():
        if query[name] not in allowed:
            problems.append(
                (f"invalid_{name}", f"{name} {query[name]!r} is not one of {sorted(allowed)}")
            )
    dates: dict[str, date] = {}
    for name in ("start_date", "end_date"):
        try:
            dates[name] = as_date(query[name])
        except ValueError:
            problems.append(("invalid_date", f"{name} {query[name]!r} is not a YYYY-MM-DD date"))
    if not problems and dates["end_date"] < dates["start_date"]:
        problems.append(("invalid_date_range", "end_date is before start_date"))
    if problems:
        return error_reply(400, "Invalid request", [p[1] for p in problems], problems[0][0])
    interval, timestamp = query["interval"], query["timestamp"]
    if interval in HIGHER_TIER_INTERVALS:
        return plan_reply(interval)
    exchange, symbol = query["exchange"], query["symbol"]
    tenure = state.tenure(exchange, symbol)
    calendar = state.calendar()
    # Not yet listed is unknown too; once listed, a symbol's files stay, even after a delisting.
    if tenure is None or tenure.listed > calendar.today:
        return error_reply(
            404,
            "Not Found",
            [f"symbol {symbol!r} is not available on {exchange}"],
            "symbol_not_found",
        )
    start, end = dates["start_date"], dates["end_date"]
    fault = state.faults.take(fx.LIST, exchange, symbol, Month.of(start).key, exclude=fx.PER_MONTH)
    early = fault_reply(fault)
    if early is not None:
        return early
    if fault is not None and fault.name == "plan":
        params = fault.params
        denied = plan_reply(interval, params["error"], params["code"], params["detail"])
        denied.fault = fault.name
        return denied
    spans = calendar.files(tenure, start, end)
    withdrawn = {
        month
        for month in dict.fromkeys(span.month_key for span in spans)
        if state.faults.take(fx.LIST, exchange, symbol, month, only=fx.PER_MONTH) is not None
    }
    spans = [span for span in spans if span.month_key not in withdrawn]
    ttl = state.config.url_ttl_s
    now = time.time()
    if fault is not None and fault.name == "expire_urls":
        now -= ttl + 3600
    if fault is not None and fault.name == "foreign_host":
        base = str(fault.params["base"]).rstrip("/")
    else:
        base = f"http://{request.host}"
    files = []
    for span in spans:
        obj = object_path(exchange, symbol, interval, timestamp, span)
        url = f"{base}{obj}?{state.signer.sign(obj, ttl, now)}"
        files.append({**span.entry(), "url": url})
    reply = json_reply(200, {"files": files})
    apply_wire_fault(reply, fault)
    if withdrawn and reply.fault is None:
        reply.fault = "withdraw"
    return reply


def list_symbols(state: SandboxState, request: Request) -> Reply:
    """``GET /metadata/symbols?exchange=...``: the symbols one exchange lists today (delisted and
    not yet listed ones are left out)."""
    denied = _authorize(state, request)
    if denied:
        return denied
    exchange = request.query.get("exchange")
    if not exchange:
        return error_reply(
            400,
            "Missing required parameter(s)",
            ["missing query parameter: exchange"],
            "missing_parameter",
        )
    if exchange not in state.exchanges:
        return error_reply(
            400,
            "Invalid request",
            [f"exchange {exchange!r} is not one of {sorted(state.exchanges)}"],
            "invalid_exchange",
        )
    listed = state.listed_symbols(exchange)
    return json_reply(200, {"symbols": listed, "exchange": exchange, "bucket": METRIC})
