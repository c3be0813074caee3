"""Reading text crops with Tesseract (ocr.engine "tesserocr" or "pytesseract").

tesserocr keeps a single Tesseract instance alive for the life of the process
(model loading costs ~100 ms; a line crop then costs a few ms). pytesseract is
kept as an option behind the same interface; it starts a `tesseract` process
per call. Crops are preprocessed for Tesseract (`preprocess`) and read as one
line (psm 7) with a block-mode fallback (psm 6) for unsure reads.

A crop Tesseract cannot finish within `ocr.timeout_ms` is abandoned: tesserocr
passes the deadline to Tesseract's own cancel monitor (`Recognize(timeout=)`
returns False), pytesseract kills its `tesseract` process. Either way the
reading is "failed" with error TIMEOUT, so a pathological crop costs a worker
at most that long.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from textwatch.config import OcrSettings
from textwatch.errors import BackendUnavailable
from textwatch.recognize.reading import (
    MAX_READ_PIXELS,
    TIMEOUT,
    Reading,
    RecognizeTimeout,
    Word,
    better,
    classify,
    is_blank,
)


BORDER = 12  # margin (of the background's grey) around a crop: Tesseract reads poorly at the edge
GLYPH_MIN_FRACTION = 0.25  # glyphs are at least this fraction of the crop's height ...
GLYPH_MAX_FRACTION = 0.95  # ... and at most this


class Engine(Protocol):
    name: str

    def read_words(self, image: np.ndarray, psm: int | None = None, charset: str = "") -> list[Word]:
        """Words of a preprocessed 8-bit grayscale image, only of `charset`'s characters when it is
        given (Tesseract's tessedit_char_whitelist); raises on engine failure."""
        ...


def find_tessdata(configured: Path | None) -> Path:
    """The tessdata folder: configured, else $TESSDATA_PREFIX, else the tesseract binary's own.

    tesserocr wheels bundle their own libtesseract without a default data path, so
    we always pass one explicitly.
    """
    candidates: list[Path] = []
    if configured is not None:
        candidates.append(configured)
    elif os.environ.get("TESSDATA_PREFIX"):
        candidates.append(Path(os.environ["TESSDATA_PREFIX"]))
    else:
        candidates += _tessdata_from_binary()
        candidates += sorted(Path("/usr/share/tesseract-ocr").glob("*/tessdata"), reverse=True)
        candidates += [Path("/usr/share/tessdata"), Path("/usr/local/share/tessdata")]
    for candidate in candidates:
        if any(candidate.glob("*.traineddata")):
            return candidate
    where = ", ".join(str(c) for c in candidates) or "nowhere"
    raise BackendUnavailable(
        f"no Tesseract language data found (looked in {where}); install tesseract-ocr-eng "
        "or set ocr.tessdata"
    )


def _tessdata_from_binary() -> list[Path]:
    binary = shutil.which("tesseract")
    if binary is None:
        return []
    try:
        out = subprocess.run(
            [binary, "--list-langs"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    match = re.search(r'"([^"]+)"', out)
    return [Path(match.group(1))] if match else []


def check_languages(tessdata: Path, languages: str) -> None:
    """Raise BackendUnavailable naming every language Tesseract lacks."""
    missing = [lang for lang in languages.split("+") if not (tessdata / f"{lang}.traineddata").is_file()]
    if missing:
        raise BackendUnavailable(
            f"Tesseract language data missing for {', '.join(missing)} in {tessdata} "
            f"(install tesseract-ocr-{missing[0]} or fix ocr.languages)"
        )


class TesserocrEngine:
    """One persistent Tesseract through tesserocr's C API binding."""

    name = "tesserocr"

    def __init__(self, tessdata: Path, languages: str, psm: int, timeout_ms: int = 0) -> None:
        self.timeout_ms = timeout_ms  # 0 = no limit (tesserocr's own meaning of 0)
        self.psm = psm
        try:
            import tesserocr
        except ImportError as err:  # pragma: no cover - a dependency of the package
            raise BackendUnavailable(f"tesserocr is not importable: {err}") from None
        self._tesserocr = tesserocr
        try:
            # We invert light-on-dark crops ourselves; Tesseract's own retry on an
            # inverted copy (tessedit_do_invert) would double the cost of every hard crop.
            self._api = tesserocr.PyTessBaseAPI(
                path=str(tessdata) + "/",
                lang=languages,
                psm=psm,
                oem=tesserocr.OEM.LSTM_ONLY,
                variables={"tessedit_do_invert": "0"},
            )
        except RuntimeError as err:
            raise BackendUnavailable(f"Tesseract failed to start with {languages!r}: {err}") from None

    def read_words(self, image: np.ndarray, psm: int | None = None, charset: str = "") -> list[Word]:
        h, w = image.shape[:2]
        self._api.SetPageSegMode(psm if psm is not None else self.psm)
        self._api.SetVariable("tessedit_char_whitelist", charset)  # "" = every character
        self._api.SetImageBytes(np.ascontiguousarray(image).tobytes(), w, h, 1, w)
        start = time.monotonic()
        if not self._api.Recognize(timeout=self.timeout_ms):
            elapsed_ms = (time.monotonic() - start) * 1000.0
            if self.timeout_ms and elapsed_ms >= self.timeout_ms * 0.9:
                raise RecognizeTimeout(f"not read within {self.timeout_ms} ms")
            raise RuntimeError("Tesseract's Recognize failed")
        words = []
        iterator = self._api.GetIterator()
        level = self._tesserocr.RIL.WORD
        for item in self._tesserocr.iterate_level(iterator, level):
            try:
                text = item.GetUTF8Text(level)
            except RuntimeError:  # tesserocr's way of saying "this page has no words"
                break
            if text:
                words.append(Word(text, float(item.Confidence(level))))
        return words

    def close(self) -> None:
        self._api.End()


class PytesseractEngine:
    """Tesseract through its command-line program, one process per crop."""

    name = "pytesseract"

    def __init__(self, tessdata: Path, languages: str, psm: int, timeout_ms: int = 0) -> None:
        import pytesseract

        self.timeout_s = timeout_ms / 1000.0  # pytesseract: 0 = no limit
        if shutil.which("tesseract") is None:
            raise BackendUnavailable("the tesseract program is not on PATH (install tesseract-ocr)")
        self._pytesseract = pytesseract
        self.psm = psm
        self._config = f'--oem 1 --tessdata-dir "{tessdata}"'
        self._languages = languages

    def read_words(self, image: np.ndarray, psm: int | None = None, charset: str = "") -> list[Word]:
        config = f"--psm {psm if psm is not None else self.psm} {self._config}"
        if charset:
            config += f" -c tessedit_char_whitelist={shlex.quote(charset)}"
        try:
            data = self._pytesseract.image_to_data(
                image, lang=self._languages, config=config, output_type=self._pytesseract.Output.DICT,
                timeout=self.timeout_s,
            )
        except RuntimeError as err:
            if "timeout" in str(err).lower():  # pytesseract kills tesseract and raises RuntimeError
                raise RecognizeTimeout(f"not read within {self.timeout_s * 1000:.0f} ms") from None
            raise
        return [
            Word(text, float(conf))
            for text, conf in zip(data["text"], data["conf"])
            if text.strip() and float(conf) >= 0
        ]

    def close(self) -> None:
        pass


def make_engine(settings: OcrSettings) -> TesserocrEngine | PytesseractEngine:
    # Tesseract parallelises one page over OpenMP threads; with one process per core
    # that only adds contention, so OCR runs single-threaded. Set here, where OCR
    # starts, and not at import: the variable is process-wide and would also make
    # torch (training, the torch backend) single-threaded in the same process.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    tessdata = find_tessdata(settings.tessdata)
    check_languages(tessdata, settings.languages)
    engines: dict[str, type[TesserocrEngine] | type[PytesseractEngine]] = {
        "tesserocr": TesserocrEngine, "pytesseract": PytesseractEngine,
    }
    if settings.engine not in engines:
        raise ValueError(f"{settings.engine!r} is not a Tesseract engine")
    return engines[settings.engine](tessdata, settings.languages, settings.psm, settings.timeout_ms)


def preprocess(crop: np.ndarray, settings: OcrSettings, text_height: float | None = None) -> np.ndarray:
    """Turn a BGR or gray crop into what Tesseract reads best: dark text on its own background, ~36 px high.

    Steps, each chosen by `textwatch eval` on shared/eval (docs/accuracy.md):
      1. Scale so the text is `settings.text_height` px high (at most 6x, and never
         past MAX_READ_PIXELS). The height is
         measured on the glyphs (`glyph_height`); where that fails, `text_height`
         (the caller's estimate in crop pixels) or the crop's height is used. A
         plate's characters fill half its box, a line crop's most of it: the
         box height alone under-scales the first.
      2. Invert when the dark class of an Otsu split is the majority: text is
         the minority of a crop's pixels. (Judging by the crop's border failed
         on plates, whose dark frame made dark-on-light text look inverted.)
      3. Pad with the background's own grey (median of the background class):
         white padding around a grey scene crop draws a frame that Tesseract
         reads as ink, and replicating a dark border does the same.
    """
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    height = glyph_height(gray) or text_height or gray.shape[0]
    # Never past MAX_READ_PIXELS: a large crop of small text would otherwise be scaled up to
    # tens of megapixels (regression, issue 22: a 1400x1400 crop of 5 px text became 8400x8400).
    most = (MAX_READ_PIXELS / max(1, gray.shape[0] * gray.shape[1])) ** 0.5
    scale = max(0.25, min(float(np.clip(settings.text_height / max(1.0, height), 0.25, 6.0)), most))
    if abs(scale - 1.0) > 0.05:
        interp = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=interp)
    _, binary = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if settings.invert_light_on_dark and is_light_on_dark(binary):
        gray, binary = 255 - gray, 255 - binary
    image = binary if settings.binarize else gray
    background = image[binary > 127]
    fill = int(np.median(background)) if background.size else 255
    return cv2.copyMakeBorder(image, BORDER, BORDER, BORDER, BORDER, cv2.BORDER_CONSTANT, value=fill)


def glyph_height(gray: np.ndarray) -> float | None:
    """The text height in a crop, from its glyphs; None when fewer than two glyph-like shapes are found.

    Connected components of the Otsu minority class (the ink) that do not touch
    the crop's edge (frames, neighbouring lines), are between a quarter of the
    crop's height and nearly all of it, and are not wider than two heights
    (underlines, rules). The 75th percentile of their heights lands on capitals
    and ascenders rather than on x-height letters or punctuation.
    """
    _, binary = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = binary if is_light_on_dark(binary) else 255 - binary  # ink white, for the components
    count, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    h, w = ink.shape
    heights = [
        bh
        for x, y, bw, bh, _ in stats[1:count]
        if GLYPH_MIN_FRACTION * h <= bh <= GLYPH_MAX_FRACTION * h and x > 0 and y > 0 and x + bw < w and y + bh < h
        and bw < 2 * bh
    ]
    return float(np.percentile(heights, 75)) if len(heights) >= 2 else None


def is_light_on_dark(binary: np.ndarray) -> bool:
    """True when the dark class of an Otsu-binarized crop is the majority, i.e. the background is dark."""
    return float(binary.mean()) < 127.5


class TesseractRecognizer:
    """Preprocess, run Tesseract (tesserocr or pytesseract), clean, classify."""

    def __init__(self, settings: OcrSettings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)

    def read(self, crop: np.ndarray, text_height: float | None = None, charset: str = "") -> Reading:
        if crop.size == 0 or min(crop.shape[:2]) < 2:
            return Reading("failed", error=f"crop too small: {crop.shape[1]}x{crop.shape[0]}")
        if is_blank(crop):
            return Reading("empty")
        image = preprocess(crop, self.settings, text_height)
        reading = self.read_with(image, self.settings.psm, charset)
        if self.needs_fallback(reading):
            reading = better(reading, self.read_with(image, self.settings.fallback_psm, charset))
        return reading

    def read_with(self, image: np.ndarray, psm: int, charset: str = "") -> Reading:
        try:
            words = self.engine.read_words(image, psm, charset)
        except RecognizeTimeout:
            return Reading("failed", error=TIMEOUT)
        except Exception as err:  # noqa: BLE001 - any engine failure is a "failed" reading, counted
            return Reading("failed", error=f"{type(err).__name__}: {err}")
        return classify(words, self.settings.min_confidence)

    def read_batch(
        self, crops: Sequence[np.ndarray], charset: str = "", text_heights: Sequence[float | None] | None = None
    ) -> list[Reading]:
        """Tesseract has no batched forward: one crop after the other, each with its text height."""
        heights = text_heights if text_heights is not None else [None] * len(crops)
        return [self.read(crop, height, charset) for crop, height in zip(crops, heights)]

    def needs_fallback(self, reading: Reading) -> bool:
        """A single-line read that found nothing or is unsure: the box may hold two lines."""
        s = self.settings
        if not s.fallback_psm or s.fallback_psm == s.psm or reading.status == "failed":
            return False
        return reading.status == "empty" or reading.confidence < s.fallback_below

    def close(self) -> None:
        self.engine.close()
