"""The store contract (tests/contract/store_contract.py) on the embedded SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.store.sqlite import SqliteStore
from tests.contract.store_contract import StoreContract, StoreFactory

pytestmark = pytest.mark.integration


class TestSqliteStoreContract(StoreContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> Iterator[StoreFactory]:
        made: list[SqliteStore] = []

        def make() -> SqliteStore:
            made.append(SqliteStore(tmp_path / f"index-{len(made)}.sqlite3"))
            return made[-1]

        yield make
        for store in made:
            store.close()
