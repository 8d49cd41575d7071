"""Where `vgs serve` listens and how it stops: the address is checked before the models load (a bad host or
a taken port is one line in a second, not after a minute of loading), and Ctrl-C stops it with exit 130."""

from __future__ import annotations

import errno
import socket
import time
from typing import Callable

from vgs_cli.errors import Interrupted, VgsError

LOCAL = ("127.0.0.1", "localhost", "::1")


def check_listen(host: str, port: int) -> None:
    """Bind `host:port` once and let go: a one-line VgsError naming what is wrong (the host or the port)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise VgsError(f"--host {host} is not an address or a name that resolves ({reason}); use 127.0.0.1 "
                       "(this machine only) or 0.0.0.0 (every network)") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # as uvicorn binds: a port still in TIME_WAIT from an earlier server is free, one in use is not
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise VgsError(f"port {port} on {host} is already in use (another vgs serve?); pick another --port "
                               "or stop the program using it") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise VgsError(f"--host {host} is not an address of this machine; use 127.0.0.1 (this machine "
                               "only), 0.0.0.0 (every network) or one of this machine's addresses") from None
            if exc.errno == errno.EACCES:
                raise VgsError(f"port {port} needs administrator rights (ports below 1024); pick a --port above "
                               "1023") from None
            raise VgsError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --host or --port") from None


def wait_until_interrupted(is_running: Callable[[], bool], stop: Callable[[], None], what: str) -> None:
    """Block while the server runs; Ctrl-C stops it and raises `Interrupted` (exit 130, as every vgs command)."""
    try:
        while is_running():
            time.sleep(0.2)
    except KeyboardInterrupt:
        stop()
        raise Interrupted(f"vgs serve stopped; {what}") from None
