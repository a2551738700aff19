"""Serving the annotation app: the token, the address checks, uvicorn in the foreground or
in a thread.

The app labels data under the data root and writes to its annotation logs and blacklist,
so it is private by default: it binds to a loopback address and every API call needs a
random token (``secrets.token_urlsafe``) that only the person who started it sees, in the
URL printed at start. Binding to any other address is refused unless asked for
explicitly (``allow_remote``), and then it is the caller's job to warn: anyone who can
reach the port and learns the token can label, grade and blacklist.

A port already in use is found before uvicorn starts (uvicorn would log an OS error and
exit), so the user reads one error naming the address and port.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from moola.core.errors import ConfigError

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

__all__ = [
    "DEFAULT_HOST",
    "ServerThread",
    "app_url",
    "check_host",
    "check_port_free",
    "free_port",
    "is_loopback",
    "new_token",
    "serve",
]

DEFAULT_HOST = "127.0.0.1"


def new_token() -> str:
    """A fresh random token for one server's lifetime (32 bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, *, allow_remote: bool) -> bool:
    """Refuse a non-loopback ``host`` unless ``allow_remote``; True when it is remote.

    ``ConfigError`` names ``host`` and says what binding to it exposes.
    """
    if is_loopback(host):
        return False
    if not allow_remote:
        raise ConfigError(
            f"host {host!r} is not a loopback address: the annotation app would be reachable "
            "from other machines, and anyone with the token could label, grade and blacklist "
            f"windows. Use {DEFAULT_HOST}, or allow it explicitly (allow_remote).",
            param="host",
        )
    return True


def check_port_free(host: str, port: int) -> None:
    """``ConfigError`` naming ``host:port`` when that port cannot be bound (in use, or not
    allowed); nothing is left open."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == 98 else f"cannot be bound ({exc.strerror})"
            raise ConfigError(
                f"port {port} on {host} {reason}; choose another port, or stop what listens there.",
                param="port",
            ) from None


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def app_url(host: str, port: int, token: str, path: str = "/") -> str:
    """The URL to open: the page with the token, which the page keeps in a cookie."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    joiner = "&" if "?" in path else "?"
    return f"http://{shown}:{port}{path}{joiner}token={token}"


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    import uvicorn

    return uvicorn.Config(
        app, host=host.strip("[]"), port=port, log_level="warning", access_log=False, lifespan="off"
    )


def serve(app: FastAPI, *, host: str, port: int) -> None:
    """Run ``app`` with uvicorn until interrupted (Ctrl-C). Check the port first."""
    import uvicorn

    check_port_free(host, port)
    uvicorn.Server(_config(app, host, port)).run()


@dataclass
class ServerThread:
    """``app`` served by uvicorn in a daemon thread (tests, benchmarks, screenshots).

    Use as a context manager: on entry it waits until the server accepts connections;
    on exit it asks uvicorn to stop and joins the thread.
    """

    app: FastAPI
    host: str = DEFAULT_HOST
    port: int = 0

    def __enter__(self) -> ServerThread:
        import uvicorn

        if self.port == 0:
            self.port = free_port(self.host)
        self._server = uvicorn.Server(_config(self.app, self.host, self.port))
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="moola-app")
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        return self

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
