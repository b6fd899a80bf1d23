"""Worker liveness on real PostgreSQL with real worker processes, faults at exact windows.

Each fault is injected by ``testkit.fault_worker`` at the window it names (a SIGKILL right
after ``nos:slot`` is written, right after the trial row is created, inside a popped retry's
``Trial.__init__``; a KeyboardInterrupt just before the sampler runs; ...). The checks read
the trial table back: the search finishes, no trial is left RUNNING, no slot is decided by
an infrastructure fault, no retry runs on a slot another attempt took.
"""

from __future__ import annotations

import datetime
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from optuna_nos import ParticleSampler
from optuna_nos.sampler import GASizes, TrialRecord, derive_state
from optuna_nos.sampler._liveness import fail_own_running_trials, worker_id
from optuna_nos.study.storage import make_storage
from testkit.config import FAST_SIZES, ga_table, objective_table, workers_table
from testkit.process import cli_command, cli_env, run_argv

SIZES = FAST_SIZES
GA = ga_table() + workers_table(1, 2, 3)
FAST = GA + objective_table("fast")
SLEEPY = GA + objective_table("sleepy") + "sleep_s = {sleep}\n"
TIMEOUT_S = 300  # generous: the shared CI and dev machines run many workers at once


def _command(fault: str | None, args: list[str], marker: Path | None = None) -> list[str]:
    if fault is None:
        return cli_command(*args)
    head = [fault] + ([str(marker)] if marker is not None else [])
    return [sys.executable, "-m", "testkit.fault_worker", *head, "--", *args]


