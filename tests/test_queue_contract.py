"""Every queue backend against the one queue contract (``tests/queue_contract.py``).

Adding a backend is one line in ``BACKENDS``: a callable ``(directory, **options) -> Queue``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from attentive_router._queue.sqlite import SQLiteQueue

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the helpers live beside the tests, not in the package
    sys.path.insert(0, str(ROOT))

from tests.queue_contract import Backend, Opener, QueueContract  # noqa: E402

BACKENDS: dict[str, Backend] = {
    "sqlite": lambda tmp_path, **kw: SQLiteQueue(tmp_path / "q.db", **kw),
}


@pytest.fixture(params=list(BACKENDS), ids=list(BACKENDS))
def queue_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opener = Opener(BACKENDS[request.param], tmp_path)
    yield opener
    opener.close_all()


class TestQueueContract(QueueContract):
    """The whole contract, once per backend."""
