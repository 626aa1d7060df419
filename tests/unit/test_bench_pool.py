"""The real-vector pool for the peer bench (bench/realpool.py) and `bench.peers --pool`: the
pages it reads, the workload it feeds, and the one-line refusals of a bad pool."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from bench import peers
from bench.realpool import load_pool, page_document

pytestmark = pytest.mark.unit

PAGE = """.TH FROB 1
.SH NAME
frob \\- turn the knobs of a widget
.SH DESCRIPTION
.B frob
turns every knob of the widget named on its command line, one after the other, and reports
each knob's old and new position on standard output when it is done with all of them.
"""


def _gz(path: Path, text: bytes) -> str:
    with gzip.open(path, "wb") as fh:
        fh.write(text)
    return str(path)


def test_a_page_becomes_a_public_document_and_bad_pages_are_skipped(tmp_path: Path) -> None:
    doc = page_document(_gz(tmp_path / "frob.1.gz", PAGE.encode()))
    assert doc is not None
    assert doc.doc_id == "pool:frob.1"
    assert "turns every knob" in doc.sections[0].text
    # an alias, a page too short to be a passage, and a file that is not gzip at all
    assert page_document(_gz(tmp_path / "alias.1.gz", b".so man1/frob.1\n")) is None
    assert page_document(_gz(tmp_path / "short.1.gz", b".TH S 1\n.SH NAME\ns \\- x\n")) is None
    broken = tmp_path / "broken.1.gz"
    broken.write_bytes(b"not gzip")
    assert page_document(str(broken)) is None


def test_the_workload_takes_the_pools_passages_and_questions() -> None:
    rng = np.random.default_rng(0)
    passages = rng.standard_normal((600, 8)).astype(np.float32)
    questions = rng.standard_normal((30, 8)).astype(np.float32)
    work = peers.make_workload(500, 384, 20, pool=(passages, questions))
    assert work.vectors.shape == (500, 8)
    assert np.array_equal(work.vectors, passages[:500])
    assert len(work.queries) == 20
    # every query is one of the pool's questions, none repeated
    found = {int(np.flatnonzero((questions == q).all(axis=1))[0]) for q in work.queries}
    assert len(found) == 20
    # the ACL side is the synthetic workload's: the same seed, the same gates
    synthetic = peers.make_workload(500, 8, 20)
    assert work.acls == synthetic.acls
    assert np.array_equal(work.chunk_acl, synthetic.chunk_acl)


def test_a_pool_that_is_missing_malformed_or_too_small_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = tmp_path / "small.npz"
    np.savez(small, passages=np.zeros((200, 4), np.float32),
             questions=np.zeros((5, 4), np.float32))
    assert load_pool(small)[0].shape == (200, 4)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, other=np.zeros(3))
    text = tmp_path / "text.npz"
    text.write_text("passages")
    widths = tmp_path / "widths.npz"
    np.savez(widths, passages=np.zeros((2000, 4), np.float32),
             questions=np.zeros((5, 3), np.float32))
    for pool, said in ((tmp_path / "absent.npz", "not a pool file"), (wrong, "not a pool file"),
                       (text, "not a pool file"), (widths, "not a pool file"),
                       (small, "fewer than 1,000")):
        with pytest.raises(SystemExit) as exit_:
            peers.main(["--pool", str(pool), "--chunks", "1000", "--engines", "clearance"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert said in err[-1]
