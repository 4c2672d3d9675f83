"""Pytest plugin: the ``openai_server`` fixture, a fresh loopback server per test.

Register with ``pytest_plugins = ["tests.conftest_server"]`` in the root
conftest, or import the fixture: ``from tests.conftest_server import openai_server``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.openai_server import OpenAIServer


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A started ``OpenAIServer`` on 127.0.0.1 (port 0), stopped after the test."""
    with OpenAIServer() as server:
        yield server
