"""Fuzzing of study-config loading: any input either parses or raises NOSError, fast.

``parse_config`` gets random nested tables whose keys are mostly the real section and key
names (so that the checks deep inside are reached) and whose values are any TOML/JSON value;
``load_config`` gets random TOML-ish text built from real config lines, noise and raw bytes.
Each case runs under a 5 s alarm, so a hang fails the test. The slow tests run 10,000 cases
each (seeded, derandomized); the fast ones 300.
"""

from __future__ import annotations

import signal
import string
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optuna_nos.core.errors import NOSError
from optuna_nos.study.config import StudyConfig, load_config, parse_config

SECTIONS = ["study", "ga", "objective", "workers", "artifacts"]
KEYS = [
    "space",
    "lr_schedule_base",
    "paper_mode",
    "unary_root_decay_prob",
    "change_op_max_unary",
    "n_particles",
    "init_factor",
    "steps",
    "mutations",
    "max_redraws",
    "elitism",
    "seed",
    "target",
    "heartbeat_interval",
    "grace_period",
    "max_retry",
    "dir",
    "device",
    "sleep_s",
]
WORDS = [
    "paper",
    "adam_variants",
    "lr_schedule",
    "adam",
    "nesterov",
    "proxy.tasks:digits",
    "a:b",
    ":",
    "x:",
    "",
    "cpu",
]
CASE_LIMIT_S = 5


@contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    def timeout(signum: int, frame: object) -> None:
        raise TimeoutError(f"a config case took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _only_nos_error(load: Callable[[], StudyConfig]) -> None:
    with _alarm(CASE_LIMIT_S):
        try:
            config = load()
        except NOSError as exc:
            message = str(exc)
            assert message and "\n" not in message.strip(), message
            return
    assert isinstance(config, StudyConfig)
    assert config.workers.grace_period > config.workers.heartbeat_interval


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-3, max_value=130),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
tables = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), values, max_size=6)
configs = st.one_of(
    st.dictionaries(st.sampled_from(SECTIONS) | st.text(max_size=6), tables | values, max_size=5),
    values,
)

LINES = [
    "[study]",
    "[ga]",
    "[objective]",
    "[workers]",
    "[artifacts]",
    "[[ga]]",
    "[ga.sub]",
    'space = "paper"',
    'space = "adam_variants"',
    "paper_mode = true",
    "unary_root_decay_prob = 0.85",
    "unary_root_decay_prob = nan",
    "change_op_max_unary = 23",
    "n_particles = 4",
    "n_particles = 0",
    "n_particles = 99999999999999999999",
    "unary_root_decay_prob = 1" + "0" * 400,
    "init_factor = -1",
    "steps = 2",
    "mutations = 3.5",
    "seed = 0",
    "elitism = false",
    'target = "proxy.tasks:digits"',
    'target = "a:b:c"',
    "heartbeat_interval = 10",
    "grace_period = 5",
    "max_retry = 2",
    'dir = "art"',
    "x = [1, 2, {a = 1}]",
    "= 1",
    'key = """',
    "a.b.c = 1",
    "inf = inf",
    "k = 1979-05-27T07:32:00Z",
]
texts = st.lists(
    st.sampled_from(LINES)
    | st.text(alphabet=string.printable, max_size=20)
    | st.binary(max_size=8).map(lambda b: b.decode("latin-1")),
    max_size=12,
).map("\n".join)


def _fixed_runs(n: int) -> settings:
    """Hypothesis settings for ``n`` reproducible examples, no database, no health checks."""
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def _fuzz_parse(n: int) -> Callable[[], None]:
    @_fixed_runs(n)
    @given(configs)
    def check(data: Any) -> None:
        _only_nos_error(lambda: parse_config(data))

    return check


def _fuzz_load(n: int, directory: Path) -> Callable[[], None]:
    path = directory / "fuzz.toml"

    @_fixed_runs(n)
    @given(texts, st.booleans())
    def check(text: str, as_bytes: bool) -> None:
        if as_bytes:  # text that is not UTF-8
            path.write_bytes(text.encode("utf-8", "surrogatepass") + b"\xff\xfe")
        else:
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _only_nos_error(lambda: load_config(path))

    return check


def test_parse_config_fuzz_fast() -> None:
    _fuzz_parse(300)()


def test_load_config_fuzz_fast(tmp_path: Path) -> None:
    _fuzz_load(300, tmp_path)()


@pytest.mark.slow
def test_parse_config_fuzz_10k() -> None:
    _fuzz_parse(10_000)()


@pytest.mark.slow
def test_load_config_fuzz_10k() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _fuzz_load(10_000, Path(tmp))()


@pytest.mark.parametrize(
    "data",
    [
        {"study": {"unary_root_decay_prob": 10**400}},
        {"study": {"unary_root_decay_prob": float("nan")}},
        {"study": {"unary_root_decay_prob": -(10**400)}},
        {"workers": {"heartbeat_interval": 5, "grace_period": 5}},
        {"objective": {"target": ["a:b"]}},
        {"artifacts": {"dir": 3}},
        {"study": []},
    ],
)
def test_edge_values_raise_nos_error(data: dict[str, Any]) -> None:
    with pytest.raises(NOSError):
        parse_config(data)
