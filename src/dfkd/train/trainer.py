"""One explicit training loop for teachers and students, on Lightning Fabric.

The method-specific part is the loss: BCE alone, or α · soft + (1 − α) · BCE against teacher logits that come from a
cache (no teacher forward) or from the frozen teacher run online on the same augmented view.
"""

from __future__ import annotations

import csv
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning_fabric import Fabric
from sklearn.metrics import roc_auc_score
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dfkd.config import RunConfig, save_config
from dfkd.data.dataset import ManifestDataset, UnlabeledDataset, build_loader
from dfkd.data.images import list_image_files
from dfkd.data.manifest import read_manifest
from dfkd.data.transforms import build_eval_transform, build_train_transform
from dfkd.distill.features import FeatureRecorder, attention_transfer_loss
from dfkd.distill.losses import distillation_loss, hard_loss, soft_loss
from dfkd.models.fast import channels_last_input, to_channels_last
from dfkd.train.sampler import EpochSampler
from dfkd.train.teacher_signal import TeacherSignal, build_teacher_signal, teacher_gate
from dfkd.utils import set_seed, track

logger = logging.getLogger(__name__)
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "val_auc", "val_accuracy", "lr", "seconds")


class SimulatedInterruption(KeyboardInterrupt):
    """Raised by ``stop_after_steps`` to stop a run as if it had been killed (for resume tests and time boxes)."""


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


@dataclass
class LoopState:
    """Everything the loop needs to continue exactly where it stopped."""

    epoch: int = 0
    batches_done: int = 0
    global_step: int = 0
    best_value: float = math.nan
    best_epoch: int = -1
    bad_epochs: int = 0
    running_loss: float = 0.0
    running_count: int = 0
    history: list[dict] = field(default_factory=list)


def tensorboard_logger(config: RunConfig, run_dir: Path) -> Any | None:
    """Fabric's TensorBoard logger writing to ``run_dir/tensorboard``, or None (off, or auto and not installed)."""
    import importlib.util

    if config.train.tensorboard == "off":
        return None
    installed = any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX"))
    if not installed:
        if config.train.tensorboard == "on":
            raise ValueError("train.tensorboard=on needs tensorboard or tensorboardX: pip install tensorboard")
        return None
    from lightning_fabric.loggers import TensorBoardLogger

    return TensorBoardLogger(root_dir=run_dir, name="tensorboard", version="")


def build_fabric(config: RunConfig, loggers: list[Any] | None = None) -> Fabric:
    """A Fabric for the configured accelerator, devices, strategy and precision."""
    train = config.train
    strategy = train.strategy
    if strategy == "auto" and train.accelerator == "cpu" and str(train.devices) not in ("1", "auto"):
        strategy = "ddp"
    return Fabric(
        accelerator=train.accelerator,
        devices=train.devices,
        num_nodes=train.num_nodes,
        strategy=strategy,
        precision=train.precision,
        loggers=loggers or None,
    )


def student_view(config: RunConfig) -> dict:
    """Resize, crop, mean and std the trained model sees (config values, else the architecture's defaults)."""
    from dfkd.models import default_preprocessing

    defaults = default_preprocessing(config.model.name)
    return {
        "resize_size": config.data.resize_size,
        "input_size": config.data.input_size,
        "mean": list(config.data.mean or defaults["mean"]),
        "std": list(config.data.std or defaults["std"]),
    }


def _build_optimizer(config: RunConfig, params) -> torch.optim.Optimizer:
    optim = config.optim
    if optim.name == "adam":
        return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
    if optim.name == "adamw":
        return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    return torch.optim.SGD(params, lr=optim.lr, weight_decay=optim.weight_decay, momentum=optim.momentum)


def _build_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer):
    sched = config.scheduler
    if sched.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", patience=sched.patience, factor=sched.factor, min_lr=sched.min_lr
        )
    if sched.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.train.epochs, eta_min=sched.min_lr)
    return None


def _rng_state() -> dict:
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    random.setstate(state["python"])


def _loss(
    config: RunConfig,
    signal: TeacherSignal | None,
    split: str,
    images,
    logits,
    labels,
    indices,
) -> torch.Tensor:
    if signal is None:
        return hard_loss(logits, labels)
    distill = config.distill
    return distillation_loss(
        logits,
        signal.logits(split, images, indices),
        labels,
        kind=distill.loss,
        temperature=distill.temperature,
        alpha=distill.alpha,
        scale_by_t2=distill.scale_by_t2,
    )


