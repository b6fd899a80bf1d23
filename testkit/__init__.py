"""Support code shared by the test suite (``tests/``) and the benchmarks (``bench/``).

* :mod:`testkit.postgres`: the test PostgreSQL server and fresh databases on it.
* :mod:`testkit.config`: small study configs (TOML text) for the ``optuna-nos`` command.
* :mod:`testkit.process`: running ``optuna-nos`` in subprocesses, free ports.
* :mod:`testkit.objectives`: fast objective factories (``objective.target =
  "testkit.objectives:fast"``).
* :mod:`testkit.fault_worker`: ``optuna-nos`` with one fault injected at an exact window.
* :mod:`testkit.dashboard`: a small finished study served by optuna-dashboard.
* :mod:`testkit.genomes`, :mod:`testkit.stats`, :mod:`testkit.reference`: helpers of the
  search-space, sampling and trainer tests (``testkit.stats`` also holds the bootstrap
  interval the benches report).
* :mod:`testkit.drills`: the reliability drills (``bench/drills.py`` is their command line).
* :mod:`testkit.proxy_drills`: the drills through ``optuna-nos proxy``
  (``bench/proxy_drills.py`` is their command line).
"""
