"""The model card: the one typed record that travels with every dfkd model.

Checkpoint files (safetensors metadata), ONNX exports (``metadata_props``), ``Detector``, ``evaluate``, ``serve``,
``report`` and ``dfkd info`` all read and write this record; its defaults live here and nowhere else. It imports
neither torch nor onnxruntime, so an ONNX model runs without them.

Every field is validated on load: a threshold that is not a finite number in [0, 1], image sizes outside sane
bounds or a label map other than real/fake make the file unusable, with a message naming the field.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

import dfkd
from dfkd.labels import LABEL_NAMES

logger = logging.getLogger(__name__)

FORMAT_NAME = "dfkd-model"
FORMAT_VERSION = 1
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
DEFAULT_THRESHOLD = 0.5
# Inference's face framing for models whose card names none (whole-image training data, older files): the face box
# plus 30 % of its longer side on each side, about how the reference's Kaggle face images are framed.
DEFAULT_FACE_MARGIN = 0.3
MAX_IMAGE_SIDE = 4096  # a model input or resize beyond this is a damaged or hostile card, not a model
MAX_MARGIN = 4.0


class ModelFileError(ValueError):
    """A model or weight file is missing, unreadable, not a dfkd model, or does not match the architecture."""


def require_file(path: Path, what: str = "model file") -> None:
    """Raise ModelFileError naming ``path`` when it is a folder or missing (one wording for model and weight files)."""
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a {what}")
    if not path.is_file():
        raise ModelFileError(f"{path}: {what} not found")


class CardError(ModelFileError):
    """A model card is missing, malformed or out of range; the message names the field and the reason."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class Preprocessing(_Frozen):
    """Resize the shorter side to ``resize_size`` (bilinear), centre-crop ``input_size``, scale to [0, 1], normalise.

    ``scaled_decode``: the training images were decoded DCT-scaled to the resize side (``data.scaled_decode``), so
    evaluation on a manifest does the same; files written before it existed were trained on full decodes.
    """

    resize_size: int = Field(256, ge=8, le=MAX_IMAGE_SIDE)
    input_size: int = Field(224, ge=8, le=MAX_IMAGE_SIDE)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scaled_decode: bool = False

    @field_validator("mean")
    @classmethod
    def _finite_mean(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        for item in value:
            _finite(item)
        return value

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not math.isfinite(item) or item <= 0 for item in value):
            raise ValueError("every std value must be a finite number > 0")
        return value

    def as_dict(self) -> dict[str, Any]:
        """Plain ``{resize_size, input_size, mean, std}`` (lists), as the transforms take it (the decode is the
        dataset's: ``scaled_decode``)."""
        return {
            "resize_size": self.resize_size,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
        }


class FaceCrop(_Frozen):
    """How the training images were face-cropped (``dfkd crop-faces``), so inference frames faces the same way.

    The square around the detector's box is the box's longer side plus ``margin`` of it on each side, resized to
    ``size`` pixels (``None``: native size). ``align``: the face was turned and scaled onto a mean face's five points
    instead (``dfkd crop-faces --align``), with the same margin around that face's box.
    """

    detector: str = Field(min_length=1, max_length=64)
    margin: float = Field(ge=0.0, le=MAX_MARGIN)
    size: int | None = Field(None, ge=8, le=MAX_IMAGE_SIDE)
    align: bool = False

    def describe(self) -> str:
        """One line: ``yunet, margin 0.00, 256 px`` (``, aligned`` for aligned crops)."""
        size = f"{self.size} px" if self.size is not None else "native size"
        return f"{self.detector}, margin {self.margin:.2f}, {size}" + (", aligned" if self.align else "")


class Architecture(_Frozen):
    """The registry name (``resnet8``, ``timm/<name>``, …) and the keyword arguments that rebuild the network."""

    name: str = Field(min_length=1, max_length=200)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    # SHA-256 of the module structure (dfkd.models.checkpoint.architecture_digest): same-shaped networks differ here.
    # None in files written before dfkd recorded it; those load unchecked.
    digest: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


class TrainingSummary(BaseModel):
    """What the model was trained on and how; known keys are typed, any others are kept as they are."""

    model_config = ConfigDict(frozen=True, extra="allow")

    manifest: str | None = None
    monitor: str | None = None
    distill: dict[str, Any] | None = None
    teacher_val_auc: float | None = None
    face_crop_warnings: list[str] = Field(default_factory=list)


