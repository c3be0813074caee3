"""The text detector at run time: a darknet YOLOv4-family model through OpenCV DNN.

`Detector.detect_batch(frames)` is the whole job: each frame is cut into views
(the whole frame, plus overlapping tiles when it is larger than a tile so that
small text keeps enough pixels), all views go through the network in one
batched forward, and the boxes of a frame's views are mapped back to frame
pixels, merged and padded. Geometry is the letterbox of `geometry.py`, the same
the trainer uses.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from textwatch.config import DetectorSettings
from textwatch.detect.darknet import DarknetModel, check_weights, parse_cfg
from textwatch.detect.geometry import Box, Letterbox, clip_boxes, fitted_tile, letterbox, tiles
from textwatch.detect.lines import gray_of, refine_ends, split_rows
from textwatch.detect.merge import merge_line_fragments, nms
from textwatch.errors import BackendUnavailable, ModelError
from textwatch.log import get_logger

CUT_PENALTY = 0.5  # score factor of a box its tile cut (see cut_by_tile)
EDGE_PX = 1.5  # a box this close to an inner tile edge touches it
MAX_TILES = 48  # tiles per frame at most (a 1280x720 frame has 6); larger frames get larger tiles
MAX_FORWARD = 16  # views per network pass at most: bounds the memory of one forward

CUDA_BUILD_HINT = (
    "PyPI's opencv-python-headless has no CUDA: install an OpenCV built with WITH_CUDA, WITH_CUDNN and "
    "OPENCV_DNN_CUDA, or use detector.backend = \"torch\" (with the torch extra) or \"cpu\""
)


@dataclass(frozen=True)
class Detection:
    """A text region in frame pixels (x2, y2 exclusive) with the detector's confidence.

    `text_height` is the height of the text line inside the box (the box less the
    detector's padding): Tesseract scales crops by it. 0 means the box's own height."""

    box: Box
    confidence: float
    text_height: float = 0.0

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def line_height(self) -> float:
        return self.text_height or float(self.height)


@dataclass(frozen=True)
class View:
    """One network input cut from a frame: which frame, which region, and its letterbox."""

    frame: int
    region: Box
    letterbox: Letterbox
    frame_size: tuple[int, int]  # width, height of the whole frame


def cut_by_tile(boxes: np.ndarray, view: View) -> np.ndarray:
    """Boxes that touch an edge of their tile inside the frame: the tile cut their line.

    Such a box is often the most confident guess, and NMS would then suppress the
    whole line seen by another view in its favour ("Quarterly" read as "rly" at a
    tile edge). Their scores are lowered (CUT_PENALTY) so an uncut box wins; a cut
    box still counts where no other view saw the text.
    """
    x1, y1, x2, y2 = view.region
    width, height = view.frame_size
    cut = np.zeros(len(boxes), dtype=bool)
    if x1 > 0:
        cut |= boxes[:, 0] <= x1 + EDGE_PX
    if y1 > 0:
        cut |= boxes[:, 1] <= y1 + EDGE_PX
    if x2 < width:
        cut |= boxes[:, 2] >= x2 - EDGE_PX
    if y2 < height:
        cut |= boxes[:, 3] >= y2 - EDGE_PX
    return cut


def cuda_device_count() -> int:
    """CUDA devices OpenCV can use (0 for builds without CUDA)."""
    try:
        return int(cv2.cuda.getCudaEnabledDeviceCount())
    except (cv2.error, AttributeError):
        return 0


def choose_backend(requested: str, torch_probe: Callable[[], str | None] | None = None) -> str:
    """Resolve `auto` and check that an explicit request can be met; never fall back silently.

    `torch_probe` answers torch_device() (the start-up checks pass torch_device_elsewhere)."""
    probe = torch_probe or torch_device
    has_cuda = cuda_device_count() > 0
    if requested in ("cuda", "cuda-fp16") and not has_cuda:
        raise BackendUnavailable(
            f"detector.backend = {requested!r} but this OpenCV {cv2.__version__} build has no CUDA device; "
            + CUDA_BUILD_HINT
        )
    if requested == "opencl" and not cv2.ocl.haveOpenCL():
        raise BackendUnavailable("detector.backend = 'opencl' but OpenCV finds no OpenCL device")
    if requested == "torch" and probe() is None:
        raise BackendUnavailable(
            "detector.backend = 'torch' needs PyTorch (pip install 'textwatch[torch]'), which is not importable"
        )
    if requested == "auto":
        if has_cuda:
            return "cuda-fp16"
        return "torch" if probe() == "cuda" else "cpu"
    return requested


def torch_device() -> str | None:
    """'cuda' when torch sees a GPU, 'cpu' when torch is installed without one, None without torch.

    torch (300+ MB resident) is imported only where it may run on a GPU: not at all when it is
    not installed, nor on a machine without a GPU driver, where torch could only be 'cpu'
    (regression, issue 22: start-up checks imported torch and the supervisor held 357 MB while
    the OpenCV backend ran)."""
    if "torch" not in sys.modules:
        if importlib.util.find_spec("torch") is None:
            return None
        if not gpu_driver_present():
            return "cpu"
    try:
        import torch
    except ImportError:
        return None
    return "cuda" if torch.cuda.is_available() else "cpu"


GPU_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd")  # NVIDIA, and ROCm's torch.cuda


def gpu_driver_present() -> bool:
    """A GPU driver torch.cuda could use is loaded (without it torch.cuda.is_available() is False)."""
    return any(os.path.exists(path) for path in GPU_DRIVER_FILES)


def torch_device_elsewhere() -> str | None:
    """torch_device() answered by a short-lived interpreter when it would import torch here: for
    the supervisor's start-up checks, which must not hold torch for the daemon's lifetime."""
    if "torch" in sys.modules or importlib.util.find_spec("torch") is None or not gpu_driver_present():
        return torch_device()
    probe = "from textwatch.detect.runtime import torch_device; print(torch_device())"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    answer = done.stdout.strip().splitlines()[-1:] if done.returncode == 0 else []
    return answer[0] if answer and answer[0] in ("cuda", "cpu") else None


class Net(Protocol):
    """What the Detector needs of a network: one batched forward, rows as OpenCV's Region layer gives them."""

    name: str  # what runs it, for logs and benchmarks: "cpu", "cuda-fp16", "torch-cuda", ...

    def forward(self, blob: np.ndarray) -> list[np.ndarray]: ...


BACKEND_IDS = {
    "cpu": (cv2.dnn.DNN_BACKEND_OPENCV, cv2.dnn.DNN_TARGET_CPU),
    "opencl": (cv2.dnn.DNN_BACKEND_OPENCV, cv2.dnn.DNN_TARGET_OPENCL),
    "cuda": (cv2.dnn.DNN_BACKEND_CUDA, cv2.dnn.DNN_TARGET_CUDA),
    "cuda-fp16": (cv2.dnn.DNN_BACKEND_CUDA, cv2.dnn.DNN_TARGET_CUDA_FP16),
}


def load_model(settings: DetectorSettings) -> tuple[DarknetModel, cv2.dnn.Net]:
    """Parse the cfg, check the weights' size, then let OpenCV read both."""
    model = parse_cfg(settings.cfg)
    check_weights(model, settings.weights)
    try:
        net = cv2.dnn.readNetFromDarknet(str(settings.cfg), str(settings.weights))
    except cv2.error as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown error"
        raise ModelError(f"OpenCV could not load {settings.cfg.name}: {first}") from None
    return model, net


class OpenCVNet:
    """The darknet model through OpenCV DNN on one of its backends (cpu, opencl, cuda, cuda-fp16)."""

    def __init__(self, net: cv2.dnn.Net, backend: str) -> None:
        backend_id, target_id = BACKEND_IDS[backend]
        net.setPreferableBackend(backend_id)
        net.setPreferableTarget(target_id)
        self.net = net
        self.name = backend
        self.output_names = list(net.getUnconnectedOutLayersNames())

    def forward(self, blob: np.ndarray) -> list[np.ndarray]:
        self.net.setInput(blob)
        return list(self.net.forward(self.output_names))


def open_net(settings: DetectorSettings, backend: str) -> tuple[DarknetModel, Net]:
    """The parsed model and the one network the backend needs; torch is imported only for "torch"."""
    if backend == "torch":
        from textwatch.detect.torchnet import TorchNet

        model = parse_cfg(settings.cfg)
        check_weights(model, settings.weights)
        return model, TorchNet(model, settings.weights)
    model, net = load_model(settings)
    return model, OpenCVNet(net, backend)


class TextDetector(Protocol):
    """What the detect process and the tools need of a detector, whichever model runs."""

    def detect(self, frame: np.ndarray) -> list[Detection]: ...

    def detect_batch(self, frames: list[np.ndarray]) -> list[list[Detection]]: ...


def make_detector(settings: DetectorSettings) -> TextDetector:
    """The detector `detector.model` names; only its runtime is imported (ONNX Runtime for ppocr)."""
    if settings.model == "ppocr":
        from textwatch.detect.dbnet import PaddleDetector

        return PaddleDetector(settings)
    return Detector(settings)


class Detector:
    """YOLOv4-family text detector (detector.model = "yolo"); one per process (the network is not thread-safe)."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.settings = settings
        self.backend = choose_backend(settings.backend)
        self.model, self.net = open_net(settings, self.backend)
        self.input_size = (self.model.width, self.model.height)
        get_logger().info(
            "detector_ready",
            cfg=str(settings.cfg),
            backend=self.backend,
            requested=settings.backend,
            input=f"{self.model.width}x{self.model.height}",
        )

    def detect(self, frame: np.ndarray) -> list[Detection]:
        return self.detect_batch([frame])[0]

    def detect_batch(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """Detect text in several frames with one batched forward over all their views."""
        views, inputs = self._views(frames)
        raw = self._forward(inputs)
        per_frame: list[list[np.ndarray]] = [[] for _ in frames]
        for view, rows in zip(views, raw):
            per_frame[view.frame].append(self._view_boxes(view, rows))
        return [self._finish(np.concatenate(parts), frame) for parts, frame in zip(per_frame, frames)]

    # Change gating (detect/gate.py): some views of a frame now, merged with the boxes other views gave before.
    # detect_batch(frames) == [finish_views(c, f) for c, f in zip(detect_views(frames, every view), frames)].

    def view_regions(self, width: int, height: int) -> list[Box]:
        """The views of a width x height frame in frame pixels: the whole frame first, then its tiles."""
        return self._regions(np.broadcast_to(np.uint8(0), (height, width)))  # only the shape is read

    def detect_views(self, frames: list[np.ndarray], chosen: list[list[int]]) -> list[list[np.ndarray]]:
        """The candidate boxes ([x1, y1, x2, y2, score] rows in frame pixels) of the chosen views of each
        frame (indices into view_regions), with one batched forward over all of them."""
        width, height = self.input_size
        views, inputs = [], []
        for index, (frame, wanted) in enumerate(zip(frames, chosen)):
            regions = self._regions(frame)
            for region in (regions[i] for i in wanted):
                x1, y1, x2, y2 = region
                image, box = letterbox(frame[y1:y2, x1:x2], width, height)
                views.append(View(index, region, box, (frame.shape[1], frame.shape[0])))
                inputs.append(image)
        per_frame: list[list[np.ndarray]] = [[] for _ in frames]
        if inputs:
            for view, rows in zip(views, self._forward(inputs)):
                per_frame[view.frame].append(self._view_boxes(view, rows))
        return per_frame

    def finish_views(self, candidates: list[np.ndarray], frame: np.ndarray) -> list[Detection]:
        """A frame's detections from the candidates of all its views, as detect_batch merges them."""
        return self._finish(np.concatenate(candidates).reshape(-1, 5), frame)

    def _views(self, frames: list[np.ndarray]) -> tuple[list[View], list[np.ndarray]]:
        """The whole frame of each frame, plus its tiles when tiling applies."""
        width, height = self.input_size
        views, inputs = [], []
        for index, frame in enumerate(frames):
            for region in self._regions(frame):
                x1, y1, x2, y2 = region
                image, box = letterbox(frame[y1:y2, x1:x2], width, height)
                views.append(View(index, region, box, (frame.shape[1], frame.shape[0])))
                inputs.append(image)
        return views, inputs

    def _regions(self, frame: np.ndarray) -> list[Box]:
        """The whole frame, plus tiles when tiling applies: at most MAX_TILES of them. A frame
        that would need more (a 10000 px image) gets larger tiles instead, so the work per frame
        stays bounded (regression: every tile of a 10000x10000 image in one forward, 6.9 GB)."""
        h, w = frame.shape[:2]
        whole = [(0, 0, w, h)]
        s = self.settings
        larger = max(w, h) > s.tile_size * 1.25
        if s.tiling == "off" or (s.tiling == "auto" and not larger):
            return whole
        size = s.tile_size
        parts = tiles(w, h, size, s.tile_overlap)
        while len(parts) > MAX_TILES:
            size = int(size * 1.25) + 1
            parts = tiles(w, h, size, s.tile_overlap)
        if s.tile_fit:
            parts = tiles(w, h, fitted_tile(w, h, size, s.tile_overlap, min(self.input_size)), s.tile_overlap)
        return whole + [p for p in parts if p != whole[0]]

    def _forward(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Rows [cx, cy, w, h, objectness, class scores...] per view, normalised to the net input."""
        rows: list[np.ndarray] = []
        for start in range(0, len(inputs), MAX_FORWARD):  # bounded memory: at most MAX_FORWARD views a pass
            rows += self._forward_once(inputs[start : start + MAX_FORWARD])
        return rows

    def _forward_once(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        width, height = self.input_size
        blob = cv2.dnn.blobFromImages(inputs, 1 / 255.0, (width, height), swapRB=True, crop=False)
        outputs = self.net.forward(blob)
        columns = outputs[0].shape[-1]
        shaped = [out.reshape(len(inputs), -1, columns) for out in outputs]
        return [np.concatenate([out[i] for out in shaped]) for i in range(len(inputs))]

    def _view_boxes(self, view: View, rows: np.ndarray) -> np.ndarray:
        """Confident rows of one view as [x1, y1, x2, y2, score] in frame pixels."""
        scores = rows[:, 5:].max(axis=1) if rows.shape[1] > 5 else rows[:, 4]
        keep = scores >= self.settings.confidence
        rows, scores = rows[keep], scores[keep]
        width, height = self.input_size
        cx, cy = rows[:, 0] * width, rows[:, 1] * height
        bw, bh = rows[:, 2] * width, rows[:, 3] * height
        net_boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        boxes = view.letterbox.to_source(net_boxes) if len(rows) else np.zeros((0, 4), np.float32)
        x1, y1, x2, y2 = view.region
        boxes = clip_boxes(boxes, x2 - x1, y2 - y1) + np.array([x1, y1, x1, y1], np.float32)
        scores = np.where(cut_by_tile(boxes, view), scores * CUT_PENALTY, scores)
        return np.concatenate([boxes, scores[:, None].astype(np.float32)], axis=1)

    def _finish(self, candidates: np.ndarray, frame: np.ndarray) -> list[Detection]:
        """NMS over all views, merge fragments of one line, one row per box with its ends on the
        ink (detect/lines.py), pad, clip, drop tiny boxes."""
        h, w = frame.shape[:2]
        kept = nms(candidates, self.settings.nms)
        merged = merge_line_fragments(kept)
        if self.settings.refine_lines:
            merged = self._rows(merged, frame)
        detections = []
        for x1, y1, x2, y2, score in merged:
            if y2 - y1 < self.settings.min_box_height:
                continue
            pad_y = self.settings.padding * (y2 - y1)
            pad_x = self.settings.padding_x * (y2 - y1)
            box = (
                int(max(0, np.floor(x1 - pad_x))),
                int(max(0, np.floor(y1 - pad_y))),
                int(min(w, np.ceil(x2 + pad_x))),
                int(min(h, np.ceil(y2 + pad_y))),
            )
            if box[2] > box[0] and box[3] > box[1]:
                detections.append(Detection(box, float(score), float(y2 - y1)))
        return detections

    def _rows(self, merged: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """Each merged box split into its text rows, each row's ends moved onto its ink; rows
        that now overlap on one line (a split row and a box the detector also gave) are merged."""
        gray = gray_of(frame)
        fh, fw = gray.shape[:2]
        out = []
        for x1, y1, x2, y2, score in merged:
            box = (max(0, int(x1)), max(0, int(y1)), min(fw, int(np.ceil(x2))), min(fh, int(np.ceil(y2))))
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            out += [[*refine_ends(gray, row), score] for row in split_rows(gray, box)]
        return merge_line_fragments(np.asarray(out, np.float32).reshape(-1, 5))
