"""``make screenshots``: what the Dagster UI shows after the demo, as PNGs for the README.

The pictures must show what a fresh clone shows, so each run builds a new instance (temporary
DAGSTER_HOME with the repository's dagster.yaml, temporary warehouse), fills it with the demo and
with one month the sandbox corrupts so that validation rejects it, serves it with
dagster-webserver on 127.0.0.1 and photographs it in headless Chromium. tests/test_ui_browser.py
runs the same path on two instruments and reads the pages' text.

Playwright drives Debian's ``chromium`` (or the binary in ``CHROMIUM``); it downloads no browser.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from PIL import Image
from playwright.sync_api import Page, sync_playwright

from ..core import clock
from ..core.months import Month
from ..core.universe import DEFAULT_UNIVERSE, Instrument, load_universe
from ..defs._dagster_internals import PLANNED_SUBSET_ENV
from ..defs.assets.reporting import VALIDATION_CHECK
from ..sandbox import RemoteSandbox
from .demo import SANDBOX_KEY, sandbox_process

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTANCE_CONFIG = REPO_ROOT / "dagster_home" / "dagster.yaml"
DEFAULT_OUT = REPO_ROOT / "docs" / "img"
VIEWPORT = {"width": 1600, "height": 1000}
#: Without the background-networking flags Chromium calls Google's services at start-up.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The sandbox's corruption for the rejected month: bid% + ask% no longer sum to 1 in some rows.
CORRUPTION = "broken_identity"
#: The check of ``validation.CHECKS`` and its rule that the corruption fails.
FAILING_CHECK, FAILING_RULE = "identities", "pct_sum_to_one"
ASSET_PATH = "/assets/aperiodic/l1_imbalance"
SUMMARY_PATH = "/assets/aperiodic/l1_imbalance_monthly_summary"
#: Dagster's MiddleTruncate: a visible span with the cut text inside an element titled in full.
TRUNCATED = "[class*='MiddleTruncate_container']"
GRAPH = "svg[class*='AssetGraphExplorer_svgContainer']"
NOT_LOOPBACK = re.compile(r"^(?!https?://127\.0\.0\.1[:/])")
#: A check's detail, About section: whether a failure stops downstream assets.
BLOCKING = re.compile(r"This is a (blocking|non-blocking) asset check")
WAIT_MS = 60_000


class ChromiumMissing(RuntimeError):
    """No Chromium binary to drive."""


def find_chromium() -> str:
    """The Chromium binary: ``CHROMIUM`` if set, else ``chromium`` on the PATH."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not path or not Path(path).exists():
        raise ChromiumMissing(
            "Chromium not found: install it (Debian: apt-get install chromium) or set CHROMIUM"
            " to a Chromium binary; Playwright drives it and downloads no browser of its own."
        )
    return path


@dataclass(frozen=True)
class DemoInstance:
    """A filled instance: where it lives and what is in it."""

    home: Path
    env: dict[str, str]
    instruments: tuple[Instrument, ...]
    rejected: str

    @property
    def newest_key(self) -> str:
        """The partition the partitions view opens on: the first instrument's newest month with
        data, the one holding yesterday (on the 1st, the current month has no file yet)."""
        yesterday = clock.today() - timedelta(days=1)
        return f"{self.instruments[0].key}|{Month.of(yesterday).key}"


@dataclass(frozen=True)
class UiText:
    """What the pages say, as a person reads it."""

    #: Partitions view: full instrument key -> the text shown in the instrument column.
    instrument_labels: dict[str, str]
    #: Checks tab: the validation check's state in the check list (its latest execution).
    check_state: str
    #: The validation check's detail: its latest execution, partition, message and metadata.
    failing_check_text: str
    #: Whether the validation check's detail says it is blocking.
    check_blocking: bool


def first_demo_month(n_months: int) -> Month:
    """The first of the demo's months: it materializes the current one and those before it."""
    month = Month.of(clock.today())
    for _ in range(n_months - 1):
        month = month.previous()
    return month


