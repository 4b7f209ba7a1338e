"""Real ``dagster-webserver`` and ``dagster-daemon`` processes on 127.0.0.1, steered over GraphQL.

Backfills, the run queue and pools only behave for real with the daemon and a code location
loaded the way a deployment loads it, so end-to-end tests and benchmarks start both processes
against a temporary DAGSTER_HOME and talk to them with the GraphQL the UI sends. The instance
config and the workspace are parameters: the same helper serves sqlite with the code location
loaded by the processes themselves, or Postgres with a separately started code server (start it
with :func:`start_service` and point the workspace at it with ``grpc_server``).

Every process gets its own process group, and stopping kills the whole group, so the code
servers and run workers the two spawn go with them, also when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from aperiodic_assets.defs._dagster_internals import PLANNED_SUBSET_ENV

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: Backfill statuses after which the daemon no longer touches a backfill.
TERMINAL_BACKFILL_STATUSES = frozenset(
    {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
)

# The mutations the UI sends, as found in dagster-webserver 1.13's bundle: "Launch backfill" in
# an asset's Materialize dialog, and "Re-execute" on the backfill page.
LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""
REEXECUTE_BACKFILL = """
mutation reexecuteBackfill($reexecutionParams: ReexecutionParams!) {
  reexecutePartitionBackfill(reexecutionParams: $reexecutionParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""
BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id
      status
      tags { key value }
      error { message }
      assetBackfillData {
        assetBackfillStatuses {
          ... on AssetPartitionsStatusCounts {
            assetKey { path }
            numPartitionsTargeted
            numPartitionsInProgress
            numPartitionsMaterialized
            numPartitionsFailed
          }
        }
      }
    }
    ... on PythonError { message }
    ... on Error { message }
  }
}
"""
BACKFILL_RUNS = """
query BackfillRuns($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    __typename
    ... on Runs { results { runId status creationTime startTime endTime tags { key value } } }
    ... on PythonError { message }
  }
}
"""
START_SENSOR = """
mutation StartSensor($sensorSelector: SensorSelector!) {
  startSensor(sensorSelector: $sensorSelector) {
    __typename
    ... on Sensor { name }
    ... on PythonError { message }
  }
}
"""
LOCATIONS = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""


class GraphQLError(Exception):
    """GraphQL answered with errors, or with an error type instead of the expected result."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


@dataclass
class Service:
    """One long-running process, leader of its own process group, logging to a file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-chars:]

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM to the group, then SIGKILL to whatever of it is left after ``grace_s``."""
        _signal_group(self.process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_s)
        # The group outlives its leader while children (code servers, run workers) remain.
        _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=grace_s)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def start_service(
    name: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_dir: Path
) -> Service:
    """Start ``argv`` in a new session (so :meth:`Service.stop` reaches its whole tree)."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(name, process, log_path)


@dataclass
class DagsterServices:
    """A running webserver (+ daemon) and the GraphQL calls the UI makes for backfills."""

    home: Path
    url: str
    webserver: Service
    daemon_argv: list[str]
    env: dict[str, str]
    cwd: Path
    daemon: Service | None = None

    def start_daemon(self) -> Service:
        """Start the daemon if it is not running (tests may queue work for its first tick)."""
        if self.daemon is None:
            self.daemon = start_service(
                "dagster-daemon", self.daemon_argv, env=self.env, cwd=self.cwd, log_dir=self.home
            )
        return self.daemon

    def stop(self) -> None:
        for service in (self.daemon, self.webserver):
            if service is not None:
                service.stop()

    def graphql(
        self, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise GraphQLError(f"HTTP {exc.code}: {exc.read()[:2000]!r}") from None
        if payload.get("errors"):
            raise GraphQLError(json.dumps(payload["errors"])[:4000])
        return payload["data"]

    def start_sensor(self, location: str, sensor: str) -> None:
        """What the UI's sensor toggle sends (sensors ship stopped)."""
        selector = {
            "repositoryLocationName": location,
            "repositoryName": "__repository__",
            "sensorName": sensor,
        }
        result = self.graphql(START_SENSOR, {"sensorSelector": selector})["startSensor"]
        if result["__typename"] != "Sensor":
            raise GraphQLError(f"starting {sensor}: {result}")

    def launch_backfill(
        self, asset_key: Sequence[str], partition_names: Sequence[str], title: str | None = None
    ) -> str:
        """What the UI's "Launch backfill" sends for selected partitions of an asset."""
        params: dict[str, Any] = {
            "tags": [],
            "assetSelection": [{"path": list(asset_key)}],
            "partitionNames": list(partition_names),
            "fromFailure": False,
        }
        if title:
            params["title"] = title
        data = self.graphql(LAUNCH_BACKFILL, {"backfillParams": params})
        return _backfill_id(data["launchPartitionBackfill"])

    def reexecute_backfill(self, backfill_id: str, strategy: str = "FROM_FAILURE") -> str:
        """The backfill page's "Re-execute" (FROM_FAILURE: only what did not materialize)."""
        variables = {"reexecutionParams": {"parentRunId": backfill_id, "strategy": strategy}}
        data = self.graphql(REEXECUTE_BACKFILL, variables)
        return _backfill_id(data["reexecutePartitionBackfill"])

    def backfill(self, backfill_id: str) -> dict[str, Any]:
        result = self.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        if result["__typename"] != "PartitionBackfill":
            raise GraphQLError(f"backfill {backfill_id}: {result}")
        return result

    def backfill_runs(self, backfill_id: str) -> list[dict[str, Any]]:
        result = self.graphql(BACKFILL_RUNS, {"id": backfill_id})["runsOrError"]
        if result["__typename"] != "Runs":
            raise GraphQLError(f"runs of backfill {backfill_id}: {result}")
        return result["results"]

    def wait_for(
        self, what: str, probe: Callable[[], T | None | bool], timeout: float, poll_s: float = 1.0
    ) -> T:
        """Poll ``probe()`` until it returns something truthy; fail early if a service died."""
        deadline = time.monotonic() + timeout
        while True:
            for service in (self.webserver, self.daemon):
                if service is not None and not service.alive:
                    raise RuntimeError(
                        f"{service.name} exited while waiting for {what}:\n{service.log_tail()}"
                    )
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                logs = self.daemon.log_tail() if self.daemon else "(no daemon running)"
                raise TimeoutError(f"{what}: not after {timeout:.0f}s\n{logs}")
            time.sleep(poll_s)

    def wait_backfill(self, backfill_id: str, timeout: float) -> dict[str, Any]:
        """The backfill once the daemon has finished with it (a terminal status)."""
        return self.wait_for(
            f"backfill {backfill_id} to finish",
            lambda: (b := self.backfill(backfill_id))["status"] in TERMINAL_BACKFILL_STATUSES and b,
            timeout,
        )

    def wait_runs_finished(
        self, backfill_id: str, expected_runs: int, timeout: float
    ) -> list[dict[str, Any]]:
        """The backfill's runs, once ``expected_runs`` of them exist and none is in flight."""

        def finished() -> list[dict[str, Any]] | None:
            runs = self.backfill_runs(backfill_id)
            done = len(runs) >= expected_runs and all(r["status"] in _RUN_DONE for r in runs)
            return runs if done else None

        return self.wait_for(f"runs of backfill {backfill_id}", finished, timeout, poll_s=0.5)

    def location_loaded(self) -> bool:
        """True once every code location of the workspace loaded (raises on a load error)."""
        try:
            data = self.graphql(LOCATIONS, timeout=10)
        except (OSError, GraphQLError):
            return False  # not listening yet
        entries = data["workspaceOrError"].get("locationEntries") or []
        for entry in entries:
            error = entry["locationOrLoadError"]
            if error and error["__typename"] == "PythonError":
                raise RuntimeError(f"code location {entry['name']}: {error['message']}")
        return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


