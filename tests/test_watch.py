"""The sensor's decisions without Dagster: how requests that did not land are settled and made
again (after the API's wait, with a backoff, never for unchanged rejected files), and how a
withdrawal is confirmed before anything moves."""

from __future__ import annotations

from aperiodic_assets.core import watch
from aperiodic_assets.core.api import FileInfo, FileStamp

KEY = "BTC.1h.binance-futures.perpetual-BTC-USDT:USDT.exchange|2026-11"
HOUR = 3600.0


def files(*days: int) -> list[FileInfo]:
    return [FileInfo(2026, 11, d, f"http://127.0.0.1/{d}.parquet") for d in days]


def stamps(*days: int, etag: str = "e") -> dict[str, str]:
    return {f.label: f"{etag}:1" for f in files(*days)}


def tick(cursor, watched, now, finished=()):
    """One evaluation's decisions, as automation.evaluate makes them (no probes)."""
    settled = watch.settle_in_flight(cursor, watched, set(finished), now, HOUR)
    plan = watch.plan(watched, cursor, now, HOUR)
    watch.settle(cursor, watched, plan.requests + plan.withdrawals, {KEY}, now, f"r{now:.0f}")
    return plan, settled


def test_a_failed_request_is_made_again_on_the_first_tick_after_the_wait_the_api_asked_for():
    cursor = watch.WatchCursor()
    plan, _ = tick(cursor, [watch.Watched(KEY, files(1, 2), None)], now=0.0)
    assert [r.key for r in plan.requests] == [KEY]

    failed = watch.Failed(at=10.0, rejected=False, retry_after_s=120.0)
    waiting = [watch.Watched(KEY, files(1, 2), None, failed)]
    plan, settled = tick(cursor, waiting, now=60.0)
    assert plan.requests == [] and KEY in plan.waiting and "120s" in settled[0]

    plan, _ = tick(cursor, waiting, now=131.0)
    assert [r.reason for r in plan.requests] == ["again after a failed attempt"]


def test_a_request_whose_backfill_ended_without_a_word_is_made_again_at_once():
    cursor = watch.WatchCursor()
    tick(cursor, [watch.Watched(KEY, files(1), None)], now=0.0)
    flight = cursor.requested[KEY]
    # Still running: nothing happens, however often the sensor looks.
    plan, _ = tick(cursor, [watch.Watched(KEY, files(1), None)], now=HOUR)
    assert plan.requests == [] and plan.in_flight == 1
    plan, settled = tick(cursor, [watch.Watched(KEY, files(1), None)], 2 * HOUR, [flight.request])
    assert [r.key for r in plan.requests] == [KEY]
    assert "ended without materializing" in settled[0]


def test_a_partition_that_keeps_failing_backs_off_doubling_up_to_a_day():
    cursor = watch.WatchCursor()
    now = 0.0
    tick(cursor, [watch.Watched(KEY, files(1), None)], now)
    waits = []
    for _ in range(8):
        now += 1.0
        failed = [watch.Watched(KEY, files(1), None, watch.Failed(at=now, rejected=False))]
        plan, _ = tick(cursor, failed, now)
        waits.append(cursor.backoff[KEY].not_before - now)
        if not plan.requests:
            plan, _ = tick(cursor, failed, now + waits[-1] - 1.0)
            assert plan.requests == [], "not a second before the backoff is over"
            now += waits[-1]
            plan, _ = tick(cursor, failed, now)
        assert [r.key for r in plan.requests] == [KEY]
    assert waits == [0.0, HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, 16 * HOUR, 24 * HOUR, 24 * HOUR]


def test_landing_clears_the_backoff():
    cursor = watch.WatchCursor()
    tick(cursor, [watch.Watched(KEY, files(1), None)], now=0.0)
    tick(cursor, [watch.Watched(KEY, files(1), None, watch.Failed(5.0, False))], now=10.0)
    assert KEY in cursor.backoff
    tick(cursor, [watch.Watched(KEY, files(1), None, watch.Failed(5.0, False))], now=20.0)
    built = watch.Materialized(stamps(1), at=30.0)
    plan, _ = tick(cursor, [watch.Watched(KEY, files(1), built)], now=40.0)
    assert plan.requests == [] and plan.up_to_date == 1
    assert KEY not in cursor.backoff and KEY not in cursor.requested


def test_a_rejected_month_waits_for_its_files_to_change():
    cursor = watch.WatchCursor()
    tick(cursor, [watch.Watched(KEY, files(1, 2), None)], now=0.0)
    rejected = watch.Failed(at=5.0, rejected=True, files=stamps(1, 2))
    same = watch.Watched(KEY, files(1, 2), None, rejected)
    for now in (10.0, 2 * HOUR, 30 * HOUR):
        plan, _ = tick(cursor, [same], now)
        assert plan.requests == [] and plan.rejected == 1
    # The rejected files are probed like materialized ones: a republished one is requested.
    changed, waiting = watch.republished(
        [(same, FileStamp("2026-11-02", "new", 1, ""))], cursor, now=31 * HOUR
    )
    assert [r.reason for r in changed] == ["republished: 2026-11-02"] and waiting == {}
    # A new day is new files too.
    plan, _ = tick(cursor, [watch.Watched(KEY, files(1, 2, 3), None, rejected)], 31 * HOUR)
    assert [r.reason for r in plan.requests] == ["rejected month, 1 new file(s), newest 2026-11-03"]


