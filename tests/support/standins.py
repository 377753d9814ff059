"""Stand-ins (`tools/standins`) as real subprocesses on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support.procs import ROOT, free_port, wait_until


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class Standin:
    """`python -m tools.standins.<name>` with its data and control ports, and its control API."""

    def __init__(self, name: str, log_dir: Path, *options: str) -> None:
        self.name = name
        self.port, self.control_port = _free_ports(2)
        self.log_path = log_dir / f"standin-{name}-{self.port}.log"
        self.args = [
            sys.executable,
            "-m",
            f"tools.standins.{name}",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--control-port",
            str(self.control_port),
            *options,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        # trust_env=False: a proxy from the environment must not sit between us and loopback.
        self._control = httpx.Client(base_url=self.control_url, timeout=5, trust_env=False)

    @property
    def url(self) -> str:
        """Base URL of the data API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def control_url(self) -> str:
        """Base URL of the control API."""
        return f"http://127.0.0.1:{self.control_port}"

    def start(self, timeout_s: float = 15) -> Standin:
        """Start the process and wait until both ports answer."""
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(self._answers, timeout_s, interval_s=0.05, what=f"stand-in {self.name}")
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"stand-in {self.name} exited early:\n{self.log()[-3000:]}")
        try:
            self._control.get("/faults", timeout=0.5).raise_for_status()
        except httpx.HTTPError:
            return False
        return self.data_port_open()

    def log(self) -> str:
        """Everything the stand-in printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def data_port_open(self) -> bool:
        """Whether the data port accepts connections right now."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def fault(self, mode: str, duration_s: float, **options: Any) -> dict[str, Any]:
        """Inject a fault through the control API; its description."""
        response = self._control.post(
            "/faults", json={"mode": mode, "duration_s": duration_s, **options}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def clear_fault(self) -> None:
        """End the current fault now."""
        self._control.delete("/faults").raise_for_status()

    def current_fault(self) -> dict[str, Any] | None:
        """The active fault, or None."""
        fault: dict[str, Any] | None = self._control.get("/faults").json()
        return fault

    def reset(self) -> None:
        """Drop the stand-in's data and counters."""
        self._control.post("/reset").raise_for_status()

    def stats(self) -> dict[str, Any]:
        """The stand-in's counters."""
        stats: dict[str, Any] = self._control.get("/stats").json()
        return stats

    def stop(self, timeout_s: float = 10) -> None:
        """SIGTERM, then SIGKILL if it does not end in time."""
        self._control.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout_s)
