"""A sweep worker: claim a trial from the shared study, train it, report it; until the study has enough trials.

Several workers (processes of one ``dfkd sweep --workers N``, or ``dfkd sweep`` runs on other machines pointing at
the same ``--storage``) run this loop on one study; the claims in :mod:`dfkd.experiments.sweep.study` keep them
from running a grid point twice.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from dfkd.experiments.sweep.spec import SweepSpec, grid_points, point_key, trial_config
from dfkd.experiments.sweep.study import (
    ATTR_ERROR,
    ATTR_INTERRUPTED,
    Heartbeat,
    all_trials,
    claim_waiting,
    counts_as_done,
    fail_stale,
    is_duplicate,
    load_study,
    mark_claim,
    open_storage,
    quiet_optuna,
    study_storage,
    top_up_grid,
    trial_params,
    worker_name,
)
from dfkd.experiments.sweep.trial import TrialOutcome, history_value, objective_value, train_and_validate

logger = logging.getLogger(__name__)

Runner = Callable[..., TrialOutcome]


@dataclass
class WorkerJob:
    """Everything one worker process needs (picklable for ``spawn``)."""

    spec: SweepSpec
    base: dict[str, Any]
    out: str
    storage_url: str
    study_name: str
    target: int
    run_id: str
    index: int = 0
    runner: Runner = train_and_validate
    heartbeat_interval: int = 10
    grace_period: int = 60
    poll_seconds: float = 5.0
    torch_threads: int | None = None
    log_level: int | None = None
    start_method: str | None = None  # the parent's default, for the DataLoader workers of a spawned worker


def suggest(trial: optuna.Trial, spec: SweepSpec) -> dict[str, Any]:
    """The trial's parameters: its fixed grid point (recorded as categorical params) or TPE draws over ``space``."""
    params: dict[str, Any] = {}
    if spec.mode == "grid":
        for key, values in spec.grid.items():
            params[key] = trial.suggest_categorical(key, values)  # type: ignore[arg-type]
        return params
    for key, dim in spec.space.items():
        if dim.choices is not None:
            params[key] = trial.suggest_categorical(key, dim.choices)  # type: ignore[arg-type]
        elif dim.type == "int":
            assert dim.low is not None and dim.high is not None
            params[key] = trial.suggest_int(key, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log)
        else:
            assert dim.low is not None and dim.high is not None
            params[key] = trial.suggest_float(key, dim.low, dim.high, step=dim.step, log=dim.log)
    return params


def _progress(spec: SweepSpec, trials: list, run_id: str) -> tuple[int, int]:
    """(finished, running) trials; for a grid, distinct points."""
    live = [t for t in trials if not is_duplicate(t)]
    done = [t for t in live if counts_as_done(t, run_id)]
    running = sum(t.state == TrialState.RUNNING for t in live)
    if spec.mode == "grid":
        return len({point_key(trial_params(t)) for t in done}), running
    return len(done), running


def run_worker(job: WorkerJob, storage: RDBStorage | None = None) -> int:
    """Run trials until the study holds ``job.target`` finished ones (or nothing is left to claim); returns how many
    this worker ran. A KeyboardInterrupt marks the running trial FAIL (so a resumed sweep runs it again) and stops.

    Args:
        job: the sweep and this worker's place in it.
        storage: an already open storage for ``job.storage_url`` (in-process workers); else one is opened.
    """
    if job.log_level is not None:
        line = f"%(asctime)s [worker {job.index}] %(levelname)s %(name)s: %(message)s"
        logging.basicConfig(level=job.log_level, format=line, force=True)
    if job.start_method is not None:
        # A spawned process defaults to spawn too: every DataLoader worker would re-import torch and dfkd
        # (seconds each, per loader). Its loaders fork like the parent's.
        multiprocessing.set_start_method(job.start_method, force=True)
    if job.torch_threads:
        import torch

        torch.set_num_threads(job.torch_threads)
    spec = job.spec
    if storage is None:
        storage = open_storage(
            job.storage_url, heartbeat_interval=job.heartbeat_interval, grace_period=job.grace_period
        )
    points = grid_points(spec) if spec.mode == "grid" else []
    me = worker_name(job.index)
    ran = 0
    with quiet_optuna():
        study = load_study(storage, spec, job.study_name, seed=spec.seed)
        seed = spec.seed + 1000 * job.index + len(all_trials(study))  # differs per worker and per resume
        study = load_study(storage, spec, job.study_name, seed=seed)
        while True:
            fail_stale(study)
            if spec.mode == "grid":
                top_up_grid(study, points, job.run_id, job.target)
            done, running = _progress(spec, all_trials(study), job.run_id)
            if done >= job.target:
                break
            trial_id = None
            if spec.mode == "grid":
                trial_id = claim_waiting(study, job.run_id, me, dedupe=True)
            elif done + running < job.target:
                trial_id = claim_waiting(study, job.run_id, me, dedupe=False)
                if trial_id is None:
                    trial_id = study_storage(study).create_new_trial(study._study_id)
                    study_storage(study).record_heartbeat(trial_id)
                    mark_claim(study, trial_id, job.run_id, me)
            if trial_id is None:
                if running:  # others hold the rest: wait for them to finish or to go stale
                    time.sleep(job.poll_seconds)
                    continue
                break
            _run_one(job, study, trial_id)
            ran += 1
    logger.info("worker %s finished after %d trial(s)", me, ran)
    return ran


