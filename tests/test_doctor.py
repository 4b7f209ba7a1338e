"""The preflight against the sandbox: a clean set-up passes; each mistake a new user makes is one
FAIL line naming its cause, and the exit status says a run would fail."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from aperiodic_assets.core.months import Month
from aperiodic_assets.defs.deployment import API_POOL
from aperiodic_assets.sandbox import Sandbox
from aperiodic_assets.tools import doctor
from aperiodic_assets.tools.doctor import FAIL, OK, SKIP, WARN, Finding, diagnose

from .conftest import FAST_RETRY, KEY, TODAY

ROOT = Path(__file__).resolve().parents[1]
BTC_1H = "{exchange: binance-futures, symbol: 'perpetual-BTC-USDT:USDT', interval: 1h}"
ETH_1M = "{exchange: binance-futures, symbol: 'perpetual-ETH-USDT:USDT', interval: 1m}"
OKX_1H = "{exchange: okx-perps, symbol: 'perpetual-BTC-USDT:USDT', interval: 1h}"


@pytest.fixture
def environ(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    """A new user's environment against the sandbox: three instruments, a local warehouse, the
    repository's instance config."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home/dagster.yaml", home)
    return {
        "APERIODIC_API_URL": sandbox.base_url,
        "APERIODIC_API_KEY": KEY,
        "WAREHOUSE_URL": str(tmp_path / "warehouse"),
        "APERIODIC_UNIVERSE": str(universe(tmp_path, BTC_1H, ETH_1M, OKX_1H)),
        "DAGSTER_HOME": str(home),
    }


def universe(tmp_path: Path, *entries: str) -> Path:
    path = tmp_path / "universe.yaml"
    path.write_text(
        'start_month: "2024-01"\ninstruments:\n' + "".join(f"  - {e}\n" for e in entries)
    )
    return path


def run(environ: dict[str, str]) -> list[Finding]:
    return diagnose(environ, today=TODAY, retry=FAST_RETRY)


def verdicts(findings: list[Finding], check: str) -> dict[str, str]:
    return {f.subject: f.verdict for f in findings if f.check == check}


def failures(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.verdict == FAIL]


def test_a_clean_setup_passes_every_check(environ, tmp_path):
    findings = run(environ)
    assert [f for f in findings if f.verdict != OK] == []
    checks = ["universe", "api key", "symbols", "plan", "newest file", "warehouse"]
    assert {f.check for f in findings} == {*checks, "dagster instance", "run queue", "pool"}
    assert verdicts(findings, "plan").keys() == {
        "binance-futures 1h",
        "binance-futures 1m",
        "okx-perps 1h",
    }
    newest = [f for f in findings if f.check == "newest file"]
    yesterday = TODAY - timedelta(days=1)
    assert len(newest) == 3
    assert all(f.detail.startswith(f"{yesterday} (daily file") for f in newest)
    assert not (tmp_path / "warehouse" / doctor.PROBE_PREFIX).exists(), "the probe is deleted"


def test_the_command_prints_one_table_and_exits_1_on_a_failure(environ, capsys):
    assert doctor.main([], {**environ, "APERIODIC_API_KEY": "wrong-key-7f3a"}) == 1
    out = capsys.readouterr().out
    header, *lines = out.splitlines()
    assert header.split() == ["check", "subject", "verdict", "detail"]
    assert any(line.startswith("api key") and " FAIL " in line for line in lines)
    assert "wrong-key-7f3a" not in out, "never the key"
    assert "1 problem(s) would fail a run" in out


def test_a_wrong_key_fails_and_the_api_checks_stop(environ):
    findings = run({**environ, "APERIODIC_API_KEY": "not-the-key"})
    (key,) = [f for f in findings if f.check == "api key"]
    assert key.verdict == FAIL and "HTTP 401" in key.detail and "not-the-key" not in key.detail
    assert not [f for f in findings if f.check in ("symbols", "plan", "newest file")]


def test_a_missing_key_is_named(environ):
    findings = run({k: v for k, v in environ.items() if k != "APERIODIC_API_KEY"})
    assert [(f.check, f.verdict, f.detail) for f in failures(findings)] == [
        ("api key", FAIL, "APERIODIC_API_KEY is not set")
    ]


def test_a_typo_in_a_symbol_names_the_closest_listed_ones(environ, tmp_path):
    typo = "{exchange: binance-futures, symbol: 'perpetual-BTX-USDT:USDT', interval: 1h}"
    environ["APERIODIC_UNIVERSE"] = str(universe(tmp_path, BTC_1H, typo))
    findings = run(environ)
    (bad,) = failures(findings)
    assert bad.check == "symbols" and bad.subject == "binance-futures perpetual-BTX-USDT:USDT"
    assert bad.detail.startswith("not listed; closest listed: perpetual-BTC-USDT:USDT")
    skipped = {f.subject: f.detail for f in findings if f.verdict == SKIP}
    assert skipped == {
        "BTX.1h.binance-futures.perpetual-BTX-USDT:USDT.exchange": "symbol not listed"
    }


def test_an_interval_outside_the_plan_fails_its_plan_line(environ, sandbox):
    """ETH is the only 1m instrument: the API refuses its listings with the plan's 403."""
    sandbox.inject("plan", -1, exchange="binance-futures", symbol="perpetual-ETH-USDT:USDT")
    findings = run(environ)
    plans = verdicts(findings, "plan")
    assert plans == {"binance-futures 1h": OK, "binance-futures 1m": FAIL, "okx-perps 1h": OK}
    (plan,) = failures(findings)
    assert "HTTP 403" in plan.detail and "interval 1m on binance-futures" in plan.detail
    assert (
        verdicts(findings, "newest file")["ETH.1m.binance-futures.perpetual-ETH-USDT:USDT.exchange"]
        == SKIP
    )


