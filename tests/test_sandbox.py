"""The sandbox server: its data, its file catalogue, its HTTP contract and its faults.

Every test talks to a sandbox on 127.0.0.1 only. Each test states one property of the sandbox;
together they are its specification.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import aperiodic
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import requests

from aperiodic_assets.core.months import Month
from aperiodic_assets.core.schema import METRIC_COLUMNS, SCHEMA
from aperiodic_assets.sandbox import (
    CORRUPTION_MODES,
    SHAPES,
    RemoteSandbox,
    Sandbox,
    SandboxConfig,
)
from aperiodic_assets.sandbox import __main__ as sandbox_cli
from aperiodic_assets.sandbox import files as sandbox_files
from aperiodic_assets.sandbox.catalog import (
    Calendar,
    FileSpan,
    Tenure,
    listing_date,
    object_path,
    synthetic_symbol,
)
from aperiodic_assets.sandbox.data import (
    SAMPLES_PER_INTERVAL,
    encode_parquet,
    generate,
    metrics_from_amounts,
    sample_amounts,
)
from aperiodic_assets.sandbox.faults import make_fault, parse_fault_list, parse_fault_spec
from aperiodic_assets.sandbox.shapes import apply_shape
from aperiodic_assets.sandbox.steering import ACTIONS, BY_PATH

REPO = Path(__file__).resolve().parents[1]
TODAY = date(2026, 9, 15)
KEY = "sandbox"
BN, OKX, HL = "binance-futures", "okx-perps", "hyperliquid-perps"
BTC = "perpetual-BTC-USDT:USDT"
ETH = "perpetual-ETH-USDT:USDT"
TIMEOUT = 10


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(today=TODAY)) as sandbox:
        yield sandbox


def list_files(
    sandbox: Sandbox, *, key: str | None = KEY, preview: bool = False, **overrides: str
) -> requests.Response:
    params = {
        "timestamp": "exchange",
        "interval": "1h",
        "exchange": BN,
        "symbol": BTC,
        "start_date": "2026-07-01",
        "end_date": "2026-07-31",
        **overrides,
    }
    params = {k: v for k, v in params.items() if v is not None}
    path = "/data/preview/l1_imbalance" if preview else "/data/l1_imbalance"
    headers = {"X-API-KEY": key} if key is not None else {}
    return requests.get(sandbox.base_url + path, params=params, headers=headers, timeout=TIMEOUT)


def files_of(sandbox: Sandbox, **overrides: str) -> list[dict]:
    response = list_files(sandbox, **overrides)
    assert response.status_code == 200, response.text
    return response.json()["files"]


def first_url(sandbox: Sandbox, **overrides: str) -> str:
    return files_of(sandbox, **overrides)[0]["url"]


def labels(files: list[dict]) -> list[tuple[int, ...]]:
    return [
        (f["year"], f["month"], f["day"]) if "day" in f else (f["year"], f["month"]) for f in files
    ]


def download(url: str, **headers: str) -> requests.Response:
    return requests.get(url, headers=headers, timeout=TIMEOUT)


class RawResponse(NamedTuple):
    status: int
    headers: Message
    body: bytes


def raw_get(url: str, **headers: str) -> RawResponse:
    """A GET that leaves the body as sent (``requests`` would decode a gzip Content-Encoding)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}", headers=headers)
        response = conn.getresponse()
        return RawResponse(response.status, response.headers, response.read())
    finally:
        conn.close()


def table_of(body: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(body))


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]


# --- data ---------------------------------------------------------------------------------------


def test_generated_table_has_exactly_the_file_schema():
    table = generate(BN, BTC, "1h", "exchange", date(2026, 7, 1), date(2026, 7, 3))
    assert table.schema == SCHEMA
    assert table.num_rows == 48
    times = table.column("time").to_numpy()
    assert times[0] == np.datetime64("2026-07-01T00:00:00")
    assert (np.diff(times) == np.timedelta64(3600, "s")).all()


def test_generate_is_deterministic_and_encodes_to_identical_bytes():
    a = encode_parquet(generate(OKX, ETH, "5m", "true", date(2026, 6, 1), date(2026, 6, 4)))
    b = encode_parquet(generate(OKX, ETH, "5m", "true", date(2026, 6, 1), date(2026, 6, 4)))
    assert a == b


