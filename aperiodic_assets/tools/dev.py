"""``make dev``: the sandbox API plus ``dagster dev`` (webserver and daemon) on 127.0.0.1.

For the real API run ``dagster dev -w workspace.yaml`` with APERIODIC_API_KEY set instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from ..defs._dagster_internals import PLANNED_SUBSET_ENV
from .demo import SANDBOX_KEY, sandbox_process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    parser.add_argument("--sandbox-arg", action="append", default=[], help="passed to the sandbox")
    args = parser.parse_args(argv)
    with sandbox_process(args.sandbox_arg) as api_url:
        env = dict(os.environ, APERIODIC_API_URL=api_url, APERIODIC_API_KEY=SANDBOX_KEY)
        env.update(PLANNED_SUBSET_ENV)  # the webserver and daemon create runs
        env.setdefault("WAREHOUSE_URL", "warehouse")
        print(f"sandbox API at {api_url}; Dagster UI on http://127.0.0.1:{args.port}", flush=True)
        cmd = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml"]
        cmd += ["-h", "127.0.0.1", "-p", str(args.port)]
        try:
            return subprocess.call(cmd, env=env)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