def _run_one(job: WorkerJob, study: optuna.Study, trial_id: int) -> None:
    spec, storage = job.spec, study_storage(study)
    with Heartbeat(storage, trial_id, job.heartbeat_interval):
        trial = optuna.Trial(study, trial_id)
        params = suggest(trial, spec)
        number = trial.number
        run_dir = Path(job.out) / "trials" / f"{number:04d}"
        started = time.perf_counter()

        def on_epoch(row: dict) -> bool:
            value = history_value(spec.objective, row)
            if not math.isfinite(value):
                return False
            trial.report(value, step=int(row["epoch"]))
            return trial.should_prune()

        try:
            config = trial_config(job.base, params, origin=f"sweep trial {number} {params}")
            trial.set_user_attr("config", config.model_dump(mode="json"))
            logger.info("trial %d: %s", number, _describe(params))
            outcome = job.runner(config, run_dir, on_epoch)
        except KeyboardInterrupt:
            storage.set_trial_system_attr(trial_id, ATTR_INTERRUPTED, True)
            _tell(study, trial, state=TrialState.FAIL)
            logger.warning("trial %d interrupted: marked failed; the next run of this sweep repeats it", number)
            raise
        except Exception as error:
            logger.error("trial %d failed: %s: %s", number, type(error).__name__, error)
            storage.set_trial_system_attr(trial_id, ATTR_ERROR, f"{type(error).__name__}: {error}"[:2000])
            _tell(study, trial, state=TrialState.FAIL)
            return
        value = objective_value(spec.objective, outcome.metrics)
        result = {
            "metrics": {k: v for k, v in outcome.metrics.items() if isinstance(v, (int, float))},
            "best_epoch": outcome.best_epoch,
            "epochs": len(outcome.history),
            "model_path": outcome.model_path,
            "run_dir": str(run_dir),
            "seconds": round(time.perf_counter() - started, 3),
        }
        trial.set_user_attr("result", result)
        if not math.isfinite(value):
            storage.set_trial_system_attr(trial_id, ATTR_ERROR, f"{spec.objective} is not finite ({value})")
            _tell(study, trial, state=TrialState.FAIL)
            logger.error("trial %d failed: %s is not finite", number, spec.objective)
            return
        if outcome.pruned:
            _tell(study, trial, state=TrialState.PRUNED)
            logger.info(
                "trial %d pruned after %d epoch(s) (%s %.4f)", number, len(outcome.history), spec.objective, value
            )
        else:
            _tell(study, trial, values=value)
            logger.info("trial %d: %s %.4f", number, spec.objective, value)


def _tell(study: optuna.Study, trial: optuna.Trial, **kwargs: Any) -> None:
    try:
        study.tell(trial, **kwargs)
    except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError) as error:
        logger.warning(
            "trial %d could not be finished in the study (declared stale by another worker?): %s", trial.number, error
        )


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def trial_errors(trials: list) -> list[tuple[int, str]]:
    """(number, message) of trials that failed with an error."""
    return [(t.number, t.system_attrs[ATTR_ERROR]) for t in trials if ATTR_ERROR in t.system_attrs]
