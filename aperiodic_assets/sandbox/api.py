"""Aperiodic's API endpoints: the file list (full and preview) and the symbol list.

Owns API-key checks, query validation with Aperiodic's error codes, list faults (status, 429,
reset, expired URLs, foreign hosts) and signing the file URLs it hands out. Never imports
dagster.
"""

from __future__ import annotations

import hmac
import time
from datetime import date

from ..months import Month
from ..schema import INTERVALS, METRIC, TIMESTAMP_MODES
from . import faults as fx
from .catalog import object_path, symbols
from .messages import Reply, Request, apply_wire_fault, error_reply, fault_reply, json_reply
from .state import SandboxState, as_date

API_PREFIX = "/api/v1"
LIST_PATHS = (f"{API_PREFIX}/data/{METRIC}", f"{API_PREFIX}/data/preview/{METRIC}")
SYMBOLS_PATH = f"{API_PREFIX}/metadata/symbols"
#: The official client's shared demo key; accepted on the preview endpoint only.
DEMO_API_KEY = "DEMO-KEY"
LIST_PARAMS = ("timestamp", "interval", "exchange", "symbol", "start_date", "end_date")


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
    choices = {"interval": INTERVALS, "timestamp": TIMESTAMP_MODES, "exchange": state.listings}
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
    exchange, symbol = query["exchange"], query["symbol"]
    listed = state.listings[exchange]
    if symbol not in listed:
        return error_reply(
            404,
            "Not Found",
            [f"symbol {symbol!r} is not available on {exchange}"],
            "symbol_not_found",
        )
    start, end = dates["start_date"], dates["end_date"]
    fault = state.faults.take(fx.LIST, exchange, symbol, Month.of(start).key)
    early = fault_reply(fault)
    if early is not None:
        return early
    spans = state.calendar().files(listed[symbol], start, end)
    ttl = state.config.url_ttl_s
    now = time.time()
    if fault is not None and fault.name == "expire_urls":
        now -= ttl + 3600
    if fault is not None and fault.name == "foreign_host":
        base = str(fault.params["base"]).rstrip("/")
    else:
        base = f"http://{request.host}"
    interval, timestamp = query["interval"], query["timestamp"]
    files = []
    for span in spans:
        obj = object_path(exchange, symbol, interval, timestamp, span)
        url = f"{base}{obj}?{state.signer.sign(obj, ttl, now)}"
        files.append({**span.entry(), "url": url})
    reply = json_reply(200, {"files": files})
    apply_wire_fault(reply, fault)
    return reply


def list_symbols(state: SandboxState, request: Request) -> Reply:
    """``GET /metadata/symbols?exchange=...``: the symbols listed on one exchange."""
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
    listings = state.listings
    if exchange not in listings:
        return error_reply(
            400,
            "Invalid request",
            [f"exchange {exchange!r} is not one of {sorted(listings)}"],
            "invalid_exchange",
        )
    return json_reply(
        200, {"symbols": symbols(exchange, listings), "exchange": exchange, "bucket": METRIC}
    )
