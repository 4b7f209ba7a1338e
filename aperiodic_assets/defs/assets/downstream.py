"""Downstream assets built on ``aperiodic/l1_imbalance``: the pattern other teams follow.

They declare the dependency by asset key and partition mapping (lineage, staleness), load the
validated rows from the warehouse, and store their results beside it. Their data version is the
hash of what they wrote, and their automation condition reacts to upstream data versions, so
they, and whatever depends on them, re-run only when the data really changed.

An upstream partition whose file is gone (withdrawn, see ``Warehouse.withdraw``) has no rows:
the daily partition materializes 0 rows and withdraws its own file too, and the monthly summary
leaves that instrument out. Times are handled as naive UTC whatever the frame holds, so a
time-zone-aware source gives the same days and numbers as a naive one.
"""

import base64
import hashlib
import io
import warnings
from datetime import date, datetime, timedelta

import dagster as dg
import pandas as pd
import pyarrow as pa
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure

from ...core import clock
from ...core.months import Month
from ...core.schema import INTERVALS, TIME
from ...core.universe import Instrument
from ...core.warehouse import Warehouse
from ..deployment import Deployment
from ..resources import WarehouseResource
from .reporting import (
    COLUMN_SCHEMA,
    column_schema,
    table,
    table_metadata,
    with_code_references,
)
from .upstream import built_from_metadata, upstream_versions

L1_IMBALANCE_DAILY = dg.AssetKey(["aperiodic", "l1_imbalance_daily"])
L1_IMBALANCE_MONTHLY_SUMMARY = dg.AssetKey(["aperiodic", "l1_imbalance_monthly_summary"])
DAILY_TABLE = "l1_imbalance_daily"
SUMMARY_TABLE = "l1_imbalance_monthly_summary"
CHART_FILE = "daily_imbalance_ratio.png"
INSTRUMENT_COLUMNS = ["exchange", "symbol", "interval", "timestamp"]
SOURCE_COLUMNS = [TIME, "imbalance_ratio", "bid_percentage"]
DAY_SECONDS = 86400
#: The data version of a partition without data: the hash of no bytes.
NO_DATA = hashlib.sha256(b"").hexdigest()
#: What each table's files hold: the frames are written as exactly this, and the catalog shows it.
DAILY_SCHEMA = pa.schema(
    [
        ("date", pa.date32()),
        ("rows", pa.int64()),
        ("imbalance_ratio_mean", pa.float64()),
        ("imbalance_ratio_min", pa.float64()),
        ("imbalance_ratio_max", pa.float64()),
        ("bid_percentage_mean", pa.float64()),
        ("completeness", pa.float64()),
    ]
)
SUMMARY_SCHEMA = pa.schema(
    [
        *[(c, pa.string()) for c in INSTRUMENT_COLUMNS],
        ("rows", pa.int64()),
        ("imbalance_ratio_mean", pa.float64()),
        ("bid_percentage_mean", pa.float64()),
        ("completeness", pa.float64()),
    ]
)
DAILY_COLUMNS = column_schema(DAILY_SCHEMA)
SUMMARY_COLUMNS = column_schema(SUMMARY_SCHEMA)

with warnings.catch_warnings():
    # A beta API; it is what maps one month to every instrument partition of that month.
    warnings.simplefilter("ignore", dg.BetaWarning)
    EVERY_INSTRUMENT_OF_THE_MONTH = dg.MultiToSingleDimensionPartitionMapping(
        partition_dimension_name="month"
    )

_any_dep_changed = dg.AutomationCondition.any_deps_match(
    dg.AutomationCondition.data_version_changed() | dg.AutomationCondition.will_be_requested()
).with_label("any_deps_data_version_changed")
#: eager(), but for every month (a republished old month must flow down too), and only when an
#: upstream data version changed (re-materializing identical data triggers nothing).
FOLLOW_UPSTREAM = (
    dg.AutomationCondition.eager()
    .without(dg.AutomationCondition.in_latest_time_window())
    .replace("any_deps_updated", _any_dep_changed)
    .with_label("eager on upstream data changes, every month")
)
#: Same, but a month is summarized once any instrument has it: an instrument listed later than
#: the others would otherwise block its early months forever.
FOLLOW_ANY_UPSTREAM = FOLLOW_UPSTREAM.replace(
    ~dg.AutomationCondition.any_deps_missing(),
    dg.AutomationCondition.any_deps_match(~dg.AutomationCondition.missing()),
).with_label("eager on upstream data changes, every month, any instrument present")


