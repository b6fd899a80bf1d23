"""Study configuration: a TOML file, validated, stored once in the study's user attrs.

Every worker reads the configuration from the study (``optuna-nos init`` writes it, and
with it the GA record of :meth:`StudyConfig.ga_record`), so workers cannot disagree. A
configuration looks like::

    [study]
    space = "paper"                  # paper | adam_variants | lr_schedule
    paper_mode = false               # true: behave as the released code

    [ga]
    n_particles = 50
    init_factor = 10
    steps = 5
    mutations = 7
    max_redraws = 4
    elitism = false
    # seed = 0                       # omit for a per-worker seed

    [objective]
    target = "proxy.tasks:cifar10"   # module:factory; the other keys are the factory's
    data_root = "~/data"

    [workers]
    heartbeat_interval = 60
    grace_period = 120
    max_retry = 3

    [artifacts]
    dir = "optuna-nos-artifacts"     # omit for no PNG artifacts

Errors name the key and what it allows.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import Settings
from optuna_nos.core.validation import check_int
from optuna_nos.study.stored import CONFIG_ATTR, read_ga_record, search_record

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

__all__ = [
    "CONFIG_ATTR",
    "GAConfig",
    "StudyConfig",
    "WorkerConfig",
    "load_config",
    "parse_config",
    "record_search",
    "study_settings",
]

SPACES = ("paper", "adam_variants", "lr_schedule")
LR_SCHEDULE_BASES = ("adam", "nesterov")
#: Every integer of the [ga] and [workers] tables and its range: large enough for any real
#: search, small enough that no value exhausts memory or overflows a clock.
GA_RANGES = {
    "n_particles": (1, 10_000),
    "init_factor": (1, 1_000),
    "steps": (1, 1_000),
    "mutations": (1, 1_000),
    "max_redraws": (1, 100),
    "seed": (0, 2**32 - 1),
}
WORKER_RANGES = {
    "heartbeat_interval": (1, 3_600),
    "grace_period": (2, 86_400),
    "max_retry": (1, 100),
}
#: The most slots (trials) of either phase: n_particles * init_factor and
#: n_particles * steps * mutations.
MAX_PHASE_SLOTS = 1_000_000


@dataclass(frozen=True)
class GAConfig:
    """The particle GA's shape: n particles from ``init_factor * n`` random genomes, each
    taking ``steps`` steps of ``mutations`` children, a child redrawn up to ``max_redraws``
    attempts; with ``elitism`` a particle keeps its genome when it beats all its children.
    ``seed`` None seeds each worker for itself. Every integer lies in :data:`GA_RANGES`.
    """

    n_particles: int = 50
    init_factor: int = 10
    steps: int = 5
    mutations: int = 7
    max_redraws: int = 4
    elitism: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        for key, (low, high) in GA_RANGES.items():
            if key != "seed" or self.seed is not None:
                check_int(key, getattr(self, key), minimum=low, maximum=high)
        if not isinstance(self.elitism, bool):
            raise NOSError(f"elitism must be True or False, got {self.elitism!r}")
        for product, slots in (
            ("n_particles * init_factor", self.n_init),
            ("n_particles * steps * mutations", self.n_particles * self.steps * self.mutations),
        ):
            if slots > MAX_PHASE_SLOTS:
                raise NOSError(
                    f"GA {product} = {slots} trials is too many; "
                    f"allowed: at most {MAX_PHASE_SLOTS}"
                )

    @property
    def n_init(self) -> int:
        """Size of the initial population."""
        return self.init_factor * self.n_particles

    @property
    def n_slots(self) -> int:
        """All slots: n_init + n * (1 + steps * mutations) (500 + 1,800 in the paper)."""
        return self.n_init + self.n_particles * (1 + self.steps * self.mutations)

    def to_dict(self) -> dict[str, int | bool]:
        """The sizes (every field but ``seed``)."""
        return {
            "n_particles": self.n_particles,
            "init_factor": self.init_factor,
            "steps": self.steps,
            "mutations": self.mutations,
            "max_redraws": self.max_redraws,
            "elitism": self.elitism,
        }


@dataclass(frozen=True)
class WorkerConfig:
    """Heartbeat and retry settings of every worker's storage."""

    heartbeat_interval: int = 60
    grace_period: int = 120
    max_retry: int = 3


