"""Camera-like augmentation of a network-sized sample, boxes moved with the pixels.

Why this module owns the box bookkeeping: the seed (shared/seed/README.md, its
Drawback 1) scaled and rotated images and then found normalised coordinates
beyond 1. Here every geometric change is one 3x3 homography applied to the image
*and* to the four corners of every box; the axis-aligned hull of the moved
corners is clipped to the image, and `finalize_boxes` refuses to hand out any
coordinate outside [0, 1]. A box that is mostly cut off by the border is not
dropped silently: it becomes an *ignore* region, so a half-visible line is never
taught as background.

Photometric steps imitate what cameras and codecs do to text: defocus and motion
blur, sensor noise, JPEG blocks, low resolution (down then up), contrast and
brightness, and inversion (light text on dark and dark on light look alike to us).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from textwatch.detect.geometry import PAD_VALUE


class LabelError(ValueError):
    """A label box left the image or is degenerate: the seed's Drawback 1, caught at the source."""


class AugmentSettings(BaseModel):
    """Strength and probability of each augmentation step ([data.augment] in train.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    geometric_p: float = Field(0.7, ge=0, le=1, description="chance of a scale/rotate/perspective warp")
    scale: tuple[float, float] = Field((0.75, 1.3), description="zoom range of the warp (1 = unchanged)")
    rotate_deg: float = Field(4.0, ge=0, le=45, description="largest rotation, degrees either way")
    perspective: float = Field(0.04, ge=0, le=0.3, description="largest corner shift, fraction of the side")
    shift: float = Field(0.15, ge=0, le=0.5, description="largest translation, fraction of the side")
    blur_p: float = Field(0.2, ge=0, le=1, description="chance of Gaussian (defocus) blur")
    motion_blur_p: float = Field(0.1, ge=0, le=1, description="chance of linear motion blur")
    noise_p: float = Field(0.3, ge=0, le=1, description="chance of Gaussian sensor noise")
    jpeg_p: float = Field(0.3, ge=0, le=1, description="chance of a JPEG round trip (quality 25-90)")
    lowres_p: float = Field(0.15, ge=0, le=1, description="chance of downscale then upscale")
    color_p: float = Field(0.6, ge=0, le=1, description="chance of contrast/brightness/colour change")
    gray_p: float = Field(0.1, ge=0, le=1, description="chance of converting to grey")
    invert_p: float = Field(0.1, ge=0, le=1, description="chance of inverting the image")
    min_visible: float = Field(0.4, gt=0, le=1, description="box kept if this share of it stays visible, else ignore")
    min_box_px: float = Field(3.0, ge=1, description="boxes thinner/shorter than this (net px) become ignore")


# ---------------------------------------------------------------- boxes


def corners(boxes: np.ndarray) -> np.ndarray:
    """The four corners (N, 4, 2) of xyxy boxes, so any warp can move them exactly."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    return np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1), np.stack([x2, y2], 1), np.stack([x1, y2], 1)], 1)


def warp_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Move xyxy boxes through a 3x3 homography; the result is the axis-aligned hull of the moved corners."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4).astype(np.float32)
    pts = corners(boxes.astype(np.float64)).reshape(-1, 1, 2)
    moved = cv2.perspectiveTransform(pts, matrix.astype(np.float64)).reshape(-1, 4, 2)
    return np.concatenate([moved.min(1), moved.max(1)], 1).astype(np.float32)


