"""The main of one worker process of the ``processes`` backend: ``python -m executus_nb.scale.worker_process FD``.

Started by a command, not by multiprocessing: a spawned child would import the parent's ``__main__`` again
(a script without a ``__main__`` guard would fan out from every worker).  It talks to the parent over the
socket ``FD`` with ``multiprocessing.connection``'s framing; when the parent goes away (EOF), it exits.
"""

from __future__ import annotations

import os
import queue
import socket
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

BATCH = 256  # events per message at most: a burst goes in a few writes, a lone event at once


def main(fd: int) -> None:
    conn = Connection(socket.socket(fileno=fd).detach())
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def receive() -> None:  # read at once, so the parent never blocks on a full socket while we import
        try:
            while True:
                inbox.put(cloudpickle.loads(conn.recv_bytes()))
        except (EOFError, OSError):
            inbox.put(("stop",))

    def transmit() -> None:  # events leave in batches, in order, off the runs' loop
        while True:
            items = [outbox.get()]
            while len(items) < BATCH:
                try:
                    items.append(outbox.get_nowait())
                except queue.Empty:
                    break
            events: list[Any] = []
            try:
                for item in items:
                    if item is None or item[0] == "control":
                        if events:
                            conn.send_bytes(cloudpickle.dumps(("events", events)))
                            events = []
                        if item is None:
                            return
                        conn.send_bytes(cloudpickle.dumps(item[1]))
                    else:
                        events.append(item[1:])
                if events:
                    conn.send_bytes(cloudpickle.dumps(("events", events)))
            except (OSError, ValueError):
                return

    threading.Thread(target=receive, name="executus-worker-in", daemon=True).start()
    sender = threading.Thread(target=transmit, name="executus-worker-out", daemon=True)
    sender.start()

    from executus_nb.scale.runtime import WorkerRuntime, warm_process

    warm_process()  # litellm's import (seconds) once per worker, before the first cell: the pool is warm
    runtime = WorkerRuntime(lambda run_id, event: outbox.put(("event", run_id, event)))
    outbox.put(("control", ("ready", os.getpid())))
    while True:
        message = inbox.get()
        kind = message[0]
        if kind == "stop":
            break
        try:
            if kind == "setup":
                runtime.load(message[1], message[2])
            elif kind == "run":
                runtime.start(message[1])
            elif kind == "cancel":
                runtime.cancel(message[1])
        except Exception as exc:  # noqa: BLE001 — reported to the parent, which fails the cell with it
            run_id = message[1].run_id if kind == "run" else None
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            outbox.put(("control", ("failed", kind, message[1] if kind == "setup" else run_id, detail)))
    runtime.close()
    outbox.put(None)
    sender.join(5.0)


if __name__ == "__main__":
    main(int(sys.argv[1]))
