"""The skip rule of service fixtures: skip on a developer's machine, fail under CI=true."""

from __future__ import annotations

import pytest

from tests.support import running_in_ci, unavailable

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_under_ci_a_service_that_cannot_start_fails_the_test(value: str) -> None:
    assert running_in_ci({"CI": value})
    with pytest.raises(pytest.fail.Exception, match="osmem-server could not start"):
        unavailable("osmem-server could not start here: boom", {"CI": value})


@pytest.mark.parametrize("environ", [{}, {"CI": ""}, {"CI": "false"}, {"CI": "0"}])
def test_elsewhere_it_skips_with_the_reason(environ: dict[str, str]) -> None:
    assert not running_in_ci(environ)
    with pytest.raises(pytest.skip.Exception, match="redis-server is not installed"):
        unavailable("redis-server is not installed", environ)
