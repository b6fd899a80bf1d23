"""The gRPC storage proxy: URLs, liveness by trial attr, the stale sweep, and the kill drill."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from optuna_nos.cli.commands import main
from optuna_nos.core.errors import NOSError
from optuna_nos.study import grpc_proxy
from optuna_nos.study.liveness import BEAT_ATTR, BeatObserver, fail_stale
from testkit import drills
from testkit.postgres import DEFAULT_SERVER, require_postgres
from testkit.process import free_port

pytest.importorskip("grpc")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("grpc://127.0.0.1:13000", ("127.0.0.1", 13000)),
        ("grpc://proxy.cluster.local:50051/", ("proxy.cluster.local", 50051)),
        ("  grpc://[::1]:7000 ", ("::1", 7000)),
    ],
)
def test_parse_grpc_url(url: str, expected: tuple[str, int]) -> None:
    assert grpc_proxy.parse_grpc_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "grpc://host",
        "grpc://host:0",
        "grpc://host:70000",
        "grpc://:13000",
        "grpc://user:pw@host:1",
        "grpc://h:1/x",
    ],
)
def test_bad_grpc_url_is_one_line_error(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(NOSError, match="grpc://HOST:PORT"):
        grpc_proxy.parse_grpc_url(url)
    assert main(["leaderboard", "--storage", url, "--study", "s"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optuna-nos: error:") and "\n" not in err and "pw" not in err


def test_unreachable_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grpc_proxy, "CONNECT_TIMEOUT_S", 0.5)
    with pytest.raises(NOSError, match="unreachable"):
        grpc_proxy.make_grpc_storage(f"grpc://127.0.0.1:{free_port()}")


def _running_trial(study: optuna.Study, beat: object = None) -> int:
    trial_id = study._storage.create_new_trial(study._study_id)
    study._storage.set_trial_param(
        trial_id, "x", 0.5, optuna.distributions.FloatDistribution(0, 1)
    )
    if beat is not None:
        study._storage.set_trial_system_attr(trial_id, BEAT_ATTR, beat)
    return trial_id


def test_observer_judges_beats_on_its_own_clock() -> None:
    study = optuna.create_study()
    clock = FakeClock()
    observer = BeatObserver(3.0, clock)
    beating, silent, unbeaten = (
        _running_trial(study, 1),
        _running_trial(study, 1),
        _running_trial(study),
    )

    def stale() -> list[int]:
        return observer.stale(
            study._storage.get_all_trials(study._study_id, states=(TrialState.RUNNING,))
        )

    assert stale() == []  # first sight starts every clock, whatever the beat's value
    clock.now += 2.0
    study._storage.set_trial_system_attr(beating, BEAT_ATTR, 2)
    assert stale() == []
    clock.now += 1.0  # 3 s since the silent ones were first seen
    assert stale() == [silent, unbeaten]
    clock.now += 1.0  # 2 s since the beating one's new beat was first seen
    assert beating not in stale()
    clock.now += 1.0
    assert beating in stale()
    study._storage.set_trial_state_values(beating, TrialState.COMPLETE, [1.0])
    assert stale() == [silent, unbeaten]


def test_fail_stale_fails_once_and_queues_the_same_params() -> None:
    study = optuna.create_study()
    clock = FakeClock()
    trial_id = _running_trial(study, 1)
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        retry = RetryHeartbeatStaleTrialCallback(max_retry=2)
    first, second = BeatObserver(3.0, clock), BeatObserver(3.0, clock)
    assert fail_stale(study, first, retry) == [] and fail_stale(study, second, retry) == []
    clock.now += 3.0
    # Both sweepers judge the trial stale; the storage lets only the first finish it.
    running = study._storage.get_all_trials(study._study_id, states=(TrialState.RUNNING,))
    assert second.stale(running) == [trial_id]
    assert fail_stale(study, first, retry) == [trial_id]
    assert fail_stale(study, second, retry) == []
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].params == {"x": 0.5}
    assert trials[1].system_attrs["failed_trial"] == 0


def test_proxy_does_not_adopt_the_trials_it_creates(tmp_path: Path) -> None:
    """The worker that asked for a trial names it; the proxy writes nothing into it after
    creating it (such a write failed the worker's request when a sweep failed the trial
    first)."""
    from optuna_nos.study.stored import WORKER_ATTR

    storage = grpc_proxy.served_storage(f"sqlite:///{tmp_path / 'p.db'}", threads=2)
    study = optuna.create_study(storage=storage)
    running = storage.create_new_trial(study._study_id)
    waiting = storage.create_new_trial(
        study._study_id, optuna.trial.create_trial(state=TrialState.WAITING)
    )
    assert storage.set_trial_state_values(waiting, TrialState.RUNNING)
    for trial_id in (running, waiting):
        assert WORKER_ATTR not in storage.get_trial(trial_id).system_attrs
    storage.engine.dispose()


@pytest.mark.slow
def test_proxy_sigkill_drill() -> None:
    require_postgres()
    result = drills.run_drill("proxy-sigkill", DEFAULT_SERVER)
    assert result.passed, "\n".join(result.findings)


def test_stopped_proxy_counts_as_a_storage_outage() -> None:
    from optuna.storages._grpc.server import make_server

    from optuna_nos.cli.commands import _is_storage_outage

    port = free_port()
    server = make_server(optuna.storages.InMemoryStorage(), "127.0.0.1", port)
    server.start()
    storage = grpc_proxy.make_grpc_storage(f"grpc://127.0.0.1:{port}", heartbeat_interval=None)
    assert storage.get_all_studies() == []
    server.stop(grace=None).wait()
    with pytest.raises(Exception) as lost:
        storage.get_all_studies()
    assert _is_storage_outage(lost.value)
    assert not _is_storage_outage(KeyError("no such study"))
    storage.close()
