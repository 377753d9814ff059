"""The process loop every stand-in shares: a data port that can go down, and a control port."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from tools.standins.faults import FaultControl, FaultState

log = logging.getLogger("standins")

# How long in-flight data requests get when the port goes down before they are cut off.
_DOWN_GRACE_S = 0.2


class DataListener:
    """The data application's listener; it can stop listening and reopen on the same port."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=_DOWN_GRACE_S)
        self._host = host
        self.port = port
        self._site: web.TCPSite | None = None

    async def start(self) -> None:
        """Set the application up and start listening."""
        await self._runner.setup()
        await self.open()

    async def open(self) -> None:
        """Listen on the data port (again); no-op while listening."""
        if self._site is not None:
            return
        site = web.TCPSite(self._runner, self._host, self.port)
        await site.start()
        self._site = site
        # A port of 0 is resolved once, so a reopen after `down` lands on the same port.
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        """Stop listening and drop open connections, so clients see connection refused."""
        if self._site is None:
            return
        await self._site.stop()
        self._site = None
        server = self._runner.server
        if server is not None:
            # Keep-alive connections would otherwise still reach a "down" server.
            await server.shutdown(_DOWN_GRACE_S)

    async def cleanup(self) -> None:
        """Stop for good."""
        self._site = None
        await self._runner.cleanup()


def base_parser(description: str) -> argparse.ArgumentParser:
    """Command-line options every stand-in takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="interface of both ports")
    parser.add_argument("--port", type=int, required=True, help="data port")
    parser.add_argument("--control-port", type=int, required=True, help="control API port")
    return parser


class StandinState(Protocol):
    """What the control API of a stand-in needs from its state."""

    faults: FaultState

    def reset(self) -> None:
        """Drop all data and counters."""
        ...

    def stats(self) -> Mapping[str, Any]:
        """The counters `GET /stats` shows."""
        ...


def run(
    data_app: web.Application, *, name: str, args: argparse.Namespace, state: StandinState
) -> None:
    """Serve the data and control APIs (ports from `base_parser` options) until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(message)s")
    asyncio.run(
        _serve(
            data_app,
            name,
            args.host,
            args.port,
            args.control_port,
            state.faults,
            state.reset,
            state.stats,
        )
    )


async def _serve(
    data_app: web.Application,
    name: str,
    host: str,
    port: int,
    control_port: int,
    faults: FaultState,
    reset: Callable[[], None],
    stats: Callable[[], Mapping[str, Any]],
) -> None:
    listener = DataListener(data_app, host, port)

    async def follow_faults() -> None:
        if faults.is_down():
            await listener.close()
        else:
            await listener.open()

    control = FaultControl(faults, on_change=follow_faults, reset=reset, stats=stats)
    control_runner = web.AppRunner(control.app(), access_log=None, shutdown_timeout=_DOWN_GRACE_S)
    await listener.start()
    await control_runner.setup()
    await web.TCPSite(control_runner, host, control_port).start()
    log.info(
        "data on http://%s:%d, control on http://%s:%d", host, listener.port, host, control_port
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await control_runner.cleanup()
        await listener.cleanup()
