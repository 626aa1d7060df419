"""The admin page: the admin group sees connectors and explains access; everyone else gets 403
and learns nothing (no title, no decision) about any document."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from tests.web.conftest import Web
from tests.web.corpus import ADA, SECRET_DOC, SECRET_TITLE
from tests.web.test_page import csrf_of, sign_in

pytestmark = pytest.mark.integration


@pytest.fixture
def web(make_web: Callable[..., Web]) -> Web:
    return make_web()


def test_admins_see_connectors_and_explain_access(web: Web) -> None:
    ceo = sign_in(web, "ceo", "ceo-pass")
    page = ceo.get(f"{web.url}/admin", timeout=10)
    assert page.status_code == 200 and "<td>docs</td>" in page.text
    rows = ceo.get(f"{web.url}/admin/api/connectors", timeout=10).json()["connectors"]
    assert rows[0]["connector"] == "docs" and rows[0]["documents"] == 3
    assert rows[0]["readable_by_nobody"] == 0 and rows[0]["last_run"]["status"] == "ok"
    r = ceo.get(f"{web.url}/admin/api/explain", params={"doc_id": SECRET_DOC, "email": ADA},
                timeout=10).json()
    assert r["found"] and r["allowed"] is False and r["title"] == SECRET_TITLE
    token = csrf_of(ceo, web)
    assert ceo.post(f"{web.url}/admin/api/sync", json={"connector": "docs"},
                    timeout=10).status_code == 403  # no CSRF token
    queued = ceo.post(f"{web.url}/admin/api/sync", json={"connector": "docs"},
                      headers={"X-CSRF-Token": token}, timeout=10)
    assert queued.status_code == 409 and "broker" in queued.json()["error"]
    assert ceo.post(f"{web.url}/admin/api/sync", json={"connector": "nope"},
                    headers={"X-CSRF-Token": token}, timeout=10).status_code == 400


def test_non_admins_get_403_and_nothing_else(web: Web) -> None:
    ada = sign_in(web, "ada", "ada-pass")
    token = csrf_of(ada, web)
    for r in (ada.get(f"{web.url}/admin", timeout=10),
              ada.get(f"{web.url}/admin/api/connectors", timeout=10),
              ada.get(f"{web.url}/admin/api/explain",
                      params={"doc_id": SECRET_DOC, "email": ADA}, timeout=10),
              ada.post(f"{web.url}/admin/api/sync", json={"connector": "docs"},
                       headers={"X-CSRF-Token": token}, timeout=10)):
        assert r.status_code == 403
        assert SECRET_TITLE not in r.text and "allowed" not in r.text
    anonymous = requests.get(f"{web.url}/admin/api/connectors", timeout=10)
    assert anonymous.status_code == 401
