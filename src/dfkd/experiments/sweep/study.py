"""The Optuna study behind a sweep: RDB storage, atomic claims of grid points, heartbeats and stale trials.

Why claims are safe across processes and machines:

* Grid points are enqueued as WAITING trials. A worker claims one by switching it WAITING → RUNNING through
  ``storage.set_trial_state_values``, which Optuna runs as ``SELECT … FOR UPDATE`` and refuses when the trial is no
  longer WAITING. PostgreSQL and MySQL lock the row; SQLite ignores ``FOR UPDATE``, so for SQLite every
  transaction of our engine starts with ``BEGIN IMMEDIATE`` (the SQLAlchemy recipe for serialisable SQLite), which
  makes the read-check-write one atomic step.
* Two processes that top the queue up at the same moment may enqueue the same point twice. After a claim the worker
  looks at every trial of that point: if one is finished, or running with a lower number, the claim is dropped
  (marked FAIL with ``dfkd:duplicate_of``). Of two claimed duplicates exactly the lower-numbered one runs.
* A running trial records a heartbeat; one whose heartbeat is older than the grace period (its process was killed)
  is marked FAIL by the next worker that looks, and its point is enqueued again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from dfkd.config import EXECUTION_SETTINGS, ConfigError, differing_keys
from dfkd.experiments.sweep.spec import SweepSpec, point_key, resolved_base

logger = logging.getLogger(__name__)

ATTR_SIGNATURE = "dfkd:signature"
ATTR_BASE = "dfkd:base"  # the resolved base config (JSON)
ATTR_DUPLICATE = "dfkd:duplicate_of"
ATTR_ERROR = "dfkd:error"
ATTR_CLAIM = "dfkd:claim"  # {"run": invocation id, "worker": host:pid:index}
ATTR_INTERRUPTED = "dfkd:interrupted"
FINISHED_OK = (TrialState.COMPLETE, TrialState.PRUNED)


def _sqlite_immediate(storage: RDBStorage) -> None:
    """Make every SQLite transaction of ``storage`` take the write lock at BEGIN (atomic read-check-write)."""
    from sqlalchemy import event

    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners existed must not be reused


def open_storage(url: str, *, heartbeat_interval: int = 10, grace_period: int = 60) -> RDBStorage:
    """An Optuna RDB storage (SQLite, PostgreSQL, MySQL URL) with heartbeats; SQLite made safe for several processes."""
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 120}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            storage = RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval, grace_period=grace_period
            )
        except ImportError as error:
            driver = "pip install 'psycopg[binary]' for postgresql://"
            raise ConfigError(f"--storage {url}: {error} (install the database driver: {driver})") from None
        except Exception as error:
            raise ConfigError(f"--storage {url}: cannot open ({error})") from None
    if storage.engine.name == "sqlite":
        _sqlite_immediate(storage)
    return storage


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    """Median pruner (steps are epochs; no pruning up to ``warmup_epochs``) or none."""
    if spec.pruner.name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=spec.pruner.startup_trials, n_warmup_steps=spec.pruner.warmup_epochs + 1
    )


def make_sampler(spec: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    """TPE for mode tpe; grid trials carry fixed parameters, so the sampler never draws for them."""
    if spec.mode == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def create_or_load_study(
    storage: RDBStorage, spec: SweepSpec, study_name: str, *, seed: int = 0, base: dict | None = None
) -> optuna.Study:
    """Create the study or load it; refuses a study made from another search definition or base config."""
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=spec.resolved_direction,
        sampler=make_sampler(spec, seed),
        pruner=make_pruner(spec),
        load_if_exists=True,
    )
    signature = spec.signature()
    attrs = storage.get_study_system_attrs(study._study_id)
    if ATTR_SIGNATURE not in attrs:
        storage.set_study_system_attr(study._study_id, ATTR_SIGNATURE, signature)
        storage.set_study_system_attr(study._study_id, "dfkd:params", spec.params)
    elif attrs[ATTR_SIGNATURE] != signature:
        raise ConfigError(
            f"study {study_name!r} in this storage was made by another sweep definition (mode, objective, direction, "
            "grid or space differ): use another --storage or set study_name in the sweep file"
        )
    if base is not None:
        wanted = resolved_base(base)
        made = attrs.get(ATTR_BASE)
        if made is None:  # a new study, or one made before the base was recorded
            storage.set_study_system_attr(study._study_id, ATTR_BASE, wanted)
        elif changed := differing_keys(made, wanted, ignore=EXECUTION_SETTINGS):
            raise ConfigError(
                f"study {study_name!r} in this storage was made from a base config with other {', '.join(changed)} "
                "(the base file or --set), whose finished trials would be reused as this sweep's: use another out "
                "folder or --storage, or set study_name in the sweep file"
            )
    if study.direction.name.lower() != spec.resolved_direction:
        raise ConfigError(
            f"study {study_name!r} optimises {study.direction.name.lower()}, the sweep file asks "
            f"{spec.resolved_direction}"
        )
    return study


def load_study(storage: RDBStorage, spec: SweepSpec, study_name: str, *, seed: int) -> optuna.Study:
    """Load an existing study with this process's sampler and pruner."""
    return optuna.load_study(
        study_name=study_name, storage=storage, sampler=make_sampler(spec, seed), pruner=make_pruner(spec)
    )