def _area(boxes: np.ndarray) -> np.ndarray:
    """Area of xyxy boxes, zero for inverted ones."""
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def clip_and_filter(
    boxes: np.ndarray, ignore: np.ndarray, width: int, height: int, min_visible: float, min_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes to the image; boxes mostly cut off or too small move to `ignore`.

    A line that is less than `min_visible` inside the frame, or thinner than
    `min_px`, cannot be learnt as a line, but it is still text: it goes to the
    ignore list so the loss does not call it background either.
    """
    boxes = boxes.reshape(-1, 4).astype(np.float32)
    ignore = ignore.reshape(-1, 4).astype(np.float32)
    before = _area(boxes)
    clipped = boxes.copy()
    clipped[:, [0, 2]] = np.clip(clipped[:, [0, 2]], 0, width)
    clipped[:, [1, 3]] = np.clip(clipped[:, [1, 3]], 0, height)
    after = _area(clipped)
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    visible = after > 0
    good = visible & (after >= min_visible * np.maximum(before, 1e-6)) & (w >= min_px) & (h >= min_px)
    ign = ignore.copy()
    ign[:, [0, 2]] = np.clip(ign[:, [0, 2]], 0, width)
    ign[:, [1, 3]] = np.clip(ign[:, [1, 3]], 0, height)
    ign = np.concatenate([ign[_area(ign) > 0], clipped[visible & ~good]])
    return clipped[good], ign


def finalize_boxes(boxes_px: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalise pixel xyxy boxes to [0, 1] and raise `LabelError` on anything outside.

    This is the guard against the seed's Drawback 1 (normalised coordinates above
    1 after scale/rotate augmentation): a label that escaped the image is a bug
    upstream, and it must stop the data pipeline rather than reach the loss.
    """
    boxes = np.asarray(boxes_px, dtype=np.float32).reshape(-1, 4)
    out = boxes / np.array([width, height, width, height], dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise LabelError(f"non-finite box coordinates: {boxes[~np.isfinite(out).all(1)][:3].tolist()}")
    bad = (out < 0).any(1) | (out > 1).any(1) | (out[:, 2] <= out[:, 0]) | (out[:, 3] <= out[:, 1])
    if bad.any():
        raise LabelError(
            f"{int(bad.sum())} box(es) outside [0,1] or degenerate for a {width}x{height} image: "
            f"{boxes[bad][:3].tolist()} px"
        )
    return out


# ---------------------------------------------------------------- geometry


def random_homography(rng: np.random.Generator, width: int, height: int, s: AugmentSettings) -> np.ndarray:
    """A random zoom + rotation + shift + perspective about the image centre, as one 3x3 matrix."""
    cx, cy = width / 2, height / 2
    zoom = math.exp(rng.uniform(math.log(s.scale[0]), math.log(s.scale[1])))
    angle = math.radians(rng.uniform(-s.rotate_deg, s.rotate_deg))
    cos, sin = math.cos(angle) * zoom, math.sin(angle) * zoom
    tx = rng.uniform(-s.shift, s.shift) * width
    ty = rng.uniform(-s.shift, s.shift) * height
    affine = np.array([[cos, -sin, cx - cos * cx + sin * cy + tx], [sin, cos, cy - sin * cx - cos * cy + ty], [0, 0, 1]])
    src = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    jitter = rng.uniform(-s.perspective, s.perspective, (4, 2)) * np.float32([width, height])
    persp = cv2.getPerspectiveTransform(src, (src + jitter).astype(np.float32))
    return persp @ affine


def geometric(
    image: np.ndarray, boxes: np.ndarray, ignore: np.ndarray, rng: np.random.Generator, s: AugmentSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp image and boxes by one random homography; the uncovered border is letterbox grey."""
    h, w = image.shape[:2]
    matrix = random_homography(rng, w, h, s)
    out = cv2.warpPerspective(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(PAD_VALUE,) * 3
    )
    return out, warp_boxes(boxes, matrix), warp_boxes(ignore, matrix)


# ---------------------------------------------------------------- photometric


def _color(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast, brightness and per-channel gain (white balance) in one lookup-free pass."""
    alpha = rng.uniform(0.55, 1.35)
    beta = rng.uniform(-45, 45)
    gains = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    mean = float(image.mean())
    out = (image.astype(np.float32) - mean) * alpha + mean + beta
    return np.clip(out * gains, 0, 255).astype(np.uint8)


def _motion_kernel(rng: np.random.Generator) -> np.ndarray:
    """A normalised line kernel of random length and angle: the smear of a moving camera."""
    length = int(rng.integers(3, 10))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    return kernel / max(float(kernel.sum()), 1e-6)


def _jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Round-trip through JPEG at a random quality, as a camera stream would."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 91))])
    if not ok:
        raise RuntimeError("cv2.imencode failed to JPEG-encode an augmentation sample")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def _lowres(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Downscale then upscale: a low-resolution camera or a digital zoom."""
    h, w = image.shape[:2]
    f = rng.uniform(0.4, 0.8)
    small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def photometric(image: np.ndarray, rng: np.random.Generator, s: AugmentSettings) -> np.ndarray:
    """Apply the camera-like pixel changes, each with its own probability."""
    out = image
    if rng.random() < s.color_p:
        out = _color(out, rng)
    if rng.random() < s.gray_p:
        out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if rng.random() < s.invert_p:
        out = 255 - out
    if rng.random() < s.lowres_p:
        out = _lowres(out, rng)
    if rng.random() < s.blur_p:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.4))
    elif rng.random() < s.motion_blur_p:
        out = cv2.filter2D(out, -1, _motion_kernel(rng))
    if rng.random() < s.noise_p:
        noise = rng.standard_normal(out.shape, dtype=np.float32) * np.float32(rng.uniform(2, 12))
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < s.jpeg_p:
        out = _jpeg(out, rng)
    return np.ascontiguousarray(out)


def augment(
    image: np.ndarray, boxes: np.ndarray, ignore: np.ndarray, rng: np.random.Generator, s: AugmentSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geometric then photometric augmentation; boxes come back clipped and filtered, in pixels."""
    h, w = image.shape[:2]
    if rng.random() < s.geometric_p:
        image, boxes, ignore = geometric(image, boxes, ignore, rng, s)
    boxes, ignore = clip_and_filter(boxes, ignore, w, h, s.min_visible, s.min_box_px)
    return photometric(image, rng, s), boxes, ignore
