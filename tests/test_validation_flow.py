"""Validation on served data; what a rejected or warned partition looks like in Dagster."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import pyarrow.parquet as pq
import pytest

from aperiodic_assets.core.api import AperiodicClient
from aperiodic_assets.core.assemble import Part, assemble
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.normalize import Normalization, normalize
from aperiodic_assets.core.schema import INTERVALS, TIMESTAMP_MODES
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.core.validation import CHECKS, ValidationReport, validate
from aperiodic_assets.core.warehouse import QUARANTINE, Warehouse
from aperiodic_assets.defs.assets.l1_imbalance import L1_IMBALANCE
from aperiodic_assets.defs.assets.reporting import VALIDATION_CHECK
from aperiodic_assets.defs.partitions import partition_key
from aperiodic_assets.sandbox import Sandbox, SandboxConfig
from aperiodic_assets.sandbox.corruption import MODES

from .conftest import BTC_1H, FAST_RETRY, KEY, TODAY, materialize_partition
from .deployed import l1_imbalance

JULY = Month(2026, 7)
CHECK_OF = {rule.name: check.name for check in CHECKS for rule in check.rules}


def fetch_and_validate(client: AperiodicClient, instrument: Instrument, month: Month):
    """What run_partition does before writing: normalize each file, assemble, validate."""
    sources = client.fetch_month(instrument, month)
    files = [normalize(s.table, instrument, s.info.label) for s in sources]
    normalized = Normalization(tuple(f.changes for f in files))
    table = assemble([Part(f.changes.label, f.table) for f in files])
    report = validate(
        table,
        instrument,
        month,
        precision=normalized.precision,
        dropped=normalized.extra_columns,
    )
    return sources, report


def failed(report: ValidationReport) -> set[str]:
    """Checks and rules that did not pass."""
    return {c.name for c in report.checks if not c.passed} | {
        r.name for r in report.rules if not r.passed
    }


@pytest.mark.parametrize("timestamp", TIMESTAMP_MODES)
@pytest.mark.parametrize("interval", list(INTERVALS))
@pytest.mark.parametrize("month", [JULY, Month(2026, 9)], ids=["monthly-file", "daily-files"])
def test_sandbox_data_passes_every_check(client, interval, timestamp, month):
    instrument = Instrument("okx-perps", "perpetual-ETH-USDT:USDT", interval, timestamp)
    sources, report = fetch_and_validate(client, instrument, month)
    assert len(sources) == (1 if month == JULY else 30)
    assert failed(report) == set(), report.summary()
    assert report.check("completeness").metadata["completeness_pct"] == 100.0


def test_a_transition_month_passes_every_check():
    with Sandbox(SandboxConfig(api_key=KEY, today=TODAY, daily_from=date(2026, 8, 11))) as sb:
        client = AperiodicClient(sb.base_url, KEY, retry=FAST_RETRY)
        sources, report = fetch_and_validate(client, BTC_1H, Month(2026, 8))
    assert [s.info.day for s in sources][:2] == [None, 11]
    assert failed(report) == set(), report.summary()


@pytest.mark.parametrize("mode", list(MODES))
def test_each_served_corruption_is_caught_by_exactly_its_rule_and_check(sandbox, client, mode):
    sandbox.corrupt(mode, exchange=BTC_1H.exchange, symbol=BTC_1H.symbol, month=JULY.key)
    _, report = fetch_and_validate(client, BTC_1H, JULY)
    rule, check = MODES[mode], CHECK_OF[MODES[mode]]
    assert {r.name for r in report.rules if r.failed} == {rule}, report.summary()
    assert {c.name for c in report.checks if c.failed} == {check}, report.summary()
    assert report.check(check).metadata[rule] > 0
    assert report.ok == (mode == "gap")


def materialize(resources, instance) -> dg.ExecuteInProcessResult:
    return materialize_partition(resources, instance, BTC_1H, JULY)


def test_a_hard_failure_fails_the_run_writes_nothing_and_quarantines_the_input(
    sandbox, resources, instance, warehouse: Warehouse
):
    sandbox.corrupt("broken_identity", exchange=BTC_1H.exchange, month=JULY.key)
    result = materialize(resources, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.user_failure_data.description
    assert f"{BTC_1H.key} {JULY}: check identities failed, rule pct_sum_to_one (" in message
    assert "violations" in message and "first at 2026-07-" in message
    assert "_quarantine" in message
    assert not warehouse.exists(BTC_1H, JULY)
    assert result.get_asset_materialization_events() == []

    attempts = warehouse.fs.ls(
        f"{warehouse.url}/{QUARANTINE}/{warehouse.relative_dir(BTC_1H, JULY)}"
    )
    assert len(attempts) == 1
    files = sorted(p.rsplit("/", 1)[1] for p in warehouse.fs.ls(attempts[0]))
    assert files == ["2026-07.parquet", "report.json"]
    report = json.loads(warehouse.fs.cat_file(f"{attempts[0]}/report.json"))
    assert report["ok"] is False
    assert {c["name"] for c in report["checks"] if c["status"] == "failed"} == {"identities"}
    failed_rules = {
        r["name"] for c in report["checks"] for r in c["rules"] if r["status"] == "failed"
    }
    assert failed_rules == {"pct_sum_to_one"}
    raw = pq.read_table(f"{attempts[0]}/2026-07.parquet")
    assert raw.num_rows == 31 * 24


def test_a_rejected_month_records_its_validation_check_failed_with_every_rule(
    sandbox, resources, instance
):
    sandbox.corrupt("broken_identity", exchange=BTC_1H.exchange, month=JULY.key)
    assert not materialize(resources, instance).success
    key = str(partition_key(BTC_1H, JULY))
    check_key = dg.AssetCheckKey(L1_IMBALANCE, VALIDATION_CHECK)
    (record,) = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=1)
    assert (record.partition, record.status.value) == (key, "FAILED")
    evaluation = record.event.dagster_event.event_specific_data
    assert evaluation.target_materialization_data is None, "no materialization to describe"
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    # At a glance: the failing check and rule, on how many rows, first in the description.
    assert evaluation.metadata["failed"].value == "identities (error)"
    assert evaluation.description.startswith("744 rows; identities [error]: pct_sum_to_one: ")
    assert "in 3 of 744 rows" in evaluation.description
    # Every rule's verdict, the failing one with its count, the others passed.
    rules = {r.data["rule"]: r.data for r in evaluation.metadata["rules"].value.records}
    assert {r["check"] for r in rules.values()} == {c.name for c in CHECKS}
    assert set(rules) == {rule.name for c in CHECKS for rule in c.rules}
    assert (rules["pct_sum_to_one"]["status"], rules["pct_sum_to_one"]["violations"]) == (
        "failed",
        "3",
    )
    assert [name for name, r in rules.items() if r["status"] == "failed"] == ["pct_sum_to_one"]
    (example,) = evaluation.metadata["examples"].value.records
    assert example.data["check"] == "identities" and example.data["rule"] == "pct_sum_to_one"


def test_a_rejected_rerun_keeps_the_valid_partition_and_a_fixed_source_succeeds(
    sandbox, resources, instance, warehouse: Warehouse
):
    assert materialize(resources, instance).success
    valid = warehouse.read_bytes(BTC_1H, JULY)
    sandbox.corrupt("duplicate_times", exchange=BTC_1H.exchange, month=JULY.key)
    assert not materialize(resources, instance).success
    assert warehouse.read_bytes(BTC_1H, JULY) == valid
    sandbox.clear_corruption()
    assert materialize(resources, instance).success
    assert warehouse.read_bytes(BTC_1H, JULY) == valid


def test_a_warn_only_partition_materializes_with_a_failed_warn_check(
    sandbox, resources, instance, warehouse: Warehouse
):
    sandbox.corrupt("gap", exchange=BTC_1H.exchange, month=JULY.key)
    result = materialize(resources, instance)
    assert result.success and warehouse.exists(BTC_1H, JULY)
    (validation,) = result.get_asset_check_evaluations()
    assert validation.check_name == VALIDATION_CHECK
    assert len(l1_imbalance.check_specs_by_output_name) == 1
    assert not validation.passed
    assert validation.severity == dg.AssetCheckSeverity.WARN
    assert validation.partition == str(partition_key(BTC_1H, JULY))
    assert validation.metadata["failed"].value == "completeness (warn)"
    assert validation.metadata["completeness/completeness_pct"].value < 100
    assert validation.metadata["completeness/completeness"].value > 0
    assert validation.metadata["completeness/expected_from"].value == "2026-07-01T00:00:00"
    assert validation.metadata["completeness/expected_until"].value == "2026-08-01T00:00:00"
    rules = validation.metadata["rules"].value.records
    assert {r.data["check"] for r in rules if r.data["status"] == "failed"} == {"completeness"}
    (materialization,) = [
        e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
    ]
    first_key, first = next(iter(materialization.metadata.items()))
    assert first_key == "warnings" and first.value.startswith("completeness: ")
    assert materialization.metadata["normalized"].value == (
        "none: every file was in the canonical form"
    )
    assert materialization.tags["aperiodic/warnings"] == "completeness"
    check_key = dg.AssetCheckKey(L1_IMBALANCE, VALIDATION_CHECK)
    assert instance.event_log_storage.get_latest_asset_check_execution_by_key([check_key])
