"""``dfkd sweep``: validate every trial config, cache the teacher once, run workers on the study, write the table."""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
import uuid
from pathlib import Path
from typing import Any

import yaml
from optuna.storages import RDBStorage

from dfkd.config import ConfigError, validate_config
from dfkd.experiments.sweep.outputs import SweepSummary, write_outputs
from dfkd.experiments.sweep.spec import (
    CACHE_KEYS,
    SweepSpec,
    grid_points,
    load_sweep_spec,
    resolve_base,
    set_dotted,
    validate_all,
)
from dfkd.experiments.sweep.study import all_trials, create_or_load_study, open_storage, quiet_optuna, top_up_grid
from dfkd.experiments.sweep.trial import train_and_validate
from dfkd.experiments.sweep.worker import Runner, WorkerJob, run_worker
from dfkd.utils import write_text

logger = logging.getLogger(__name__)


def default_storage(out: Path) -> str:
    """``sqlite:///OUT/sweep.db`` (absolute, so every worker opens the same file)."""
    return f"sqlite:///{(out / 'sweep.db').resolve()}"


def _uses_distillation(spec: SweepSpec, base: dict[str, Any]) -> bool:
    losses = {validate_config(base).distill.loss}
    losses.update(str(v) for v in spec.grid.get("distill.loss", []))
    if "distill.loss" in spec.space and spec.space["distill.loss"].choices:
        losses.update(str(v) for v in spec.space["distill.loss"].choices)
    return bool(losses - {"none"})


def share_teacher_cache(spec: SweepSpec, base: dict[str, Any], out: Path) -> dict[str, Any]:
    """Compute the teacher's logits once (into ``teacher.cache`` or ``OUT/teacher_logits``), gate the teacher, and
    point every trial at them; the cache is per image, so batch size, lr, α, T and the loss may vary freely.

    Whether a cache applies is the trainer's own rule (:func:`dfkd.distill.distillers.teacher_source`): a teacher
    run online (random augmentation, mixup, feature losses, ``teacher.online``) gets no shared cache.
    """
    import torch

    from dfkd.data.manifest import read_manifest
    from dfkd.distill.distillers import CachedLogits, build_distiller, teacher_gate, teacher_source
    from dfkd.experiments.sweep.trial import device_for
    from dfkd.train.setup import student_view

    config = validate_config(base)
    if not _uses_distillation(spec, base) or config.teacher.model is None:
        return base
    varied = sorted(set(spec.params) & set(CACHE_KEYS))
    if varied:
        logger.warning("the sweep varies %s: each trial computes its own teacher logits", ", ".join(varied))
        return base
    if config.distill.loss == "none":  # the grid or space turns distillation on: judge the rule with it on
        config = config.model_copy(update={"distill": config.distill.model_copy(update={"loss": "kl"})})
    if teacher_source(config) != "cache":
        logger.info("the teacher runs online in every trial: no shared logit cache")
        return base
    assert config.data.manifest is not None
    manifest = read_manifest(config.data.manifest)
    distiller = build_distiller(config, manifest, student_view(config), out, device_for(config))
    assert isinstance(distiller, CachedLogits) and distiller.cache_dir is not None
    logger.info("teacher logits for every trial: %s", distiller.cache_dir)
    # The trainer's gate, once for the whole sweep: a weak teacher fails here, not in every trial.
    labels = torch.tensor(manifest.labels("val"), dtype=torch.float32)
    teacher_gate(distiller.cache["val"], labels, min_auc=config.teacher.min_auc, skip=config.teacher.skip_gate)
    shared = copy.deepcopy(base)
    set_dotted(shared, "teacher.cache", str(distiller.cache_dir.resolve()))
    return shared


def _check_data(base: dict[str, Any]) -> None:
    config = validate_config(base)
    if config.data.manifest is None:
        raise ConfigError("data.manifest: required (in the base config, or --set data.manifest=PATH)")
    if not Path(config.data.manifest).is_file():
        raise ConfigError(f"data.manifest: {config.data.manifest} not found")
    if config.teacher.model is not None and not Path(config.teacher.model).is_file():
        raise ConfigError(f"teacher.model: {config.teacher.model} not found")


