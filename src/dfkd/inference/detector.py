"""The Detector API: load a dfkd model file or an exported ONNX file, and score images for being deepfakes.

Scoring rules:
- With face detection (``faces="auto"`` or a detector name), every face is cropped (square, ``margin`` on each
  side, see ``dfkd.faces.detect.crop_face``) and scored; the image's ``fake_prob`` is the **maximum over its
  faces**: one manipulated face makes the image a deepfake.
- When no face is found the whole image is scored as it is (the model's resize and centre crop) and the status is
  ``"no_face"``, so face crops that the face detector misses still get a score and callers can tell them apart.
- ``faces="none"`` scores the whole image: for inputs that are already face crops, like the training data.
- An input that cannot be read gets status ``"error"`` and a reason; the other inputs still come back.

Speed: inputs go through ``dfkd.inference.pipeline``: photos are decoded at the size needed (a JPEG DCT-scaled),
and decoding and face detection run on ``workers`` threads while the model scores, results streaming in input order
(``stream``). ``decode="full"`` keeps the reference's full-decode path; the two agree within
``SCALED_DECODE_TOLERANCE`` in fake probability (tests/inference/test_pipeline.py).

Thread safety: ``predict`` may be called from several threads at once (a web service). ONNX sessions and the face
detectors are thread-safe; the PyTorch model is guarded by a lock that also serialises ``explain`` (Grad-CAM hooks).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from dfkd.card import MAX_MARGIN, FaceCrop, ModelCard, Preprocessing
from dfkd.data.preprocess import preprocess_batch
from dfkd.faces.detect import (
    DEFAULT_MARGIN,
    FaceBox,
    available_detectors,
    build_face_detector,
    crop_face,
    detect_in_padded,
)
from dfkd.inference.backends import OnnxBackend, TorchBackend, load_backend
from dfkd.inference.pipeline import DECODE_MODES, default_workers, input_name, load_input, stream_predictions
from dfkd.utils import sigmoid

if TYPE_CHECKING:
    from dfkd.inference.calibrate import Calibration

logger = logging.getLogger(__name__)

FACE_MODES = ("auto", "none", "yunet", "centerface", "mtcnn")
STATUSES = ("ok", "no_face", "error")
# Largest |Δ fake_prob| allowed between decode="scaled" and decode="full" on the same photo (a resampling difference).
SCALED_DECODE_TOLERANCE = 0.05
__all__ = ["FACE_MODES", "SCALED_DECODE_TOLERANCE", "STATUSES", "Detector", "input_name", "load_input"]


def _chosen_margin(trained: FaceCrop | None, requested: float | None) -> float:
    """The requested margin, else the training crops' margin, else the default; warns when they differ."""
    if requested is None:
        return trained.margin if trained is not None else DEFAULT_MARGIN
    if trained is not None and abs(requested - trained.margin) > 1e-9:
        logger.warning(
            "face margin %.2f differs from the model's training crops (margin %.2f, model card): scores may shift",
            requested,
            trained.margin,
        )
    return requested


def chosen_face_detector(trained: FaceCrop | None, requested: str, face_model: str | Path | None) -> str:
    """``auto`` becomes the training crops' detector when it is available here (else stays ``auto``: the first one
    available); a differing choice warns. What detect and adapt both crop with."""
    if trained is None or requested == "none":
        return requested
    if requested == "auto":
        available = available_detectors(face_model)
        if trained.detector in available:
            return trained.detector
        if available:  # an automatic choice, not the user's: said, not warned (box sizes differ by a few pixels)
            logger.info(
                "the model was trained on %s face crops; %s is not available here%s, using %s",
                trained.detector,
                trained.detector,
                " (pass its model file: --face-model)" if trained.detector == "yunet" else "",
                available[0],
            )
        return requested
    if requested != trained.detector:
        logger.warning("face detector %s differs from the model's training crops (%s)", requested, trained.detector)
    return requested


