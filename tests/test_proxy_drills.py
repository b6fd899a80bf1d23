"""Workers behind ``optuna-nos proxy`` under SIGTERM and through a restart of the proxy.

Each test runs a drill of bench/proxy_drills.py (real PostgreSQL, real subprocesses) at small
size and asserts every invariant it checked: exit statuses, no trial left RUNNING, no
finished trial lost or changed, every slot decided once, the search finished.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("grpc")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def proxy_drills() -> ModuleType:
    spec = importlib.util.spec_from_file_location("proxy_drills",
                                                  ROOT / "bench" / "proxy_drills.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    server = module.drills.DEFAULT_SERVER
    if not module.drills.postgres_available(server):
        if os.environ.get("OPTUNA_NOS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL at {server} is unreachable")
        pytest.skip(f"PostgreSQL at {server} is unreachable")
    return module


@pytest.mark.slow
def test_sigterm_of_workers_behind_the_proxy(proxy_drills: ModuleType) -> None:
    result = proxy_drills.drills.run_drill("proxy-sigterm", proxy_drills.drills.DEFAULT_SERVER,
                                           workers=2)
    assert result.passed, "\n".join(result.findings)


@pytest.mark.slow
def test_proxy_restart_mid_search(proxy_drills: ModuleType) -> None:
    result = proxy_drills.drills.run_drill("proxy-restart", proxy_drills.drills.DEFAULT_SERVER,
                                           workers=2, down_s=5.0)
    assert result.passed, "\n".join(result.findings)