def run_sweep(
    spec: SweepSpec | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    overrides: list[str] | None = None,
    storage: str | None = None,
    n_trials: int | None = None,
    workers: int = 1,
    runner: Runner = train_and_validate,
    heartbeat_interval: int = 10,
    grace_period: int = 60,
    poll_seconds: float = 5.0,
    study_name: str | None = None,
) -> SweepSummary:
    """Run (or resume, or join) a sweep and write its outputs into ``out``.

    Args:
        spec: a sweep file path or a parsed :class:`SweepSpec`.
        out: the sweep folder (``trials/<number>/`` per trial, ``sweep.csv``, ``sweep.md``, ``best.yaml`` …).
        overrides: ``key=value`` applied to the base config of every trial.
        storage: an Optuna RDB URL; default ``sqlite:///OUT/sweep.db``. Every process given the same URL (and
            study name) works on the same study: finished trials are never repeated.
        n_trials: the number of finished trials the study should hold (grid: capped at the grid's size; tpe:
            default ``n_trials`` of the file, else 20).
        workers: worker processes started here (``spawn``); each claims and trains trials.
        runner: trains one trial (tests pass fakes); must be picklable for ``workers > 1``.
        heartbeat_interval: seconds between a running trial's heartbeats.
        grace_period: a running trial without a heartbeat for this long was killed: it is failed and rerun.
        poll_seconds: how often an idle worker looks again while other workers hold the remaining trials.
        study_name: default: the file's ``study_name``, else the sweep file's stem, else ``sweep``.

    Raises:
        ConfigError: a bad sweep file, override or trial config (naming the key), before anything trains.
    """
    spec_path = None
    if not isinstance(spec, SweepSpec):
        spec_path = Path(spec)
        spec = load_sweep_spec(spec_path)
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"--n-trials must be at least 1, got {n_trials}")
    out = Path(out)
    base = resolve_base(spec, overrides, spec_path=spec_path)
    checked = validate_all(spec, base)
    _check_data(base)
    target = spec.target_trials(n_trials)
    name = study_name or spec.study_name or (spec_path.stem if spec_path else "sweep")
    logger.info(
        "sweep %r: %s mode, %d trial config(s) valid, target %d finished trial(s)", name, spec.mode, checked, target
    )
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "sweep_spec.yaml", yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    signed_base = copy.deepcopy(base)  # before the shared teacher cache, whose folder is this sweep's own
    base = share_teacher_cache(spec, base, out)
    url = storage or default_storage(out)
    db = open_storage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    run_id = uuid.uuid4().hex[:12]
    with quiet_optuna():
        study = create_or_load_study(db, spec, name, seed=spec.seed, base=signed_base)
        existing = all_trials(study)
        finished = sum(t.state.is_finished() and t.state.name in ("COMPLETE", "PRUNED") for t in existing)
        if finished:
            logger.info("study %r already holds %d finished trial(s): they are not repeated", name, finished)
        if spec.mode == "grid":
            top_up_grid(study, grid_points(spec), run_id, target)
    jobs = [
        WorkerJob(
            spec=spec,
            base=base,
            out=str(out.resolve()),
            storage_url=url,
            study_name=name,
            target=target,
            run_id=run_id,
            index=index,
            runner=runner,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            poll_seconds=poll_seconds,
        )
        for index in range(workers)
    ]
    failures = _run_workers(jobs, runner, db)
    with quiet_optuna():
        summary = write_outputs(study, all_trials(study), spec, out, name, target=target)
    if failures:
        raise RuntimeError("; ".join(failures))
    return summary


def _run_workers(jobs: list[WorkerJob], runner: Runner, storage: RDBStorage) -> list[str]:
    """Run the jobs here (one) or in spawned processes (several); returns a line per crashed worker process."""
    if len(jobs) == 1:
        run_worker(jobs[0], storage)
        return []
    level = logging.getLogger().getEffectiveLevel()
    threads = max(1, (os.cpu_count() or 1) // len(jobs)) if runner is train_and_validate else None
    start_method = multiprocessing.get_start_method()
    context = multiprocessing.get_context("spawn")
    processes = []
    for job in jobs:
        job.log_level, job.torch_threads, job.start_method = level, threads, start_method
        process = context.Process(target=run_worker, args=(job,), name=f"dfkd-sweep-worker-{job.index}")
        process.start()
        processes.append(process)
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        logger.warning("interrupted: waiting for the workers to mark their trials failed")
        for process in processes:
            process.join(timeout=30)
        raise
    return [f"worker {p.name} exited with code {p.exitcode}" for p in processes if p.exitcode]