def test_generated_bytes_are_the_same_in_another_process_with_another_hash_seed():
    table = generate(BN, BTC, "15m", "exchange", date(2026, 5, 1), date(2026, 5, 3))
    here = hashlib.sha256(encode_parquet(table)).hexdigest()
    code = (
        "import hashlib; from datetime import date;"
        "from aperiodic_assets.sandbox.data import generate, encode_parquet;"
        f"t = generate({BN!r}, {BTC!r}, '15m', 'exchange', date(2026, 5, 1), date(2026, 5, 3));"
        "print(hashlib.sha256(encode_parquet(t)).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == here


def test_a_day_does_not_depend_on_the_requested_range():
    month = generate(BN, BTC, "1m", "exchange", date(2026, 7, 1), date(2026, 8, 1))
    pieces = [
        generate(BN, BTC, "1m", "exchange", d, d + timedelta(days=1))
        for d in days(date(2026, 7, 1), date(2026, 8, 1))
    ]
    assert pa.concat_tables(pieces).equals(month)
    middle = generate(BN, BTC, "1m", "exchange", date(2026, 7, 10), date(2026, 7, 13))
    assert middle.equals(month.slice(9 * 1440, 3 * 1440))


def test_metric_identities_hold_exactly_on_generated_data():
    df = generate(BN, BTC, "1m", "exchange", date(2026, 7, 1), date(2026, 8, 1)).to_pandas()
    for suffix in ("", "_avg"):
        bp, ap = df[f"bid_percentage{suffix}"].to_numpy(), df[f"ask_percentage{suffix}"].to_numpy()
        ir = df[f"imbalance_ratio{suffix}"].to_numpy()
        imb = df[f"imbalance{suffix}"].to_numpy()
        bar = df[f"bid_ask_ratio{suffix}"].to_numpy()
        assert np.abs(bp + ap - 1).max() < 1e-12
        assert np.abs(ir - (bp - ap)).max() < 1e-12
        # A sign identity for point values only: mean(b-a) and mean((b-a)/(b+a)) may differ.
        if not suffix:
            assert (np.sign(imb) == np.sign(ir)).all()
        assert ((bp >= 0) & (bp <= 1) & (ap >= 0) & (ap <= 1)).all()
        assert ((ir >= -1) & (ir <= 1)).all()
        assert (bar >= 0).all()
        assert not np.isnan(df[f"bid_ask_ratio{suffix}"]).any()
    bp, ap, bar = (
        df.bid_percentage.to_numpy(),
        df.ask_percentage.to_numpy(),
        df.bid_ask_ratio.to_numpy(),
    )
    finite = ap > 0
    np.testing.assert_allclose(bar[finite], bp[finite] / ap[finite], rtol=1e-12)
    assert (np.isinf(bar) == (ap == 0)).all()
    assert np.isinf(bar).sum() >= 1, "this month is expected to hold a zero-ask interval end"
    with np.errstate(divide="ignore"):
        jensen = df.bid_percentage_avg / df.ask_percentage_avg
    assert (df.bid_ask_ratio_avg.to_numpy() >= jensen.to_numpy() * (1 - 1e-12)).all()


def test_metrics_are_computed_from_the_samples_by_their_definitions():
    times, bid, ask = sample_amounts(
        HL, "perpetual-BTC-USDC:USDC", "5m", "exchange", date(2026, 2, 1), date(2026, 3, 1)
    )
    table = generate(
        HL, "perpetual-BTC-USDC:USDC", "5m", "exchange", date(2026, 2, 1), date(2026, 3, 1)
    )
    assert bid.shape == (table.num_rows, SAMPLES_PER_INTERVAL)
    assert (bid > 0).all() and (ask >= 0).all()
    b, a = bid[:, -1], ask[:, -1]
    np.testing.assert_array_equal(table.column("imbalance").to_numpy(), b - a)
    np.testing.assert_array_equal(table.column("bid_percentage").to_numpy(), b / (b + a))
    np.testing.assert_array_equal(table.column("time").to_numpy(), times)
    any_zero = (ask == 0).any(axis=1)
    assert (np.isinf(table.column("bid_ask_ratio_avg").to_numpy()) == any_zero).all()
    np.testing.assert_array_equal(
        table.column("imbalance_ratio_avg").to_numpy(), ((bid - ask) / (bid + ask)).mean(axis=1)
    )
    assert set(metrics_from_amounts(bid, ask)) == set(METRIC_COLUMNS)


def test_zero_ask_samples_are_rare():
    _, _, ask = sample_amounts(BN, BTC, "1m", "exchange", date(2026, 1, 1), date(2026, 7, 1))
    zeros_per_month = (ask == 0).sum() / 6
    assert 1 <= zeros_per_month <= 15


def test_true_timestamp_data_differs_slightly_from_exchange_timestamp_data():
    ex = generate(BN, BTC, "1h", "exchange", date(2026, 7, 1), date(2026, 7, 8)).to_pandas()
    tr = generate(BN, BTC, "1h", "true", date(2026, 7, 1), date(2026, 7, 8)).to_pandas()
    assert (ex.time == tr.time).all()
    diff = (tr.bid_percentage - ex.bid_percentage).abs()
    assert diff.max() > 0
    assert diff.median() < 0.02


def test_republished_data_has_the_same_shape_but_other_values():
    old = generate(BN, BTC, "1h", "exchange", date(2026, 7, 1), date(2026, 8, 1))
    new = generate(BN, BTC, "1h", "exchange", date(2026, 7, 1), date(2026, 8, 1), revision=1)
    assert old.column("time").equals(new.column("time"))
    assert not old.column("imbalance").equals(new.column("imbalance"))


# --- catalogue ----------------------------------------------------------------------------------


def test_months_before_daily_from_are_one_monthly_file_each(sb: Sandbox):
    files = files_of(sb, start_date="2026-05-15", end_date="2026-07-02")
    assert labels(files) == [(2026, 5), (2026, 6), (2026, 7)]
    assert all("day" not in f for f in files)


def test_days_from_daily_from_on_are_daily_files(sb: Sandbox):
    files = files_of(sb, start_date="2026-08-11", end_date="2026-09-14")
    assert labels(files) == [(2026, 8, d) for d in range(11, 32)] + [
        (2026, 9, d) for d in range(1, 15)
    ]


def test_list_is_chronological_monthly_files_then_daily_files(sb: Sandbox):
    files = files_of(sb, start_date="2026-06-20", end_date="2026-08-02")
    assert labels(files) == [(2026, 6), (2026, 7), (2026, 8, 1), (2026, 8, 2)]


def test_by_default_july_2026_is_the_last_monthly_file_and_august_is_all_daily(sb: Sandbox):
    """Monthly files up to 2026-07-31, one file per day from 2026-08-01, no mixed month."""
    assert SandboxConfig().daily_from == date(2026, 8, 1)
    (july,) = files_of(sb, start_date="2026-07-01", end_date="2026-07-31")
    assert (july["year"], july["month"]) == (2026, 7) and "day" not in july
    assert table_of(download(july["url"]).content).num_rows == 31 * 24
    files = files_of(sb, start_date="2026-08-01", end_date="2026-08-31")
    assert labels(files) == [(2026, 8, d) for d in range(1, 32)]
    first = table_of(download(files[0]["url"]).content)
    assert first.num_rows == 24
    assert first.column("time").to_numpy()[0] == np.datetime64("2026-08-01T00:00")
    around = files_of(sb, start_date="2026-07-31", end_date="2026-08-01")
    assert labels(around) == [(2026, 7), (2026, 8, 1)]


def test_a_daily_from_other_than_a_first_makes_a_mixed_month():
    """The older record's layout (monthly to 2026-08-10, daily from the 11th) still works."""
    with Sandbox(SandboxConfig(today=TODAY, daily_from=date(2026, 8, 11))) as mixed:
        files = files_of(mixed, start_date="2026-08-01", end_date="2026-08-31")
        assert labels(files) == [(2026, 8)] + [(2026, 8, d) for d in range(11, 32)]
        monthly = table_of(download(files[0]["url"]).content)
        times = monthly.column("time").to_numpy()
        assert times[0] == np.datetime64("2026-08-01T00:00")
        assert times[-1] == np.datetime64("2026-08-10T23:00")
        assert monthly.num_rows == 10 * 24
        daily = table_of(download(files[1]["url"]).content)
        assert daily.column("time").to_numpy()[0] == np.datetime64("2026-08-11T00:00")
        # A range that only touches the daily part of the mixed month lists no monthly file.
        assert labels(files_of(mixed, start_date="2026-08-20", end_date="2026-08-21")) == [
            (2026, 8, 20),
            (2026, 8, 21),
        ]
        # One that only touches its first days lists only the monthly file.
        assert labels(files_of(mixed, start_date="2026-08-03", end_date="2026-08-10")) == [
            (2026, 8)
        ]
        # Chronological: a month's monthly file before its daily files.
        assert labels(files_of(mixed, start_date="2026-07-20", end_date="2026-08-12")) == [
            (2026, 7),
            (2026, 8),
            (2026, 8, 11),
            (2026, 8, 12),
        ]


def test_month_served_as_one_monthly_file_equals_the_same_month_served_daily():
    with (
        Sandbox(SandboxConfig(today=TODAY, daily_from=date(2026, 9, 1))) as monthly_sb,
        Sandbox(SandboxConfig(today=TODAY, daily_from=date(2026, 8, 1))) as daily_sb,
    ):
        aug = {"start_date": "2026-08-01", "end_date": "2026-08-31", "interval": "15m"}
        (monthly,) = files_of(monthly_sb, **aug)
        dailies = files_of(daily_sb, **aug)
        assert len(dailies) == 31
        whole = table_of(download(monthly["url"]).content)
        pieces = pa.concat_tables([table_of(download(f["url"]).content) for f in dailies])
        assert whole.equals(pieces)


def test_no_files_before_the_listing_day_and_the_listing_month_starts_on_it(sb: Sandbox):
    assert listing_date(BN, BTC) == date(2019, 9, 8)
    files = files_of(sb, start_date="2019-07-01", end_date="2019-10-31")
    assert labels(files) == [(2019, 9), (2019, 10)]
    september = table_of(download(files[0]["url"]).content)
    assert september.column("time").to_numpy()[0] == np.datetime64("2019-09-08T00:00")
    assert september.num_rows == 23 * 24
    assert files_of(sb, start_date="2019-01-01", end_date="2019-08-31") == []


def test_files_exist_only_up_to_yesterday(sb: Sandbox):
    files = files_of(sb, start_date="2026-09-01", end_date="2026-12-31")
    assert labels(files) == [(2026, 9, d) for d in range(1, 15)]
    assert files_of(sb, start_date="2026-09-15", end_date="2026-09-30") == []


def test_the_current_month_before_daily_from_is_a_monthly_file_up_to_yesterday():
    with Sandbox(SandboxConfig(today=date(2026, 7, 20))) as sandbox:
        (july,) = files_of(sandbox)
        table = table_of(download(july["url"]).content)
        assert table.num_rows == 19 * 24
        assert table.column("time").to_numpy()[-1] == np.datetime64("2026-07-19T23:00")


def test_set_today_moves_the_clock(sb: Sandbox):
    sb.set_today(date(2026, 9, 20))
    files = files_of(sb, start_date="2026-09-01", end_date="2026-09-30")
    assert labels(files)[-1] == (2026, 9, 19)


def test_calendar_lists_a_monthly_file_when_any_of_its_days_overlaps_the_range():
    calendar = Calendar(today=TODAY, daily_from=date(2026, 8, 1))
    spans = calendar.files(Tenure.since(date(2019, 9, 8)), date(2026, 7, 31), date(2026, 7, 31))
    assert [(s.year, s.month, s.day) for s in spans] == [(2026, 7, None)]
    assert (spans[0].first, spans[0].end) == (date(2026, 7, 1), date(2026, 8, 1))


def test_symbols_lists_the_exchange_catalogue(sb: Sandbox):
    response = requests.get(
        sb.base_url + "/metadata/symbols",
        params={"exchange": HL},
        headers={"X-API-KEY": KEY},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["exchange"] == HL and body["bucket"] == "l1_imbalance"
    assert {"perpetual-BTC-USDC:USDC", "perpetual-ETH-USDC:USDC"} <= set(body["symbols"])
    assert not any("SYN" in s for s in body["symbols"]), "no synthetic symbols unless asked"


def test_synthetic_symbols_are_listed_and_served_like_real_ones(sb: Sandbox):
    syn = synthetic_symbol(2)
    assert syn == "perpetual-SYN0002-USDT:USDT"
    with Sandbox(SandboxConfig(today=TODAY, synthetic_symbols=3)) as big:
        for exchange in (BN, OKX, HL):
            response = requests.get(
                big.base_url + "/metadata/symbols",
                params={"exchange": exchange},
                headers={"X-API-KEY": KEY},
                timeout=TIMEOUT,
            )
            listed = response.json()["symbols"]
            assert [s for s in listed if "SYN" in s] == [synthetic_symbol(n) for n in (1, 2, 3)]
        files = files_of(
            big, exchange=HL, symbol=syn, start_date="2023-12-01", end_date="2024-02-29"
        )
        assert labels(files) == [(2024, 1), (2024, 2)], "listed on 2024-01-01"
        body = download(files[0]["url"]).content
        expected = generate(HL, syn, "1h", "exchange", date(2024, 1, 1), date(2024, 2, 1))
        assert table_of(body).equals(expected)
        assert not table_of(body).equals(
            generate(HL, synthetic_symbol(3), "1h", "exchange", date(2024, 1, 1), date(2024, 2, 1))
        )
        big.republish(BN, syn, "2024-01", 1)  # steering knows them too
        # The other sandbox in this process lists no synthetic symbols.
        response = list_files(sb, exchange=HL, symbol=syn, start_date="2024-01-01")
        assert response.status_code == 404
        with pytest.raises(ValueError, match="unknown symbol"):
            sb.republish(BN, syn, "2024-01", 1)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "code"), [(None, "missing_api_key"), ("wrong", "invalid_api_key")])
