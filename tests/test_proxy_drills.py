"""Workers behind ``optuna-nos proxy`` under SIGTERM and through a restart of the proxy.

Each test runs a drill of testkit.proxy_drills (real PostgreSQL, real subprocesses) at small
size and asserts every invariant it checked: exit statuses, no trial left RUNNING, no
finished trial lost or changed, every slot decided once, the search finished.
"""

from __future__ import annotations

import pytest

from testkit.postgres import DEFAULT_SERVER, require_postgres
from testkit.proxy_drills import run_drill

pytest.importorskip("grpc")


@pytest.fixture(autouse=True)
def _postgres() -> None:
    require_postgres()


@pytest.mark.slow
def test_sigterm_of_workers_behind_the_proxy() -> None:
    result = run_drill("proxy-sigterm", DEFAULT_SERVER, workers=2)
    assert result.passed, "\n".join(result.findings)


@pytest.mark.slow
def test_proxy_restart_mid_search() -> None:
    result = run_drill("proxy-restart", DEFAULT_SERVER, workers=2, down_s=5.0)
    assert result.passed, "\n".join(result.findings)
