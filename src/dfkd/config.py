"""Typed run configuration: defaults → YAML file → ``--set key=value`` overrides, validated once and saved."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from dfkd.card import MAX_IMAGE_SIDE


class _Section(BaseModel):
    # No float in a run config means anything as NaN or infinity (lr=inf trains to NaN and fails an epoch later).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(_Section):
    """Which images, how they are preprocessed and batched."""

    manifest: str | None = None
    resize_size: StrictInt = Field(256, ge=8, le=MAX_IMAGE_SIDE)  # the card's bound, checked before training
    input_size: StrictInt = Field(224, ge=8, le=MAX_IMAGE_SIDE)
    mean: list[float] | None = None
    std: list[float] | None = None
    batch_size: StrictInt = Field(32, ge=1)
    eval_batch_size: StrictInt | None = Field(None, ge=1)
    num_workers: StrictInt = Field(2, ge=0)
    augment: Literal["none", "basic", "robust", "crop", "quality"] = "none"
    rotation: float = Field(0.0, ge=0.0, le=180.0)  # random turn of training images within ±degrees (augment ≠ none)
    # Probability of an unsharp mask on a training image (augment ≠ none), as camera pipelines sharpen photos, meant
    # to stop edge halos telling "genuine". Measured against an unseen collection's false alarms: helped at one seed,
    # hurt at another (docs/results/generalisation.md, eleventh round); off.
    sharpen: float = Field(0.0, ge=0.0, le=1.0)
    # Train on a random train_patch-px patch of each training view; validation, evaluation and inference still see the
    # whole input_size view (the network pools globally). A network that never sees a whole face cannot take a
    # collection's framing, pose or lighting for a class, only local traces. Measured with 64 px: an unseen
    # collection's genuine photos called fake 0.2-12 % instead of 25-40 %, StyleGAN2 0.77-0.91 instead of 0.99-1.00
    # (teachers; students distilled for 160 epochs 5-11 %, StyleGAN2 0.83-0.88) (docs/results/generalisation.md,
    # thirteenth round); off.
    train_patch: StrictInt | None = Field(None, ge=8)
    mixup: float = Field(0.0, ge=0.0)  # Beta(a, a) mixing of image pairs in a batch (0: off); KD then runs online
    on_error: Literal["raise", "skip"] = "raise"
    # Decode each JPEG DCT-scaled to the smallest size whose shorter side keeps resize_size (only differs from a full
    # decode when the stored images are twice that or more: 256-px faces read at 96-128 px). false: the reference's
    # exact full decode. Recorded in the model card, so evaluation decodes as training did.
    scaled_decode: bool = True
    unlabeled: list[str] = Field(default_factory=list)
    # Self-blended fakes (SBI): each real training image becomes a pseudo-fake made from itself with probability
    # synthetic_share (validation: a fixed such set), so the data may hold real faces only. Landmarks come from
    # crop-faces' faces.csv. The teacher then runs online, on the same blended views.
    synthetic_fakes: Literal["none", "sbi"] = "none"
    synthetic_share: float = Field(0.5, gt=0.0, lt=1.0)  # 1 would blend every real: no real class left to learn
    # Share of those blends confined to one to three facial parts (eyes, nose, mouth) instead of the whole face: the
    # boundaries of hand-made composites, which whole-face blends do not teach.
    synthetic_parts: float = Field(0.0, ge=0.0, le=1.0)
    # Share of those blends pasted from another real face of the same split (aligned on the five points) instead of
    # the face itself: another identity's face or parts, as face swaps and hand-made composites have (Face X-ray).
    synthetic_donor: float = Field(0.0, ge=0.0, le=1.0)
    # Share of those blends that alter the frame (the image around the face) instead of the pasted face, as the SBI
    # paper does half the time. Measured: at 0.5 it called two thirds of an unseen collection's genuine photos fake
    # (a quarter without); blurred, 89 % (eleventh round). A blurred frame seems to teach "blurred photo = blend"; off.
    synthetic_frame: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("mean", "std")
    @classmethod
    def _three_values(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and len(value) != 3:
            raise ValueError("needs three values (R, G, B)")
        return value

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(v <= 0 for v in value):
            raise ValueError("each value must be > 0 (images are divided by it)")
        return value

    @model_validator(mode="after")
    def _random_view_settings_need_augment(self) -> DataConfig:
        if self.train_patch is not None and self.train_patch > self.input_size:
            raise ValueError(f"train_patch {self.train_patch} is larger than input_size {self.input_size}")
        if self.augment == "none":  # the training view is then the evaluation transform, which would ignore them
            settings = {
                "train_patch": self.train_patch is not None,
                "rotation": self.rotation > 0,
                "sharpen": self.sharpen > 0,
            }
            asked = [name for name, on in settings.items() if on]
            if asked:
                verb = "needs" if len(asked) == 1 else "need"
                raise ValueError(
                    f"{', '.join(asked)} {verb} a random training view: set augment (basic, robust, crop or quality)"
                )
        return self


class ModelConfig(_Section):
    """The network to train, by registry name."""

    name: str = "resnet8"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    pretrained: str | None = None


class TeacherConfig(_Section):
    """The frozen teacher used for distillation."""

    model: str | None = None
    cache: str | None = None
    min_auc: float = Field(0.6, ge=0.0, le=1.0)
    skip_gate: bool = False
    online: bool = False  # run the teacher on every batch (the reference's way) even where a cache would apply


class DistillConfig(_Section):
    """Soft-target loss: L = α · soft + (1 − α) · BCE(student, label)."""

    loss: Literal["none", "kl", "mse"] = "none"
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    temperature: float = Field(4.0, gt=0.0)
    scale_by_t2: bool = False
    # Feature-level term added to the loss: attention transfer between the teacher's and the student's feature maps
    # of equal spatial size (dfkd.distill.features), weighted by feature_weight. AT's paper used beta/2 = 500; on the
    # real faces (README) that made the term ten times the soft loss and cost accuracy, while 50 helped. Needs the
    # teacher online: a logit cache holds no feature maps.
    feature_loss: Literal["none", "attention"] = "none"
    feature_weight: float = Field(50.0, ge=0.0)


class OptimConfig(_Section):
    """Optimiser."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-4, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    # A teacher's backbone learns at lr × backbone_lr_scale, its head at lr. Below 1 the pretrained features move less:
    # fine-tuning a whole pretrained network distorts its features and can cost accuracy away from the training data
    # (Kumar et al., ICLR 2022). 0 leaves the backbone's weights as loaded (its BatchNorm statistics still adapt).
    # Measured on the general teacher with an unseen genuine collection, 0.1 called more of its photos fake at two
    # seeds (docs/results/generalisation.md, twelfth round): the default stays 1.
    backbone_lr_scale: float = Field(1.0, ge=0.0, le=1.0)