@contextmanager
def demo_instance(
    workdir: Path, n_months: int, universe: Path | None = None
) -> Iterator[DemoInstance]:
    """The demo's partitions plus one rejected month, in a new instance under ``workdir``.

    The rejected month is the first instrument's month before the demo's months; it runs last,
    so the asset's checks show its results. The sandbox it came from stays up while in use, so
    the UI's code location points at a live API.
    """
    home = workdir / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(INSTANCE_CONFIG, home / "dagster.yaml")
    universe = universe or DEFAULT_UNIVERSE
    env = {
        "DAGSTER_HOME": str(home),
        "WAREHOUSE_URL": str(workdir / "warehouse"),
        "APERIODIC_UNIVERSE": str(universe),
        **PLANNED_SUBSET_ENV,
    }
    instruments = load_universe(universe).instruments
    rejected_month = first_demo_month(n_months).previous()
    rejected = f"{instruments[0].key}|{rejected_month.key}"
    _run([sys.executable, "-m", "aperiodic_assets.tools.demo", "--months", str(n_months)], env)
    with sandbox_process([]) as api_url:
        env |= {"APERIODIC_API_URL": api_url, "APERIODIC_API_KEY": SANDBOX_KEY}
        first = instruments[0]
        RemoteSandbox(api_url).corrupt(CORRUPTION, first.exchange, first.symbol, rejected_month)
        materialize = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize"]
        materialize += ["-m", "aperiodic_assets.definitions", "--select", "aperiodic/l1_imbalance"]
        result = _run([*materialize, "--partition", rejected], env, check=False, quiet=True)
        if result.returncode == 0:
            raise RuntimeError(f"{rejected} was materialized: the sandbox did not corrupt it")
        yield DemoInstance(home, env, instruments, rejected)


def _run(
    argv: list[str], env: dict[str, str], check: bool = True, quiet: bool = False
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, cwd=REPO_ROOT, env={**os.environ, **env}, text=True, capture_output=quiet
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {result.returncode}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def webserver(instance: DemoInstance, timeout_s: float = 120.0) -> Iterator[str]:
    """dagster-webserver on the instance, on a free 127.0.0.1 port; yields its URL once loaded."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1"]
    argv += ["-p", str(port), "-w", str(REPO_ROOT / "workspace.yaml")]
    log_path = instance.home / "webserver.log"
    with log_path.open("wb") as log:
        # Its own session: stopping it also stops the code server it starts.
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env={**os.environ, **instance.env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while not _location_loaded(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"dagster-webserver did not load the code location:\n{tail}")
            time.sleep(0.5)
        # The "join the community" dialog would cover every page; the UI's Skip does the same.
        _graphql(url, "mutation { setNuxSeen }")
        yield url
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL: {payload['errors']}")
    return payload["data"]


def _location_loaded(url: str) -> bool:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
    try:
        entries = _graphql(url, query)["workspaceOrError"].get("locationEntries") or []
    except (OSError, urllib.error.URLError):
        return False
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


def photograph(url: str, instance: DemoInstance, out_dir: Path) -> UiText:
    """Open the pages a person looks at after the demo, save them as PNGs, return their text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="chromium-") as profile,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=find_chromium(),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=VIEWPORT,
        )
        # Loopback only: whatever else the UI asks for is refused, not looked up.
        browser.route(NOT_LOOPBACK, lambda route: route.abort())
        try:
            page = browser.new_page()
            page.set_default_timeout(WAIT_MS)
            _lineage(page, url, out_dir / "lineage.png")
            labels = _partitions(page, url, instance, out_dir / "partitions.png")
            state, detail = _checks(page, url, instance, out_dir / "rejected_month_checks.png")
            blocking = _blocking(page, url, VALIDATION_CHECK)
            _summary(page, url, out_dir / "monthly_summary.png", out_dir / "summary_chart.png")
        finally:
            browser.close()
    return UiText(labels, state, detail, blocking)