def test_missing_or_wrong_api_key_is_unauthorized(sb: Sandbox, key: str | None, code: str):
    response = list_files(sb, key=key)
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == code and body["error"] and isinstance(body["details"], list)


def test_configured_api_key_is_the_one_accepted():
    with Sandbox(SandboxConfig(api_key="s3cret", today=TODAY)) as sandbox:
        assert list_files(sandbox, key="s3cret").status_code == 200
        assert list_files(sandbox, key=KEY).status_code == 401


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"interval": "2m"}, "invalid_interval"),
        ({"exchange": "ftx"}, "invalid_exchange"),
        ({"timestamp": "local"}, "invalid_timestamp"),
        ({"start_date": "2026-7-1"}, "invalid_date"),
        ({"end_date": "2026-02-30"}, "invalid_date"),
        ({"start_date": "yesterday"}, "invalid_date"),
        ({"start_date": "2026-07-10", "end_date": "2026-07-09"}, "invalid_date_range"),
        ({"symbol": None}, "missing_parameter"),
        ({"interval": ""}, "missing_parameter"),
    ],
)
def test_bad_list_parameters_are_a_bad_request(sb: Sandbox, overrides: dict, code: str):
    response = list_files(sb, **overrides)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code
    assert body["details"] and all(isinstance(d, str) for d in body["details"])


def test_unknown_symbol_is_not_found(sb: Sandbox):
    response = list_files(sb, symbol="perpetual-DOGE-USDT:USDT")
    assert response.status_code == 404
    assert response.json()["code"] == "symbol_not_found"


