"""Reliability drills through ``optuna-nos proxy``: SIGTERM of workers, restart of the proxy.

The drills live in :mod:`testkit.proxy_drills`; this is their command line.

    python bench/proxy_drills.py proxy-sigterm [--workers 3]
    python bench/proxy_drills.py proxy-restart [--workers 3] [--down 8]
"""

from __future__ import annotations

import argparse

from testkit.postgres import DEFAULT_SERVER
from testkit.proxy_drills import PROXY_DRILLS, run_drill

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("drills", nargs="+", choices=sorted(PROXY_DRILLS))
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server URL")
    parser.add_argument("--workers", type=int, default=3, help="workers behind the proxy")
    parser.add_argument(
        "--down", type=float, default=8.0, help="proxy-restart: seconds the proxy stays down"
    )
    args = parser.parse_args(argv)
    results = [
        run_drill(
            name,
            args.server,
            workers=args.workers,
            **({"down_s": args.down} if name == "proxy-restart" else {}),
        )
        for name in args.drills
    ]
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
