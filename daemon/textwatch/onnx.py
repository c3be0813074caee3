"""ONNX Runtime sessions over the model files of the pinned rapidocr wheel.

PP-OCRv6's small detector and recognizer (Apache-2.0) are package data of
`rapidocr==3.10.0`: the wheel is used as a data package, nothing of its
pipeline is imported, and nothing is ever downloaded. Both the PP-OCR line
recognizer (recognize/ppocr.py) and the PP-OCR detector (detect/dbnet.py)
open their model here, so a missing wheel, a missing provider or a corrupt
file reads the same one line whichever engine hit it.

onnxruntime is imported only when a session is made: a daemon on Tesseract
and YOLOv4 never loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Final

from textwatch.errors import BackendUnavailable, ModelError

MODEL_PACKAGE: Final = "rapidocr"  # the pinned rapidocr==3.10.0 wheel
PROVIDERS: Final = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def wheel_model(file: str, purpose: str) -> Path:
    """`file` inside the installed rapidocr wheel; ModelError naming it and `purpose` when absent."""
    try:
        root = resources.files(MODEL_PACKAGE)
    except ModuleNotFoundError:
        raise ModelError(f"{purpose} needs {file} from the rapidocr==3.10.0 wheel, which is not installed") from None
    path = Path(str(root.joinpath(file)))
    if not path.is_file():
        raise ModelError(f"{purpose}: model not found: {path} (reinstall rapidocr==3.10.0)")
    return path


def session(path: Path, threads: int, providers: Sequence[str], purpose: str) -> Any:
    """An InferenceSession with exactly the providers asked for, `threads` intra-op threads, one
    inter-op thread and sequential execution (each process's CPU cost stays predictable beside
    capture and the other processes). BackendUnavailable when a provider is missing: ONNX Runtime
    would otherwise fall back to the CPU silently."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise BackendUnavailable(f"{purpose} needs onnxruntime, which is not importable: {err}") from None
    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise BackendUnavailable(
            f"{purpose}: ONNX Runtime here has no {', '.join(missing)} (it has {', '.join(available)}); "
            "install onnxruntime-gpu for CUDA (pip install 'textwatch[gpu]') or choose the cpu device"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle intra-op threads sleep instead of spinning: beside the detector on a small box, a spinning
    # reader thread would take the core the detector needs between reads.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: the daemon owns logging
    try:
        made = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for a corrupt or foreign file
        raise ModelError(f"ONNX Runtime could not load {path}: {err}") from None
    dropped = [p for p in providers if p not in made.get_providers()]
    if dropped:
        raise BackendUnavailable(
            f"{purpose}: ONNX Runtime could not start {', '.join(dropped)} (e.g. CUDA libraries missing)"
        )
    return made
