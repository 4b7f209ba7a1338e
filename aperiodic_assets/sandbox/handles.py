"""Handles on a sandbox: one run in this process, or one steered in another over HTTP.

:class:`Sandbox` runs a server in a daemon thread; :class:`RemoteSandbox` steers a sandbox in
another process through its admin endpoints. Owns the server's lifecycle (start, stop, context
manager), its URLs, and each handle's ``_call``: how a steering action reaches the state. The
steering methods themselves come from :class:`~.steering.Steering`. Never imports dagster.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import replace
from typing import Any

from ..core.months import Month
from .api import API_PREFIX
from .handler import Server
from .state import SandboxConfig, SandboxState
from .steering import ACTIONS, ADMIN_PREFIX, Steering


class Sandbox(Steering):
    """A sandbox server in a daemon thread of this process.

    ``with Sandbox(SandboxConfig(today=date(2026, 9, 15))) as sb: get(sb.base_url + ...)``.
    The steering methods are thread-safe and take effect on the next request.
    """

    def __init__(self, config: SandboxConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or SandboxConfig(), **overrides)
        self.state = SandboxState(self.config)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Sandbox:
        if self._server is None:
            self._server = Server((self.config.host, self.config.port), self.state)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"aperiodic-sandbox-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; stalled responses are woken and idle connections closed."""
        server, self._server = self._server, None
        if server is None:
            return
        self.state.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        """``http://HOST:PORT`` (admin endpoints live under ``/_sandbox/``)."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as the official client's ``base_url``: ``http://HOST:PORT/api/v1``."""
        return self.root_url + API_PREFIX

    def _call(self, name: str, **kwargs: Any) -> Any:
        return ACTIONS[name].call(self.state, **kwargs)


def _json_value(value: object) -> str:
    """A steering argument JSON has no type for: a month as its key, a date as ISO text."""
    return value.key if isinstance(value, Month) else str(value)


class RemoteSandbox(Steering):
    """Steers a sandbox running in another process through its admin endpoints.

    Same steering methods as :class:`Sandbox`; accepts the root URL or the ``/api/v1`` base URL.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        url = url.rstrip("/")
        self.root_url = url[: -len(API_PREFIX)] if url.endswith(API_PREFIX) else url
        self.base_url = self.root_url + API_PREFIX
        self.timeout = timeout

    def _call(self, name: str, **kwargs: Any) -> Any:
        """GET a read action, POST a change with ``kwargs`` as its JSON body."""
        action = ACTIONS[name]
        data = None if action.reads else json.dumps(kwargs, default=_json_value).encode()
        request = urllib.request.Request(
            f"{self.root_url}{ADMIN_PREFIX}{action.path}",
            data=data,
            method="GET" if action.reads else "POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ValueError(
                f"sandbox admin {action.path} failed: HTTP {exc.code} {detail}"
            ) from None
