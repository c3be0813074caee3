"""Reading text lines with PP-OCRv6's small recognizer (ocr.engine = "ppocr") on ONNX Runtime.

The model and its character dictionary are files of the pinned `rapidocr==3.10.0`
wheel (Apache-2.0): `rapidocr/models/PP-OCRv6_rec_small.onnx`, whose dictionary
(18,708 characters) is embedded in the ONNX metadata under "character". Nothing
of rapidocr's pipeline is imported or called, and nothing is downloaded: this
module re-implements the three pieces of behaviour a line recognizer needs, as
rapidocr (`ch_ppocr_rec`) and PaddleOCR (`predict_rec.py`) define them:

* preprocessing: the BGR crop resized to height 48 keeping its aspect ratio,
  `(x / 255 - 0.5) / 0.5`, CHW, BGR kept (PaddleOCR trains on cv2 images),
  right-padded with 0.0 (mid grey) to a width of at least 320;
* CTC greedy decoding: argmax per time step, repeats collapsed, blank (index 0)
  dropped; the classes are `[blank] + dictionary + [" "]`;
* confidence: the mean of the per-step maximum probability of the kept steps,
  0-100, so `min_confidence` and consolidation use it as they use Tesseract's.

Where textwatch differs from rapidocr, on purpose:

* a crop's padded width depends on that crop only (rounded up to a 64 px
  bucket), never on its batch neighbours: a batched read equals the single
  read (rapidocr pads a batch to its widest crop, which measurably changes
  texts: a plate read beside a long subtitle line loses its spaces);
* a per-camera charset (`filters.charset`) masks the classes before the argmax,
  so a plate camera never emits a character outside, say, A-Z0-9;
* a crop holding two or more lines (forms, receipts) is split by a horizontal
  ink profile (`split_lines`) when its whole-crop read is unsure, and each line
  is read on its own: the model reads one line;
* a crop much taller than wide is a vertical word: it is turned 90 degrees
  counter-clockwise first (rapidocr's own rule at h/w >= 1.5).

Measured on this machine (docs/benchmarks.md): about 40-90 ms per crop on one
core, threads=1 per worker (a second intra-op thread costs 20 % more CPU for
what a second worker gets by itself).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from textwatch.config import OcrSettings
from textwatch.detect.lines import split_lines
from textwatch.errors import ModelError
from textwatch.onnx import PROVIDERS, session, wheel_model
from textwatch.recognize.reading import Reading, Word, classify, is_blank

MODEL_FILE: Final = "models/PP-OCRv6_rec_small.onnx"
METADATA_DICT_KEY: Final = "character"
INPUT_HEIGHT: Final = 48  # the PP-OCR recognizers' fixed input height
MIN_INPUT_WIDTH: Final = 320  # PaddleOCR pads shorter lines to this, as in training
MAX_INPUT_WIDTH: Final = 3200  # PaddleX's cap; wider crops are squeezed
WIDTH_BUCKET: Final = 64  # padded widths are multiples of this (a crop's own, never its batch's)
MAX_BATCH: Final = 16  # most crops in one session.run (bounds memory)
VERTICAL_RATIO: Final = 1.5  # h/w at or above which a crop is a vertical word (rapidocr's rule)
# A whole-crop read below this confidence may be two lines in one box: split and read each.
# Measured on rendered two-line crops: 55-89 read whole, 97+ for clean single lines.
SPLIT_BELOW: Final = 90.0
_WIDTH_STRIDE: Final = 8  # one CTC time step per 8 input columns
_BLANK: Final = 0
PURPOSE: Final = "ocr.engine = 'ppocr'"


def model_path() -> Path:
    """The rec model inside the installed rapidocr wheel; ModelError naming the file when absent."""
    return wheel_model(MODEL_FILE, PURPOSE)


class PaddleLineReader:
    """One PP-OCR rec model in one ONNX Runtime session: crops of single lines in, (text, 0-100) out.

    The session gets exactly `threads` intra-op threads, one inter-op thread and
    sequential execution: a daemon runs one reader per worker process beside
    capture and detection, so each reader's CPU cost must be predictable.
    """

    def __init__(self, path: Path, threads: int = 1, providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        self.session = session(path, threads, providers, PURPOSE)
        model_input = self.session.get_inputs()[0]
        shape = model_input.shape
        if len(shape) != 4 or shape[1] != 3 or shape[2] != INPUT_HEIGHT or isinstance(shape[3], int):
            raise ModelError(f"{path}: input shape {shape} is not [N, 3, {INPUT_HEIGHT}, W] with a free width")
        self.input_name: str = model_input.name
        self.output_name: str = self.session.get_outputs()[0].name
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_DICT_KEY not in meta:
            raise ModelError(f"{path} has no '{METADATA_DICT_KEY}' dictionary in its metadata: not a PP-OCR rec model")
        # split("\n"), not splitlines(): that would also split on U+2028 and friends, which are entries.
        chars = [c.rstrip("\r") for c in meta[METADATA_DICT_KEY].split("\n")]
        if chars and chars[-1] == "":
            chars.pop()
        self.characters: tuple[str, ...] = ("", *chars, " ")  # blank, the dictionary, space (use_space_char)
        classes = self.session.get_outputs()[0].shape[-1]
        if isinstance(classes, int) and classes != len(self.characters):
            raise ModelError(f"{path}: {len(self.characters)} dictionary classes but the model outputs {classes}")
        # Separators and symbols: outside a charset they are deleted, not turned into a look-alike.
        self.alnum = np.array([c.isalnum() for c in self.characters], dtype=bool)
        self._allowed: dict[str, npt.NDArray[np.intp]] = {}

    def allowed(self, charset: str) -> npt.NDArray[np.intp]:
        """Class indices `charset` permits (the blank always); charset characters the dictionary
        lacks cannot be produced and are simply absent. Cached: a camera's charset is fixed."""
        if charset not in self._allowed:
            index = {c: i for i, c in enumerate(self.characters) if i != _BLANK}
            chosen = {_BLANK} | {index[c] for c in charset if c in index}
            self._allowed[charset] = np.array(sorted(chosen), dtype=np.intp)
        return self._allowed[charset]

    def input_width(self, height: int, width: int) -> tuple[int, int]:
        """(resized width at height 48, padded width): the padded width depends on this crop only."""
        resized = min(max(1, math.ceil(INPUT_HEIGHT * width / height)), MAX_INPUT_WIDTH)
        padded = max(MIN_INPUT_WIDTH, -(-resized // WIDTH_BUCKET) * WIDTH_BUCKET)
        return resized, min(padded, MAX_INPUT_WIDTH)

    def read_batch(self, crops: Sequence[np.ndarray], charset: str = "") -> list[tuple[str, float]]:
        """(text, confidence 0-100) of each single-line BGR or gray uint8 crop, in input order.

        Crops are grouped by padded width, one session.run per group (at most
        MAX_BATCH crops each); a batched read equals the single read.
        """
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        groups: dict[int, list[tuple[int, int]]] = {}
        for i, crop in enumerate(crops):
            h, w = crop.shape[:2]
            if h and w:
                resized, padded = self.input_width(h, w)
                groups.setdefault(padded, []).append((i, resized))
        for padded, members in sorted(groups.items()):
            for start in range(0, len(members), MAX_BATCH):
                chunk = members[start : start + MAX_BATCH]
                batch = np.zeros((len(chunk), 3, INPUT_HEIGHT, padded), dtype=np.float32)
                for row, (i, resized) in enumerate(chunk):
                    batch[row, :, :, :resized] = _normalised(crops[i], resized)
                probs = self.session.run([self.output_name], {self.input_name: batch})[0]
                for row, (i, _) in enumerate(chunk):
                    results[i] = self.decode(probs[row], charset)
        return results

    def decode(self, probs: npt.NDArray[np.float32], charset: str = "") -> tuple[str, float]:
        """CTC greedy decode of one (steps, classes) softmax output.

        With a charset, each step takes the best class the charset allows (a
        plate's "O" between digits becomes the "0" a digits-only camera wants),
        except where the unrestricted best is a separator or symbol outside
        the charset: that step is dropped, so a plate's "-" or emblem does not
        become a look-alike letter. The confidence is the chosen classes' own
        probability, not renormalised: a step the model would rather have read
        as something forbidden lowers it.
        """
        best_any = probs.argmax(axis=1)
        if charset:
            allowed = self.allowed(charset)
            column = probs[:, allowed].argmax(axis=1)
            index = allowed[column]
            separator = ~np.isin(best_any, allowed) & ~self.alnum[best_any]
            index = np.where(separator, _BLANK, index)
        else:
            index = best_any
        score = probs[np.arange(len(index)), index]
        keep = index != _BLANK
        keep[1:] &= index[1:] != index[:-1]  # collapse repeats; a blank between two equal characters keeps both
        if not keep.any():
            return "", 0.0
        return "".join(self.characters[k] for k in index[keep]), float(score[keep].mean()) * 100.0


def _normalised(crop: np.ndarray, width: int) -> npt.NDArray[np.float32]:
    """A crop as the model wants it: BGR, height 48, `width` wide, CHW, in [-1, 1]."""
    if crop.ndim == 2 or crop.shape[2] == 1:
        crop = cv2.cvtColor(crop.reshape(crop.shape[:2]), cv2.COLOR_GRAY2BGR)
    image = cv2.resize(crop, (width, INPUT_HEIGHT), interpolation=cv2.INTER_LINEAR)
    return image.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0


class PaddleRecognizer:
    """ocr.engine = "ppocr": crops to Readings with PP-OCR, lines split, vertical words turned."""

    def __init__(self, settings: OcrSettings) -> None:
        self.settings = settings
        threads = settings.ppocr_threads or 1  # 0 is resolved by the daemon's workers (processes/ocr.py); one-shot tools: 1
        self.reader = PaddleLineReader(model_path(), threads, [PROVIDERS[settings.ppocr_device]])

    def read(self, crop: np.ndarray, text_height: float | None = None, charset: str = "") -> Reading:
        return self.read_batch([crop], charset)[0]

    def read_batch(
        self, crops: Sequence[np.ndarray], charset: str = "", text_heights: Sequence[float | None] | None = None
    ) -> list[Reading]:
        """Readings of several crops: one batched pass over all of them, then a second over the
        lines of the unsure ones that hold several (split_lines). PP-OCR scales every crop to
        its own 48 px input: the detector's text heights are not needed."""
        readings: list[Reading | None] = [_unreadable(crop) for crop in crops]
        todo = [i for i, r in enumerate(readings) if r is None]
        upright = [_upright(crops[i]) for i in todo]
        for i, image, (text, confidence) in zip(todo, upright, self.reader.read_batch(upright, charset)):
            readings[i] = self.reading(text, confidence)
        unsure = [(i, image) for i, image in zip(todo, upright) if self.unsure(readings[i])]
        for i, image in unsure:
            readings[i] = self.read_lines(image, charset, readings[i])
        done = [r for r in readings if r is not None]
        assert len(done) == len(crops), "every crop gets a reading"  # a filter must never shorten the answer
        return done

    def unsure(self, reading: Reading | None) -> bool:
        return reading is not None and reading.status != "failed" and reading.confidence < SPLIT_BELOW

    def read_lines(self, image: np.ndarray, charset: str, whole: Reading | None) -> Reading | None:
        """Read each line of a multi-line crop; the joined lines win when they are more confident."""
        bands = split_lines(image)
        if len(bands) < 2:
            return whole
        lines = self.reader.read_batch([image[y1:y2] for y1, y2 in bands], charset)
        words = [Word(text, confidence) for text, confidence in lines if text.strip()]
        joined = classify(words, self.settings.ppocr_min_confidence)
        if whole is None or joined.status == "text" and (whole.status != "text" or joined.confidence > whole.confidence):
            return joined
        return whole

    def reading(self, text: str, confidence: float) -> Reading:
        words = [Word(text.strip(), confidence)] if text.strip() else []
        return classify(words, self.settings.ppocr_min_confidence)

    def close(self) -> None:
        pass


def _unreadable(crop: np.ndarray) -> Reading | None:
    """A crop too small to read (failed) or without contrast (empty); None for one worth reading."""
    if crop.size == 0 or min(crop.shape[:2]) < 2:
        return Reading("failed", error=f"crop too small: {crop.shape[1]}x{crop.shape[0]}")
    if is_blank(crop):
        return Reading("empty")
    return None


def _upright(crop: np.ndarray) -> np.ndarray:
    """A crop much taller than wide holds a vertical word: turn it 90 degrees counter-clockwise."""
    h, w = crop.shape[:2]
    return cv2.rotate(crop, cv2.ROTATE_90_COUNTERCLOCKWISE) if h >= VERTICAL_RATIO * w else crop
