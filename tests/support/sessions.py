"""Test helper: a small real session written by the session writer, to break on purpose."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emodesk.labels import LABELS
from emodesk.recording.writer import SessionMeta, SessionWriter


def write_small_session(parent: Path, *, t0: float = 0.0) -> Path:
    """A 2 s session from media time ``t0``: 64×48 video at 10 fps, a tone of audio, face (with
    boxes), fused, voice and transcript records (two utterances: "hello there"), labels happy
    from ``t0`` and sad from ``t0 + 1``."""
    w = SessionWriter(parent, SessionMeta(source="test"), fps=10.0)
    w.start(t=t0)
    w.set_label("happy", t0)
    p = {lab: round(1 / 7, 4) for lab in LABELS}
    for k in range(20):
        t = round(t0 + k / 10, 3)
        w.add_frame(np.full((48, 64, 3), 60 + 8 * k, np.uint8), t)
        w.add_audio((0.2 * np.sin(np.arange(1600) / 3)).astype(np.float32), t)
        w.add_record(
            {"t": t, "kind": "face", "model": "f", "track": 0, "box": [10.0, 8.0, 30.0, 30.0], "probs": p}
        )
        w.add_record({"t": t, "kind": "fused", "probs": p, "members": ["f"]})
        if k in (9, 19):
            seg = {"t": t, "t0": round(t - 0.8, 3), "t1": t}
            w.add_record({**seg, "kind": "transcript", "text": "hello there"})
            w.add_record({**seg, "kind": "voice", "model": "v", "probs": p})
    w.set_label("sad", t0 + 1.0)
    path = w.stop(t=t0 + 2.0)
    assert path is not None and w.error is None, w.error
    return path