class Detector:
    """A deepfake detector: a model backend, its card (preprocessing, face crop, threshold) and a face detector.

    Faces are framed as the model's training images were: the card's face crop (detector, margin, size) when the
    model was trained on ``dfkd crop-faces`` output, else the default margin. ``faces`` and ``margin`` override it,
    with a warning when they differ from what the model was trained on.
    """

    def __init__(
        self,
        backend: TorchBackend | OnnxBackend,
        *,
        faces: str = "auto",
        face_model: str | Path | None = None,
        batch_size: int = 32,
        margin: float | None = None,
        workers: int | None = None,
        decode: str = "scaled",
    ) -> None:
        if decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}; got {decode!r}")
        if workers is not None and workers < 0:
            raise ValueError(f"workers must be 0 (no threads) or more, got {workers}")
        if faces not in FACE_MODES:
            raise ValueError(f"faces must be one of {', '.join(FACE_MODES)}; got {faces!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if margin is not None and not 0.0 <= margin <= MAX_MARGIN:
            raise ValueError(f"margin must be in [0, {MAX_MARGIN}], got {margin}")
        self.backend = backend
        self.card: ModelCard = backend.card
        self.face_model = face_model
        self.batch_size = batch_size
        self.workers = default_workers() if workers is None else workers
        self.decode = decode
        trained = self.card.face_crop
        self.margin = _chosen_margin(trained, margin)
        self.crop_size = trained.size if trained is not None else None
        self.align = trained is not None and trained.align  # aligned training crops: faces are aligned here too
        self.faces = faces
        self.auto_faces = chosen_face_detector(trained, "auto", face_model)  # what "auto" means for this model
        if faces != "auto":
            chosen_face_detector(trained, faces, face_model)  # warns when it differs from the training crops
        if faces != "none":
            build_face_detector(self.face_mode(faces), face_model)  # fail early, saying how to fix it

    @classmethod
    def load(cls, path: str | Path | None = None, *, device: str = "cpu", **options: Any) -> Detector:
        """Open a dfkd model file (``.safetensors``, PyTorch) or an exported ``.onnx`` file (onnxruntime); without a
        path, the bundled general detector (``dfkd.pretrained``: trained on real faces, labelled and self-blended
        fakes; ``dfkd info`` shows its card). ``options`` are the Detector's own (faces, face_model, batch_size,
        margin, workers, decode)."""
        return cls(load_backend(path, device=device), **options)

    @property
    def metadata(self) -> dict[str, Any]:
        """The model card as JSON-ready data (what services and reports print)."""
        return self.card.to_json_dict()

    @property
    def threshold(self) -> float:
        """Decision threshold on the fake probability (the card's)."""
        return self.card.threshold

    def use_threshold(self, threshold: float, source: str = "given") -> None:
        """Label from now on at ``threshold`` (e.g. a :func:`dfkd.inference.calibrate.calibrate` result's); the
        model file is not changed. ``source`` says where it came from, as the card's ``threshold_source``."""
        if not 0.0 <= threshold <= 1.0:  # NaN fails too
            raise ValueError(f"threshold must be a fake probability in [0, 1], got {threshold}")
        self.card = self.card.model_copy(update={"threshold": float(threshold), "threshold_source": source})

    def calibrate(
        self, reals: Sequence[str | os.PathLike[str]], max_fpr: float = 0.05, *, faces: str | None = None
    ) -> Calibration:
        """Score genuine images and videos under ``reals`` as ``predict`` does and label from now on at the threshold
        calling at most ``max_fpr`` of them fake (the model file is not changed: ``save_calibrated`` writes one)."""
        from dfkd.inference.calibrate import calibrate

        calibration = calibrate(self, reals, max_fpr, faces=faces)
        self.use_threshold(calibration.threshold, calibration.source)
        return calibration

    @property
    def preprocessing(self) -> Preprocessing:
        """resize_size, input_size, mean, std (the card's)."""
        return self.card.preprocessing

    def label_of(self, fake_prob: float | None) -> str | None:
        """``"fake"`` at or above the threshold, else ``"real"`` (names from the card's label map)."""
        return None if fake_prob is None else self.card.label_of(fake_prob)

    def fake_probs(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Fake probabilities [N] of RGB images scored whole (resize, centre crop), in batches."""
        probs = [np.zeros(0)]
        for start in range(0, len(images), self.batch_size):
            batch = preprocess_batch(images[start : start + self.batch_size], self.preprocessing)
            probs.append(sigmoid(self.backend.logits(batch)))
        return np.concatenate(probs).astype(np.float64)

    def face_mode(self, faces: str | None = None) -> str:
        """The face detector that ``faces`` (default: the detector's mode) means here, or ``"none"``."""
        faces = faces or self.faces
        if faces not in FACE_MODES:
            raise ValueError(f"faces must be one of {', '.join(FACE_MODES)}; got {faces!r}")
        return self.auto_faces if faces == "auto" else faces

    def find_faces(self, image: Image.Image, faces: str | None = None) -> list[FaceBox] | None:
        """Faces found by the face detector, or None when face detection is off (``faces="none"``)."""
        mode = self.face_mode(faces)
        if mode == "none":
            return None
        detector = build_face_detector(mode, self.face_model)
        boxes = detector.detect(image)
        if not boxes and self.card.face_crop is not None:
            boxes = detect_in_padded(detector, image)
        return boxes

    def predict(self, inputs: Sequence[Any] | Any, *, faces: str | None = None) -> list[dict[str, Any]]:
        """One result per input, in order (see the module docstring for the rules).

        Each result has ``input``, ``kind`` ("image"), ``status`` (ok / no_face / error), ``error``, ``fake_prob``,
        ``label``, ``threshold``, ``faces`` (``[{box: [x0, y0, x1, y1], score, fake_prob}]``), ``width`` and ``height``
        (boxes, width and height in the full image's pixels, EXIF-oriented).
        """
        return list(self.stream(inputs, faces=faces))

    def stream(self, inputs: Iterable[Any] | Any, *, faces: str | None = None) -> Iterator[dict[str, Any]]:
        """``predict``'s results one by one, in input order, as they are scored; memory stays bounded for any
        number of inputs (paths, encoded bytes, PIL images or arrays)."""
        if isinstance(inputs, (str, os.PathLike, Image.Image, np.ndarray, bytes)):
            inputs = [inputs]
        return stream_predictions(self, inputs, faces=faces)

    def result_template(self, name: str, kind: str = "image") -> dict[str, Any]:
        """A result with every key present and nothing scored yet (status ``"ok"``)."""
        return {
            "input": name,
            "kind": kind,
            "status": "ok",
            "error": None,
            "fake_prob": None,
            "label": None,
            "threshold": self.threshold,
            "faces": [],
            "width": None,
            "height": None,
        }

    def explain(self, image: Any, *, faces: str | None = None) -> Image.Image:
        """A Grad-CAM overlay of the model's view of the image (its most fake face when faces are detected).

        Raises:
            NotImplementedError: for ONNX models (Grad-CAM needs the PyTorch graph).
        """
        if not isinstance(self.backend, TorchBackend):
            raise NotImplementedError(
                "explain needs the PyTorch model: load the .safetensors model file instead of the ONNX export"
            )
        from dfkd.inference.explain import gradcam_overlay

        image = load_input(image)
        boxes = self.find_faces(image, faces)
        if boxes:
            crops = [crop_face(image, box, margin=self.margin, size=self.crop_size, align=self.align) for box in boxes]
            image = crops[int(np.argmax(self.fake_probs(crops)))]
        with self.backend.lock:
            return gradcam_overlay(
                self.backend.model,
                image,
                self.preprocessing.as_dict(),
                device=self.backend.device,
                threshold=self.threshold,  # the heat map explains the label predict gives
            )