def trial_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters a trial runs with: its fixed (enqueued) ones, else the suggested ones."""
    fixed = trial.system_attrs.get("fixed_params")
    return dict(fixed) if fixed else dict(trial.params)


def study_storage(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes through (Optuna's caching wrapper around the RDB storage).

    Every write goes through it, so that trials this process claims are known to the wrapper.
    """
    return study._storage


def all_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Every trial of the study (unfinished ones read fresh from the database)."""
    return study_storage(study).get_all_trials(study._study_id, deepcopy=False)


def is_duplicate(trial: FrozenTrial) -> bool:
    """A claim dropped because another trial holds the same point."""
    return ATTR_DUPLICATE in trial.system_attrs


def counts_as_done(trial: FrozenTrial, run_id: str) -> bool:
    """Finished (complete or pruned), or failed with an error in this invocation (not retried until the next)."""
    if trial.state in FINISHED_OK:
        return True
    return (
        trial.state == TrialState.FAIL
        and (trial.system_attrs.get(ATTR_CLAIM) or {}).get("run") == run_id
        and (ATTR_ERROR in trial.system_attrs)
    )


def fail_stale(study: optuna.Study) -> None:
    """Mark running trials whose heartbeat stopped (killed processes) as FAIL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def top_up_grid(study: optuna.Study, points: list[dict[str, Any]], run_id: str, limit: int) -> int:
    """Enqueue the grid points that no trial holds (waiting, running, finished, or errored in this invocation).

    Points are taken in grid order and only as many as ``limit`` (the study's target) allows; returns the number
    enqueued.
    """
    held: set[str] = set()
    for trial in all_trials(study):
        if is_duplicate(trial):
            continue
        if trial.state in (TrialState.WAITING, TrialState.RUNNING) or counts_as_done(trial, run_id):
            held.add(point_key(trial_params(trial)))
    added = 0
    for params in points[:limit]:
        if point_key(params) not in held:
            study.enqueue_trial(params)
            added += 1
    if added:
        logger.info("enqueued %d grid point(s)", added)
    return added


def mark_claim(study: optuna.Study, trial_id: int, run_id: str, worker: str) -> None:
    """Record which invocation and worker hold a trial."""
    study_storage(study).set_trial_system_attr(trial_id, ATTR_CLAIM, {"run": run_id, "worker": worker})


def worker_name(index: int) -> str:
    """``host:pid:index`` of this worker (recorded on the trials it runs)."""
    return f"{socket.gethostname()}:{os.getpid()}:{index}"


def claim_waiting(study: optuna.Study, run_id: str, worker: str, *, dedupe: bool) -> int | None:
    """Switch one WAITING trial to RUNNING for this worker (lowest number first); returns its trial id or None."""
    storage = study_storage(study)
    waiting = sorted(
        storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,)), key=lambda t: t.number
    )
    for candidate in waiting:
        try:
            if not storage.set_trial_state_values(candidate._trial_id, state=TrialState.RUNNING):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        storage.record_heartbeat(candidate._trial_id)
        mark_claim(study, candidate._trial_id, run_id, worker)
        if dedupe:
            holder = _holder_of_point(study, candidate, run_id)
            if holder is not None:
                logger.info("trial %d: point already held by trial %d; dropped", candidate.number, holder.number)
                storage.set_trial_system_attr(candidate._trial_id, ATTR_DUPLICATE, holder.number)
                storage.set_trial_state_values(candidate._trial_id, state=TrialState.FAIL)
                continue
        return candidate._trial_id
    return None


def _holder_of_point(study: optuna.Study, claimed: FrozenTrial, run_id: str) -> FrozenTrial | None:
    key = point_key(trial_params(claimed))
    for other in all_trials(study):
        if other.number == claimed.number or is_duplicate(other) or point_key(trial_params(other)) != key:
            continue
        if counts_as_done(other, run_id) or (other.state == TrialState.RUNNING and other.number < claimed.number):
            return other
    return None


class Heartbeat:
    """Record a trial's heartbeat every ``interval`` seconds in a thread while the block runs."""

    def __init__(self, storage: BaseStorage, trial_id: int, interval: float) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as error:
                logger.warning("heartbeat of trial id %d failed: %s", self.trial_id, error)

    def __enter__(self) -> Heartbeat:
        self.storage.record_heartbeat(self.trial_id)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's experimental-feature warnings and its per-trial INFO lines (dfkd logs its own)."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            yield
        finally:
            optuna.logging.set_verbosity(level)