def test_unknown_path_is_a_json_not_found(sb: Sandbox):
    response = requests.get(sb.base_url + "/data/l2_imbalance", timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_post_to_the_api_is_not_allowed(sb: Sandbox):
    response = requests.post(sb.base_url + "/data/l1_imbalance", timeout=TIMEOUT)
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_symbols_errors_are_json(sb: Sandbox):
    url = sb.base_url + "/metadata/symbols"
    assert requests.get(url, params={"exchange": BN}, timeout=TIMEOUT).status_code == 401
    bad = requests.get(url, params={"exchange": "ftx"}, headers={"X-API-KEY": KEY}, timeout=TIMEOUT)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_exchange"


def test_preview_endpoint_accepts_the_demo_key_and_serves_the_same_files(sb: Sandbox):
    preview = files_of(sb, key="DEMO-KEY", preview=True)
    regular = files_of(sb)
    assert labels(preview) == labels(regular)
    assert download(preview[0]["url"]).content == download(regular[0]["url"]).content
    assert list_files(sb, key="DEMO-KEY").status_code == 401
    assert list_files(sb, key=None, preview=True).status_code == 401


@pytest.mark.parametrize("interval", ["15s", "30s"])
def test_higher_tier_intervals_are_a_plan_error_after_key_and_parameter_checks(
    sb: Sandbox, interval: str
):
    denied = list_files(sb, interval=interval)
    assert denied.status_code == 403
    assert denied.json() == {
        "error": "Your plan does not include this interval",
        "details": [f"interval {interval} requires a higher plan"],
        "code": "interval_not_in_plan",
    }
    assert list_files(sb, interval=interval, preview=True, key="DEMO-KEY").status_code == 403
    assert list_files(sb, interval=interval, key="wrong").status_code == 401
    assert list_files(sb, interval=interval, exchange="ftx").status_code == 400


# --- downloads ----------------------------------------------------------------------------------


def test_same_request_gives_identical_bytes_and_etag_even_across_sandboxes(sb: Sandbox):
    first = download(first_url(sb))
    second = download(first_url(sb))
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert first.headers["ETag"] == second.headers["ETag"]
    sandbox_files.render_file.cache_clear()
    sandbox_files.file_identity.cache_clear()
    with Sandbox(SandboxConfig(today=TODAY)) as other:
        third = download(first_url(other))
    assert third.content == first.content
    assert third.headers["ETag"] == first.headers["ETag"]
    assert third.headers["Last-Modified"] == first.headers["Last-Modified"]


def test_download_has_s3_like_headers_and_the_generated_rows(sb: Sandbox):
    response = download(first_url(sb))
    body = response.content
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert int(response.headers["Content-Length"]) == len(body)
    assert response.headers["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert parsedate_to_datetime(response.headers["Last-Modified"]).year == 2026
    assert response.headers["Accept-Ranges"] == "bytes"
    expected = generate(BN, BTC, "1h", "exchange", date(2026, 7, 1), date(2026, 8, 1))
    assert table_of(body).equals(expected)


def test_head_on_a_presigned_url_is_refused_like_s3(sb: Sandbox):
    """The URL is presigned for GET; S3/R2 answer any other method with SignatureDoesNotMatch."""
    url = first_url(sb)
    head = requests.head(url, timeout=TIMEOUT)
    assert head.status_code == 403
    assert head.content == b""  # HEAD never carries a body, not even the XML error
    assert head.headers["Content-Type"] == "application/xml"
    assert "ETag" not in head.headers and "Last-Modified" not in head.headers
    for method in ("PUT", "POST", "DELETE"):
        refused = requests.request(method, url, data=b"x", timeout=TIMEOUT)
        assert refused.status_code == 403, method
        assert "<Code>SignatureDoesNotMatch</Code>" in refused.text
        assert f"<Resource>{urlsplit(url).path}</Resource>" in refused.text
    assert download(url).status_code == 200
    log = [(r["method"], r["status"]) for r in sb.requests() if r["kind"] == "download"]
    assert log == [("HEAD", 403), ("PUT", 403), ("POST", 403), ("DELETE", 403), ("GET", 200)]


def test_other_methods_on_unsigned_or_unknown_file_paths_are_refused_not_405(sb: Sandbox):
    path = urlsplit(first_url(sb)).path
    for method in ("HEAD", "PUT", "DELETE"):
        response = requests.request(method, sb.root_url + path, timeout=TIMEOUT)
        assert response.status_code == 403, method
    put = requests.put(sb.root_url + "/files/nothing-here.parquet", timeout=TIMEOUT)
    assert put.status_code == 403 and "<Code>AccessDenied</Code>" in put.text


def test_one_byte_ranged_get_gives_identity(sb: Sandbox):
    """``bytes=0-0`` is how a sensor stamps a file: S3's size, ETag and Last-Modified, one byte."""
    url = first_url(sb, start_date="2026-09-03", end_date="2026-09-03", interval="15m")
    full = download(url)
    size = len(full.content)
    probe = download(url, Range="bytes=0-0")
    assert probe.status_code == 206
    assert probe.content == full.content[:1] == b"P"
    assert probe.headers["Content-Length"] == "1"
    assert probe.headers["Content-Range"] == f"bytes 0-0/{size}"
    for name in ("ETag", "Last-Modified", "Accept-Ranges"):
        assert probe.headers[name] == full.headers[name]
    # The same answer when the body is no longer cached, and for a file never fetched whole.
    sandbox_files.render_file.cache_clear()
    again = download(url, Range="bytes=0-0")
    assert (again.content, again.headers["ETag"]) == (b"P", full.headers["ETag"])
    other = first_url(sb, start_date="2026-09-04", end_date="2026-09-04", interval="15m")
    first_probe = download(other, Range="bytes=0-0")
    whole = download(other)
    assert first_probe.headers["ETag"] == whole.headers["ETag"]
    assert first_probe.headers["Content-Range"] == f"bytes 0-0/{len(whole.content)}"
    # A republished file probes differently, and its probe matches its new body.
    sb.republish(BN, BTC, "2026-09", revision=1)
    changed = download(url, Range="bytes=0-0")
    assert changed.headers["ETag"] != full.headers["ETag"]
    assert changed.headers["ETag"] == download(url).headers["ETag"]


def test_range_request_returns_206_with_the_right_slice(sb: Sandbox):
    url = first_url(sb)
    full = download(url).content
    part = download(url, Range="bytes=10-99")
    assert part.status_code == 206
    assert part.content == full[10:100]
    assert part.headers["Content-Range"] == f"bytes 10-99/{len(full)}"
    assert part.headers["Content-Length"] == "90"
    open_ended = download(url, Range=f"bytes={len(full) - 4}-")
    assert open_ended.status_code == 206 and open_ended.content == b"PAR1"
    past_the_end = download(url, Range=f"bytes={len(full) - 2}-{len(full) + 50}")
    assert past_the_end.status_code == 206 and past_the_end.content == b"R1"
    assert (
        past_the_end.headers["Content-Range"]
        == f"bytes {len(full) - 2}-{len(full) - 1}/{len(full)}"
    )


@pytest.mark.parametrize("suffix", [1, 8, 100, 10**9])
def test_suffix_range_request_returns_the_last_bytes(sb: Sandbox, suffix: int):
    url = first_url(sb)
    full = download(url).content
    size = len(full)
    tail = download(url, Range=f"bytes=-{suffix}")
    assert tail.status_code == 206
    assert tail.content == full[-suffix:]
    assert tail.headers["Content-Range"] == f"bytes {max(size - suffix, 0)}-{size - 1}/{size}"
    assert full.endswith(b"PAR1")


@pytest.mark.parametrize("header", ["bytes={size}-", "bytes={size}-{size}", "bytes=-0"])
def test_unsatisfiable_range_is_416_with_the_size(sb: Sandbox, header: str):
    url = first_url(sb)
    size = len(download(url).content)
    response = download(url, Range=header.format(size=size))
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{size}"
    assert "<Code>InvalidRange</Code>" in response.text


@pytest.mark.parametrize("header", ["bytes=0-0,5-9", "bytes=9-5", "items=0-0", "bytes=-"])
def test_multi_reversed_or_malformed_ranges_get_the_whole_object(sb: Sandbox, header: str):
    url = first_url(sb)
    full = download(url)
    response = download(url, Range=header)
    assert response.status_code == 200
    assert response.content == full.content and "Content-Range" not in response.headers


def test_matching_if_none_match_is_not_modified(sb: Sandbox):
    url = first_url(sb)
    etag = download(url).headers["ETag"]
    response = download(url, **{"If-None-Match": etag})
    assert response.status_code == 304 and response.content == b""
    assert download(url, **{"If-None-Match": '"other"'}).status_code == 200


def test_expired_url_is_forbidden():
    with Sandbox(SandboxConfig(today=TODAY, url_ttl_s=0)) as sandbox:
        response = download(first_url(sandbox))
    assert response.status_code == 403
    assert "<Code>AccessDenied</Code>" in response.text
    assert "expired" in response.text


def test_tampered_signature_is_forbidden(sb: Sandbox):
    url = first_url(sb)
    flipped = url[:-1] + ("0" if url[-1] != "0" else "1")
    response = download(flipped)
    assert response.status_code == 403
    assert "SignatureDoesNotMatch" in response.text


def test_signature_for_one_file_does_not_open_another(sb: Sandbox):
    url = first_url(sb)
    parts = urlsplit(url)
    other = parts._replace(path=parts.path.replace("/2026/07.parquet", "/2026/06.parquet"))
    assert download(other.geturl()).status_code == 403
    longer = parts._replace(query=parts.query.replace("X-Amz-Expires=300", "X-Amz-Expires=3000"))
    assert download(longer.geturl()).status_code == 403


def test_unsigned_file_url_is_forbidden(sb: Sandbox):
    url = first_url(sb).split("?")[0]
    assert download(url).status_code == 403


def test_signed_url_for_a_file_that_does_not_exist_is_not_found(sb: Sandbox):
    future_day = FileSpan(2026, 9, 20, date(2026, 9, 20), date(2026, 9, 21))
    path = object_path(BN, BTC, "1h", "exchange", future_day)
    assert path.endswith("/perpetual-BTC-USDT%3AUSDT/1h/exchange/2026/09/20.parquet")
    url = f"{sb.root_url}{path}?{sb.state.signer.sign(path, 300)}"
    response = download(url)
    assert response.status_code == 404
    assert "NoSuchKey" in response.text


def test_republish_changes_bytes_and_etag_and_revision_zero_restores_them(sb: Sandbox):
    before = download(first_url(sb))
    august_before = download(first_url(sb, start_date="2026-08-05", end_date="2026-08-05"))
    sb.republish(BN, BTC, "2026-07", revision=2)
    after = download(first_url(sb))
    assert after.content != before.content
    assert after.headers["ETag"] != before.headers["ETag"]
    assert table_of(after.content).equals(
        generate(BN, BTC, "1h", "exchange", date(2026, 7, 1), date(2026, 8, 1), revision=2)
    )
    assert download(first_url(sb, start_date="2026-08-05", end_date="2026-08-05")).content == (
        august_before.content
    )
    assert download(first_url(sb, symbol=ETH)).status_code == 200
    sb.republish(BN, BTC, "2026-07", revision=0)
    assert download(first_url(sb)).content == before.content


def test_republish_applies_to_every_file_of_a_mixed_month(sb: Sandbox):
    sb.set_daily_from(date(2026, 8, 11))
    monthly = {"start_date": "2026-08-05", "end_date": "2026-08-05"}
    daily = {"start_date": "2026-08-20", "end_date": "2026-08-20"}
    before = [download(first_url(sb, **part)).headers["ETag"] for part in (monthly, daily)]
    sb.republish(BN, BTC, "2026-08", revision=1)
    after = [download(first_url(sb, **part)).headers["ETag"] for part in (monthly, daily)]
    assert after[0] != before[0] and after[1] != before[1]


def test_corrupt_serves_matching_files_corrupted_and_the_others_clean(sb: Sandbox):
    clean = download(first_url(sb))
    sb.corrupt("duplicate_times", exchange=BN, month="2026-07")
    corrupted = download(first_url(sb))
    times = table_of(corrupted.content)["time"]
    assert len(times) > len(set(times.to_pylist()))
    assert corrupted.headers["ETag"] != clean.headers["ETag"]
    assert table_of(download(first_url(sb, start_date="2026-06-01")).content).num_rows == 30 * 24
    assert table_of(download(first_url(sb, exchange=OKX)).content).num_rows == 31 * 24
    sb.clear_corruption()
    assert download(first_url(sb)).content == clean.content
    with pytest.raises(ValueError, match="unknown corruption mode"):
        sb.corrupt("set_on_fire")


# --- file shapes: the same data stored another way ------------------------------------------------


def day_url(sandbox: Sandbox, day: int, **overrides: str) -> str:
    """The presigned URL of BTC 1h's daily file of 2026-08-``day``."""
    when = f"2026-08-{day:02d}"
    return first_url(sandbox, start_date=when, end_date=when, **overrides)


def clean_day(day: int) -> pa.Table:
    return generate(BN, BTC, "1h", "exchange", date(2026, 8, day), date(2026, 8, day + 1))


def canonical(table: pa.Table) -> pa.Table:
    """The clean schema back from any shape: file columns only, sorted, us-naive time, float64."""
    table = table.select(list(SCHEMA.names)).sort_by("time")
    return table.cast(SCHEMA)


def test_every_shape_has_a_description_and_is_not_a_corruption_mode():
    assert set(SHAPES) == {
        "hive_columns",
        "hive_columns_wrong",
        "unsorted",
        "float32",
        "time_s",
        "time_ms",
        "time_ns",
        "time_utc",
        "extra_column",
    }
    assert all(SHAPES.values()) and not set(SHAPES) & set(CORRUPTION_MODES)
    with pytest.raises(ValueError, match="unknown shape"):
        apply_shape(clean_day(1), "sideways", **SHAPE_ARGS)


SHAPE_ARGS = {
    "exchange": BN,
    "symbol": BTC,
    "interval": "1h",
    "timestamp": "exchange",
    "label": "2026-08-05",
}
FLOAT32_METRICS = [pa.field(c, pa.float32()) for c in METRIC_COLUMNS]
#: Shape -> (the served type of each changed column, the column names after the file's ten).
SERVED = {
    "hive_columns": ({}, ["exchange", "symbol", "interval", "timestamp"]),
    "hive_columns_wrong": ({}, ["exchange", "symbol", "interval", "timestamp"]),
    "unsorted": ({}, []),
    "float32": ({c: pa.float32() for c in METRIC_COLUMNS}, []),
    "time_s": ({"time": pa.timestamp("ms")}, []),  # Parquet has no second unit
    "time_ms": ({"time": pa.timestamp("ms")}, []),
    "time_ns": ({"time": pa.timestamp("ns")}, []),
    "time_utc": ({"time": pa.timestamp("us", tz="UTC")}, []),
    "extra_column": ({}, ["mid_price_avg"]),
}


@pytest.mark.parametrize("shape", list(SERVED))
def test_a_shape_serves_the_same_values_in_another_representation(sb: Sandbox, shape: str):
    clean_bytes = download(day_url(sb, 5)).content
    sb.corrupt(shape, exchange=BN, month="2026-08", days=[5])
    served = download(day_url(sb, 5))
    table = table_of(served.content)
    types, appended = SERVED[shape]
    assert table.column_names == [*SCHEMA.names, *appended]
    for name in SCHEMA.names:
        assert table.schema.field(name).type == types.get(name, SCHEMA.field(name).type), name
    clean = clean_day(5)
    if shape == "float32":  # the same numbers, as float32 holds them
        clean = clean.cast(pa.schema([SCHEMA.field("time"), *FLOAT32_METRICS]))
    assert canonical(table).equals(canonical(clean))
    assert served.headers["ETag"] != f'"{hashlib.md5(clean_bytes).hexdigest()}"'
    # Only the files the rule names: the next day, and the other exchange, are served clean.
    assert download(day_url(sb, 6)).content == encode_parquet(clean_day(6))
    assert table_of(download(day_url(sb, 5, exchange=OKX)).content).schema == SCHEMA


def test_hive_columns_restate_the_partition_as_strings_and_the_wrong_one_disagrees(sb: Sandbox):
    sb.corrupt("hive_columns", month="2026-08", days=[1])
    sb.corrupt("hive_columns_wrong", month="2026-08", days=[2])
    right, wrong = (table_of(download(day_url(sb, d)).content) for d in (1, 2))
    for table in (right, wrong):
        hive = table.select(["exchange", "symbol", "interval", "timestamp"])
        assert all(t == pa.string() for t in hive.schema.types)
        assert all(pc.count_distinct(c).as_py() == 1 for c in hive.columns)
        assert table.num_rows == 24
    first_row = right.slice(0, 1).select(["exchange", "symbol", "interval", "timestamp"])
    assert first_row.to_pylist() == [
        {"exchange": BN, "symbol": BTC, "interval": "1h", "timestamp": "exchange"}
    ]
    slug = wrong.column("exchange")[0].as_py()
    assert slug != BN and slug in (OKX, HL)
    assert wrong.column("symbol")[0].as_py() == BTC


def test_unsorted_rows_are_shuffled_the_same_way_every_time(sb: Sandbox):
    sb.corrupt("unsorted", month="2026-08")
    first = download(day_url(sb, 3)).content
    sandbox_files.render_file.cache_clear()
    assert download(day_url(sb, 3)).content == first
    times = table_of(first).column("time").to_numpy()
    assert not (np.diff(times) > np.timedelta64(0)).all()
    assert np.array_equal(np.sort(times), clean_day(3).column("time").to_numpy())
    other = table_of(download(day_url(sb, 4)).content).column("time").to_numpy()
    assert not np.array_equal(np.argsort(other), np.argsort(times)), "each file its own order"


def test_extra_column_is_an_unknown_finite_float64_column(sb: Sandbox):
    sb.corrupt("extra_column")
    table = table_of(download(first_url(sb)).content)
    assert table.schema.field("mid_price_avg").type == pa.float64()
    assert np.isfinite(table.column("mid_price_avg").to_numpy()).all()


def test_days_limit_a_rule_to_those_daily_files_and_shapes_stack(sb: Sandbox):
    """The August 2026 defect: hive columns on days 1-9 only; every file also unsorted."""
    sb.corrupt("hive_columns", month="2026-08", days=list(range(1, 10)))
    sb.corrupt("unsorted", month=Month(2026, 8))
    sb.corrupt("unsorted", month="2026-08")  # the same shape twice applies once
    ninth, tenth = (table_of(download(day_url(sb, d)).content) for d in (9, 10))
    assert ninth.column_names[-4:] == ["exchange", "symbol", "interval", "timestamp"]
    assert tenth.schema == SCHEMA
    assert canonical(ninth).equals(clean_day(9)) and canonical(tenth).equals(clean_day(10))
    assert not ninth["time"].equals(clean_day(9)["time"])
    assert not tenth["time"].equals(clean_day(10)["time"])
    # A rule with days never matches a monthly file, even one covering those days.
    sb.set_daily_from(date(2026, 8, 11))
    (monthly,) = files_of(sb, start_date="2026-08-01", end_date="2026-08-10")
    assert "exchange" not in table_of(download(monthly["url"]).content).column_names
    rules = sb.snapshot()["corruptions"]
    assert rules[0] == {
        "mode": "hive_columns",
        "exchange": None,
        "symbol": None,
        "month": "2026-08",
        "days": list(range(1, 10)),
    }


def test_a_shape_stacks_on_a_corruption_which_applies_first(sb: Sandbox):
    sb.corrupt("duplicate_times", month="2026-08", days=[7])
    sb.corrupt("time_ns", month="2026-08")
    table = table_of(download(day_url(sb, 7)).content)
    assert table.schema.field("time").type == pa.timestamp("ns")
    assert table.num_rows == 25 and pc.count_distinct(table["time"]).as_py() == 24


def test_corrupt_refuses_bad_days_and_modes(sb: Sandbox):
    for days in ([], [0], [32], "1-9"):
        with pytest.raises(ValueError, match="days"):
            sb.corrupt("unsorted", days=days)
    with pytest.raises(ValueError, match="hive_columns"):
        sb.corrupt("sideways")
    assert sb.snapshot()["corruptions"] == []


def test_shapes_and_days_over_the_admin_endpoint_and_the_remote_handle(sb: Sandbox):
    reply = requests.post(
        sb.root_url + "/_sandbox/corrupt",
        json={"mode": "float32", "month": "2026-08", "days": [2, 1]},
        timeout=TIMEOUT,
    )
    assert reply.status_code == 200
    assert reply.json()["state"]["corruptions"][0]["days"] == [1, 2]
    RemoteSandbox(sb.root_url).corrupt("time_utc", symbol=BTC, month=Month(2026, 8), days=[2])
    assert table_of(download(day_url(sb, 1)).content).schema.field("imbalance").type == (
        pa.float32()
    )
    second = table_of(download(day_url(sb, 2)).content).schema
    assert second.field("time").type == pa.timestamp("us", tz="UTC")
    assert second.field("imbalance").type == pa.float32()
    assert table_of(download(day_url(sb, 3)).content).schema == SCHEMA
    bad = requests.post(
        sb.root_url + "/_sandbox/corrupt", json={"mode": "unsorted", "days": [40]}, timeout=TIMEOUT
    )
    assert bad.status_code == 400 and "days" in bad.json()["details"][0]


# --- faults -------------------------------------------------------------------------------------


def test_status_fault_answers_503_with_a_json_error_then_clears(sb: Sandbox):
    sb.inject("status")
    response = list_files(sb)
    assert response.status_code == 503
    assert response.json()["code"] == "injected_fault"
    assert list_files(sb).status_code == 200


def test_fault_count_clears_after_n_requests(sb: Sandbox):
    sb.inject("status", count=2, status=502)
    assert [list_files(sb).status_code for _ in range(3)] == [502, 502, 200]
    assert sb.faults() == []


def test_fault_with_count_minus_one_stays_until_cleared(sb: Sandbox):
    sb.inject("status", count=-1, status=504)
    assert [list_files(sb).status_code for _ in range(4)] == [504] * 4
    sb.clear_faults()
    assert list_files(sb).status_code == 200


def test_status_download_fault_hits_downloads_not_lists(sb: Sandbox):
    sb.inject("status_download", status=500)
    url = first_url(sb)
    response = download(url)
    assert response.status_code == 500
    assert response.json()["code"] == "injected_fault"
    assert download(url).status_code == 200


def test_rate_limit_fault_is_429_with_retry_after_seconds(sb: Sandbox):
    sb.inject("rate_limit", seconds=3)
    response = list_files(sb)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["code"] == "rate_limited"


def test_rate_limit_fault_can_send_retry_after_as_an_http_date(sb: Sandbox):
    sb.inject("rate_limit", seconds=120, http_date=True)
    response = list_files(sb)
    assert response.status_code == 429
    when = parsedate_to_datetime(response.headers["Retry-After"])
    assert 100 < when.timestamp() - time.time() < 140


def test_reset_fault_drops_the_connection_without_a_response(sb: Sandbox):
    sb.inject("reset")
    with pytest.raises(requests.ConnectionError):
        list_files(sb)
    assert list_files(sb).status_code == 200
    assert [r["status"] for r in sb.requests() if r["kind"] == "list"] == [0, 200]


def test_reset_fault_can_target_downloads(sb: Sandbox):
    sb.inject("reset", target="download")
    url = first_url(sb)
    with pytest.raises(requests.ConnectionError):
        download(url)
    assert download(url).status_code == 200


def test_truncate_fault_sends_full_content_length_but_half_the_body(sb: Sandbox):
    sb.inject("truncate")
    url = first_url(sb)
    assert requests.head(url, timeout=TIMEOUT).status_code == 403  # refused: uses up no fault
    assert sb.faults()[0]["remaining"] == 1
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}")
        response = conn.getresponse()
        assert response.status == 200
        declared = int(response.getheader("Content-Length"))
        with pytest.raises(http.client.IncompleteRead) as caught:
            response.read()
        assert len(caught.value.partial) == declared // 2
    finally:
        conn.close()
    assert len(download(url).content) == declared


def test_stall_fault_sends_headers_then_nothing_so_the_client_times_out(sb: Sandbox):
    sb.inject("stall", seconds=5)
    url = first_url(sb)
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=0.3)
    started = time.monotonic()
    try:
        conn.request("GET", f"{parts.path}?{parts.query}")
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(TimeoutError):
            response.read()
    finally:
        conn.close()
    assert time.monotonic() - started < 4.0  # well before the stall would have ended
    assert download(url).status_code == 200


