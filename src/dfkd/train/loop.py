"""One explicit training loop for teachers and students, on Lightning Fabric, as short functions.

:func:`train` wires the parts; :func:`train_one_epoch` steps the student through one epoch; :func:`evaluate` scores a
split. The method-specific part is the loss, behind one distiller per method (:mod:`dfkd.distill.distillers`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lightning_fabric import Fabric
from sklearn.metrics import roc_auc_score
from torch import nn

from dfkd.config import EXECUTION_SETTINGS, RunConfig, differing_keys, save_config
from dfkd.data.manifest import read_manifest
from dfkd.distill.distillers import Distiller, build_distiller, teacher_gate
from dfkd.thresholds import choose_threshold
from dfkd.train.checkpoint import CheckpointError, LoopState, checkpoint_settings, load_checkpoint, save_checkpoint
from dfkd.train.data import RunData, build_datasets, build_loaders, memory_format, mix_batch, single_class_val
from dfkd.train.setup import (
    Student,
    build_fabric,
    check_model_settings,
    setup_student,
    student_view,
    tensorboard_logger,
)
from dfkd.train.summary import model_card_fields, training_face_crop, write_history
from dfkd.utils import set_seed, sigmoid, track, unwritable_reason

logger = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict], None]
StepCallback = Callable[[int], None]


@dataclass
class TrainResult:
    """Where the run's outputs are and how it went."""

    run_dir: Path
    model_path: Path
    best_epoch: int
    best_value: float
    history: list[dict] = field(default_factory=list)
    teacher_auc: float | None = None
    teacher_forward_calls: int = 0
    kept: str = "best"  # which epoch the model file holds: "best" by train.monitor, or "last"


def train_one_epoch(
    fabric: Fabric,
    config: RunConfig,
    student: Student,
    distiller: Distiller,
    data: RunData,
    state: LoopState,
    checkpoint_path: Path,
    step_callback: StepCallback | None = None,
) -> None:
    """Train from ``state``'s position to the end of its epoch; ``step_callback(global_step)`` after each step."""
    assert data.train_loader is not None and data.train_sampler is not None
    batch_size, accumulate = config.data.batch_size, config.train.accumulate_grad_batches
    data.train_sampler.set_position(state.epoch, start=state.batches_done * batch_size)
    batches_per_epoch = math.ceil(data.train_sampler.num_indices / batch_size)
    # The last batch that trains closes the last accumulation group: a one-image leftover is skipped (below).
    last_trained = batches_per_epoch - 1 if data.train_sampler.num_indices % batch_size == 1 else batches_per_epoch
    batches = data.train_loader
    if fabric.is_global_zero:
        description = f"epoch {state.epoch + 1}/{config.train.epochs}"
        batches = track(batches, total=len(data.train_loader), description=description)
    student.model.train()
    for batch in batches:
        state.batches_done += 1
        if batch is None:
            continue
        images, labels, indices = batch
        if len(labels) < 2:  # BatchNorm cannot train on one image; the leftover of an epoch is dropped
            continue
        images = memory_format(config, images)
        if config.data.mixup > 0:
            images, labels = mix_batch(images, labels, config.data.mixup)
        is_step = state.batches_done % accumulate == 0 or state.batches_done == last_trained
        with fabric.no_backward_sync(student.model, enabled=not is_step):
            loss = distiller.loss(_forward(fabric, student.model, images), labels, images=images, indices=indices)
            if data.unlabeled is not None:
                unlabeled = next(data.unlabeled)
                loss = loss + distiller.unlabeled_loss(_forward(fabric, student.model, unlabeled), unlabeled)
            fabric.backward(loss / accumulate)
        state.running_loss += loss.item() * len(labels)
        state.running_count += len(labels)
        if not is_step:
            continue
        student.optimizer.step()
        student.optimizer.zero_grad(set_to_none=True)
        if student.ema is not None:
            student.ema.update_parameters(student.raw)
        state.global_step += 1
        every = config.train.checkpoint_every
        if every and state.global_step % every == 0:
            _save(fabric, checkpoint_path, student, state, config)
        if step_callback is not None:
            step_callback(state.global_step)
    # A last batch whose files were all unreadable leaves its accumulation group without a step: drop those gradients
    # (as a run resumed from this epoch's checkpoint would), or the next epoch's first step would add them in.
    student.optimizer.zero_grad(set_to_none=True)