class SchedulerConfig(_Section):
    """Learning-rate schedule: ``plateau`` watches the validation loss; ``cosine`` anneals over the epochs."""

    name: Literal["none", "plateau", "cosine"] = "none"
    patience: StrictInt = Field(3, ge=0)
    factor: float = Field(0.1, gt=0.0, lt=1.0)
    min_lr: float = Field(0.0, ge=0.0)


class TrainConfig(_Section):
    """The loop: length, early stopping, selection, precision, devices."""

    epochs: StrictInt = Field(20, ge=1)
    patience: StrictInt = Field(10, ge=1)
    monitor: Literal["val_auc", "val_loss"] = "val_auc"
    # best: the model file holds the epoch best by `monitor`; last: the final epoch's weights (long distillation
    # runs, where picking an epoch on a small validation split adds noise; `monitor` then only drives patience).
    keep: Literal["best", "last"] = "best"
    # Exponential moving average of the weights (decay per optimiser step, e.g. 0.995): validation, selection and the
    # model file use the averaged weights, a smoother function than any single step's (Polyak averaging).
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)
    precision: Literal["32", "bf16-mixed", "16-mixed"] = "32"
    accelerator: Literal["auto", "cpu", "cuda", "gpu", "mps"] = "auto"
    devices: StrictInt | str = 1  # a count (-1: every GPU), "auto", or GPU indices "0,1"
    num_nodes: StrictInt = Field(1, ge=1)
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    accumulate_grad_batches: StrictInt = Field(1, ge=1)
    checkpoint_every: StrictInt = Field(0, ge=0)
    # Weights and image batches in channels-last (NHWC) memory format: the same numbers, faster convolutions
    # (a ResNet8 step ~0.77x the time on CPU; benchmarks/train_step.py).
    channels_last: bool = True
    seed: StrictInt = 42
    tensorboard: Literal["auto", "on", "off"] = "auto"  # auto: RUN_DIR/tensorboard when tensorboard(X) is installed
    # The model card's first threshold, chosen on each validation: "eer" (false positives = misses), or "fpr=0.05"
    # (at most 5 % of validation reals called fake: the operating point where false alarms must stay rare).
    threshold: str = "eer"

    @field_validator("devices")
    @classmethod
    def _device_choice(cls, value: int | str) -> int | str:
        # Lightning's own refusal of these comes as a traceback from deep inside Fabric, after the run started.
        if isinstance(value, int):
            valid = value >= 1 or value == -1
        else:
            value = value.strip().lower()
            valid = value in ("auto", "-1") or all(part.strip().isdigit() for part in value.rstrip(",").split(","))
        if not valid:
            raise ValueError('must be a count ≥ 1, -1 (every GPU), "auto" or GPU indices such as "0,1"')
        return value

    @field_validator("threshold")
    @classmethod
    def _threshold_policy(cls, value: str) -> str:
        from dfkd.thresholds import parse_policy

        parse_policy(value)
        return value.strip().lower()

    @field_validator("tensorboard", mode="before")
    @classmethod
    def _tensorboard_switch(cls, value: Any) -> Any:
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class RunConfig(_Section):
    """A whole training run."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key and the reason."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-3"`` → (["optim", "lr"], 0.001); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return keys, value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating sections as needed."""
    parts = [p for p in key.split(".") if p]
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each ``key.path=value`` in a nested dict (creating sections as needed)."""
    for text in overrides:
        keys, value = parse_override(text)
        set_dotted(data, ".".join(keys), value)
    return data


def validation_lines(error: ValidationError) -> list[str]:
    """One readable line per pydantic error, naming the dotted key: ``optim.lr: ... (got -1)``."""
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        else:
            lines.append(f"{key or '(top level)'}: {item['msg']}" + (f" (got {item['input']!r})" if key else ""))
    return lines


def validate_config(data: dict[str, Any], *, origin: str = "config") -> RunConfig:
    """Validate a nested dict into a :class:`RunConfig`, with errors that name each bad key."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{origin}: invalid configuration\n  " + "\n  ".join(validation_lines(error))) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping.

    Plain YAML keeps the last value silently, so a config that sets ``lr`` twice trains with whichever came last,
    and the earlier line reads as if it applied.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | os.PathLike[str], what: str = "config") -> Any:
    """A YAML file's content (PyYAML's safe subset; a key given twice is refused); unreadable or invalid YAML is a
    ConfigError naming the file."""
    try:
        return yaml.load(Path(path).read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader: no Python tags
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    except UnicodeDecodeError:  # a binary file: its bytes alone would not say which file was meant
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8)") from None


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A run-config YAML file as a dict of sections (empty file: {}), unvalidated."""
    loaded = read_yaml(path)
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return loaded or {}


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Merge defaults ← YAML file ← overrides and validate."""
    data = read_config_file(path) if path is not None else {}
    origin = str(path) if path is not None else "config"
    apply_overrides(data, list(overrides or []))
    return validate_config(data, origin=origin)


# Where and how a run executes, not what it learns: runs that differ only here are the same experiment.
EXECUTION_SETTINGS = frozenset(
    {
        "data.num_workers",
        "data.eval_batch_size",
        "train.accelerator",
        "train.devices",
        "train.num_nodes",
        "train.strategy",
        "train.checkpoint_every",
        "train.tensorboard",
    }
)


def differing_keys(
    before: dict[str, Any], after: dict[str, Any], *, ignore: frozenset[str] | set[str] = frozenset(), prefix: str = ""
) -> list[str]:
    """Dotted keys whose values differ between two nested settings dicts (``model_dump(mode="json")``), leaving out
    those in ``ignore`` (a dotted key, or a section such as ``"model"`` for all of its keys)."""
    keys = []
    for key in sorted(set(before) | set(after)):
        dotted = f"{prefix}{key}"
        if dotted in ignore:
            continue
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += differing_keys(a, b, ignore=ignore, prefix=f"{dotted}.")
        elif a != b:
            keys.append(dotted)
    return keys


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML (what is saved beside each run)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def save_config(config: RunConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML."""
    from dfkd.utils import atomic_write

    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(dump_config(config))
