"""Showing views as a kernel would, without one: a comm with no front end and a recording ``display``."""

from __future__ import annotations

import comm
import pytest
from comm.base_comm import BaseComm


class QuietComm(BaseComm):
    """A comm with no front end: messages go nowhere (the widgets are still created and registered)."""

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        pass


class Shown:
    """Stands in for IPython's ``display``: records bundles and in-place updates."""

    def __init__(self):
        self.bundles: list[dict] = []

    def __call__(self, bundle, raw=False, display_id=False):
        self.bundles.append(bundle)
        outer = self

        class Handle:
            def update(self, bundle, raw=False):
                outer.bundles.append(bundle)

        return Handle()


def recording_display(monkeypatch: pytest.MonkeyPatch) -> Shown:
    """Widgets get quiet comms and ``display`` records what it is given (the bundle and every update);
    a test module's ``shown`` fixture returns this."""
    import IPython.display

    monkeypatch.setattr(comm, "create_comm", lambda *a, **kw: QuietComm(*a, **kw))
    recorder = Shown()
    monkeypatch.setattr(IPython.display, "display", recorder)
    return recorder