def assert_stop_ends(
    sandbox: Sandbox, call: Callable[[], object], errors: type[BaseException] | tuple
) -> None:
    """``call``, waiting on ``sandbox`` in a thread, ends with one of ``errors`` within 3 s of
    the sandbox stopping, however long it would have waited."""
    outcome: list[object] = []

    def wait() -> None:
        try:
            outcome.append(call())
        except errors as exc:
            outcome.append(exc)

    worker = threading.Thread(target=wait)
    worker.start()
    time.sleep(0.2)
    started = time.monotonic()
    sandbox.stop()
    worker.join(timeout=5)
    assert time.monotonic() - started < 3
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], errors), outcome


def test_stopping_the_sandbox_wakes_a_stalled_response():
    sandbox = Sandbox(SandboxConfig(today=TODAY)).start()
    sandbox.inject("stall", seconds=30)
    url = first_url(sandbox)
    assert_stop_ends(sandbox, lambda: requests.get(url, timeout=20), requests.RequestException)


def test_expire_urls_fault_hands_out_urls_that_are_already_expired(sb: Sandbox):
    sb.inject("expire_urls")
    stale = first_url(sb)
    response = download(stale)
    assert response.status_code == 403 and "expired" in response.text
    assert download(first_url(sb)).status_code == 200


