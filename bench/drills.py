"""Reliability drills: kill, interrupt, starve and restart a real search, and check what is left.

The drills live in :mod:`testkit.drills`; this is their command line. Every drill runs the
``optuna-nos`` command in subprocesses, as users run it, against a real storage, then reads
the study back and checks its invariants (no trial left RUNNING, no finished trial lost or
changed, the search finishes). Each drill prints what it did and what it found; the script
exits 1 when any drill fails.

    python bench/drills.py --list
    python bench/drills.py signals sigkill artifacts          # the CI set (a few minutes)
    python bench/drills.py init-race                           # 10 concurrent init pairs
    python bench/drills.py postgres-restart                    # restarts the local server!
    python bench/drills.py load16 [--seconds 120]
    python bench/drills.py chaos                               # restarts the local server!
    python bench/drills.py proxy-sigkill                        # through optuna-nos proxy

``postgres-restart`` stops the local PostgreSQL cluster for 10 s with ``pg_ctlcluster`` and
always starts it again (try/finally); ``chaos`` does so three times, among 30 SIGKILLs.
The drills that need PostgreSQL use ``--server`` (default ``$OPTUNA_NOS_TEST_POSTGRES`` or
``postgresql://postgres@127.0.0.1:5432``) and a fresh database that is dropped afterwards.
"""

from __future__ import annotations

import argparse

from testkit.drills import DEFAULT_SERVER, DRILLS, run_drill

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("drills", nargs="*", help=f"drills to run: {', '.join(DRILLS)}")
    parser.add_argument("--list", action="store_true", help="list the drills and exit")
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server URL")
    parser.add_argument("--seconds", type=float, default=120.0, help="load16 duration")
    args = parser.parse_args(argv)
    if args.list or not args.drills:
        for name, (drill, _) in DRILLS.items():
            print(f"{name:<18} {(drill.__doc__ or '').splitlines()[0]}")
        return 0
    unknown = [n for n in args.drills if n not in DRILLS]
    if unknown:
        parser.error(f"unknown drill(s) {', '.join(unknown)}; known: {', '.join(DRILLS)}")
    results = [
        run_drill(name, args.server, **({"seconds": args.seconds} if name == "load16" else {}))
        for name in args.drills
    ]
    print("\nsummary")
    for result in results:
        print(
            f"  {result.name:<18} {'PASSED' if result.passed else 'FAILED'} "
            f"({result.seconds:.0f} s)"
        )
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
