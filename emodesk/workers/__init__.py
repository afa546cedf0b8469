"""Qt worker threads that drive the Qt-free pipeline live, one owner thread per device and model.

Only this package and ``emodesk.ui`` import PySide6 (docs/architecture.md).
"""

from emodesk.workers.base import Worker, running_workers
from emodesk.workers.capture import AudioCaptureWorker, VideoCaptureWorker
from emodesk.workers.face import FaceWorker, default_face_loader
from emodesk.workers.live import LivePipeline
from emodesk.workers.queues import BoundedChunkQueue
from emodesk.workers.snapshot import LiveSnapshot, LiveStats
from emodesk.workers.speech import SpeechModels, SpeechWorker, default_speech_loader
from emodesk.workers.stats import LatencyWindow, RateMeter

__all__ = [
    "AudioCaptureWorker",
    "BoundedChunkQueue",
    "FaceWorker",
    "LatencyWindow",
    "LivePipeline",
    "LiveSnapshot",
    "LiveStats",
    "RateMeter",
    "SpeechModels",
    "SpeechWorker",
    "VideoCaptureWorker",
    "Worker",
    "default_face_loader",
    "default_speech_loader",
    "running_workers",
]