_RUN_DONE = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


def _backfill_id(result: Mapping[str, Any]) -> str:
    if result["__typename"] != "LaunchBackfillSuccess":
        raise GraphQLError(f"{result['__typename']}: {result.get('message')}")
    return str(result["backfillId"])


@contextmanager
def dagster_services(
    home: Path,
    *,
    instance_config: Mapping[str, Any] | None = None,
    workspace: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO_ROOT,
    start_daemon: bool = True,
    ready_timeout: float = 120.0,
) -> Iterator[DagsterServices]:
    """Webserver and daemon on ``home`` (an empty folder), stopped on exit whatever happens.

    ``instance_config`` becomes ``home/dagster.yaml`` and ``workspace`` ``home/workspace.yaml``
    (default: the repository's own dagster_home/dagster.yaml and workspace.yaml);
    ``env`` is added to this process's environment (DAGSTER_HOME is set here). Yields once the
    webserver has loaded every code location and the daemon was started; with
    ``start_daemon=False`` the caller starts it (:meth:`DagsterServices.start_daemon`).
    """
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    instance_config = instance_config or load_yaml(REPO_ROOT / "dagster_home" / "dagster.yaml")
    workspace = workspace or load_yaml(REPO_ROOT / "workspace.yaml")
    (home / "dagster.yaml").write_text(yaml.safe_dump(dict(instance_config), sort_keys=False))
    workspace_file = home / "workspace.yaml"
    workspace_file.write_text(yaml.safe_dump(dict(workspace), sort_keys=False))
    full_env = {**PLANNED_SUBSET_ENV, **(env or {}), "DAGSTER_HOME": str(home)}
    port = free_port()
    webserver_argv = [
        BIN / "dagster-webserver",
        "-h",
        "127.0.0.1",
        "-p",
        port,
        "-w",
        workspace_file,
    ]
    webserver = start_service(
        "dagster-webserver", [str(a) for a in webserver_argv], env=full_env, cwd=cwd, log_dir=home
    )
    services = DagsterServices(
        home=home,
        url=f"http://127.0.0.1:{port}",
        webserver=webserver,
        daemon_argv=[str(BIN / "dagster-daemon"), "run", "-w", str(workspace_file)],
        env=full_env,
        cwd=cwd,
    )
    try:
        # The daemon starts once the webserver is up: two processes creating the storage of a
        # fresh instance at once can both stamp its schema ("more than one head").
        services.wait_for("the code location to load", services.location_loaded, ready_timeout)
        if start_daemon:
            services.start_daemon()
        yield services
    finally:
        services.stop()