def test_foreign_host_fault_points_the_list_at_another_host(sb: Sandbox):
    sb.inject("foreign_host")
    files = files_of(sb)
    assert all(f["url"].startswith("https://files.example.com/files/l1_imbalance/") for f in files)
    assert first_url(sb).startswith(sb.root_url + "/files/")


def test_corrupt_parquet_fault_serves_bytes_that_are_not_parquet(sb: Sandbox):
    url = first_url(sb)
    good = download(url).content
    sb.inject("corrupt_parquet")
    response = download(url)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content) == len(good)
    assert response.content != good
    with pytest.raises(pa.ArrowInvalid):
        table_of(response.content)


def test_corrupt_parquet_fault_shows_in_a_one_byte_probe_too(sb: Sandbox):
    url = first_url(sb)
    clean = download(url, Range="bytes=0-0")
    sb.inject("corrupt_parquet")
    probe = download(url, Range="bytes=0-0")
    assert probe.status_code == 206 and probe.content == b"J"
    assert probe.headers["ETag"] != clean.headers["ETag"]
    assert probe.headers["Content-Range"] == clean.headers["Content-Range"]  # same length
    assert download(url, Range="bytes=0-0").content == b"P"


def test_oversize_fault_streams_a_body_of_the_requested_size(sb: Sandbox):
    size = 3 * 1024 * 1024 + 5
    sb.inject("oversize", count=2, bytes=size)
    url = first_url(sb)
    with requests.get(url, stream=True, timeout=TIMEOUT) as response:
        assert int(response.headers["Content-Length"]) == size
        assert sum(len(c) for c in response.iter_content(256 * 1024)) == size
    with requests.get(url, stream=True, timeout=TIMEOUT) as response:  # a client that gives up
        next(response.iter_content(64 * 1024))
    assert download(url).status_code == 200


def test_fault_filters_match_exchange_symbol_and_month(sb: Sandbox):
    sb.inject("status", count=-1, exchange=OKX)
    sb.inject("status", count=-1, symbol=ETH, status=502)
    sb.inject("status", count=-1, month="2026-06", status=500)
    assert list_files(sb).status_code == 200
    assert list_files(sb, exchange=OKX).status_code == 503
    assert list_files(sb, symbol=ETH).status_code == 502
    assert list_files(sb, start_date="2026-06-10").status_code == 500
    sb.clear_faults()
    sb.inject("status_download", month="2026-08")
    assert download(first_url(sb)).status_code == 200
    assert (
        download(first_url(sb, start_date="2026-08-02", end_date="2026-08-02")).status_code == 503
    )


def test_fault_names_counts_and_parameters_are_validated():
    with pytest.raises(ValueError, match="unknown fault"):
        make_fault("meteor")
    with pytest.raises(ValueError, match="count"):
        make_fault("status", count=0)
    with pytest.raises(ValueError, match="no parameter"):
        make_fault("reset", seconds=3)
    with pytest.raises(ValueError, match="target"):
        make_fault("truncate", target="list")


def test_fault_spec_syntax_for_cli_and_environment():
    fault = parse_fault_spec("status:2:status=502:month=2026-07")
    assert (fault.name, fault.remaining, fault.params["status"], fault.month) == (
        "status",
        2,
        502,
        "2026-07",
    )
    assert parse_fault_spec("reset").remaining == 1
    stall = parse_fault_spec("stall:-1:seconds=1.5")
    assert (stall.remaining, stall.params["seconds"]) == (-1, 1.5)
    assert parse_fault_spec("rate_limit:1:http_date=true").params["http_date"] is True
    assert [f.name for f in parse_fault_list("status:1, truncate ,")] == ["status", "truncate"]
    # A piece without "=" continues the value before it: URLs and symbols hold ":".
    redirect = parse_fault_spec("redirect:-1:base=http://localhost:8080:hops=2")
    assert (redirect.remaining, redirect.params) == (
        -1,
        {"base": "http://localhost:8080", "hops": 2},
    )
    withdraw = parse_fault_spec(f"withdraw:symbol={BTC}:month=2026-08")
    assert (withdraw.symbol, withdraw.month, withdraw.remaining) == (BTC, "2026-08", 1)
    with pytest.raises(ValueError, match="not key=value"):
        parse_fault_spec("status:2:oops")
    with pytest.raises(ValueError, match="hops"):
        make_fault("redirect", hops=0)


def test_redirect_fault_answers_302_to_a_freshly_signed_url_of_the_same_object(sb: Sandbox):
    url = first_url(sb)
    clean = download(url)
    sb.inject("redirect")
    hop = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    assert hop.status_code == 302
    location = hop.headers["Location"]
    assert location.startswith(f"{sb.root_url}{urlsplit(url).path}?")
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=300" in location
    served = download(location)
    assert served.status_code == 200 and served.content == clean.content
    assert served.headers["ETag"] == clean.headers["ETag"]
    assert requests.head(location, timeout=TIMEOUT).status_code == 403, "a GET-only URL too"
    assert download(url).history == [], "count 1: the next download is served directly"
    log = [(r["status"], r["fault"]) for r in sb.requests() if r["kind"] == "download"]
    assert log == [(200, None), (302, "redirect"), (200, None), (403, None), (200, None)]


