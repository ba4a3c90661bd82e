"""The service decodes uploads in the detection pipeline, when the batch worker takes them, at the size needed."""

from __future__ import annotations

import io

import httpx
from PIL import Image

from dfkd.inference import Detector
from dfkd.serve import create_app
from tests.serve.helpers import LiveServer, noise_image


class BytesRecordingDetector:
    """The real detector, recording the type of each input the batch worker hands it."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.metadata = detector.metadata
        self.threshold = detector.threshold
        self.faces = detector.faces
        self.kinds: list[type] = []

    def predict(self, inputs: list, *, faces: str | None = None) -> list[dict]:
        self.kinds.extend(type(item) for item in inputs)
        return self.detector.predict(inputs, faces=faces)

    def explain(self, image: object, *, faces: str | None = None) -> Image.Image:
        raise NotImplementedError


def test_uploads_reach_the_pipeline_undecoded_and_score_like_detect(serve_detector: Detector) -> None:
    buffer = io.BytesIO()
    noise_image(3, (1600, 1200)).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    recording = BytesRecordingDetector(serve_detector)
    with LiveServer(create_app(recording)) as live:
        recording.kinds.clear()  # the warm-up's image
        response = httpx.post(f"{live.url}/v1/detect", files=[("files", ("big.jpg", data, "image/jpeg"))], timeout=60)
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert bytes in recording.kinds and Image.Image not in recording.kinds  # decoded by the pipeline, not the route
    assert (result["width"], result["height"]) == (1600, 1200)  # full-size coordinates although decoded scaled
    assert abs(result["fake_prob"] - serve_detector.predict([data])[0]["fake_prob"]) < 1e-6
