"""The store contract (tests/contract/store_contract.py) on a real OpenSearch cluster with k-NN.

Runs when OPENSEARCH_URL is set (e.g. http://127.0.0.1:9200 for deploy/compose.yaml's node with
the security plugin disabled); OPENSEARCH_USERNAME and OPENSEARCH_PASSWORD add basic auth,
OPENSEARCH_CA_BUNDLE a CA for https. Every store gets its own index prefix, deleted afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from core.settings import StoreSettings
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.opensearch import OpenSearchStore, open_store
from tests.contract.store_contract import StoreContract, StoreFactory

pytestmark = pytest.mark.integration

URL = os.environ.get("OPENSEARCH_URL")
if not URL:
    pytest.skip("OPENSEARCH_URL not set: the OpenSearch contract suite needs a real cluster (k-NN)",
                allow_module_level=True)


def settings(prefix: str) -> StoreSettings:
    user = os.environ.get("OPENSEARCH_USERNAME")
    return StoreSettings(kind="opensearch", url=URL, index_prefix=prefix, username=user,
                         password_env="OPENSEARCH_PASSWORD" if user else None,
                         ca_bundle=os.environ.get("OPENSEARCH_CA_BUNDLE"))


class TestOpenSearchStoreContract(StoreContract):
    @pytest.fixture
    def make_store(self) -> Iterator[StoreFactory]:
        made: list[tuple[str, OpenSearchStore]] = []

        def make() -> OpenSearchStore:
            prefix = f"clearance-test-{uuid.uuid4().hex[:12]}"
            made.append((prefix, open_store(settings(prefix), os.environ,
                                            HashingEmbedder().dim)))
            return made[-1][1]

        yield make
        for prefix, store in made:
            # By name: clusters may set action.destructive_requires_name.
            for name in store.client.indices.get(index=f"{prefix}-*"):
                store.client.indices.delete(index=name)
            store.close()
