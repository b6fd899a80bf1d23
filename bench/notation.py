"""Paper-notation throughput: equations formatted and parsed per second.

Usage: python bench/notation.py [--repeat 40] [--rounds 5] [--equations FILE] [--log FILE]

Runs over a list of equations (the built-in examples plus the released-log sample in
``tests/released_log_equations.txt``; ``--equations`` gives one equation a line instead), each
repeated ``repeat`` times, measured in ``rounds`` interleaved rounds (best round kept). Prints
the rate of :func:`parse_equation` and of :func:`format_equation`, and, as the baseline
measured in the same run, the rate of the genome JSON round trip (:func:`genome_to_json` /
:func:`genome_from_json`) on the same genomes.
Rates use process CPU time, the steadier figure on a shared machine; wall-clock rates are shown
beside them. Goal: >= 2,000 equations per second each way.

``--log FILE`` reads a released search log (``nas_optimizer_particle_n50_k5_m7.log``), takes
every distinct equation in it, checks that each parses and re-prints exactly, and reports any
that do not (exit status 1).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from optuna_nos.core.errors import NOSError
from optuna_nos.space.genome import Genome, genome_from_json, genome_to_json
from optuna_nos.space.notation import format_equation
from optuna_nos.space.parse import parse_equation

GOAL_RATE = 2_000.0
LOG_SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "released_log_equations.txt"
BUILT_IN = [
    "None ~ tanh(g)/(1+|tanh(g)|)",
    "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))",
    "None ~ clip(v hat, [1/(1+exp(-a11)][ln(|[bessel_i1e(a10)][s hat]|)])",
    "Mom ~ (g)*([arctan(a4)][ln(|1+exp([max(a9, a10)][g^3])|)])",
    "Nest ~ [(a11)-(a6)][g]/(1+|[(a11)-(a6)][g]|)/(1+|[(a11)-(a6)][g]/(1+|[(a11)-(a6)][g]|)|)",
    "None ~ (0.95*(min([min(a12, a9)][2], v hat))+0.05*((10-6w) / (min([min(a12, a9)][2], "
    "v hat))))",
    "None ~ (drop([max(a3, a9)][[deriv_soft(a7)][v hat]/(1+|[deriv_soft(a7)][v hat]|)], 0.5)) "
    "/ (sqrt(1+(clip([deriv_soft(a7)][v hat]/(1+|[deriv_soft(a7)][v hat]|), [(a9)*(a6)]"
    "[((1-0.95)*g^2+0.95*s hat)]))^2))",
]
#: Where an equation ends on a log line: before " val: " or " : ", or at the end of the line.
_LOG_EQUATION = re.compile(r"(?:None|Mom|Nest) ~ .*?(?= val: | : |$)")


def _read_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def log_equations(path: Path) -> list[str]:
    """Every distinct equation of a released search log, in order of first appearance."""
    seen: dict[str, None] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _LOG_EQUATION.search(line)
        if match:
            seen.setdefault(match.group(0), None)
    return list(seen)


def check_log(path: Path) -> int:
    """Parse and re-print every equation of the log; print failures; return the exit status."""
    equations = log_equations(path)
    failures = []
    for text in equations:
        try:
            if format_equation(parse_equation(text)) != text:
                failures.append((text, "re-prints differently"))
        except NOSError as exc:
            failures.append((text, str(exc)))
    print(f"{len(equations)} distinct equations in {path.name}; {len(failures)} do not round-trip")
    for text, why in failures[:20]:
        print(f"  {text}\n    {why}")
    return 1 if failures else 0


def _rate(work: Callable[[Any], object], items: Sequence[Any]) -> tuple[float, float]:
    """(CPU-time rate, wall-clock rate) of ``work`` applied to every item."""
    cpu, wall = time.process_time(), time.perf_counter()
    for item in items:
        work(item)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return len(items) / max(cpu, 1e-9), len(items) / max(wall, 1e-9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--equations", type=Path, help="one equation a line")
    parser.add_argument("--log", type=Path, help="check every equation of a released log")
    args = parser.parse_args(argv)
    if args.log is not None:
        return check_log(args.log)

    if args.equations is not None:
        distinct = _read_lines(args.equations)
    else:
        distinct = BUILT_IN + (_read_lines(LOG_SAMPLE) if LOG_SAMPLE.exists() else [])
    texts = distinct * args.repeat
    genomes: list[Genome] = [parse_equation(t) for t in distinct] * args.repeat
    documents = [genome_to_json(g) for g in genomes]

    mean_length = sum(map(len, distinct)) / len(distinct)
    print(
        f"{len(distinct)} distinct equations (mean {mean_length:.0f} characters) x "
        f"{args.repeat} = {len(texts)} per measurement, best of {args.rounds} rounds"
    )
    measurements: tuple[tuple[str, Callable[[Any], object], Sequence[Any]], ...] = (
        ("parse_equation", parse_equation, texts),
        ("format_equation", format_equation, genomes),
        ("baseline genome_from_json", genome_from_json, documents),
        ("baseline genome_to_json", genome_to_json, genomes),
    )
    rates = {name: (0.0, 0.0) for name, _, _ in measurements}
    for _ in range(args.rounds):  # interleaved rounds, best of each: load spikes hit all alike
        for name, work, items in measurements:
            cpu_rate, wall_rate = _rate(work, items)
            rates[name] = (max(rates[name][0], cpu_rate), max(rates[name][1], wall_rate))
    for name, (cpu_rate, wall_rate) in rates.items():
        print(f"  {name:27s} {cpu_rate:10,.0f} /s CPU   {wall_rate:10,.0f} /s wall")
    parse_rate, format_rate = rates["parse_equation"][0], rates["format_equation"][0]
    print(
        f"  parse vs genome_from_json: {parse_rate / rates['baseline genome_from_json'][0]:.2f}x"
        f"   format vs genome_to_json: "
        f"{format_rate / rates['baseline genome_to_json'][0]:.2f}x"
    )
    ok = parse_rate >= GOAL_RATE and format_rate >= GOAL_RATE
    print(f"  goal >= {GOAL_RATE:,.0f}/s each way: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