def _forward(fabric: Fabric, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with fabric.autocast():
        return model(images).float()


@torch.no_grad()
def evaluate(fabric: Fabric, config: RunConfig, model: nn.Module, loader, distiller: Distiller) -> dict:
    """Loss (the distiller's validation objective), AUC, accuracy at 0.5 and the equal-error-rate threshold on one
    split, gathered over all ranks (the threshold only when the split holds both classes)."""
    model.eval()
    all_logits, all_labels, all_indices, losses, weights = [], [], [], [], []
    for batch in loader:
        if batch is None:
            continue
        images, labels, indices = batch
        images = memory_format(config, images)
        logits = _forward(fabric, model, images)
        losses.append(distiller.val_loss(logits, labels, images=images, indices=indices).item() * len(labels))
        weights.append(len(labels))
        all_logits.append(logits)
        all_labels.append(labels)
        all_indices.append(indices)
    logits = torch.cat(all_logits) if all_logits else torch.zeros(0)
    labels = torch.cat(all_labels) if all_labels else torch.zeros(0)
    indices = torch.cat(all_indices) if all_indices else torch.zeros(0, dtype=torch.long)
    loss_sum = torch.tensor([sum(losses), float(sum(weights))], device=fabric.device)
    if fabric.world_size > 1:
        logits, labels, indices = (fabric.all_gather(t).reshape(-1) for t in (logits, labels, indices))
        loss_sum = fabric.all_reduce(loss_sum, reduce_op="sum")
        _, keep = np.unique(indices.cpu().numpy(), return_index=True)  # drop the sampler's padding duplicates
        keep_t = torch.as_tensor(keep)
        logits, labels = logits.cpu()[keep_t], labels.cpu()[keep_t]
    logits_np, labels_np = logits.float().cpu().numpy(), labels.cpu().numpy()
    auc = float(roc_auc_score(labels_np, logits_np)) if len(np.unique(labels_np)) == 2 else math.nan
    accuracy = float(((logits_np > 0) == (labels_np > 0.5)).mean()) if len(labels_np) else math.nan
    model.train()
    metrics = {"val_loss": float(loss_sum[0] / max(loss_sum[1], 1.0)), "val_auc": auc, "val_accuracy": accuracy}
    if not math.isnan(auc):  # where validation has both classes (labelled or self-blended fakes): a first threshold
        metrics["val_threshold"] = choose_threshold(labels_np > 0.5, sigmoid(logits_np), config.train.threshold)
    return metrics


def _save(fabric: Fabric, path: Path, student: Student, state: LoopState, config: RunConfig) -> None:
    save_checkpoint(
        fabric,
        path,
        student.raw,
        student.optimizer,
        student.scheduler,
        state,
        student.ema,
        student.architecture,
        settings=config.model_dump(mode="json"),
    )


RUN_OUTPUTS = ("model.safetensors", "last.ckpt", "metrics.csv")


class RunFolderError(ValueError):
    """The run folder already holds a run that this call would silently replace or continue wrongly."""


def _check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to train over a finished or started run unless told to continue it or to replace it."""
    problem = unwritable_reason(run_dir, folder=True)  # a file in the way would only fail at the first write
    if problem is not None:
        raise RunFolderError(f"--out {run_dir}: {problem}")
    if overwrite or (resume and (run_dir / "last.ckpt").exists()):
        return
    found = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    if found:  # with --resume but no checkpoint, starting fresh would replace the run's outputs just the same
        raise RunFolderError(
            f"{run_dir} already holds a run ({', '.join(found)}); continue it with --resume, replace it with "
            "--overwrite, or choose another --out"
        )


# Settings a resumed run may change: where and how it runs, and how long (the optimiser, schedule, data order and
# model in the checkpoint do not depend on them; a cosine schedule's length does, see below).
RESUMABLE_CHANGES = EXECUTION_SETTINGS | {"data.on_error", "train.threshold", "train.epochs", "train.patience"}


def _resume_mismatch(run_dir: Path, config: RunConfig) -> str | None:
    """Why the run's checkpoint cannot be resumed under ``config`` (None if it can): it carries the run's optimiser
    (learning rate, weight decay), schedule and position in the data, so a changed ``optim.lr`` or ``train.epochs``
    of a cosine schedule would be silently ignored while ``config.yaml`` claimed them. Read from the checkpoint
    itself, so every process of a distributed run decides alike; checkpoints written before it was recorded pass."""
    checkpoint = run_dir / "last.ckpt"
    recorded = checkpoint_settings(checkpoint) if checkpoint.exists() else None
    if recorded is None:
        return None
    try:
        saved = RunConfig.model_validate(recorded).model_dump(mode="json")
    except ValueError as error:  # settings dfkd no longer takes: the run's config cannot be compared
        logger.warning("--resume: cannot compare with the settings %s was written under (%s)", checkpoint, error)
        return None
    # model: the checkpoint records its architecture, which loading it checks and names (pretrained weights only
    # matter at the start)
    changed = differing_keys(saved, config.model_dump(mode="json"), ignore=RESUMABLE_CHANGES | {"model"})
    if config.scheduler.name == "cosine" and saved["train"]["epochs"] != config.train.epochs:
        changed.append("train.epochs (the cosine schedule's length is in the checkpoint)")
    if not changed:
        return None
    return (
        f"{checkpoint}: the run was trained with other {', '.join(changed)} than given now, and its checkpoint would "
        "continue with the old ones (optimiser, schedule and data order are in it): resume with the settings of "
        f"{run_dir / 'config.yaml'}, or start afresh with --overwrite"
    )


def _resume(path: Path, student: Student, resume: bool, overwrite: bool) -> LoopState:
    if resume and path.exists():
        try:
            state = load_checkpoint(
                path, student.raw, student.optimizer, student.scheduler, student.ema, student.architecture
            )
        except CheckpointError:
            if not overwrite:
                raise
            logger.warning("--overwrite: %s does not fit this config; starting the run afresh", path)
            return LoopState()
        logger.info("resumed from %s at epoch %d, batch %d", path, state.epoch, state.batches_done)
        return state
    if resume:
        logger.warning("--resume: no %s yet, starting fresh", path)
    return LoopState()


def _gate(config: RunConfig, distiller: Distiller, data: RunData) -> float | None:
    """The teacher's validation AUC after the gate (None without a teacher)."""
    teacher_logits = distiller.teacher_val_logits(data.val_set)
    if teacher_logits is None:
        return None
    return teacher_gate(
        teacher_logits, data.val_set.labels, min_auc=config.teacher.min_auc, skip=config.teacher.skip_gate
    )


def _monitor_undefined(config: RunConfig, data: RunData) -> bool:
    """Whether no epoch can be chosen by ``train.monitor``: val_auc on a val split of one class (warned about)."""
    single = single_class_val(config, data) if config.train.monitor == "val_auc" else None
    if single is None:
        return False
    # Refusing would stop runs on small or one-sided validation sets; keeping nothing would lose the run's work.
    logger.warning(
        "the val split holds one class only (%s), so val_auc is undefined and no epoch can be chosen by it: the "
        "model file keeps the last epoch, without early stopping (train.monitor=val_loss selects by loss instead)",
        single,
    )
    return True


def _improved(config: RunConfig, value: float, best: float) -> bool:
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value > best if config.train.monitor == "val_auc" else value < best


def _end_epoch(
    config: RunConfig, student: Student, state: LoopState, metrics: dict, started: float
) -> tuple[dict, bool]:
    """Step the schedule, append the epoch's history row and update the best; (row, improved)."""
    if student.scheduler is not None:
        if config.scheduler.name == "plateau":
            student.scheduler.step(metrics["val_loss"])
        else:
            student.scheduler.step()
    row = {
        "epoch": state.epoch + 1,
        "train_loss": state.running_loss / max(state.running_count, 1),
        **metrics,
        "lr": student.optimizer.param_groups[0]["lr"],
        "seconds": time.perf_counter() - started,
    }
    state.history.append(row)
    logger.info(
        "epoch %d: train_loss %.4f val_loss %.4f val_auc %.4f val_acc %.4f",
        *(row[key] for key in ("epoch", "train_loss", "val_loss", "val_auc", "val_accuracy")),
    )
    value = metrics[config.train.monitor]
    improved = _improved(config, value, state.best_value)
    if improved:
        state.best_value, state.best_epoch, state.bad_epochs = value, state.epoch + 1, 0
    else:
        state.bad_epochs += 1
    state.epoch += 1
    state.batches_done, state.running_loss, state.running_count = 0, 0.0, 0
    return row, improved


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    epoch_callback: EpochCallback | None = None,
    step_callback: StepCallback | None = None,
) -> TrainResult:
    """Train the configured model; the best one by ``train.monitor`` becomes ``run_dir/model.safetensors``.

    With ``resume`` the loop continues from ``run_dir/last.ckpt`` (weights, optimiser, scheduler, RNG, position in the
    epoch); on CPU with ``num_workers=0`` the result equals an uninterrupted run's. A checkpoint of another
    architecture than the config's is refused (:class:`~dfkd.train.checkpoint.CheckpointError`), and so is a
    ``run_dir`` that already holds a run when neither ``resume`` nor ``overwrite`` is set (:class:`RunFolderError`);
    ``overwrite`` replaces that run (with ``resume``: only when its checkpoint does not fit).

    ``epoch_callback(epoch, row)`` is called after each epoch's validation with its history row (an exception it
    raises, such as Optuna's ``TrialPruned``, stops the run after that epoch's checkpoint is saved).
    ``step_callback(global_step)`` is called after each optimiser step (and its periodic checkpoint); an exception it
    raises stops the run there.
    """
    from dfkd.models import save_model

    run_dir = Path(run_dir)
    if config.data.manifest is None:
        raise ValueError("data.manifest is required")
    _check_run_dir(run_dir, resume, overwrite)
    mismatch = _resume_mismatch(run_dir, config) if resume else None
    if mismatch and not overwrite:
        raise CheckpointError(mismatch)
    check_model_settings(config)
    if config.data.input_size > config.data.resize_size:
        logger.warning(
            "data.input_size %d > data.resize_size %d: the centre crop pads every image with a black border",
            config.data.input_size,
            config.data.resize_size,
        )
    tensorboard = tensorboard_logger(config, run_dir)
    fabric = build_fabric(config, [tensorboard] if tensorboard is not None else None)
    fabric.launch()
    set_seed(config.train.seed)
    if fabric.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    manifest = read_manifest(config.data.manifest)
    face_crop = training_face_crop(config.data.manifest) if fabric.is_global_zero else (None, [])
    view = student_view(config)
    data = build_datasets(config, manifest, view)
    monitor_undefined = _monitor_undefined(config, data)
    keep_last = config.train.keep == "last" or monitor_undefined  # the model file follows the last epoch
    distiller = build_distiller(config, manifest, view, run_dir, fabric.device)
    teacher_auc = _gate(config, distiller, data)
    build_loaders(fabric, config, data, view)
    student = setup_student(fabric, config, distiller)
    last_path = run_dir / "last.ckpt"
    if mismatch:  # with --overwrite: the run starts afresh, as for a checkpoint that does not fit
        logger.warning("--overwrite: %s; starting the run afresh", mismatch)
    state = _resume(last_path, student, resume and not mismatch, overwrite)

    def patience_spent() -> bool:  # patience on an undefined monitor would only cut the run short
        return not monitor_undefined and state.bad_epochs >= config.train.patience

    # A run resumed after it stopped early is finished: checking first keeps it from training one more epoch.
    while state.epoch < config.train.epochs and not patience_spent():
        started = time.perf_counter()
        train_one_epoch(fabric, config, student, distiller, data, state, last_path, step_callback)
        metrics = evaluate(fabric, config, student.scored, data.val_loader, distiller)
        row, improved = _end_epoch(config, student, state, metrics, started)
        if fabric.is_global_zero:
            if improved or keep_last:
                fields = model_card_fields(config, view, row, teacher_auc, face_crop)
                save_model(student.kept, run_dir / "model.safetensors", fields)
            write_history(run_dir / "metrics.csv", state.history)
        if tensorboard is not None:
            fabric.log_dict({key: value for key, value in row.items() if key != "epoch"}, step=row["epoch"])
        _save(fabric, last_path, student, state, config)
        if epoch_callback is not None:
            epoch_callback(state.epoch, row)
        if patience_spent():
            logger.info("early stopping: no improvement of %s for %d epochs", config.train.monitor, state.bad_epochs)
    fabric.barrier()
    if tensorboard is not None:
        tensorboard.finalize("success")
    if keep_last and state.history:  # the model file holds the final epoch's weights
        state.best_epoch, state.best_value = state.history[-1]["epoch"], state.history[-1][config.train.monitor]
    return TrainResult(
        run_dir=run_dir,
        model_path=run_dir / "model.safetensors",
        best_epoch=state.best_epoch,
        best_value=state.best_value,
        history=state.history,
        teacher_auc=teacher_auc,
        teacher_forward_calls=distiller.teacher_forward_calls,
        kept="last" if keep_last else "best",
    )
