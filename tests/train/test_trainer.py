"""The training loop: resume equality, teacher gate, cache use, DDP, config errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.config import ConfigError, load_config
from dfkd.data import read_manifest
from dfkd.distill.logit_cache import compute_logit_cache
from dfkd.evaluate.evaluator import predict_split
from dfkd.models import load_model, save_model
from dfkd.train import TeacherGateError, train
from dfkd.train.checkpoint import checkpoint_weights, read_checkpoint
from tests.conftest import TINY
from tests.train.helpers import SimulatedInterruption


def _config_args(manifest: Path) -> list[str]:
    return [*TINY, f"data.manifest={manifest}"]


def _config(manifest: Path, *extra: str):
    return load_config(None, [*_config_args(manifest), *extra])


@pytest.mark.parametrize("average", [(), ("train.ema_decay=0.9",)], ids=["plain", "ema"])
def test_resume_after_interruption_ends_with_identical_weights(
    easy_manifest: Path, tmp_path: Path, average: tuple[str, ...], kill_after
) -> None:
    extra = ("train.epochs=2", "train.checkpoint_every=3", "data.augment=basic", "model.name=resnet8_fast", *average)
    whole = train(_config(easy_manifest, *extra), tmp_path / "whole")
    with pytest.raises(SimulatedInterruption):
        # killed mid-epoch 2, after the step-6 checkpoint
        train(_config(easy_manifest, *extra), tmp_path / "cut", step_callback=kill_after(7))
    resumed = train(_config(easy_manifest, *extra), tmp_path / "cut", resume=True)
    assert [round(r["val_loss"], 6) for r in resumed.history] == [round(r["val_loss"], 6) for r in whole.history]
    final_whole = checkpoint_weights(tmp_path / "whole" / "last.ckpt")
    final_cut = checkpoint_weights(tmp_path / "cut" / "last.ckpt")
    assert final_whole.keys() == final_cut.keys() and final_whole
    for key, value in final_whole.items():
        assert torch.equal(value, final_cut[key]), key
    best_whole = load_file(str(whole.model_path))
    best_cut = load_file(str(resumed.model_path))
    assert all(torch.equal(best_whole[k], best_cut[k]) for k in best_whole)


def test_best_model_file_and_metrics_log_are_written(easy_manifest: Path, tmp_path: Path) -> None:
    result = train(_config(easy_manifest, "train.epochs=2", "model.name=resnet8_fast"), tmp_path / "run")
    _, card = load_model(result.model_path)
    assert card.preprocessing.input_size == 32
    assert card.preprocessing.scaled_decode  # data.scaled_decode (the default): evaluation decodes the same way
    # A first threshold from the validation split (both classes there): its EER point, said to be so.
    assert card.threshold_source == "validation EER during training" and 0.0 < card.threshold < 1.0
    assert card.metrics["val_auc"] == pytest.approx(result.best_value)
    assert (tmp_path / "run" / "config.yaml").exists()
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss,val_loss,val_auc") and len(lines) == 3


def _tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of the TFRecord event files under ``folder`` (read with tensorboardX's protobuf classes)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_logs_every_epoch_when_installed(easy_manifest: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    result = train(
        _config(easy_manifest, "train.epochs=2", "model.name=resnet8_fast", "train.tensorboard=on"), tmp_path / "run"
    )
    scalars = _tensorboard_scalars(tmp_path / "run" / "tensorboard")
    assert [step for step, _ in scalars["val_auc"]] == [1, 2]
    assert [value for _, value in scalars["val_auc"]] == pytest.approx([row["val_auc"] for row in result.history])
    train(_config(easy_manifest, "train.epochs=1", "model.name=resnet8_fast", "train.tensorboard=off"), tmp_path / "x")
    assert not (tmp_path / "x" / "tensorboard").exists()


def test_distillation_with_a_cache_runs_no_teacher_forward(
    easy_manifest: Path, easy_teacher: Path, tmp_path: Path
) -> None:
    cache = compute_logit_cache(easy_teacher, easy_manifest, tmp_path / "cache", resize_size=40, input_size=32)
    config = _config(
        easy_manifest, "train.epochs=2", "distill.loss=kl", f"teacher.model={easy_teacher}", f"teacher.cache={cache}"
    )
    result = train(config, tmp_path / "kd")
    assert result.teacher_forward_calls == 0
    assert result.teacher_auc is not None and result.teacher_auc > 0.9
    assert result.best_value > 0.8


def test_random_augmentation_runs_the_teacher_online(easy_manifest: Path, easy_teacher: Path, tmp_path: Path) -> None:
    config = _config(
        easy_manifest, "train.epochs=1", "distill.loss=mse", f"teacher.model={easy_teacher}", "data.augment=basic"
    )
    result = train(config, tmp_path / "online")
    assert result.teacher_forward_calls >= 4  # one per training batch


def test_mixup_blends_images_and_labels_with_one_dominant_weight() -> None:
    from dfkd.train.data import mix_batch

    images = torch.stack([torch.full((3, 4, 4), float(i)) for i in range(6)])
    labels = torch.arange(6) / 5  # labels a linear function of the pixels: the blend must keep that relation
    torch.manual_seed(3)
    mixed, soft = mix_batch(images, labels, 0.4)
    torch.manual_seed(3)
    again, _ = mix_batch(images, labels, 0.4)
    assert torch.equal(mixed, again)  # torch's RNG only: a resumed run mixes the same pairs
    values = mixed[:, 0, 0, 0]
    assert torch.allclose(soft, values / 5, atol=1e-6)
    assert not torch.equal(values, torch.arange(6.0))
    # λ ≥ 0.5: each image stays nearer its own value than its partner's, so the mean is kept and order mostly too.
    assert values.mean() == pytest.approx(2.5) and (values - torch.arange(6.0)).abs().max() <= 2.5 + 1e-6
    assert mix_batch(images, None, 0.4)[1] is None


def test_mixup_distils_online_and_refuses_a_cache_only_teacher(
    easy_manifest: Path, easy_teacher: Path, tmp_path: Path
) -> None:
    config = _config(
        easy_manifest, "train.epochs=1", "distill.loss=kl", f"teacher.model={easy_teacher}", "data.mixup=0.4"
    )
    result = train(config, tmp_path / "mix")
    assert result.teacher_forward_calls >= 4  # the teacher scores each mixed batch itself
    assert result.model_path.exists()
    cache = compute_logit_cache(easy_teacher, easy_manifest, tmp_path / "cache", resize_size=40, input_size=32)
    with pytest.raises(ConfigError, match="data.mixup"):
        train(_config(easy_manifest, "distill.loss=kl", f"teacher.cache={cache}", "data.mixup=0.4"), tmp_path / "x")
    with pytest.raises(ConfigError, match="data.mixup"):
        load_config(None, [*_config_args(easy_manifest), "data.mixup=-1"])


def test_cache_refuses_other_data_teacher_or_transform(easy_manifest: Path, easy_teacher: Path, tmp_path: Path) -> None:
    cache = compute_logit_cache(easy_teacher, easy_manifest, tmp_path / "cache", resize_size=40, input_size=32)
    base = (f"teacher.model={easy_teacher}", f"teacher.cache={cache}", "distill.loss=kl", "train.epochs=1")
    from dfkd.distill.logit_cache import CacheMismatchError

    with pytest.raises(CacheMismatchError, match="transform differs"):
        train(_config(easy_manifest, *base, "data.input_size=24"), tmp_path / "a")
    other_teacher = tmp_path / "other.safetensors"
    model, metadata = load_model(easy_teacher)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    save_model(model, other_teacher, metadata)
    with pytest.raises(CacheMismatchError, match="teacher weights differ"):
        train(_config(easy_manifest, *base[1:], f"teacher.model={other_teacher}"), tmp_path / "b")
    changed = tmp_path / "changed.csv"
    rows = easy_manifest.read_text().splitlines()
    changed.write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(CacheMismatchError, match="manifest differs"):
        train(_config(changed, *base), tmp_path / "c")


def test_gate_refuses_a_teacher_that_cannot_teach(easy_manifest: Path, easy_teacher: Path, tmp_path: Path) -> None:
    model, metadata = load_model(easy_teacher)
    with torch.no_grad():  # invert the teacher: AUC becomes ~0
        model.fc.weight.neg_()
        model.fc.bias.neg_()
    bad = tmp_path / "bad_teacher.safetensors"
    save_model(model, bad, metadata)
    args = ("distill.loss=kl", f"teacher.model={bad}", "train.epochs=1")
    with pytest.raises(TeacherGateError, match="below teacher.min_auc"):
        train(_config(easy_manifest, *args), tmp_path / "gated")
    assert not (tmp_path / "gated" / "model.safetensors").exists()
    result = train(_config(easy_manifest, *args, "teacher.skip_gate=true"), tmp_path / "forced")
    assert result.model_path.exists() and result.teacher_auc < 0.2


def test_kd_without_a_teacher_or_with_bad_keys_is_a_config_error(easy_manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="teacher.model"):
        train(_config(easy_manifest, "distill.loss=kl"), tmp_path / "x")
    with pytest.raises(ConfigError, match="train.epochz: unknown key"):
        load_config(None, ["train.epochz=3"])
    with pytest.raises(ConfigError, match="distill.loss"):
        load_config(None, ["distill.loss=l2"])
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--set", "train.precision=8", "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "train.precision" in result.output


def test_two_process_ddp_on_cpu_writes_a_model_file(easy_manifest: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun not found beside the interpreter")
    overrides = [*TINY, f"data.manifest={easy_manifest}", "train.epochs=1", "train.devices=2", "train.strategy=ddp"]
    command = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "dfkd", "-q", "train", "--out", str(tmp_path)]
    for item in overrides:
        command += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    model, _ = load_model(tmp_path / "model.safetensors")
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2,)


def test_ddp_ranks_see_disjoint_shards_every_epoch_and_the_model_is_rank_zeros(
    easy_manifest: Path, tmp_path: Path
) -> None:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun not found beside the interpreter")
    overrides = [*TINY, f"data.manifest={easy_manifest}", "train.epochs=2", "train.devices=2", "train.strategy=ddp"]
    overrides += ["train.keep=last", "data.augment=basic"]
    probe = Path(__file__).with_name("ddp_probe.py")
    command = [torchrun, "--standalone", "--nproc_per_node", "2", str(probe), str(tmp_path), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    seen = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    train_paths = {sample.path for sample in read_manifest(easy_manifest).split("train")}
    assert len(train_paths) % 2 == 0  # no padding: the shards must be exactly disjoint
    for epoch in ("0", "1"):
        first, second = (set(rank_seen[epoch]) for rank_seen in seen)
        assert len(seen[0][epoch]) == len(first) == len(train_paths) // 2, "a rank loaded an image twice"
        assert first.isdisjoint(second), f"epoch {epoch}: both ranks trained on {sorted(first & second)[:3]}"
        assert first | second == train_paths, f"epoch {epoch}: images no rank trained on"
    assert seen[0]["0"] != seen[0]["1"], "every epoch draws a new order"
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    rank_zero, rank_one = (load_file(str(tmp_path / f"rank{rank}.safetensors")) for rank in (0, 1))
    assert saved.keys() == rank_zero.keys()
    assert all(torch.equal(saved[key], rank_zero[key]) for key in saved), "the model file is not rank 0's"
    # Gradients are averaged, so the ranks' weights agree; BatchNorm statistics are each rank's own after its last
    # batch (DDP broadcasts rank 0's at the next forward), which is why the file holds rank 0's.
    weights = [key for key in saved if key.endswith("weight") or key.endswith("bias")]
    assert all(torch.allclose(rank_zero[key], rank_one[key], atol=1e-6) for key in weights)


def test_unlabelled_images_are_distilled_through_the_online_teacher(
    easy_manifest: Path, easy_teacher: Path, tmp_path: Path
) -> None:
    from tests.conftest import write_easy_dataset

    unlabeled = write_easy_dataset(tmp_path / "unlabeled", per_split={"extra": 8})
    config = _config(
        easy_manifest,
        "train.epochs=1",
        "distill.loss=kl",
        f"teacher.model={easy_teacher}",
        f"data.unlabeled=[{unlabeled}]",
    )
    result = train(config, tmp_path / "run")
    assert result.teacher_forward_calls >= 4  # the cache serves labelled rows; unlabelled batches need the teacher
    with pytest.raises(ConfigError, match="only through the teacher"):
        train(_config(easy_manifest, f"data.unlabeled=[{unlabeled}]"), tmp_path / "x")


def test_keep_last_saves_the_final_epochs_weights(easy_manifest: Path, tmp_path: Path) -> None:
    extra = ("train.epochs=3", "model.name=resnet8_fast", "train.keep=last")
    result = train(_config(easy_manifest, *extra), tmp_path / "last")
    final = checkpoint_weights(tmp_path / "last" / "last.ckpt")
    kept = load_file(str(result.model_path))
    assert all(torch.equal(kept[key], final[key]) for key in kept)
    assert result.best_epoch == 3 and result.best_value == pytest.approx(result.history[-1]["val_auc"])
    _, card = load_model(result.model_path)
    assert card.metrics["epoch"] == 3
    with pytest.raises(ConfigError, match="keep"):
        _config(easy_manifest, "train.keep=first")


def test_channels_last_training_matches_the_default_layout(easy_manifest: Path, tmp_path: Path) -> None:
    extra = ("train.epochs=2", "model.name=resnet8_fast", "data.augment=basic")
    fast = train(_config(easy_manifest, *extra, "train.channels_last=true"), tmp_path / "nhwc")
    plain = train(_config(easy_manifest, *extra, "train.channels_last=false"), tmp_path / "nchw")
    # The same computation in another memory layout: equal up to float rounding after 2 epochs of updates.
    assert [r["val_loss"] for r in fast.history] == pytest.approx([r["val_loss"] for r in plain.history], abs=1e-4)
    a, b = load_file(str(fast.model_path)), load_file(str(plain.model_path))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3) for k in a)


def test_ema_weights_are_validated_and_saved_not_the_last_steps(easy_manifest: Path, tmp_path: Path) -> None:
    extra = ("train.epochs=3", "model.name=resnet8_fast", "train.keep=last", "train.ema_decay=0.9")
    result = train(_config(easy_manifest, *extra), tmp_path / "ema")
    _, record = read_checkpoint(tmp_path / "ema" / "last.ckpt")
    kept = load_file(str(result.model_path))
    raw, average = (
        checkpoint_weights(tmp_path / "ema" / "last.ckpt"),
        checkpoint_weights(tmp_path / "ema" / "last.ckpt", "ema"),
    )
    assert int(average["n_averaged"]) == record["loop"]["global_step"] > 0
    assert all(torch.equal(kept[key], average[f"module.{key}"]) for key in kept)
    assert any(not torch.equal(kept[key], raw[key]) for key in kept if key.endswith("weight"))
    # The average is what validation scored: the saved weights reproduce the logged validation loss.
    model, card = load_model(result.model_path)
    val = predict_split(model, read_manifest(easy_manifest), "val", card.preprocessing, num_workers=0)
    probs = np.clip(val.fake_probs, 1e-7, 1 - 1e-7)
    loss = -np.mean(val.labels * np.log(probs) + (1 - val.labels) * np.log(1 - probs))
    assert loss == pytest.approx(result.history[-1]["val_loss"], rel=1e-3)
    with pytest.raises(ConfigError, match="ema_decay"):
        _config(easy_manifest, "train.ema_decay=1.5")


def test_self_blended_fakes_are_distilled_with_the_teacher_online(
    easy_manifest: Path, easy_teacher: Path, tmp_path: Path
) -> None:
    config = _config(
        easy_manifest, "train.epochs=1", "distill.loss=kl", f"teacher.model={easy_teacher}", "data.synthetic_fakes=sbi"
    )
    result = train(config, tmp_path / "sbi")
    assert result.teacher_forward_calls >= 4  # the teacher scores the blended views the student sees
    cache = compute_logit_cache(easy_teacher, easy_manifest, tmp_path / "cache", resize_size=40, input_size=32)
    with pytest.raises(ConfigError, match="data.synthetic_fakes"):
        args = ("distill.loss=kl", f"teacher.cache={cache}", "data.synthetic_fakes=sbi", "teacher.skip_gate=true")
        train(_config(easy_manifest, *args), tmp_path / "x")


def test_an_epoch_ends_with_no_gradient_left_when_its_last_batch_is_skipped(tmp_path: Path) -> None:
    """13 images in batches of 4, two batches a step: the one-image last batch is dropped, so the third batch closes
    the epoch's last accumulation group with a step, and the next epoch starts with no gradient left."""
    from lightning_fabric import Fabric
    from torch.utils.data import Dataset

    from dfkd.data.dataset import build_loader
    from dfkd.distill.distillers import LabelsOnly
    from dfkd.train.checkpoint import LoopState
    from dfkd.train.data import RunData
    from dfkd.train.loop import train_one_epoch
    from dfkd.train.sampler import EpochSampler
    from dfkd.train.setup import Student

    class Tiny(Dataset):
        def __len__(self) -> int:
            return 13

        def __getitem__(self, i: int):
            return torch.full((3, 4, 4), float(i)), torch.tensor(float(i % 2)), i

    config = load_config(None, ["data.batch_size=4", "train.accumulate_grad_batches=2", "data.manifest=unused.csv"])
    fabric = Fabric(accelerator="cpu", devices=1)
    torch.manual_seed(0)
    raw = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 1), torch.nn.Flatten(0))
    model, optimizer = fabric.setup(raw, torch.optim.SGD(raw.parameters(), lr=0.1))
    dataset, sampler = Tiny(), EpochSampler(13, shuffle=True, seed=1)
    loader = build_loader(dataset, batch_size=4, sampler=sampler)
    loader = fabric.setup_dataloaders(loader, use_distributed_sampler=False)
    data = RunData(dataset, dataset, train_loader=loader, train_sampler=sampler)
    state = LoopState()
    train_one_epoch(fabric, config, Student(model, raw, optimizer), LabelsOnly(), data, state, tmp_path / "last.ckpt")
    assert state.global_step == 2  # batches 1+2, then 3 alone
    assert all(parameter.grad is None for parameter in raw.parameters())