def test_redirect_fault_hops_each_to_a_new_url_and_forever_does_not_loop(sb: Sandbox):
    url = first_url(sb)
    clean = download(url).content
    sb.inject("redirect", count=-1, hops=3)
    for _ in range(2):
        response = download(url)
        assert [r.status_code for r in response.history] == [302, 302, 302]
        locations = [r.headers["Location"] for r in response.history]
        assert len(set(locations)) == 3 and url not in locations
        assert response.status_code == 200 and response.content == clean
    probe = download(url, Range="bytes=0-0")
    assert len(probe.history) == 3 and probe.status_code == 206 and probe.content == b"P"


def test_redirect_fault_can_point_at_another_host_name_or_an_off_list_host(sb: Sandbox):
    url = first_url(sb)
    other_name = f"http://localhost:{sb.port}"
    sb.inject("redirect", base=other_name, hops=2)
    response = download(url)
    assert [urlsplit(r.headers["Location"]).netloc for r in response.history] == [
        f"localhost:{sb.port}"
    ] * 2
    assert response.status_code == 200 and response.url.startswith(other_name + "/files/")
    sb.inject("redirect", base="https://files.example.com/")
    hop = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    assert hop.headers["Location"].startswith("https://files.example.com/files/l1_imbalance/")


def test_plan_fault_is_a_403_with_the_apis_error_body(sb: Sandbox):
    sb.inject("plan")
    denied = list_files(sb)
    assert denied.status_code == 403
    assert denied.json() == {
        "error": "Your plan does not include this interval",
        "details": ["interval 1h requires a higher plan"],
        "code": "interval_not_in_plan",
    }
    assert list_files(sb).status_code == 200
    sb.inject("plan", code="dataset_not_in_plan", error="Your plan does not include this dataset")
    body = list_files(sb).json()
    assert (body["code"], body["error"]) == (
        "dataset_not_in_plan",
        "Your plan does not include this dataset",
    )
    assert [r["fault"] for r in sb.requests()] == ["plan", None, "plan"]


def test_gzip_fault_serves_the_object_as_stored_gzip_encoded(sb: Sandbox):
    url = first_url(sb)
    plain = download(url)
    sb.inject("gzip", count=-1)
    whole = raw_get(url)
    encoded = whole.body
    assert whole.status == 200 and whole.headers["Content-Encoding"] == "gzip"
    assert int(whole.headers["Content-Length"]) == len(encoded) != len(plain.content)
    assert whole.headers["ETag"] == f'"{hashlib.md5(encoded).hexdigest()}"' != plain.headers["ETag"]
    assert gzip.decompress(encoded) == plain.content
    assert download(url).content == plain.content, "a client that decodes gets the Parquet bytes"
    # Probes and ranges are over the stored (encoded) bytes, with the same identity.
    probe = raw_get(url, Range="bytes=0-0")
    assert probe.status == 206 and probe.body == encoded[:1] == b"\x1f"
    assert probe.headers["Content-Range"] == f"bytes 0-0/{len(encoded)}"
    assert probe.headers["ETag"] == whole.headers["ETag"]
    assert probe.headers["Content-Encoding"] == "gzip"
    tail = raw_get(url, Range="bytes=-8")
    assert tail.body == encoded[-8:] and tail.headers["Content-Range"].endswith(f"/{len(encoded)}")
    assert raw_get(url, **{"If-None-Match": whole.headers["ETag"]}).status == 304
    sb.clear_faults()
    assert raw_get(url).headers["ETag"] == plain.headers["ETag"]
    assert "Content-Encoding" not in raw_get(url).headers


def test_gzip_stacks_with_a_redirect_and_a_truncated_body(sb: Sandbox):
    url = first_url(sb)
    plain = download(url).content
    sb.inject("gzip", count=-1)
    sb.inject("redirect")
    sb.inject("truncate", count=1)
    redirected = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    assert redirected.status_code == 302 and "Content-Encoding" not in redirected.headers
    parts = urlsplit(redirected.headers["Location"])
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}")
        response = conn.getresponse()
        assert response.getheader("Content-Encoding") == "gzip"
        declared = int(response.getheader("Content-Length"))
        with pytest.raises(http.client.IncompleteRead) as caught:
            response.read()
        assert len(caught.value.partial) == declared // 2
    finally:
        conn.close()
    whole = raw_get(url)
    assert int(whole.headers["Content-Length"]) == declared == len(whole.body)
    assert gzip.decompress(whole.body) == plain
    log = [r["fault"] for r in sb.requests() if r["kind"] == "download"]
    assert log == [None, "redirect", "truncate", "gzip"]


def test_withdraw_fault_omits_one_month_of_a_listing_once(sb: Sandbox):
    summer = {"start_date": "2026-07-01", "end_date": "2026-09-14"}
    full = labels(files_of(sb, **summer))
    sb.inject("withdraw", month="2026-08")
    glitch = labels(files_of(sb, **summer))
    assert glitch == [f for f in full if f[:2] != (2026, 8)]
    assert (2026, 7) in glitch and (2026, 9, 1) in glitch
    assert labels(files_of(sb, **summer)) == full, "count 1: a one-off glitch"
    assert [r["fault"] for r in sb.requests()] == [None, "withdraw", None]


def test_withdraw_fault_forever_keeps_a_month_unlisted_but_its_objects_served(sb: Sandbox):
    august = {"start_date": "2026-08-01", "end_date": "2026-08-31"}
    before = files_of(sb, **august)
    sb.inject("withdraw", count=-1, exchange=BN, month="2026-08")
    assert files_of(sb, **august) == [] and files_of(sb, **august) == []
    assert len(files_of(sb, exchange=OKX, **august)) == 31
    assert labels(files_of(sb, start_date="2026-07-31", end_date="2026-08-01")) == [(2026, 7)]
    # Only unlisted: a URL handed out before the withdrawal still downloads.
    assert download(before[0]["url"]).status_code == 200
    sb.clear_faults()
    assert len(files_of(sb, **august)) == 31


# --- request log and admin endpoints -------------------------------------------------------------


def test_request_log_records_every_request_without_query_strings(sb: Sandbox):
    files_of(sb)
    url = first_url(sb)
    requests.get(url, headers={"X-Client-Tag": "run-42"}, timeout=TIMEOUT)
    requests.get(
        sb.base_url + "/metadata/symbols",
        params={"exchange": BN},
        headers={"X-API-KEY": KEY},
        timeout=TIMEOUT,
    )
    log = sb.requests()
    assert [r["kind"] for r in log] == ["list", "list", "download", "symbols"]
    assert all(set(r) >= {"t", "method", "path", "status", "kind", "client"} for r in log)
    assert all("?" not in r["path"] and "Signature" not in r["path"] for r in log)
    assert log[2]["client"] == "run-42" and log[0]["client"] is None
    assert log[2]["path"] == urlsplit(url).path
    assert all(r["status"] == 200 and r["method"] == "GET" for r in log)
    assert log[0]["t"] <= log[-1]["t"]
    sb.reset_log()
    assert sb.requests() == []


def test_admin_http_endpoints_steer_the_sandbox(sb: Sandbox):
    admin = sb.root_url + "/_sandbox/"

    def post(name: str, payload: dict) -> requests.Response:
        return requests.post(admin + name, json=payload, timeout=TIMEOUT)

    assert (
        post("inject", {"fault": "status", "count": 1, "params": {"status": 502}}).status_code
        == 200
    )
    assert list_files(sb).status_code == 502
    assert post("inject", {"fault": "rate_limit", "seconds": 7}).status_code == 200
    assert list_files(sb).headers["Retry-After"] == "7"
    assert post("set_today", {"today": "2026-09-03"}).status_code == 200
    assert labels(files_of(sb, start_date="2026-09-01", end_date="2026-09-30")) == [
        (2026, 9, 1),
        (2026, 9, 2),
    ]
    before = download(first_url(sb)).headers["ETag"]
    reply = post("republish", {"exchange": BN, "symbol": BTC, "month": "2026-07", "revision": 3})
    assert reply.json()["state"]["revisions"] == [
        {"exchange": BN, "symbol": BTC, "month": "2026-07", "revision": 3}
    ]
    assert download(first_url(sb)).headers["ETag"] != before
    post("inject", {"fault": "status", "count": -1})
    assert post("clear_faults", {}).json()["state"]["faults"] == []
    log = requests.get(admin + "requests", timeout=TIMEOUT).json()
    assert {r["kind"] for r in log} == {"admin", "list", "download"}
    assert post("reset_log", {}).status_code == 200
    assert [r["kind"] for r in sb.requests()] == ["admin"]
    state = requests.get(admin + "state", timeout=TIMEOUT).json()
    assert state["today"] == "2026-09-03" and state["daily_from"] == "2026-08-01"