@torch.no_grad()
def evaluate_split(fabric: Fabric, model, loader, config: RunConfig, signal, split: str) -> dict:
    """Loss (the training objective), AUC and accuracy at 0.5 on one split, gathered over all ranks."""
    model.eval()
    all_logits, all_labels, all_indices, losses, weights = [], [], [], [], []
    for batch in loader:
        if batch is None:
            continue
        images, labels, indices = batch
        images = _memory_format(config, images)
        with fabric.autocast():
            logits = model(images)
        logits = logits.float()
        losses.append(_loss(config, signal, split, images, logits, labels, indices).item() * len(labels))
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
    return {"val_loss": float(loss_sum[0] / max(loss_sum[1], 1.0)), "val_auc": auc, "val_accuracy": accuracy}


def _memory_format(config: RunConfig, images: torch.Tensor) -> torch.Tensor:
    """The batch in the memory format the model's weights are in (``train.channels_last``)."""
    return channels_last_input(images) if config.train.channels_last else images


def _improved(config: RunConfig, value: float, best: float) -> bool:
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value > best if config.train.monitor == "val_auc" else value < best


def _write_history(path: Path, history: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    stop_after_steps: int | None = None,
    epoch_callback: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Train the configured model; the best one by ``train.monitor`` becomes ``run_dir/model.safetensors``.

    With ``resume`` the loop continues from ``run_dir/last.ckpt`` (weights, optimiser, scheduler, RNG, position in the
    epoch); on CPU with ``num_workers=0`` the result equals an uninterrupted run's. ``epoch_callback(epoch, row)``
    is called after each epoch's validation with its history row (an exception it raises, such as Optuna's
    ``TrialPruned``, stops the run after that epoch's checkpoint is saved).
    """
    from dfkd.models import create_model, save_model

    run_dir = Path(run_dir)
    if config.data.manifest is None:
        raise ValueError("data.manifest is required")
    tensorboard = tensorboard_logger(config, run_dir)
    fabric = build_fabric(config, [tensorboard] if tensorboard is not None else None)
    fabric.launch()
    set_seed(config.train.seed)
    if fabric.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    manifest = read_manifest(config.data.manifest)
    view = student_view(config)
    train_set = ManifestDataset(
        manifest, "train", build_train_transform(**view, augment=config.data.augment), on_error=config.data.on_error
    )
    val_set = ManifestDataset(manifest, "val", build_eval_transform(**view), on_error=config.data.on_error)
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"{manifest.path}: the train and val splits must both hold images")
    signal = build_teacher_signal(config, manifest, view, run_dir, fabric.device)
    teacher_auc = None
    if signal is not None:
        val_teacher = signal.cache["val"] if signal.cache is not None else _online_val_logits(fabric, signal, val_set)
        teacher_auc = teacher_gate(
            val_teacher, val_set.labels, min_auc=config.teacher.min_auc, skip=config.teacher.skip_gate
        )

    train_sampler = EpochSampler(
        len(train_set), shuffle=True, seed=config.train.seed, rank=fabric.global_rank, world_size=fabric.world_size
    )
    val_sampler = EpochSampler(len(val_set), shuffle=False, rank=fabric.global_rank, world_size=fabric.world_size)
    loader_args = {"num_workers": config.data.num_workers, "pin_memory": fabric.device.type == "cuda"}
    train_loader = build_loader(
        train_set, batch_size=config.data.batch_size, sampler=train_sampler, seed=config.train.seed, **loader_args
    )
    val_loader = build_loader(
        val_set, batch_size=config.data.eval_batch_size or config.data.batch_size, sampler=val_sampler, **loader_args
    )
    train_loader, val_loader = fabric.setup_dataloaders(train_loader, val_loader, use_distributed_sampler=False)
    unlabeled_batches = _unlabeled_batches(fabric, config, view, loader_args) if config.data.unlabeled else None

    kwargs = dict(config.model.kwargs)
    if config.model.pretrained:
        kwargs["pretrained"] = config.model.pretrained
    raw_model = create_model(config.model.name, **kwargs)
    if config.train.channels_last:
        to_channels_last(raw_model)
    optimizer = _build_optimizer(config, raw_model.parameters())
    model, optimizer = fabric.setup(raw_model, optimizer)
    ema = _weight_average(config, raw_model)  # before the feature hooks: the average is a copy without them
    scored = ema.module if ema is not None else model  # what validation and selection see
    kept = ema.module if ema is not None else raw_model  # what the model file holds
    features = FeatureRecorder(raw_model) if signal is not None and signal.recorder is not None else None
    scheduler = _build_scheduler(config, optimizer)
    state = LoopState()
    last_path = run_dir / "last.ckpt"
    if resume and last_path.exists():
        state = _load_checkpoint(fabric, last_path, model, optimizer, scheduler, ema)
        logger.info("resumed from %s at epoch %d, batch %d", last_path, state.epoch, state.batches_done)
    elif resume:
        logger.warning("--resume: no %s yet, starting fresh", last_path)

    accumulate = config.train.accumulate_grad_batches
    model.train()
    while state.epoch < config.train.epochs:
        started = time.perf_counter()
        train_sampler.set_position(state.epoch, start=state.batches_done * config.data.batch_size)
        batches_per_epoch = math.ceil(train_sampler.num_indices / config.data.batch_size)
        batches = (
            track(train_loader, total=len(train_loader), description=f"epoch {state.epoch + 1}/{config.train.epochs}")
            if fabric.is_global_zero
            else train_loader
        )
        for batch in batches:
            state.batches_done += 1
            if batch is None:
                continue
            images, labels, indices = batch
            images = _memory_format(config, images)
            if len(labels) < 2:  # BatchNorm cannot train on one image; the leftover of an epoch is dropped
                continue
            if config.data.mixup > 0:
                images, labels = mix_batch(images, labels, config.data.mixup)
            is_step = state.batches_done % accumulate == 0 or state.batches_done == batches_per_epoch
            with fabric.no_backward_sync(model, enabled=not is_step):
                if features is not None:
                    features.reset()
                with fabric.autocast():
                    logits = model(images)
                loss = _loss(config, signal, "train", images, logits.float(), labels, indices)
                if features is not None:
                    loss = loss + _feature_loss(config, features, signal)
                if unlabeled_batches is not None:
                    loss = loss + _unlabeled_loss(config, fabric, model, signal, next(unlabeled_batches), features)
                fabric.backward(loss / accumulate)
            state.running_loss += loss.item() * len(labels)
            state.running_count += len(labels)
            if not is_step:
                continue
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update_parameters(raw_model)
            state.global_step += 1
            every = config.train.checkpoint_every
            if every and state.global_step % every == 0:
                _save_checkpoint(fabric, last_path, model, optimizer, scheduler, state, ema)
            if stop_after_steps is not None and state.global_step >= stop_after_steps:
                raise SimulatedInterruption(f"stopped after {state.global_step} steps")
        metrics = evaluate_split(fabric, scored, val_loader, config, signal, "val")
        if scheduler is not None:
            scheduler.step(metrics["val_loss"]) if config.scheduler.name == "plateau" else scheduler.step()
        row = {
            "epoch": state.epoch + 1,
            "train_loss": state.running_loss / max(state.running_count, 1),
            **metrics,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
        }
        state.history.append(row)
        logger.info(
            "epoch %d: train_loss %.4f val_loss %.4f val_auc %.4f val_acc %.4f",
            row["epoch"],
            row["train_loss"],
            row["val_loss"],
            row["val_auc"],
            row["val_accuracy"],
        )
        value = metrics[config.train.monitor]
        improved = _improved(config, value, state.best_value)
        if improved:
            state.best_value, state.best_epoch, state.bad_epochs = value, state.epoch + 1, 0
        else:
            state.bad_epochs += 1
        if fabric.is_global_zero and (improved or config.train.keep == "last"):
            save_model(kept, run_dir / "model.safetensors", _model_metadata(config, view, row, teacher_auc))
        state.epoch += 1
        state.batches_done, state.running_loss, state.running_count = 0, 0.0, 0
        if fabric.is_global_zero:
            _write_history(run_dir / "metrics.csv", state.history)
        if tensorboard is not None:
            fabric.log_dict({key: value for key, value in row.items() if key != "epoch"}, step=row["epoch"])
        _save_checkpoint(fabric, last_path, model, optimizer, scheduler, state, ema)
        if epoch_callback is not None:
            epoch_callback(state.epoch, row)
        if state.bad_epochs >= config.train.patience:
            logger.info("early stopping: no improvement of %s for %d epochs", config.train.monitor, state.bad_epochs)
            break
    fabric.barrier()
    if tensorboard is not None:
        tensorboard.finalize("success")
    if config.train.keep == "last" and state.history:  # the model file holds the final epoch's weights
        state.best_epoch, state.best_value = state.history[-1]["epoch"], state.history[-1][config.train.monitor]
    return TrainResult(
        run_dir=run_dir,
        model_path=run_dir / "model.safetensors",
        best_epoch=state.best_epoch,
        best_value=state.best_value,
        history=state.history,
        teacher_auc=teacher_auc,
        teacher_forward_calls=signal.forward_calls if signal is not None else 0,
    )


def mix_batch(
    images: torch.Tensor, labels: torch.Tensor | None, alpha: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mixup: each image blended with another of the batch by λ ~ Beta(α, α); labels become the same blend.

    Drawn from torch's RNG, so a resumed run mixes the same pairs. With KD the teacher scores the mixed images
    themselves (function matching), so its targets follow the blend without being interpolated.
    """
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    lam = max(lam, 1.0 - lam)  # the first image dominates: the blend stays close to a real face
    order = torch.randperm(len(images)).to(images.device)
    mixed = lam * images + (1.0 - lam) * images[order]
    if labels is None:
        return mixed, None
    labels = labels.float()
    return mixed, lam * labels + (1.0 - lam) * labels[order]


def _unlabeled_batches(fabric: Fabric, config: RunConfig, view: dict, loader_args: dict) -> Iterator[torch.Tensor]:
    """An endless stream of unlabelled batches (folders in ``data.unlabeled``), augmented like the training view."""
    paths = [path for folder in config.data.unlabeled for path in list_image_files(folder)]
    if not paths:
        raise ValueError(f"data.unlabeled: no images found under {', '.join(config.data.unlabeled)}")
    logger.info("distilling on %d unlabelled images seen only through the teacher", len(paths))
    dataset = UnlabeledDataset(paths, build_train_transform(**view, augment=config.data.augment))
    sampler = EpochSampler(
        len(paths), shuffle=True, seed=config.train.seed + 1, rank=fabric.global_rank, world_size=fabric.world_size
    )
    loader = fabric.setup_dataloaders(
        build_loader(
            dataset, batch_size=config.data.batch_size, sampler=sampler, seed=config.train.seed + 1, **loader_args
        ),
        use_distributed_sampler=False,
    )
    epoch = 0
    while True:
        sampler.set_position(epoch)
        for batch in loader:
            if batch is not None and len(batch[0]) > 1:
                yield _memory_format(config, batch[0])
        epoch += 1


def _feature_loss(config: RunConfig, student: FeatureRecorder, signal: TeacherSignal) -> torch.Tensor:
    """The weighted feature-level term between the student's and the teacher's maps of their last forward."""
    return config.distill.feature_weight * attention_transfer_loss(student.maps, signal.feature_maps)


def _unlabeled_loss(
    config: RunConfig,
    fabric: Fabric,
    model,
    signal: TeacherSignal,
    images: torch.Tensor,
    features: FeatureRecorder | None = None,
) -> torch.Tensor:
    """α · soft loss (+ the feature term) on an unlabelled batch: the student matches the teacher where no label
    exists."""
    if config.data.mixup > 0:
        images, _ = mix_batch(images, None, config.data.mixup)
    if features is not None:
        features.reset()
    with fabric.autocast():
        student_logits = model(images)
    distill = config.distill
    soft = soft_loss(
        student_logits.float(),
        signal.online_logits(images),
        kind=distill.loss,
        temperature=distill.temperature,
        scale_by_t2=distill.scale_by_t2,
    )
    if features is None:
        return distill.alpha * soft
    return distill.alpha * soft + _feature_loss(config, features, signal)


def _online_val_logits(fabric: Fabric, signal: TeacherSignal, val_set: ManifestDataset) -> torch.Tensor:
    loader = build_loader(val_set, batch_size=64)
    logits = [signal.logits("val", images.to(fabric.device), idx).cpu() for images, _, idx in loader]
    return torch.cat(logits)


def _model_metadata(config: RunConfig, view: dict, row: dict, teacher_auc: float | None) -> dict:
    return {
        "preprocessing": view,
        "metrics": {k: row[k] for k in ("epoch", "val_loss", "val_auc", "val_accuracy")},
        "training": {
            "distill": config.distill.model_dump(),
            "teacher_val_auc": teacher_auc,
            "manifest": config.data.manifest,
            "monitor": config.train.monitor,
        },
    }


def _weight_average(config: RunConfig, model: torch.nn.Module) -> AveragedModel | None:
    """The exponential moving average of ``model``'s weights and BatchNorm statistics (``train.ema_decay``)."""
    decay = config.train.ema_decay
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _save_checkpoint(
    fabric: Fabric, path: Path, model, optimizer, scheduler, state: LoopState, ema: AveragedModel | None = None
) -> None:
    payload = {
        "model": model,
        **({"ema": ema} if ema is not None else {}),
        "optimizer": optimizer,
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "loop": state.__dict__.copy(),
        "rng": _rng_state(),
    }
    fabric.save(path, payload)


def _load_checkpoint(
    fabric: Fabric, path: Path, model, optimizer, scheduler, ema: AveragedModel | None = None
) -> LoopState:
    payload = {"model": model, "optimizer": optimizer, **({"ema": ema} if ema is not None else {})}
    remainder = fabric.load(path, payload, weights_only=False)
    if scheduler is not None and remainder.get("scheduler"):
        scheduler.load_state_dict(remainder["scheduler"])
    _set_rng_state(remainder["rng"])
    return LoopState(**remainder["loop"])