def _run(fault: str | None, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_argv(_command(fault, args), cwd, TIMEOUT_S)


def _start(
    fault: str | None, args: list[str], cwd: Path, marker: Path | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _command(fault, args, marker),
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _init(url: str, tmp_path: Path, text: str = FAST) -> list[str]:
    config = tmp_path / "study.toml"
    config.write_text(text)
    done = _run(
        None, ["init", "--storage", url, "--study", "s", "--config", str(config)], tmp_path
    )
    assert done.returncode == 0, done.stderr
    return ["worker", "--storage", url, "--study", "s"]


def _study(url: str) -> optuna.Study:
    return optuna.load_study(study_name="s", storage=make_storage(url, heartbeat_interval=None))


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    return _study(url).get_trials(deepcopy=False)


def _assert_finished_and_clean(url: str) -> None:
    study = _study(url)
    assert ParticleSampler(**SIZES).is_finished(study)
    running = [t.number for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    assert running == []


pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


# -- High 1 and 2: no window leaves a trial RUNNING or a slot held forever ----------------------


@pytest.mark.parametrize("fault", ["kill-after-slot", "kill-after-create"])
def test_worker_killed_while_claiming_does_not_hang_the_search(
    fault: str, postgres_url: str, tmp_path: Path
) -> None:
    worker = _init(postgres_url, tmp_path)
    killed = _run(fault, worker, tmp_path)
    assert killed.returncode == -signal.SIGKILL
    assert [t.state for t in _trials(postgres_url)] == [TrialState.RUNNING]
    healthy = _run(None, worker, tmp_path)  # hung forever (timeout) before the fix
    assert healthy.returncode == 0, healthy.stderr[-2000:]
    _assert_finished_and_clean(postgres_url)
    assert _trials(postgres_url)[0].state == TrialState.FAIL


def test_popped_retry_killed_inside_trial_init_does_not_hang(
    postgres_url: str, tmp_path: Path
) -> None:
    worker = _init(postgres_url, tmp_path, SLEEPY.format(sleep=0.2))
    assert _run("kill-in-objective", worker, tmp_path).returncode == -signal.SIGKILL
    time.sleep(3)  # the killed trial goes stale; the next worker queues its retry, pops it
    assert _run("kill-in-retry", worker, tmp_path).returncode == -signal.SIGKILL
    retry = [t for t in _trials(postgres_url) if t.system_attrs.get("retry_history")]
    assert retry and retry[-1].state == TrialState.RUNNING
    healthy = _run(None, worker, tmp_path)
    assert healthy.returncode == 0, healthy.stderr[-2000:]
    _assert_finished_and_clean(postgres_url)
    trials = _trials(postgres_url)
    me = {t.system_attrs.get("nos:worker") for t in trials if t.state == TrialState.COMPLETE}
    # The retries ran under the healthy worker's id, not the dead workers' ids they copied.
    assert len(me) == 1


def test_interrupt_before_the_sampler_leaves_no_trial_running(
    postgres_url: str, tmp_path: Path
) -> None:
    worker = _init(postgres_url, tmp_path)
    done = _run("interrupt-before-sampler", worker, tmp_path)
    assert done.returncode == 130
    trials = _trials(postgres_url)
    assert [t.state for t in trials] == [TrialState.FAIL]
    assert trials[0].user_attrs["nos.reason"] == "interrupted: SIGINT"
    assert "trial 0 marked FAIL" in done.stderr


def test_interrupt_without_a_trial_says_so(postgres_url: str, tmp_path: Path) -> None:
    worker = _init(postgres_url, tmp_path)
    done = _run("interrupt-before-optimize", worker, tmp_path)
    assert done.returncode == 130
    assert "no trial was running" in done.stderr and "marked FAIL" not in done.stderr
    assert _trials(postgres_url) == []


def test_double_signal_exits_130(postgres_url: str, tmp_path: Path) -> None:
    worker = _init(postgres_url, tmp_path, SLEEPY.format(sleep=30))
    marker = tmp_path / "cleanup"
    proc = _start("slow-cleanup", worker, tmp_path, marker)
    deadline = time.monotonic() + TIMEOUT_S
    while not any(t.user_attrs.get("drill.started") for t in _trials(postgres_url)):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    while not marker.exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # lands in the clean-up: exited -15 before the fix
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert [t.state for t in _trials(postgres_url)] == [TrialState.FAIL]


# -- Medium 4: a trial failed as stale while its objective ran ----------------------------------


def test_result_of_a_trial_failed_elsewhere_is_dropped(postgres_url: str, tmp_path: Path) -> None:
    worker = _init(postgres_url, tmp_path, SLEEPY.format(sleep=6))
    proc = _start("no-objective-heartbeat", [*worker, "--n-trials", "2"], tmp_path)
    deadline = time.monotonic() + TIMEOUT_S
    while not any(t.user_attrs.get("drill.started") for t in _trials(postgres_url)):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    time.sleep(3)  # past the 2 s grace period: another worker would fail it now
    storage = make_storage(postgres_url, heartbeat_interval=1, grace_period=2, max_retry=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(optuna.load_study(study_name="s", storage=storage))
    assert _trials(postgres_url)[0].state == TrialState.FAIL
    _, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, err[-2000:]  # ValueError: Cannot tell a FAIL trial before
    assert "its result is dropped" in err and "Traceback" not in err


# -- High 3: environment errors are not charged to genomes --------------------------------------


@pytest.mark.parametrize(
    "objective, fragment",
    [
        ('target = "proxy.tasks:cifar10"\ndata_root = "/nonexistent"', "/nonexistent"),
        ('target = "proxy.tasks:digits"\ndevice = "cuda:7"', "cuda"),
    ],
)
def test_worker_without_data_or_device_claims_nothing(
    objective: str, fragment: str, postgres_url: str, tmp_path: Path
) -> None:
    worker = _init(postgres_url, tmp_path, GA + f"\n[objective]\n{objective}\n")
    done = _run(None, worker, tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot run trials" in lines[0] and fragment in lines[0].lower()
    assert _trials(postgres_url) == []


def test_infrastructure_fault_mid_trial_leaves_the_slot_open(
    postgres_url: str, tmp_path: Path
) -> None:
    text = GA + objective_table("broken_disk")
    worker = _init(postgres_url, tmp_path, text)
    for _ in range(SIZES["max_redraws"] + 1):
        done = _run(None, worker, tmp_path)
        assert done.returncode == 2
        assert "environment" in done.stderr and "Traceback" not in done.stderr
    study = _study(postgres_url)
    failed = study.get_trials(deepcopy=False)
    assert len(failed) == SIZES["max_redraws"] + 1
    assert all(
        t.state == TrialState.FAIL
        and t.system_attrs["nos:fault"] == "infrastructure"
        and t.user_attrs["nos.reason"].startswith("infrastructure: FileNotFoundError")
        for t in failed
    )
    assert ParticleSampler(**SIZES).n_decided(study) == 0


def test_infrastructure_crashes_never_decide_a_slot() -> None:
    sizes = GASizes(**SIZES)

    def crash(number: int, fault: bool) -> TrialRecord:
        trial = create_trial(
            state=TrialState.FAIL,
            system_attrs={
                "nos:slot": "init 0",
                "nos:genome": "{}",
                **({"nos:fault": "infrastructure"} if fault else {}),
            },
        )
        trial.number = number
        return TrialRecord.from_trial(trial)

    infra = derive_state([crash(n, True) for n in range(5)], sizes)
    assert infra.slot(infra.open_slots[0].slot).decided is False
    assert infra.n_decided == 0 and "init 0" in {o.slot.name for o in infra.open_slots}
    genome = derive_state([crash(n, False) for n in range(2)], sizes)
    assert genome.n_decided == 1  # max_redraws genome crashes decide it, as before


# -- Medium 5: unique worker ids ----------------------------------------------------------------


def test_worker_ids_differ_for_processes_with_the_same_host_and_pid() -> None:
    code = (
        "import os; os.getpid = lambda: 1; "
        "from optuna_nos.sampler._liveness import worker_id; print(worker_id())"
    )
    ids = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=cli_env()
        ).stdout.strip()
        for _ in range(2)
    ]
    assert ids[0] != ids[1]
    assert all(i.split(":")[1] == "1" for i in ids)
    assert worker_id() == worker_id()


# -- Low 12: a retry never runs on a slot another attempt took ----------------------------------


@pytest.mark.parametrize("other", ["complete", "running"])
def test_retry_on_a_taken_slot_is_dropped(other: str, postgres_url: str) -> None:
    storage = make_storage(postgres_url, heartbeat_interval=60, max_retry=3)
    study = optuna.create_study(
        study_name="s",
        storage=storage,
        direction="maximize",
        sampler=ParticleSampler(**SIZES, seed=0),
    )
    sampler = study.sampler
    assert isinstance(sampler, ParticleSampler)

    def objective(trial: optuna.Trial) -> float:
        from optuna_nos import suggest_genome

        suggest_genome(trial)
        return 1.0

    study.optimize(objective, n_trials=1)  # trial 0 holds "init <j>" with a genome
    first = study.trials[0]
    attrs = dict(first.system_attrs)
    if other == "running":  # another attempt holds a different slot with a genome
        attrs["nos:slot"] = next(f"init {j}" for j in range(4) if f"init {j}" != attrs["nos:slot"])
        study.add_trial(
            create_trial(
                state=TrialState.RUNNING,
                system_attrs=attrs,
                params=first.params,
                distributions=first.distributions,
            )
        )
    waiting = create_trial(
        state=TrialState.WAITING,
        params=first.params,
        distributions=first.distributions,
        system_attrs={**attrs, "failed_trial": 0, "retry_history": [0]},
    )
    study.add_trial(waiting)
    study.optimize(objective, n_trials=1)
    retry = [t for t in study.trials if t.system_attrs.get("retry_history")][0]
    assert retry.state == TrialState.PRUNED
    assert retry.system_attrs.get("nos:slot") is None
    assert retry.user_attrs["nos.reason"].startswith("retry dropped")


# -- Low 18: outage retries use Optuna's supported API ------------------------------------------


def test_failing_own_trials_queues_retries_without_deprecation(postgres_url: str) -> None:
    storage = make_storage(postgres_url, heartbeat_interval=60, max_retry=3)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    trial.set_user_attr("x", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        failed = fail_own_running_trials(study, "storage outage during the trial", retry=True)
    assert failed == [trial.number]
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.WAITING]


def test_orphan_without_heartbeat_is_failed_after_the_grace_period(postgres_url: str) -> None:
    plain = optuna.storages.RDBStorage(
        postgres_url.replace("postgresql://", "postgresql+psycopg2://")
    )
    study = optuna.create_study(study_name="s", storage=plain)
    orphan = plain.create_new_trial(study._study_id)  # no heartbeat row, as after a SIGKILL
    storage = make_storage(postgres_url, heartbeat_interval=1, grace_period=2, max_retry=0)
    assert storage._get_stale_trial_ids(study._study_id) == []
    assert storage.get_trial(orphan).datetime_start is not None
    time.sleep(2.5)
    assert storage._get_stale_trial_ids(study._study_id) == [orphan]
    assert datetime.datetime.now() > storage.get_trial(orphan).datetime_start