def build_downstream(deployment: Deployment) -> list[dg.AssetsDefinition]:
    """The two example assets of one deployment, downstream of its ``l1_imbalance``."""
    partitions = deployment.partitions
    upstream = deployment.l1_key

    @dg.asset(
        key=deployment.key(L1_IMBALANCE_DAILY.path[-1]),
        partitions_def=partitions.l1,
        deps=[upstream],
        code_version="1",
        automation_condition=FOLLOW_UPSTREAM,
        group_name=deployment.group,
        kinds=deployment.kinds,
        owners=list(deployment.owners),
        metadata={COLUMN_SCHEMA: DAILY_COLUMNS},
        description="Daily statistics of l1_imbalance per instrument: mean/min/max imbalance_ratio,"
        " mean bid_percentage, rows and completeness.",
    )
    def _l1_imbalance_daily(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        instrument, month = partitions.parse(context.partition_key)
        store = warehouse.get_warehouse()
        source = store.read([instrument], [month], SOURCE_COLUMNS).to_pandas()
        if source.empty:
            withdrawn = store.withdrawn(instrument, month)
            upstream = (
                f"withdrawn: the l1_imbalance partition was moved to {withdrawn[-1]}"
                if withdrawn
                else f"no upstream data: no l1_imbalance partition in {store.url}"
            )
            context.log.warning(f"{instrument.key} {month}: {upstream}; 0 rows.")
            return _without_data(store, instrument, month, DAILY_TABLE, DAILY_COLUMNS, upstream)
        daily = daily_stats(source, month).drop(columns=INSTRUMENT_COLUMNS)
        written = store.write(
            instrument, month, _to_arrow(daily, DAILY_SCHEMA), table_name=DAILY_TABLE
        )
        return dg.MaterializeResult(
            data_version=dg.DataVersion(written.sha256),
            metadata={
                "rows": dg.MetadataValue.int(written.rows),
                "source_rows": dg.MetadataValue.int(len(source)),
                "path": dg.MetadataValue.path(written.path),
                "sha256": written.sha256,
                "preview": _table(daily.head(10)),
                **table_metadata(DAILY_TABLE, written.path, written.rows, DAILY_COLUMNS),
            },
        )

    summary_key = deployment.key(L1_IMBALANCE_MONTHLY_SUMMARY.path[-1])

    @dg.asset(
        key=summary_key,
        partitions_def=partitions.months,
        deps=[dg.AssetDep(upstream, partition_mapping=EVERY_INSTRUMENT_OF_THE_MONTH)],
        code_version="1",
        automation_condition=FOLLOW_ANY_UPSTREAM,
        group_name=deployment.group,
        kinds=deployment.kinds,
        owners=list(deployment.owners),
        metadata={COLUMN_SCHEMA: SUMMARY_COLUMNS},
        description="All instruments of a month side by side (rows, mean imbalance_ratio, mean"
        " bid_percentage, completeness) and a chart of their daily mean imbalance_ratio.",
    )
    def _l1_imbalance_monthly_summary(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        month = Month.parse(context.partition_key)
        store = warehouse.get_warehouse()
        # What the upstream holds for the month before reading it: the record of what this
        # build is made of (a version landing during the read makes the record say "changed").
        versions = upstream_versions(context.instance, deployment, month)
        built_from = built_from_metadata(versions)
        # Instruments whose partition was withdrawn have no file: they are simply not in here.
        source = store.read(months=[month], columns=SOURCE_COLUMNS).to_pandas()
        summary = monthly_summary(source, month)
        chart = daily_chart(daily_stats(source, month), month)
        chart_path = store.write_file(None, month, CHART_FILE, chart, table_name=SUMMARY_TABLE)
        if source.empty:
            upstream = f"no instrument has an l1_imbalance partition for {month} in {store.url}"
            context.log.warning(f"{month}: {upstream} (withdrawn or never written); 0 instruments.")
            return _without_data(
                store, None, month, SUMMARY_TABLE, SUMMARY_COLUMNS, upstream, built_from
            )
        written = store.write(
            None, month, _to_arrow(summary, SUMMARY_SCHEMA), table_name=SUMMARY_TABLE
        )
        image = base64.b64encode(chart).decode()
        return dg.MaterializeResult(
            # Both files are the output: either changing is a new version.
            data_version=dg.DataVersion(
                hashlib.sha256(bytes.fromhex(written.sha256) + chart).hexdigest()
            ),
            metadata={
                # First: on the asset's page, "Show Markdown" beside it opens the chart.
                "chart": dg.MetadataValue.md(
                    f"![daily mean imbalance_ratio, {month}](data:image/png;base64,{image})"
                ),
                "table": _table(summary),
                "instruments": dg.MetadataValue.int(len(summary)),
                "rows": dg.MetadataValue.int(int(summary["rows"].sum())),
                "path": dg.MetadataValue.path(written.path),
                "chart_path": dg.MetadataValue.path(chart_path),
                # The table's rows are instruments: the row count is theirs, not the source rows'.
                **table_metadata(SUMMARY_TABLE, written.path, written.rows, SUMMARY_COLUMNS),
                **built_from,
            },
        )

    return [
        with_code_references(_l1_imbalance_daily),
        with_code_references(_l1_imbalance_monthly_summary),
    ]


def _without_data(
    store: Warehouse,
    instrument: Instrument | None,
    month: Month,
    table_name: str,
    columns: dg.TableSchema,
    upstream: str,
    extra: dict[str, dg.MetadataValue] | None = None,
) -> dg.MaterializeResult:
    """A partition whose upstream has no rows: 0 rows, and its own earlier file withdrawn (kept
    under ``_withdrawn``), so no reader of the table finds numbers of data that is gone."""
    moved = store.withdraw(instrument, month, table_name)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(NO_DATA),
        metadata={
            "upstream": dg.MetadataValue.text(upstream),
            "rows": dg.MetadataValue.int(0),
            **({"withdrawn_to": dg.MetadataValue.path(moved)} if moved else {}),
            # The partition's address in the table, where no file is now.
            **table_metadata(table_name, store.uri(instrument, month, table_name), 0, columns),
            **(extra or {}),
        },
    )


def naive_utc(source: pd.DataFrame) -> pd.DataFrame:
    """``source`` with ``time`` as naive UTC. A time-zone-aware ``time`` (a caller's frame, a
    file an older version wrote) is converted, not relabelled, so days are UTC days and line up
    with the month's naive calendar."""
    times = source[TIME]
    if times.dt.tz is None:
        return source
    return source.assign(**{TIME: times.dt.tz_convert("UTC").dt.tz_localize(None)})


def published_until(source: pd.DataFrame, month: Month, today: date | None = None) -> datetime:
    """Where ``month``'s data is expected to end: the month's end once it is over; until then
    the end of the newest day any instrument has (the current month is published daily), so a
    month in progress is not called incomplete for days that do not exist yet."""
    source = naive_utc(source)
    today = today or clock.today()
    if month.end.date() <= today or source.empty:
        return month.end
    newest = source[TIME].max().floor("D").to_pydatetime() + timedelta(days=1)
    return min(month.end, newest)


def daily_stats(source: pd.DataFrame, month: Month, today: date | None = None) -> pd.DataFrame:
    """One row per instrument and published day of ``month``; a day without rows has rows 0 and
    NaNs."""
    source = naive_utc(source)
    stats = source.assign(date=source[TIME].dt.floor("D")).groupby([*INSTRUMENT_COLUMNS, "date"])
    stats = stats.agg(
        rows=(TIME, "size"),
        imbalance_ratio_mean=("imbalance_ratio", "mean"),
        imbalance_ratio_min=("imbalance_ratio", "min"),
        imbalance_ratio_max=("imbalance_ratio", "max"),
        bid_percentage_mean=("bid_percentage", "mean"),
    )
    end = published_until(source, month, today)
    days = pd.DataFrame({"date": pd.date_range(month.start, end, freq="D", inclusive="left")})
    every_day = source[INSTRUMENT_COLUMNS].drop_duplicates().merge(days, how="cross")
    stats = stats.reindex(pd.MultiIndex.from_frame(every_day)).reset_index()
    stats["rows"] = stats["rows"].fillna(0).astype("int64")
    stats["completeness"] = stats["rows"] / (DAY_SECONDS / stats["interval"].map(INTERVALS))
    stats["date"] = stats["date"].dt.date
    return stats


def monthly_summary(source: pd.DataFrame, month: Month, today: date | None = None) -> pd.DataFrame:
    """One row per instrument: rows, means over the month, completeness against the grid of the
    days published so far (the whole month once it is over)."""
    source = naive_utc(source)
    summary = (
        source.groupby(INSTRUMENT_COLUMNS)
        .agg(
            rows=(TIME, "size"),
            imbalance_ratio_mean=("imbalance_ratio", "mean"),
            bid_percentage_mean=("bid_percentage", "mean"),
        )
        .reset_index()
    )
    seconds = (published_until(source, month, today) - month.start).total_seconds()
    summary["completeness"] = summary["rows"] / (seconds / summary["interval"].map(INTERVALS))
    return summary


def daily_chart(daily: pd.DataFrame, month: Month) -> bytes:
    """PNG line chart of the daily mean imbalance_ratio, one line per instrument."""
    # Lines are labelled with the partition keys the UI shows (one key per instrument).
    instruments = daily[INSTRUMENT_COLUMNS].drop_duplicates()
    instruments["instrument"] = [Instrument(*i).key for i in instruments.itertuples(index=False)]
    lines = daily.merge(instruments, on=INSTRUMENT_COLUMNS).pivot_table(
        index="date", columns="instrument", values="imbalance_ratio_mean", dropna=False
    )
    figure = Figure(figsize=(9, 4), dpi=80, layout="constrained")
    axes = figure.add_subplot()
    axes.plot(lines.index, lines.to_numpy(), marker=".")
    axes.axhline(0, color="grey", linewidth=0.5)
    axes.set(title=f"Daily mean imbalance_ratio, {month}", xlabel="day", ylabel="imbalance_ratio")
    axes.xaxis.set_major_formatter(DateFormatter("%d"))
    figure.legend(lines.columns, loc="outside lower center", ncols=2, fontsize="small")
    sink = io.BytesIO()
    # No software version in the file: the same data gives the same bytes.
    figure.savefig(sink, format="png", metadata={"Software": None}, pil_kwargs={"optimize": True})
    return sink.getvalue()


def _to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """``frame`` as exactly ``schema``: what the catalog says the files hold is what they hold."""
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def _table(frame: pd.DataFrame) -> dg.MetadataValue:
    """A frame as Dagster table metadata, floats to 4 decimals: the UI renders it inline."""
    return table(frame.round(4).astype(str).to_dict("records"))
