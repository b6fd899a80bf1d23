"""Packing helpers: the ``--pack`` value, the packed-objective check, and the packed worker
through a storage outage (SQLite, the fault patched in where it bites)."""

from __future__ import annotations

from pathlib import Path

import pytest

from optuna_nos.core.errors import NOSError
from optuna_nos.study.packing import Pack, pack_size, packed_objective


class _Sized:
    def auto_pack(self) -> int:
        return 5

    def evaluate_pack(self, pack: object) -> None:
        return None


def test_pack_size_reads_an_int_or_auto() -> None:
    assert pack_size("3", _Sized()) == 3
    assert pack_size("auto", _Sized()) == 5


@pytest.mark.parametrize("text", ["0", "-2", "many", "2.5"])
def test_bad_pack_size_names_the_value(text: str) -> None:
    with pytest.raises(NOSError, match=f"got '{text}'"):
        pack_size(text, _Sized())


def test_objectives_without_packing_are_refused() -> None:
    with pytest.raises(NOSError, match="cannot evaluate packs"):
        packed_objective(lambda trial: 0.0)
    with pytest.raises(NOSError, match="cannot size packs"):
        pack_size("auto", object())
    assert packed_objective(_Sized()) is not None


# -- the packed worker through a storage outage ------------------------------------------------


def _outage() -> Exception:
    """What a restarting server gives a query: Optuna's error raised from SQLAlchemy's."""
    import optuna
    import sqlalchemy.exc

    try:
        raise sqlalchemy.exc.OperationalError("UPDATE trials", {}, Exception("server closed"))
    except sqlalchemy.exc.OperationalError as cause:
        error = optuna.exceptions.StorageInternalError("lost")
        error.__cause__ = cause
        return error


def test_packed_worker_waits_out_an_outage_and_retries_its_pack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pack's tell meets a lost connection: the worker waits for the storage, fails
    the pack's trials (queued again with their parameters) and goes on to its trial count."""
    import optuna
    from optuna.trial import TrialState

    from optuna_nos.cli import commands as cli
    from optuna_nos.study.storage import make_storage

    storage = make_storage(
        f"sqlite:///{tmp_path / 'p.db'}", heartbeat_interval=1, grace_period=3, max_retry=2
    )
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(0))
    down = {"tell": True, "polls": 0}
    real_tell = optuna.Study.tell

    def tell(self: optuna.Study, *args: object, **kwargs: object) -> object:
        if down["tell"]:
            raise _outage()
        return real_tell(self, *args, **kwargs)  # type: ignore[arg-type]

    real_attrs = type(storage).get_study_user_attrs

    def poll(self: object, study_id: int) -> object:
        down["polls"] += 1
        if down["polls"] == 1:
            raise _outage()  # still down at the first poll
        down["tell"] = False  # back at the second
        return real_attrs(self, study_id)  # type: ignore[arg-type]

    monkeypatch.setattr(optuna.Study, "tell", tell)
    monkeypatch.setattr(type(storage), "get_study_user_attrs", poll)
    monkeypatch.setattr(cli.time, "sleep", lambda seconds: None)

    class Objective:
        def evaluate_pack(self, pack: Pack) -> None:
            for trial in pack.trials:
                pack.complete(trial, trial.suggest_float("x", 0.0, 1.0))

    cli._optimize_packed(study, Objective(), "2", n_trials=4)
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [0, 1]
    assert all(t.user_attrs["nos.reason"] == "storage outage during the trial" for t in failed)
    retried = {
        t.system_attrs["failed_trial"]: t for t in trials if "failed_trial" in t.system_attrs
    }
    assert sorted(retried) == [0, 1]
    assert all(retry.state == TrialState.COMPLETE for retry in retried.values())
    assert retried[0].params == trials[0].params  # trial 1 never reached its suggest
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
    assert down["polls"] == 2


def test_packed_worker_gives_up_on_an_error_that_is_no_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna
    from optuna.trial import TrialState

    from optuna_nos.cli import commands as cli

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'p.db'}")

    class Objective:
        def evaluate_pack(self, pack: Pack) -> None:
            raise RuntimeError("broken objective")

    with pytest.raises(RuntimeError, match="broken objective"):
        cli._optimize_packed(study, Objective(), "2", n_trials=4)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert trials[0].user_attrs["nos.reason"] == "packed objective raised RuntimeError"
