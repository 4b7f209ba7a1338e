"""A throwaway PostgreSQL cluster for tests: its own folder, a free 127.0.0.1 port, removed after;
and a throwaway PgBouncer in front of it, as the production deployment has.

Uses Debian's ``postgresql`` server binaries and ``pgbouncer`` (``make test`` installs them,
tools/system-deps). PostgreSQL and PgBouncer both refuse to run as root, so under root they run
as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    db_name: str

    @property
    def env(self) -> dict[str, str]:
        """The variables dagster.prod.yaml reads its storage settings from."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.db_name,
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
        }

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.db_name}"


def server_bin() -> Path | None:
    """The newest installed server's bin folder, or None when no server is installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(found[-1]).parent if found else None


def _version(path: str) -> int:
    return int(Path(path).parent.parent.name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    bin_dir = server_bin()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL server installed: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    password = "test-" + os.urandom(6).hex()
    pwfile = root / "pw"
    pwfile.write_text(password)
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres", "postgres")
    port = _free_port()
    run = dict(check=True, capture_output=True, text=True)
    subprocess.run(
        _as_owner(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "dagster",
                "-A",
                "scram-sha-256",
                f"--pwfile={pwfile}",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        **run,
    )
    server = subprocess.Popen(
        _as_owner(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(root),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        env = dict(os.environ, PGPASSWORD=password)
        deadline = time.monotonic() + 30
        while subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        ).returncode:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start: {server.stderr.read()[-2000:]}")
            time.sleep(0.1)
        subprocess.run(
            [
                str(bin_dir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "dagster",
                "dagster",
            ],
            env=env,
            **run,
        )
        yield Postgres("127.0.0.1", port, "dagster", password, "dagster")
    finally:
        _stop(server)
        shutil.rmtree(root, ignore_errors=True)


#: PgBouncer's settings for the tests and benchmarks, the ones docs/deploy.md recommends.
#: ``transaction``: a client holds a server connection only for a transaction, so the many
#: short-lived connections of Dagster's processes (one per storage operation, ``NullPool``)
#: share a few long-lived server connections. ``md5`` between clients and the pooler: a SCRAM
#: login costs the client its key derivation (4096 rounds, ~3 ms here) on every connection,
#: more than the server process the pooler saves; the pooler logs in to the cluster with SCRAM
#: once per server connection. ``server_reset_query_always``: the webserver sets
#: ``statement_timeout`` on its connections, a session setting that transaction pooling would
#: otherwise leave on whichever server connection ran it, for a daemon's or run's next
#: transaction to inherit; ``DISCARD ALL`` after every transaction clears it.
PGBOUNCER_SETTINGS = {
    "auth_type": "md5",
    "pool_mode": "transaction",
    "max_client_conn": "500",
    "default_pool_size": "20",
    "server_reset_query": "DISCARD ALL",
    "server_reset_query_always": "1",
}


def pgbouncer_bin() -> Path | None:
    """Debian's pgbouncer (in /usr/sbin, which a non-root PATH may lack), or None."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    return Path(found) if found else None


@contextmanager
def pgbouncer_pool(pg: Postgres, **settings: str) -> Iterator[Postgres]:
    """A throwaway PgBouncer in front of ``pg`` on a free 127.0.0.1 port, stopped after.

    Yields ``pg`` as seen through the pooler: the same database, user and password, the pooler's
    port, so its ``env`` points dagster.prod.yaml's storage at the pooler. ``auth_file`` holds
    the password: PgBouncer checks clients against it and logs in to the cluster's
    scram-sha-256 with it. The user is also the pooler's admin: connect to the
    database ``pgbouncer`` on the same port for ``SHOW POOLS`` / ``SHOW STATS``
    (:func:`pgbouncer_show`). ``settings`` override :data:`PGBOUNCER_SETTINGS`.
    """
    binary = pgbouncer_bin()
    if binary is None:
        raise RuntimeError("PgBouncer is not installed: apt-get install pgbouncer")
    root = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    port = _free_port()
    (root / "userlist.txt").write_text(f'"{pg.user}" "{pg.password}"\n')
    config = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": "",
        "auth_file": str(root / "userlist.txt"),
        "admin_users": pg.user,
        "logfile": str(root / "pgbouncer.log"),
        "log_connections": "0",
        "log_disconnections": "0",
        **PGBOUNCER_SETTINGS,
        **settings,
    }
    (root / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{pg.db_name} = host={pg.host} port={pg.port} dbname={pg.db_name}\n"
        "[pgbouncer]\n" + "".join(f"{key} = {value}\n" for key, value in config.items())
    )
    if os.geteuid() == 0:
        for path in (root, root / "userlist.txt", root / "pgbouncer.ini"):
            shutil.chown(path, "postgres", "postgres")
    # Quiet (-q): it logs to its logfile only, never into a pipe nobody reads.
    bouncer = subprocess.Popen(
        _as_owner([str(binary), "-q", str(root / "pgbouncer.ini")]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        pooled = Postgres("127.0.0.1", port, pg.user, pg.password, pg.db_name)
        deadline = time.monotonic() + 30
        while True:
            try:
                pgbouncer_show(pooled, "VERSION")
                break
            except psycopg2.OperationalError:
                if bouncer.poll() is not None or time.monotonic() > deadline:
                    log = root / "pgbouncer.log"
                    tail = log.read_text()[-2000:] if log.exists() else ""
                    raise RuntimeError(f"pgbouncer did not start: {tail}") from None
                time.sleep(0.1)
        yield pooled
    finally:
        _stop(bouncer)
        shutil.rmtree(root, ignore_errors=True)


def pgbouncer_show(pooled: Postgres, what: str) -> list[dict[str, object]]:
    """``SHOW <what>`` on a :func:`pgbouncer_pool`'s admin console, one dict per row."""
    conn = psycopg2.connect(
        host=pooled.host,
        port=pooled.port,
        user=pooled.user,
        password=pooled.password,
        dbname="pgbouncer",
    )
    try:
        conn.autocommit = True  # the admin console knows no transactions
        with conn.cursor() as cur:
            cur.execute(f"SHOW {what}")
            names = [column.name for column in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