def test_a_newest_file_that_fails_validation_says_what_would_be_rejected(environ, sandbox):
    newest = Month.of(TODAY - timedelta(days=1))  # on the 1st, last month's last day
    sandbox.corrupt("broken_identity", "okx-perps", "perpetual-BTC-USDT:USDT", newest)
    (bad,) = failures(run(environ))
    assert (bad.check, bad.subject) == (
        "newest file",
        "BTC.1h.okx-perps.perpetual-BTC-USDT:USDT.exchange",
    )
    assert "would be rejected" in bad.detail and "check identities failed" in bad.detail


def test_an_unwritable_warehouse_fails(environ, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    (bad,) = failures(run({**environ, "WAREHOUSE_URL": str(blocker / "warehouse")}))
    assert bad.check == "warehouse" and bad.detail.startswith("cannot write")


def test_a_warehouse_in_a_missing_bucket_fails(environ, s3_env):
    (bad,) = failures(run({**environ, "WAREHOUSE_URL": "s3://no-such-bucket/warehouse"}))
    assert bad.check == "warehouse" and "no-such-bucket" in bad.detail


def test_a_warehouse_in_s3_is_probed_and_left_clean(environ, s3_env):
    import s3fs

    from .s3_server import BUCKET

    findings = run({**environ, "WAREHOUSE_URL": f"s3://{BUCKET}/doctor"})
    assert verdicts(findings, "warehouse") == {f"s3://{BUCKET}/doctor": OK}
    assert s3fs.S3FileSystem(endpoint_url=s3_env).find(f"{BUCKET}/doctor") == []


def test_a_mistyped_warehouse_url_is_refused_before_anything_is_written(environ):
    (bad,) = failures(run({**environ, "WAREHOUSE_URL": "s3:/bucket/warehouse"}))
    assert bad.check == "warehouse" and "did you mean s3://bucket/warehouse" in bad.detail


def test_a_broken_universe_fails_and_the_api_checks_wait_for_it(environ, tmp_path):
    typo = "{exchange: okx-perps, symbol: 'perpetual-BTC-USDT:USDT', intervall: 1h}"
    environ["APERIODIC_UNIVERSE"] = str(universe(tmp_path, typo))
    findings = run(environ)
    (bad,) = failures(findings)
    assert bad.check == "universe" and "unknown key 'intervall'" in bad.detail
    assert verdicts(findings, "api key") == {environ["APERIODIC_API_URL"]: SKIP}


@pytest.mark.parametrize(
    ("home", "verdict", "detail"),
    [
        (None, WARN, "not set"),
        ("relative/home", FAIL, "must be an absolute path"),
        ("/no/such/folder", FAIL, "must be an absolute path to an existing folder"),
    ],
)
def test_dagster_home_must_be_an_existing_absolute_folder(environ, home, verdict, detail):
    environ.pop("DAGSTER_HOME")
    findings = run(environ if home is None else {**environ, "DAGSTER_HOME": home})
    (instance,) = [f for f in findings if f.check == "dagster instance"]
    assert instance.verdict == verdict and detail in instance.detail


def test_the_production_instance_names_the_variables_it_lacks(environ):
    home = Path(environ["DAGSTER_HOME"])
    shutil.copy(ROOT / "dagster_home/dagster.prod.yaml", home / "dagster.yaml")
    findings = run(environ)
    (instance,) = [f for f in findings if f.check == "dagster instance"]
    assert instance.verdict == FAIL
    assert "DAGSTER_PG_HOST" in instance.detail and "DAGSTER_COMPUTE_LOG_BUCKET" in instance.detail
    assert verdicts(findings, "run queue") == {"dagster.yaml": OK}
    assert verdicts(findings, "pool") == {API_POOL: OK}


def test_the_pool_checked_is_the_assets_pool():
    assert doctor.API_POOL == API_POOL


def test_each_discover_rule_is_shown_with_what_it_selects_and_one_selecting_nothing_fails(
    environ, tmp_path
):
    path = tmp_path / "universe.yaml"
    path.write_text(
        'start_month: "2024-01"\n'
        "discover:\n"
        "  - exchanges: [binance-futures, okx-perps]\n"
        "    intervals: [1h, 4h]\n"
        "    quote: [USDT]\n"
        "  - exchanges: [hyperliquid-perps]\n"
        "    intervals: [1h]\n"
        '    include: ["*NOSUCHCOIN*"]\n'
    )
    findings = run(environ)
    rules = {f.subject: f for f in findings if f.check == "rule"}
    first = rules["discover[0]: binance-futures,okx-perps at 1h,4h, exchange, quote USDT"]
    assert first.verdict == OK
    assert "binance-futures 1h: " in first.detail and "okx-perps 4h: " in first.detail
    assert "first: perpetual-" in first.detail
    empty = rules["discover[1]: hyperliquid-perps at 1h, exchange, include *NOSUCHCOIN*"]
    assert empty.verdict == FAIL and "selects nothing on hyperliquid-perps" in empty.detail
    # A few of the first rule's instruments are checked like explicit ones.
    assert len(verdicts(findings, "newest file")) == doctor.RULE_SAMPLE
    assert doctor.main([], environ) == 1
    print(doctor.render(f for f in findings if f.check in ("universe", "rule", "instruments")))
