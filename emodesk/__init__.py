"""emodesk: local, live multimodal emotion recognition (face, voice, words)."""

import os as _os

# ONNX Runtime (1.29 and later, every platform) starts a telemetry uploader with its first
# environment: about nine seconds in it looks up Microsoft's collector by DNS, and it keeps a
# device id and an event database under ~/.cache/Microsoft/DeveloperTools/.onnxruntime. The
# variable turns both off; it must be set before onnxruntime creates that environment, so it is
# set here, before any module of the app imports onnxruntime. A user who sets it otherwise keeps
# their value. ``tests/test_no_network.py`` checks the app under strace.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
