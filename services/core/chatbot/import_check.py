"""Checking an FAQ import file in a child process, so that no file can stall the API.

The API validates every row before it queues an import. openpyxl and the csv module run in
a process forked for this one file (from a fork server that has them imported already): the
request's thread only waits, at most FAQ_IMPORT_TIMEOUT_S, and a file that takes longer is
refused and its process killed. The child answers with what the API needs (the row count and
the invalid rows), not the rows themselves.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from typing import Any

from services.core.chatbot.faq_import import ImportFileError, parse
from services.core.config import Settings


class ImportCheckUnavailable(Exception):
    """The checking process died without an answer: not the file's fault, try again."""


@dataclass(frozen=True)
class ImportCheck:
    """What a valid-or-not import file holds: its row count and its invalid rows."""

    rows: int
    errors: list[dict[str, Any]] = field(default_factory=list)


_context: ForkServerContext | None = None
_context_lock = threading.Lock()


def _fork_server() -> ForkServerContext:
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            # Forked children find the parser imported: a check costs a fork, not an import.
            context.set_forkserver_preload(["services.core.chatbot.import_check"])
            _context = context
        return _context


def _child(conn: Connection, data: bytes, fmt: str, limits: dict[str, Any]) -> None:
    import io

    # A terminal's Ctrl-C reaches the whole process group; the API finishes its requests
    # when it stops, this check included. (SIGTERM stays: it is how multiprocessing ends a
    # child left running when the API exits, and Kubernetes sends it to the API alone.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        parsed = parse(io.BytesIO(data), fmt, **limits)
        conn.send(("ok", len(parsed.rows), parsed.errors))
    except ImportFileError as exc:
        conn.send(("refused", str(exc)))
    except MemoryError:
        conn.send(("refused", "the file is too large to read; split it"))
    finally:
        conn.close()


def check_import(data: bytes, fmt: str, settings: Settings) -> ImportCheck:
    """Parse and validate `data` in a child process; ImportFileError if it is unusable,
    ImportCheckUnavailable if the child died before it could say."""
    limits = {
        "max_rows": settings.faq_import_max_rows,
        "max_cell_chars": settings.faq_import_max_cell_chars,
        "max_uncompressed_bytes": settings.faq_import_max_uncompressed_bytes,
    }
    context = _fork_server()
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, data, fmt, limits), daemon=True)
    try:
        child.start()  # hands the file to the child through a pipe
    except OSError as exc:  # the child (or the fork server) died meanwhile
        receiver.close()
        raise ImportCheckUnavailable("the import file could not be checked now") from exc
    finally:
        sender.close()
    try:
        if not receiver.poll(settings.faq_import_timeout_s):
            raise ImportFileError(
                f"the file took longer than {settings.faq_import_timeout_s:g} s to read "
                "(FAQ_IMPORT_TIMEOUT_S); split it"
            )
        try:
            answer = receiver.recv()
        except EOFError:
            # The child died without answering: killed from outside (the node's OOM killer,
            # a stop), which says nothing about the file.
            raise ImportCheckUnavailable("the import file could not be checked now") from None
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)
    if answer[0] == "refused":
        raise ImportFileError(answer[1])
    return ImportCheck(rows=answer[1], errors=answer[2])
