"""Hostile CLI input: configs that can never run, broken storage URLs and databases, counts.

Each case calls the command's ``main()`` in-process (as the console script does) and checks
that it prints one ``optuna-nos: error:`` line, exits 2, and leaves no study, schema or
database file behind. PostgreSQL cases use a real server (the ``postgres_url`` fixture).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import psycopg2
import pytest

from optuna_nos.cli.commands import main
from optuna_nos.study.storage import make_storage
from testkit.config import ga_table, objective_table, workers_table

RUNNABLE = ga_table(seed="{seed}") + workers_table(2, 5)


def _fails_in_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("optuna-nos: error: "), err
    return err


def _tables(url: str) -> list[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return [row[0] for row in cur.fetchall()]


# -- configs that can never run are refused before anything is stored ----------------------

FAST = objective_table("fast")
DIGITS = '[objective]\ntarget = "proxy.tasks:digits"\n'
#: case: (objective table, ga.seed, a fragment of the error)
NEVER_RUNS = {
    "unknown objective key": (DIGITS + "frob = 1\n", 0, "objective.frob"),
    "missing module": ('[objective]\ntarget = "no_such_module:x"\n', 0, "no_such_module"),
    "negative batch size": (DIGITS + "batch_size = -5\n", 0, "batch_size"),
    "seed beyond 32 bits": (FAST, 4294967296, "ga.seed"),
    "not a factory": ('[objective]\ntarget = "os:getcwd"\n', 0, "'os:getcwd'"),
    "not an objective": ('[objective]\ntarget = "os:fspath"\n', 0, "'os:fspath'"),
    "syntax error": ('[objective]\ntarget = "nos_broken_module:f"\n', 0, "SyntaxError"),
    "TOML datetime": (FAST + "when = 1979-05-27T07:32:00Z\n", 0, "objective.when"),
    "NaN": (FAST + "sleep_s = nan\n", 0, "objective.sleep_s"),
}


def _config(tmp_path: Path, objective: str = FAST, seed: int = 0) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(RUNNABLE.format(seed=seed) + objective)
    return path


@pytest.mark.parametrize("command", ["init", "run"])
@pytest.mark.parametrize("case", sorted(NEVER_RUNS))
def test_a_config_that_cannot_run_is_refused_and_stores_nothing(
    case: str,
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "nos_broken_module.py").write_text("def f(config):\n    return (\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    objective, seed, fragment = NEVER_RUNS[case]
    config = _config(tmp_path, objective, seed)
    db = tmp_path / "s.db"
    err = _fails_in_one_line(
        [command, "--storage", f"sqlite:///{db}", "--study", "s", "--config", str(config)], capsys
    )
    assert fragment in err
    assert not db.exists()


def test_a_refused_config_leaves_the_name_free(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    bad = _config(tmp_path, '[objective]\ntarget = "no_such_module:x"\n')
    _fails_in_one_line(
        ["init", "--storage", storage, "--study", "s", "--config", str(bad)], capsys
    )
    good = _config(tmp_path)
    assert main(["init", "--storage", storage, "--study", "s", "--config", str(good)]) == 0


# -- read-only commands write nothing ----------------------------------------------------


@pytest.mark.parametrize("argv", [["leaderboard"], ["show", "0"], ["export", "0"]])
def test_read_only_commands_create_no_sqlite_file(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "missing.db"
    err = _fails_in_one_line([*argv, "--storage", f"sqlite:///{db}", "--study", "s"], capsys)
    assert "does not exist" in err
    assert not db.exists()


@pytest.mark.parametrize("argv", [["leaderboard"], ["show", "0"], ["export", "0"], ["worker"]])
def test_read_only_commands_create_no_postgres_schema(
    argv: list[str], postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _fails_in_one_line([*argv, "--storage", postgres_url, "--study", "s"], capsys)
    assert "holds no Optuna studies" in err
    assert _tables(postgres_url) == []


# -- storage URLs and databases ------------------------------------------------------------


def _foreign_studies_table(tmp_path: Path) -> str:
    path = tmp_path / "other_app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE studies (id INTEGER PRIMARY KEY, title TEXT)")
    return f"sqlite:///{path}"


def _old_schema(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    optuna.create_study(study_name="s", storage=url)
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'v1.2.0.a'")
    return url


def _not_a_database(tmp_path: Path) -> str:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 40)
    return f"sqlite:///{path}"


BAD_STORAGES = {
    "port not a number": (lambda tmp: "postgresql://u:pw@127.0.0.1:abc/db", "cannot parse"),
    "unclosed IPv6 host": (lambda tmp: "postgresql://u:pw@[::1/db", "cannot parse"),
    "two ports": (lambda tmp: "postgresql://u:pw@127.0.0.1:5433:5433/db", "cannot parse"),
    "bare postgres URL": (lambda tmp: "postgresql://", "must name a host and a database"),
    "no database name": (lambda tmp: "postgresql://u@127.0.0.1:5432", "must name a host"),
    "unknown sqlite option": (lambda tmp: f"sqlite:///{tmp}/x.db?frob=1", "unknown option"),
    "not a database": (_not_a_database, "file is not a database"),
    "another application's studies table": (_foreign_studies_table, "not Optuna's"),
    "schema of another Optuna version": (_old_schema, "optuna storage upgrade"),
}


@pytest.mark.parametrize("command", [["init", "--config", "{config}"], ["leaderboard"]])
@pytest.mark.parametrize("case", sorted(BAD_STORAGES))
def test_a_bad_storage_is_one_line(
    case: str, command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    make_url, fragment = BAD_STORAGES[case]
    url = make_url(tmp_path)
    argv = [a.replace("{config}", str(config)) for a in command]
    err = _fails_in_one_line([*argv, "--storage", url, "--study", "s"], capsys)
    assert fragment in err
    assert "pw@" not in err
    assert not (tmp_path / "x.db").exists()


def test_unknown_postgres_option_is_one_line(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _fails_in_one_line(["leaderboard", "--storage", f"{postgres_url}?frob=1"], capsys)
    assert 'invalid connection option "frob"' in err


def test_connect_timeout_of_the_url_is_kept(postgres_url: str) -> None:
    storage = make_storage(f"{postgres_url}?connect_timeout=3")
    connection = storage.engine.raw_connection()
    try:
        parameters = connection.dbapi_connection.get_dsn_parameters()  # type: ignore[union-attr]
    finally:
        connection.close()
        storage.engine.dispose()
    assert parameters["connect_timeout"] == "3"


@pytest.mark.parametrize(
    "argv",
    [
        ["leaderboard", "--study", "s" * 513],
        ["run", "--n-trials", "-5"],
        ["run", "--n-trials", "0"],
        ["run", "--top", "-3"],
        ["leaderboard", "--top", "-3"],
        ["worker", "--storage", "sqlite://", "--study", "s", "--n-trials", "-5"],
    ],
)
def test_bad_counts_and_names_are_refused(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("study name" in err or "integer >= 1" in err)
    assert list(tmp_path.iterdir()) == []


# -- a worker started during a database outage waits for it --------------------------------


def _init_study_w(tmp_path: Path) -> str:
    """Initialise study ``w`` in a fresh SQLite file under ``tmp_path``; its storage URL."""
    storage = f"sqlite:///{tmp_path / 'w.db'}"
    assert (
        main(["init", "--storage", storage, "--study", "w", "--config", str(_config(tmp_path))])
        == 0
    )
    return storage


def test_a_worker_starting_during_an_outage_waits_for_the_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy.exc

    from optuna_nos.cli import commands as cli

    storage = _init_study_w(tmp_path)
    real_load, calls = optuna.load_study, []

    def load_during_outage(**kwargs: object) -> optuna.Study:
        calls.append(kwargs["study_name"])
        if len(calls) == 1:  # what a restarting server gives the first query
            raise optuna.exceptions.StorageInternalError(
                "lost"
            ) from sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed"))
        return real_load(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(optuna, "load_study", load_during_outage)
    monkeypatch.setattr(cli.time, "sleep", lambda seconds: None)
    args = cli.build_parser().parse_args(["worker", "--storage", storage, "--study", "w"])
    config, study = cli._open_worker_study(args)
    assert len(calls) == 3 and study.study_name == "w" and config.ga.n_particles == 2


def test_a_worker_does_not_retry_what_is_not_an_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optuna_nos.cli import commands as cli

    storage = _init_study_w(tmp_path)

    def broken(**kwargs: object) -> optuna.Study:
        raise RuntimeError("not an outage")

    monkeypatch.setattr(optuna, "load_study", broken)
    args = cli.build_parser().parse_args(["worker", "--storage", storage, "--study", "w"])
    with pytest.raises(RuntimeError, match="not an outage"):
        cli._open_worker_study(args)