def test_a_rejection_older_than_the_latest_materialization_is_history():
    built = watch.Materialized(stamps(1, 2), at=50.0)
    old = watch.Failed(at=5.0, rejected=True, files=stamps(1))
    w = watch.Watched(KEY, files(1, 2), built, old)
    assert w.rejected is None and w.reference == stamps(1, 2)


def test_one_empty_listing_changes_nothing_a_confirmed_one_requests_a_withdrawal():
    cursor = watch.WatchCursor()
    built = watch.Materialized(stamps(1, 2), at=0.0)
    empty = [watch.Watched(KEY, [], built)]
    plan, _ = tick(cursor, empty, now=100.0)
    assert plan.withdrawals == [] and plan.empty_once == 1
    # Listed again: the glitch is forgotten.
    plan, _ = tick(cursor, [watch.Watched(KEY, files(1, 2), built)], now=100.0 + HOUR)
    assert plan.requests == [] and KEY not in cursor.empty_since
    plan, _ = tick(cursor, empty, now=100.0 + 2 * HOUR)
    assert plan.withdrawals == []
    plan, _ = tick(cursor, empty, now=100.0 + 2.5 * HOUR)
    assert plan.withdrawals == [], "less than a sensor interval after the first empty listing"
    plan, _ = tick(cursor, empty, now=100.0 + 3 * HOUR)
    assert [r.token for r in plan.withdrawals] == [watch.WITHDRAW_TOKEN]
    # In flight: not requested again; once recorded as withdrawn (no files), nothing more.
    plan, _ = tick(cursor, empty, now=100.0 + 4 * HOUR)
    assert plan.withdrawals == [] and plan.in_flight == 1
    gone = watch.Materialized({}, at=100.0 + 4.5 * HOUR)
    plan, _ = tick(cursor, [watch.Watched(KEY, [], gone)], now=100.0 + 5 * HOUR)
    assert plan.withdrawals == [] and plan.unpublished == 1 and not cursor.requested


def test_the_cursor_round_trips():
    cursor = watch.WatchCursor(
        next_instrument=2,
        next_newest=4,
        next_file=7,
        requested={KEY: watch.InFlight("files:x", 1.0, "r1")},
        backoff={KEY: watch.Backoff(2, 99.0, "failed")},
        empty_since={KEY: 5.0},
    )
    assert watch.WatchCursor.load(cursor.dump()) == cursor
    # A cursor written before requests had ids still loads.
    old = '{"next_instrument":1,"next_file":0,"requested":{"k":["files:x",1.0]}}'
    assert watch.WatchCursor.load(old).requested["k"] == watch.InFlight("files:x", 1.0, "")


def test_an_outage_ends_the_backoff_on_the_first_tick_the_api_answers_again():
    """Failures while the API is down are the API's: once the sensor's own probe of the
    partition succeeds again, the partition is requested at once, whatever its backoff."""
    cursor = watch.WatchCursor()
    tick(cursor, [watch.Watched(KEY, files(1), None)], now=0.0)
    for n in range(2):  # two runs in a row fail during the outage
        failed = [watch.Watched(KEY, files(1), None, watch.Failed(at=10.0 + n, rejected=False))]
        plan, _ = tick(cursor, failed, now=10.0 + n)
    assert KEY in plan.waiting and cursor.backoff[KEY].failures == 2
    (recheck,) = plan.rechecks
    stamp = FileStamp("2026-11-01", "e", 1, "")
    # The sensor's probe fails too: still the outage.
    assert watch.cleared([(recheck, RuntimeError("HTTP 503"))], cursor, now=20.0) == []
    # The next tick's probe succeeds: requested at once, hours before the backoff ends.
    (request,) = watch.cleared([(recheck, stamp)], cursor, now=30.0)
    assert request.key == KEY and request.reason.startswith("the API answers again")
    assert cursor.backoff[KEY].not_before > 30.0 + HOUR / 2


def test_a_partition_that_fails_while_the_api_answers_keeps_its_backoff():
    cursor = watch.WatchCursor()
    tick(cursor, [watch.Watched(KEY, files(1), None)], now=0.0)
    for n in range(2):
        failed = [watch.Watched(KEY, files(1), None, watch.Failed(at=10.0 + n, rejected=False))]
        plan, _ = tick(cursor, failed, now=10.0 + n)
    (recheck,) = plan.rechecks
    stamp = FileStamp("2026-11-01", "e", 1, "")
    assert watch.cleared([(recheck, stamp)], cursor, now=20.0) == []


def test_never_sooner_than_the_api_asked_even_once_it_answers():
    cursor = watch.WatchCursor()
    tick(cursor, [watch.Watched(KEY, files(1), None)], now=0.0)
    failed = watch.Failed(at=10.0, rejected=False, retry_after_s=600.0)
    plan, _ = tick(cursor, [watch.Watched(KEY, files(1), None, failed)], now=10.0)
    watch.saw_trouble(cursor, [KEY])  # a listing failed meanwhile
    (recheck,) = plan.rechecks
    stamp = FileStamp("2026-11-01", "e", 1, "")
    assert watch.cleared([(recheck, stamp)], cursor, now=300.0) == []
    assert len(watch.cleared([(recheck, stamp)], cursor, now=611.0)) == 1
