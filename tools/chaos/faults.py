"""The faults of a run: chosen up front from the seed, injected at their moments."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tools.chaos.stack import Stack

KINDS = (
    "es_down",
    "chatbot_errors",
    "worker_sigkill",
    "worker_sigterm",
    "redis_restart",
    "api_restart",
)


@dataclass(frozen=True)
class Fault:
    """One fault: what, when (seconds into the load) and its drawn details."""

    at_s: float
    kind: str
    duration_s: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in sorted(self.detail.items()))
        return f"t={self.at_s:6.1f}s {self.kind} {self.duration_s:.1f}s {extra}".rstrip()


def schedule(rng: random.Random, duration_s: float, workers: list[str]) -> list[Fault]:
    """Every kind once, plus one more random fault per extra minute, all over by 85 %."""
    kinds = list(KINDS)
    kinds += [rng.choice(KINDS) for _ in range(max(0, int(duration_s // 60) - 1))]
    rng.shuffle(kinds)
    faults = []
    for kind in kinds:
        if kind == "es_down":
            # Minutes in a long run; a quarter of the load in a short one.
            length = (
                rng.uniform(60, min(240, 0.4 * duration_s))
                if duration_s >= 300
                else 0.3 * duration_s
            )
            detail: dict[str, Any] = {}
        elif kind == "chatbot_errors":
            length = rng.uniform(10, min(60, max(12, 0.3 * duration_s)))
            # 500s, throttling, or "applied, but the answer came too late" (timeout).
            detail = {"status": rng.choice((500, 429, "timeout"))}
        elif kind in ("worker_sigkill", "worker_sigterm"):
            length = rng.uniform(1, 4)  # until the replacement starts
            detail = {"worker": rng.choice(workers)}
        elif kind == "redis_restart":
            length = rng.uniform(1, 4)
            detail = {"how": rng.choice(("crash", "shutdown"))}
        else:
            length = rng.uniform(0.5, 2)
            detail = {}
        latest = max(0.1 * duration_s, 0.85 * duration_s - length)
        at = rng.uniform(0.1 * duration_s, latest)
        faults.append(Fault(round(at, 1), kind, round(length, 1), detail))
    return sorted(faults, key=lambda f: f.at_s)


class Injector:
    """Injects each fault in a thread of its own at its moment; `done` once all are over."""

    def __init__(self, stack: Stack, faults: list[Fault], say: Callable[[str], None]) -> None:
        self._stack = stack
        self._faults = faults
        self._say = say
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []

    def start(self, origin: float) -> None:
        for fault in self._faults:
            thread = threading.Thread(target=self._run, args=(fault, origin), daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait(self, timeout_s: float) -> bool:
        """Wait for every fault to be over (processes back); whether they all are."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _run(self, fault: Fault, origin: float) -> None:
        time.sleep(max(0.0, origin + fault.at_s - time.monotonic()))
        self._say(f"fault  {fault.describe()}")
        try:
            getattr(self, f"_{fault.kind}")(fault)
        except Exception as exc:  # reported, and the run fails on it
            self.errors.append(f"{fault.describe()}: {type(exc).__name__}: {exc}")
            self._say(f"fault FAILED {fault.describe()}: {exc}")

    def _standin_fault(self, standin: str, body: dict[str, Any]) -> None:
        answer = httpx.post(
            f"{self._stack.control_url(standin)}/faults", json=body, timeout=5, trust_env=False
        )
        answer.raise_for_status()
        time.sleep(float(body["duration_s"]))

    def _es_down(self, fault: Fault) -> None:
        self._standin_fault("es", {"mode": "down", "duration_s": fault.duration_s})

    def _chatbot_errors(self, fault: Fault) -> None:
        status = fault.detail["status"]
        body: dict[str, Any] = {"duration_s": fault.duration_s}
        if status == "timeout":
            # Each write is applied, and its answer held past CHATBOT_READ_TIMEOUT_S.
            body.update(mode="timeout", delay_s=6)
        else:
            body.update(mode="error", status=status)
        if status == 429:
            body["retry_after_s"] = 1
        self._standin_fault("chatbot", body)

    def _restart(self, name: str, stop: Callable[[], None], down_s: float) -> None:
        proc = self._stack.procs[name]
        with self._stack.locks[name]:
            stop()
            time.sleep(down_s)
            proc.start(timeout_s=60)
        self._say(f"fault  {name} is back")

    def _worker_sigkill(self, fault: Fault) -> None:
        proc = self._stack.procs[fault.detail["worker"]]
        self._restart(proc.name, proc.kill, fault.duration_s)

    def _worker_sigterm(self, fault: Fault) -> None:
        proc = self._stack.procs[fault.detail["worker"]]

        def term() -> None:
            # To the main process, as Kubernetes sends it: Celery's soft shutdown, running
            # tasks get WORKER_SOFT_SHUTDOWN_TIMEOUT_S.
            proc.signal(signal.SIGTERM, group=False)
            if not proc.wait(30):
                raise RuntimeError(f"{proc.name} did not stop within 30 s of SIGTERM")
            proc.kill()  # reap pool children, if any outlived the main process

        self._restart(proc.name, term, fault.duration_s)

    def _redis_restart(self, fault: Fault) -> None:
        proc = self._stack.procs["redis"]
        if fault.detail["how"] == "crash":
            stop = proc.kill
        else:

            def stop() -> None:
                proc.stop(grace_s=20)

        self._restart("redis", stop, fault.duration_s)

    def _api_restart(self, fault: Fault) -> None:
        proc = self._stack.procs["api"]
        self._restart("api", lambda: proc.stop(grace_s=25), fault.duration_s)