class ModelCard(_Frozen):
    """Everything needed to rebuild, feed and judge a model; stored as JSON in the model file."""

    format: Literal["dfkd-model"] = FORMAT_NAME
    format_version: int = Field(FORMAT_VERSION, ge=1, le=FORMAT_VERSION)
    architecture: Architecture
    role: Literal["student", "teacher"] | None = None
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    # None: trained on whole images (not face-cropped by dfkd), or an older file that did not record it.
    face_crop: FaceCrop | None = None
    labels: dict[str, str] = Field(default_factory=lambda: {str(k): v for k, v in LABEL_NAMES.items()})
    threshold: float = Field(DEFAULT_THRESHOLD, ge=0.0, le=1.0)
    threshold_source: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: TrainingSummary | None = None
    export: dict[str, Any] | None = None
    dfkd_version: str = dfkd.__version__

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold_is_a_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number in [0, 1], got {value!r}")
        return _finite(float(value))

    @field_validator("labels")
    @classmethod
    def _fake_is_one(cls, value: dict[str, str]) -> dict[str, str]:
        # Every dfkd model scores P(fake) with fake = 1; any other map (a swapped one above all) would only rename
        # the verdicts, so a fake would be called "real". No model has another map, so anything else is tampering.
        expected = {str(k): v for k, v in LABEL_NAMES.items()}
        if value != expected:
            raise ValueError(f"must be {expected} (fake = 1), got {value}")
        return value

    @property
    def fake_label(self) -> str:
        """The name of the positive class (``"fake"``)."""
        return self.labels["1"]

    @property
    def real_label(self) -> str:
        """The name of the negative class (``"real"``)."""
        return self.labels["0"]

    def label_of(self, fake_prob: float) -> str:
        """The class name a fake probability gets at this card's threshold."""
        return self.fake_label if fake_prob >= self.threshold else self.real_label

    def to_json_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data (what is written into model files)."""
        return self.model_dump(mode="json", exclude_none=False)


def card_from_json(text: str, source: str = "model") -> ModelCard:
    """Parse and validate a card stored as JSON text (a model file's or an ONNX file's metadata entry)."""
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:  # RecursionError: a crafted [[[[… nest
        raise CardError(f"{source}: not a dfkd model file (its dfkd metadata is not JSON: {error})") from None
    return card_from_dict(record, source)


def card_from_dict(record: Any, source: str = "model") -> ModelCard:
    """Validate a stored record into a :class:`ModelCard`; older dfkd records (same format) load too.

    Raises:
        CardError: naming ``source``, each bad field and the reason.
    """
    if not isinstance(record, dict):
        raise CardError(f"{source}: the model card is not a JSON object")
    if record.get("format") != FORMAT_NAME:
        raise CardError(f"{source}: not a dfkd model card (format is {record.get('format')!r}, not {FORMAT_NAME!r})")
    version = record.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise CardError(
            f"{source}: model card format version {version!r} is not supported (this dfkd reads 1 to "
            f"{FORMAT_VERSION}); upgrade dfkd"
        )
    unknown = sorted(set(record) - set(ModelCard.model_fields))
    if unknown:  # keys a newer or hand-edited writer added: nothing reads them
        logger.debug("%s: ignoring unknown model card keys %s", source, unknown)
        record = {key: value for key, value in record.items() if key not in unknown}
    try:
        return ModelCard.model_validate(record)
    except ValidationError as error:
        lines = []
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"]) or "(card)"
            reason = "unknown field" if item["type"] == "extra_forbidden" else item["msg"]
            lines.append(f"{key}: {reason}")
        raise CardError(f"{source}: invalid model card\n  " + "\n  ".join(lines)) from None


def _readable(value: Any, indent: int = 0) -> str:
    """A card value for people: floats to four significant digits; nested dicts and lists one item per line,
    indented (``key: value``, ``- item``), strings unquoted."""
    pad = "  " * indent
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = (("-", inner) for inner in value)
    else:
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    lines = []
    for key, inner in items:
        label = key if key == "-" else f"{key}:"
        nested = isinstance(inner, dict | list | tuple) and inner
        lines.append(f"{pad}{label}\n{_readable(inner, indent + 1)}" if nested else f"{pad}{label} {_readable(inner)}")
    return "\n".join(lines)


def describe_card(card: ModelCard) -> list[tuple[str, str]]:
    """(field, value) rows for people: what ``dfkd info`` prints."""
    pre = card.preprocessing
    kwargs = ", ".join(f"{key}={value!r}" for key, value in card.architecture.kwargs.items())
    rows = [
        ("architecture", card.architecture.name + (f" ({kwargs})" if kwargs else "")),
        ("role", card.role or "-"),
        (
            "preprocessing",
            f"resize {pre.resize_size} → centre crop {pre.input_size}, mean {list(pre.mean)}, std {list(pre.std)}",
        ),
        (
            "face crop",
            card.face_crop.describe()
            if card.face_crop is not None
            else f"none recorded: trained on whole images (inference frames faces with margin {DEFAULT_FACE_MARGIN})",
        ),
        ("labels", f"0 = {card.real_label}, 1 = {card.fake_label} (positive class)"),
        ("threshold", f"{card.threshold:g}" + (f" ({card.threshold_source})" if card.threshold_source else "")),
    ]
    for key, value in card.metrics.items():
        rows.append((f"metric {key}", f"{value:.4f}" if isinstance(value, float) else str(value)))
    if card.training is not None:
        for key, value in card.training.model_dump(exclude_none=True).items():
            if value not in ([], {}, None):
                rows.append((f"training {key}", _readable(value)))
    if card.export:
        rows.append(("export", ", ".join(f"{key}={value}" for key, value in card.export.items())))
    rows.append(("dfkd version", card.dfkd_version))
    return rows
