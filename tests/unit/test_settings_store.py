"""[store] dense_search / ivf_nprobe: the embedded store's dense search is exact unless the
IVF is asked for; each mistake is one ConfigError line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from tests.unit.test_settings_assistant import load  # writes clearance.toml, reads it back

pytestmark = pytest.mark.unit


def test_dense_search_is_exact_unless_asked(tmp_path: Path) -> None:
    store = load(tmp_path, "").store  # type: ignore[attr-defined]
    assert (store.dense_search, store.ivf_nprobe) == ("exact", 24)
    store = load(tmp_path, '[store]\ndense_search = "ivf"\nivf_nprobe = 64\n'
                 ).store  # type: ignore[attr-defined]
    assert (store.dense_search, store.ivf_nprobe) == ("ivf", 64)


@pytest.mark.parametrize("body,needle", [
    ('[store]\ndense_search = "hnsw"\n', "dense_search"),
    ('[store]\ndense_search = "ivf"\nivf_nprobe = 0\n', "ivf_nprobe"),
    ('[store]\nivf_nprobe = "many"\n', "ivf_nprobe"),
    ('[store]\nivf_nprobe = true\n', "ivf_nprobe"),
    ('[store]\nivf_nprobe = 8.5\n', "ivf_nprobe"),
    ('[store]\nivf_nprobe = 99999999\n', "ivf_nprobe"),
    ('[store]\nkind = "opensearch"\nurl = "https://os.corp:9200"\ndense_search = "ivf"\n',
     "apply to the embedded store"),
    ('[store]\nkind = "opensearch"\nurl = "https://os.corp:9200"\nivf_nprobe = 8\n',
     "apply to the embedded store"),
])
def test_bad_dense_search_keys_are_one_line(tmp_path: Path, body: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, body)
    message = str(err.value)
    assert needle in message and "\n" not in message


def test_the_runtime_hands_the_keys_to_the_store(tmp_path: Path) -> None:
    from apps.runtime import Runtime
    from core.settings import Settings
    from indexer.store import ivf
    from indexer.store.sqlite import IVF_OFF, SqliteStore

    for body, min_rows, nprobe in (("", IVF_OFF, 24),
                                   ('[store]\ndense_search = "ivf"\nivf_nprobe = 40\n',
                                    ivf.MIN_ROWS, 40)):
        file = load(tmp_path, body)
        store = Runtime(Settings(home=tmp_path / "home", config_path=None,
                                 file=file)).open_store()  # type: ignore[arg-type]
        try:
            assert isinstance(store, SqliteStore)
            assert (store.ivf_min_rows, store.nprobe) == (min_rows, nprobe)
        finally:
            store.close()
