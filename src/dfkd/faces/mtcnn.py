"""A compact MTCNN (Zhang et al. 2016) for one image, reading facenet-pytorch's weight files (MIT).

The networks and the three-stage cascade follow facenet-pytorch's implementation so its published weights apply
unchanged; the package itself is not imported (it pins old torch / numpy versions and needs ``requests``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.functional import interpolate
from torchvision.ops import nms

from dfkd.faces.backends import nms as nms_numpy

_PYRAMID_FACTOR = 0.709


class PNet(nn.Module):
    """Proposal network: a fully convolutional 12x12 face / not-face scorer with box regression."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box offsets [B, 4, h, w] and face probabilities [B, h, w] of [B, 3, H, W] images."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)[:, 1]


class RNet(nn.Module):
    """Refinement network on 24x24 candidates."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box offsets [B, 4] and face probabilities [B] of [B, 3, 24, 24] crops."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.dense4(x.flatten(1)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)[:, 1]


class ONet(nn.Module):
    """Output network on 48x48 candidates (its landmark head is kept only so the weights load strictly)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box offsets [B, 4] and face probabilities [B] of [B, 3, 48, 48] crops."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.flatten(1)))
        return self.dense6_2(x), torch.softmax(self.dense6_1(x), dim=1)[:, 1]


def load_nets(pnet_path: str | Path, rnet_path: str | Path, onet_path: str | Path) -> tuple[PNet, RNet, ONet]:
    """Build the three networks and load their state dicts strictly (``weights_only``: nothing unpickled)."""
    nets = (PNet(), RNet(), ONet())
    for net, path in zip(nets, (pnet_path, rnet_path, onet_path), strict=True):
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        net.eval()
    return nets


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - 127.5) * 0.0078125


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow boxes [N, 4+] to squares around the same centre."""
    boxes = boxes.clone()
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(width, height)
    boxes[:, 0] += width * 0.5 - side * 0.5
    boxes[:, 1] += height * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _regress(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    boxes = boxes.clone()
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] += offsets * torch.stack([width, height, width, height], dim=1)
    return boxes


def _crops(image: torch.Tensor, boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resized crops [N, 3, size, size] of the image [1, 3, H, W] under boxes, clamped; and the kept box mask."""
    height, width = image.shape[2:]
    corners = boxes[:, :4].trunc().int().tolist()
    crops, kept = [], []
    for x0, y0, x1, y1 in corners:
        x0, y0, x1, y1 = max(x0, 1) - 1, max(y0, 1) - 1, min(x1, width), min(y1, height)
        kept.append(x1 > x0 and y1 > y0)
        if kept[-1]:
            crops.append(interpolate(image[:, :, y0:y1, x0:x1], size=(size, size), mode="area"))
    mask = torch.tensor(kept, dtype=torch.bool)
    return (torch.cat(crops) if crops else image.new_zeros((0, 3, size, size))), mask


@torch.inference_mode()
def detect(
    pixels: np.ndarray,
    nets: tuple[PNet, RNet, ONet],
    *,
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
    min_face: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Face corners [N, 4] (x0, y0, x1, y1) and scores [N] in an RGB uint8 image [H, W, 3]."""
    pnet, rnet, onet = nets
    image = torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1)[None].float()
    height, width = image.shape[2:]
    scale = 12.0 / min_face
    shortest = min(height, width) * scale
    candidates = []
    while shortest >= 12:
        resized = interpolate(image, size=(int(height * scale + 1), int(width * scale + 1)), mode="area")
        offsets, probs = pnet(_normalise(resized))
        ys, xs = torch.nonzero(probs[0] >= thresholds[0], as_tuple=True)
        if ys.numel():
            cells = torch.stack([xs, ys], dim=1).float()
            boxes = torch.cat(
                [
                    ((2 * cells + 1) / scale).floor(),
                    ((2 * cells + 12) / scale).floor(),
                    probs[0, ys, xs, None],
                    offsets[0, :, ys, xs].T,
                ],
                dim=1,
            )
            candidates.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
        scale *= _PYRAMID_FACTOR
        shortest *= _PYRAMID_FACTOR
    empty = (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))
    if not candidates:
        return empty
    boxes = torch.cat(candidates)
    boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
    boxes = _square(_regress(boxes[:, :5], boxes[:, 5:9]))

    for net, size, threshold in ((rnet, 24, thresholds[1]), (onet, 48, thresholds[2])):
        crops, kept = _crops(image, boxes, size)
        boxes = boxes[kept]
        if not len(boxes):
            return empty
        offsets, probs = net(_normalise(crops))
        passed = probs > threshold
        boxes = torch.cat([boxes[passed, :4], probs[passed, None]], dim=1)
        offsets = offsets[passed]
        if net is rnet:
            keep = nms(boxes[:, :4], boxes[:, 4], 0.7)
            boxes = _square(_regress(boxes[keep], offsets[keep]))
        else:
            boxes = _regress(boxes, offsets)
    if not len(boxes):
        return empty
    corners, scores = boxes[:, :4].numpy().astype(np.float32), boxes[:, 4].numpy().astype(np.float32)
    keep = nms_numpy(corners, scores, 0.7, mode="min")
    return corners[keep], scores[keep]