def test_admin_endpoints_reject_bad_requests_with_json_errors(sb: Sandbox):
    admin = sb.root_url + "/_sandbox/"
    bad_fault = requests.post(admin + "inject", json={"fault": "meteor"}, timeout=TIMEOUT)
    assert bad_fault.status_code == 400 and "meteor" in bad_fault.json()["details"][0]
    bad_json = requests.post(admin + "set_today", data=b"{not json", timeout=TIMEOUT)
    assert bad_json.status_code == 400
    missing = requests.post(admin + "republish", json={"exchange": BN}, timeout=TIMEOUT)
    assert missing.status_code == 400
    unknown = requests.post(admin + "explode", json={}, timeout=TIMEOUT)
    assert unknown.status_code == 404
    assert requests.get(admin + "inject", timeout=TIMEOUT).status_code == 405


def test_remote_sandbox_steers_a_sandbox_over_http(sb: Sandbox):
    remote = RemoteSandbox(sb.base_url)
    assert remote.root_url == sb.root_url
    remote.inject("status", count=1, exchange=BN, status=503)
    assert remote.faults()[0]["params"]["status"] == 503
    assert list_files(sb).status_code == 503
    remote.set_today("2026-09-02")
    assert labels(files_of(sb, start_date="2026-09-01", end_date="2026-09-30")) == [(2026, 9, 1)]
    remote.republish(BN, BTC, "2026-07", 1)
    assert sb.snapshot()["revisions"][0]["revision"] == 1
    # inject, state (faults()), list, set_today, list, republish; the log GET is not in its own copy
    kinds = ["admin", "admin", "list", "admin", "list", "admin"]
    assert [r["kind"] for r in remote.requests()] == kinds
    remote.reset_log()
    assert [r["path"] for r in sb.requests()] == ["/_sandbox/reset_log"]
    with pytest.raises(ValueError, match="HTTP 400"):
        remote.inject("meteor")


def test_remote_sandbox_takes_month_and_date_objects_as_sandbox_does(sb: Sandbox):
    remote = RemoteSandbox(sb.root_url)
    remote.set_today(date(2026, 9, 3))
    remote.republish(BN, BTC, Month(2026, 7), 2)
    remote.corrupt("gap", symbol=ETH, month=Month(2026, 6))
    state = sb.snapshot()
    assert state["today"] == "2026-09-03"
    assert state["revisions"] == [
        {"exchange": BN, "symbol": BTC, "month": "2026-07", "revision": 2}
    ]
    assert state["corruptions"][0]["month"] == "2026-06"


def test_every_steering_action_is_a_method_of_both_handles_and_an_admin_endpoint():
    for name, action in ACTIONS.items():
        assert callable(getattr(Sandbox, name)) and callable(getattr(RemoteSandbox, name)), name
        assert BY_PATH[action.path] is action


# --- the command line ---------------------------------------------------------------------------


def start_cli(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aperiodic_assets.sandbox", "--port", "0", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    if not ready:
        proc.kill()
        raise AssertionError("the sandbox printed nothing within 30 s")
    line = proc.stdout.readline().strip()
    prefix = "Aperiodic sandbox listening on "
    assert line.startswith(prefix), line
    return proc, line[len(prefix) :]


def stop_cli(proc: subprocess.Popen) -> tuple[int, str]:
    proc.terminate()
    try:
        _, stderr = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, stderr


def test_cli_prints_its_url_serves_and_stops_cleanly_on_sigterm():
    proc, base_url = start_cli("--today", "2026-09-15")
    try:
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/api/v1")
        response = requests.get(
            base_url + "/metadata/symbols",
            params={"exchange": BN},
            headers={"X-API-KEY": KEY},
            timeout=TIMEOUT,
        )
        assert response.status_code == 200 and BTC in response.json()["symbols"]
    finally:
        returncode, stderr = stop_cli(proc)
    assert returncode == 0, stderr
    assert stderr == ""


def test_cli_flags_set_daily_from_synthetic_symbols_and_corruption_or_shape_rules():
    proc, base_url = start_cli(
        "--today",
        "2026-09-15",
        "--daily-from",
        "2026-09-01",
        "--corrupt",
        "gap",
        "--corrupt",
        f"hive_columns:symbol={BTC}:month=2026-08:days=1-3,9",
        "--fault",
        "redirect:-1:base=http://localhost:1:hops=2",
        "--synthetic-symbols",
        "2",
    )
    try:
        state = RemoteSandbox(base_url).snapshot()
        listed = aperiodic.get_symbols(api_key=KEY, exchange=OKX, base_url=base_url)
    finally:
        stop_cli(proc)
    assert [s for s in listed if "SYN" in s] == [synthetic_symbol(1), synthetic_symbol(2)]
    assert state["daily_from"] == "2026-09-01" and state["today"] == "2026-09-15"
    assert state["corruptions"] == [
        {"mode": "gap", "exchange": None, "symbol": None, "month": None, "days": None},
        {
            "mode": "hive_columns",
            "exchange": None,
            "symbol": BTC,
            "month": "2026-08",
            "days": [1, 2, 3, 9],
        },
    ]
    (fault,) = state["faults"]
    assert (fault["fault"], fault["remaining"]) == ("redirect", -1)
    assert fault["params"] == {"base": "http://localhost:1", "hops": 2}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sideways", "unknown corruption mode 'sideways'"),
        ("gap:2", "only the filters"),
        ("gap:hops=2", "only the filters"),
        ("unsorted:days=1-x", "not a day"),
    ],
)
def test_cli_rejects_a_bad_corruption_rule(spec: str, message: str, capsys):
    with pytest.raises(SystemExit) as exited:
        sandbox_cli.main(["--corrupt", spec])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_an_unknown_fault():
    out = subprocess.run(
        [sys.executable, "-m", "aperiodic_assets.sandbox", "--fault", "meteor:2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "unknown fault 'meteor'" in out.stderr


def test_cli_takes_key_clock_faults_from_flags_and_environment_and_never_logs_secrets():
    proc, base_url = start_cli(
        "--key",
        "cli-key",
        "--fault",
        "status:1:status=502",
        "--url-ttl",
        "60",
        "--verbose",
        env={
            "APERIODIC_SANDBOX_TODAY": "2026-08-03",
            "APERIODIC_SANDBOX_FAULTS": "rate_limit:1:seconds=2",
        },
    )
    try:
        params = {
            "timestamp": "exchange",
            "interval": "1h",
            "exchange": BN,
            "symbol": BTC,
            "start_date": "2026-08-01",
            "end_date": "2026-08-31",
        }
        url = base_url + "/data/l1_imbalance"

        def get() -> requests.Response:
            headers = {"X-API-KEY": "cli-key"}
            return requests.get(url, params=params, headers=headers, timeout=TIMEOUT)

        assert get().status_code == 502
        assert get().status_code == 429
        listed = get().json()["files"]
        assert labels(listed) == [(2026, 8, 1), (2026, 8, 2)]
        assert "X-Amz-Expires=60" in listed[0]["url"]
        assert download(listed[0]["url"]).status_code == 200
        remote = RemoteSandbox(base_url)
        remote.inject("status")
        assert get().status_code == 503
    finally:
        returncode, stderr = stop_cli(proc)
    assert returncode == 0
    assert "GET /api/v1/data/l1_imbalance 502" in stderr
    assert "/files/l1_imbalance/" in stderr
    assert "X-Amz" not in stderr and "cli-key" not in stderr and "?" not in stderr


def test_sandbox_never_imports_dagster():
    code = (
        "import sys, aperiodic_assets.sandbox, aperiodic_assets.sandbox.__main__;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_json_body_of_every_api_error_has_error_details_and_code(sb: Sandbox):
    responses = [
        list_files(sb, key=None),
        list_files(sb, interval="7m"),
        list_files(sb, interval="30s"),
        list_files(sb, symbol="nope"),
        requests.get(sb.base_url + "/nowhere", timeout=TIMEOUT),
    ]
    for response in responses:
        body = json.loads(response.text)
        assert set(body) == {"error", "details", "code"}, body
