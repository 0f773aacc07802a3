import sys
from pathlib import Path

import pytest

try:
    from hub_server import HubServer, point_hub_at
except ImportError:  # e.g. --import-mode=importlib does not put tests/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from hub_server import HubServer, point_hub_at


@pytest.fixture
def hub_server(tmp_path):
    """A started HubServer (127.0.0.1, ephemeral port) with repos under tmp_path/"hub".

    huggingface_hub is NOT pointed at it: call ``point_hub_at(monkeypatch, hub_server.url)``
    or use the ``hub_endpoint`` fixture.
    """
    server = HubServer(tmp_path / "hub")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub_endpoint(hub_server, monkeypatch):
    """Like ``hub_server`` but with the in-process huggingface_hub pointed at it."""
    point_hub_at(monkeypatch, hub_server.url)
    return hub_server


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (minutes each; CI skips them)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow test: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for modules that only run tiny models: on a shared 2-core machine two threads
    are many times slower for tiny images (each op waits for a descheduled thread). Restored after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