@dataclass(frozen=True)
class StudyConfig:
    """The whole, validated study configuration."""

    space: str = "paper"
    lr_schedule_base: str = "adam"
    settings: Settings = field(default_factory=Settings)
    ga: GAConfig = field(default_factory=GAConfig)
    objective_target: str = "proxy.tasks:digits"
    objective_options: Mapping[str, Any] = field(default_factory=dict)
    workers: WorkerConfig = field(default_factory=WorkerConfig)
    artifact_dir: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        """The search-space variant as the sampler and ``suggest_genome`` name it: ``space``,
        or ``"lr_schedule:<base>"`` for an lr_schedule search with a base other than Adam."""
        from optuna_nos.space.variants import Variant  # keeps torch out of the CLI's start-up

        return str(Variant(self.space, self.lr_schedule_base))

    def ga_record(self) -> dict[str, Any]:
        """The GA record of this config (sizes, seed, variant, settings), as ``optuna-nos
        init`` stores it."""
        return search_record(self.ga, self.variant, self.settings)

    def to_json(self) -> str:
        """The configuration as the JSON text of its validated TOML tables."""
        return json.dumps(self.raw, sort_keys=True)


def _kind(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(
        {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
            t, t.__name__
        )
        for t in types
    )


def _get(
    table: Mapping[str, Any],
    section: str,
    key: str,
    expected: type | tuple[type, ...],
    default: Any,
    check: Callable[[Any], bool] | None = None,
    allowed: str = "",
) -> Any:
    if key not in table:
        return default
    value = table[key]
    types = expected if isinstance(expected, tuple) else (expected,)
    ok_type = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > 2**1023:
            raise NOSError(f"config key '{section}.{key}' = {value} is out of range")
        ok_type, value = True, float(value)
    if not ok_type:
        raise NOSError(f"config key '{section}.{key}' must be {_kind(expected)}, got {value!r}")
    if check is not None and not check(value):
        raise NOSError(
            f"config key '{section}.{key}' = {value!r} is not allowed; allowed: {allowed}"
        )
    return value


#: How deeply tables and arrays may nest in a config (the objective's tables need 3).
MAX_DEPTH = 16
#: The largest integer magnitude a config may hold (a signed 64-bit integer's).
MAX_INT = 2**63 - 1


def _check_plain(value: Any, where: str, depth: int = 0) -> None:
    """Accept only what both TOML and JSON hold alike: strings without NUL, booleans, 64-bit
    integers, finite numbers, and arrays and tables of them, nested at most MAX_DEPTH deep.

    Anything else (a TOML datetime, NaN, a huge integer) could not be stored in the study, or
    would compare unequal to itself when a worker checks the stored config.
    """
    if depth > MAX_DEPTH:
        raise NOSError(f"config value {where!r} nests more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise NOSError(f"config value {where!r} holds a NUL character")
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if abs(value) > MAX_INT:
            raise NOSError(
                f"config value {where!r} = {value} is out of range; allowed: -{MAX_INT}..{MAX_INT}"
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise NOSError(
                f"config value {where!r} = {value!r} is not allowed; allowed: a finite number"
            )
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NOSError(f"config key {key!r} in {where!r} is not a string")
            _check_plain(item, f"{where}.{key}" if where else key, depth + 1)
    else:
        raise NOSError(
            f"config value {where!r} is a {type(value).__name__}; allowed: strings, "
            "booleans, numbers, arrays and tables"
        )


def _section(
    data: Mapping[str, Any], name: str, keys: tuple[str, ...], open_keys: bool = False
) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise NOSError(f"config section '{name}' must be a table, got {table!r}")
    if not open_keys:
        for key in table:
            if key not in keys:
                raise NOSError(
                    f"unknown config key {f'{name}.{key}'!r}; allowed: {', '.join(keys)}"
                )
    return table


def _bounded(
    section: str, key: str, default: int | None, low: int, high: int
) -> Callable[[Mapping[str, Any]], Any]:
    """A reader of the integer ``section.key`` that must lie in ``low..high``."""
    return lambda table: _get(
        table,
        section,
        key,
        int,
        default,
        lambda v: low <= v <= high,
        f"an integer in {low}..{high}",
    )


_SECTIONS = ("study", "ga", "objective", "workers", "artifacts")
_STUDY_KEYS = (
    "space",
    "lr_schedule_base",
    "paper_mode",
    "unary_root_decay_prob",
    "change_op_max_unary",
)
_GA_KEYS = ("n_particles", "init_factor", "steps", "mutations", "max_redraws", "elitism", "seed")
_WORKER_KEYS = ("heartbeat_interval", "grace_period", "max_retry")


def parse_config(data: Mapping[str, Any]) -> StudyConfig:
    """Validate a configuration given as nested tables (parsed TOML or stored JSON)."""
    if not isinstance(data, dict):
        raise NOSError(f"a study config must be a table, got {type(data).__name__}")
    _check_plain(data, "")
    for name in data:
        if name not in _SECTIONS:
            raise NOSError(f"unknown config section {name!r}; allowed: {', '.join(_SECTIONS)}")

    study = _section(data, "study", _STUDY_KEYS)
    space = _get(study, "study", "space", str, "paper", lambda v: v in SPACES, ", ".join(SPACES))
    base = _get(
        study,
        "study",
        "lr_schedule_base",
        str,
        "adam",
        lambda v: v in LR_SCHEDULE_BASES,
        ", ".join(LR_SCHEDULE_BASES),
    )
    settings = Settings(
        paper_mode=_get(study, "study", "paper_mode", bool, False),
        unary_root_decay_prob=_get(
            study,
            "study",
            "unary_root_decay_prob",
            float,
            0.85,
            lambda v: 0.0 <= v <= 1.0,
            "a number in [0, 1]",
        ),
        change_op_max_unary=_get(
            study,
            "study",
            "change_op_max_unary",
            int,
            23,
            lambda v: 0 <= v <= 24,
            "an integer in 0..24",
        ),
    )

    ga_table = _section(data, "ga", _GA_KEYS)
    ga = GAConfig(
        **{
            key: _bounded("ga", key, getattr(GAConfig, key), *GA_RANGES[key])(ga_table)
            for key in GA_RANGES
        },
        elitism=_get(ga_table, "ga", "elitism", bool, False),
    )

    objective = dict(_section(data, "objective", (), open_keys=True))
    target = objective.pop("target", "proxy.tasks:digits")
    if not isinstance(target, str) or target.count(":") != 1 or not all(target.split(":")):
        raise NOSError(
            f"config key 'objective.target' must look like 'module:factory', got {target!r}"
        )

    worker_table = _section(data, "workers", _WORKER_KEYS)
    workers = WorkerConfig(
        **{
            key: _bounded("workers", key, getattr(WorkerConfig, key), *WORKER_RANGES[key])(
                worker_table
            )
            for key in _WORKER_KEYS
        }
    )
    if workers.grace_period <= workers.heartbeat_interval:
        raise NOSError(
            f"config key 'workers.grace_period' ({workers.grace_period}) must exceed "
            f"'workers.heartbeat_interval' ({workers.heartbeat_interval})"
        )

    artifacts = _section(data, "artifacts", ("dir",))
    artifact_dir = _get(artifacts, "artifacts", "dir", str, None)

    return StudyConfig(
        space=space,
        lr_schedule_base=base,
        settings=settings,
        ga=ga,
        objective_target=target,
        objective_options=objective,
        workers=workers,
        artifact_dir=artifact_dir,
        raw=data,
    )


def load_config(source: str | Path) -> StudyConfig:
    """Read and validate a TOML study config from a file path."""
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NOSError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise NOSError(f"config file {str(path)!r} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NOSError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except RecursionError:
        raise NOSError(f"config file {str(path)!r} nests tables or arrays too deeply") from None
    return parse_config(data)


def record_search(record: Mapping[str, Any]) -> tuple[GAConfig, str, Settings]:
    """The sizes (with seed), space and settings of a GA record: the inverse of
    :func:`search_record`. Keys a record lacks take their defaults."""
    fields = [f.name for f in dataclasses.fields(GAConfig)]
    stored_settings = record.get("settings", {})
    try:
        sizes = GAConfig(**{key: record[key] for key in fields if key in record})
        settings = Settings(**stored_settings)
    except TypeError as exc:
        raise NOSError(f"the study's GA record is malformed: {exc}") from None
    return sizes, str(record.get("space", "paper")), settings


def study_settings(storage: BaseStorage, study_id: int) -> Settings:
    """The behaviour switches the study's genomes were searched with: its GA record's; for a
    study without one, its config's (set up before ``init`` wrote records) or the defaults."""
    record = read_ga_record(storage, study_id)
    if record is not None:
        return record_search(record)[2]
    config = storage.get_study_user_attrs(study_id).get(CONFIG_ATTR)
    return Settings() if config is None else parse_config(config).settings