def _open(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")


def _lineage(page: Page, url: str, path: Path) -> None:
    """The global lineage graph, cropped to its nodes: at full width their text is too small."""
    _open(page, f"{url}/asset-groups")
    for name in ("l1_imbalance", "l1_imbalance_daily", "l1_imbalance_monthly_summary"):
        page.get_by_text(name, exact=True).last.wait_for()
    page.get_by_text("filled").nth(2).wait_for()  # every node's partition counts loaded
    nodes = page.locator(f"{GRAPH} foreignObject").all()
    boxes = [box for node in nodes if (box := node.bounding_box())]
    left, top = min(b["x"] for b in boxes), min(b["y"] for b in boxes)
    right = max(b["x"] + b["width"] for b in boxes)
    bottom = max(b["y"] + b["height"] for b in boxes)
    margin = 32
    clip = {
        "x": max(left - margin, 0),
        "y": max(top - margin, 0),
        "width": right - left + 2 * margin,
        "height": bottom - top + 2 * margin,
    }
    _save(page, path, clip)


def _partitions(page: Page, url: str, instance: DemoInstance, path: Path) -> dict[str, str]:
    """The partitions view, opened on the first instrument's newest month."""
    _open(page, f"{url}{ASSET_PATH}?view=partitions&partition={quote(instance.newest_key)}")
    page.get_by_text("Failed (1)").wait_for()
    page.get_by_text("through", exact=True).wait_for()
    keys = {i.key for i in instance.instruments}
    labels = {}
    for element in page.locator(TRUNCATED).all():
        title = element.get_attribute("title")
        if title in keys and element.is_visible():
            labels[title] = element.locator("span").inner_text()
    _save(page, path)
    return labels


def _checks(page: Page, url: str, instance: DemoInstance, path: Path) -> tuple[str, str]:
    """The asset's validation check open: its latest execution is the rejected month."""
    _open(page, f"{url}{ASSET_PATH}?view=checks&checkDetail={VALIDATION_CHECK}")
    page.get_by_text(instance.rejected, exact=True).wait_for()
    # The check list: the name (truncated in the middle if long), its state below it.
    name = page.locator(f"{TRUNCATED}[title='{VALIDATION_CHECK}']").first
    state = name.locator("xpath=following-sibling::span").inner_text()
    body = page.inner_text("body")
    _save(page, path)
    return state, body[body.index("Latest execution") :]


def _blocking(page: Page, url: str, check: str) -> bool:
    """Whether a check's detail says it is blocking (a failure stops downstream assets)."""
    _open(page, f"{url}{ASSET_PATH}?view=checks&checkDetail={check}")
    about = page.get_by_text(BLOCKING).first
    about.wait_for()
    (kind,) = BLOCKING.findall(about.inner_text())
    return kind == "blocking"


def _summary(page: Page, url: str, table_path: Path, chart_path: Path) -> None:
    """The monthly summary's page (its table), then its chart, one click away."""
    _open(page, f"{url}{SUMMARY_PATH}")
    page.get_by_text("[Show Markdown]").wait_for()  # the chart's row, after the table's
    _save(page, table_path)
    page.get_by_text("[Show Markdown]").click()
    chart = page.get_by_role("dialog").locator("img")
    chart.wait_for()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=chart.element_handle()
    )
    _save(page, chart_path)


def _save(page: Page, path: Path, clip: dict[str, float] | None = None) -> None:
    """A screenshot as a 256-colour PNG: UI pictures lose nothing visible and shrink ~3x."""
    page.screenshot(path=path, clip=clip, animations="disabled", caret="hide")
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(256, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the PNGs")
    parser.add_argument("--months", type=int, default=3, help="demo months, the current included")
    args = parser.parse_args(argv)
    find_chromium()  # before minutes of set-up
    with (
        tempfile.TemporaryDirectory(prefix="aperiodic-screenshots-") as workdir,
        demo_instance(Path(workdir), args.months) as instance,
        webserver(instance) as url,
    ):
        text = photograph(url, instance, args.out)
    for png in sorted(args.out.glob("*.png")):
        print(f"{png} {png.stat().st_size // 1024} KiB")
    print(f"{VALIDATION_CHECK} check of {instance.rejected}: {text.check_state}", end="")
    print(f" ({'blocking' if text.check_blocking else 'not blocking'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
