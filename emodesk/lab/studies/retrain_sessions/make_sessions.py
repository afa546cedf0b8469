"""Recorded sessions to retrain from, made the headless way a user would make them.

No audio-visual corpus is available offline, so each session is a talking-head
stand-in built from two test sets no member was trained or selected on:

- the **voice**: every clip of one RAVDESS test actor (21–24, 60 clips each, one
  actor per session, so the split by session is speaker-independent), calm
  mapped to neutral;
- the **face**: for each clip a FER-2013 *test* face whose FER+ crowd majority is
  the clip's label, placed in a webcam-like frame (``lab/assets/webcam_fer.py``:
  size, roll, clutter, light, blur, noise), shown while the clip plays.

Each actor's clips become one video file (15 fps, the clips separated by 0.6 s
of silence), then the user's own commands run on it: ``emodesk record FILE
--out DIR`` (every model live, paced in real time) and one ``emodesk sessions
label SESSION LABEL --from S --to S`` per clip span (here through the same
``relabel`` the command calls). The words are what the recogniser hears in the
RAVDESS sentences ("Kids are talking by the door", "Dogs are sitting by the
door"), so the text member has nothing emotional to read: a fair stress of the
fusion, which must learn to trust it little.

    python -m emodesk.lab.studies.retrain_sessions.make_sessions --out build/retrain-sessions
    emodesk retrain --sessions build/retrain-sessions

The videos go to ``OUT/media`` and the sessions to ``OUT``; neither is committed
(RAVDESS is CC BY-NC-SA, FER-2013 has its own terms).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from emodesk.lab.paths import REPO
from emodesk.labels import LABELS

RAVDESS_LABELS = {
    1: "neutral",
    2: "neutral",
    3: "happy",
    4: "sad",
    5: "angry",
    6: "fear",
    7: "disgust",
    8: "surprise",
}
FPS = 15
GAP_S = 0.6
SR = 16000
DATA = REPO.parent / "shared" / "datasets"


def ravdess_clips(data: Path, actor: int) -> list[tuple[Path, str]]:
    folder = data / "speech" / "ravdess" / f"Actor_{actor:02d}"
    clips = sorted(folder.glob("*.flac"))
    if not clips:
        raise SystemExit(f"no RAVDESS clips in {folder}")
    return [(p, RAVDESS_LABELS[int(p.stem.split("-")[2])]) for p in clips]


def test_faces(data: Path) -> dict[str, list[Path]]:
    """FER-2013 test faces whose FER+ majority (7 labels) is their folder label, per label."""
    out: dict[str, list[Path]] = {lab: [] for lab in LABELS}
    with open(data / "faces" / "ferplus" / "fer2013_to_ferplus.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["split"] != "test" or row.get("status") != "ok":
                continue
            lab = row["our_class"]
            if row.get("ferplus_majority_7") == lab:
                out[lab].append(data / "faces" / "fer2013" / "test" / lab / row["our_file"])
    return out


def read_audio(path: Path) -> np.ndarray:
    import soundfile as sf

    a, sr = sf.read(str(path), dtype="float32", always_2d=False)
    if sr != SR:
        raise SystemExit(f"{path}: {sr} Hz, expected {SR}")
    return a if a.ndim == 1 else a.mean(axis=1)


def write_video(path: Path, parts: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[float, float]]:
    """One mp4 (h264 + aac): each (frame, audio) shown/played in turn with a gap; the clips' spans."""
    import av

    spans: list[tuple[float, float]] = []
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 640, 480, "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "23"}
        au = c.add_stream("aac", rate=SR)
        au.layout = "mono"
        t = 0.0
        frame_i, sample_i = 0, 0
        for image, audio in parts:
            seg = np.concatenate([audio, np.zeros(int(GAP_S * SR), np.float32)])
            spans.append((round(t, 3), round(t + len(audio) / SR, 3)))
            n_frames = round(len(seg) / SR * FPS)
            rgb = np.repeat(image[:, :, None], 3, axis=2)
            for _ in range(n_frames):
                vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                vf.pts = frame_i
                vf.time_base = Fraction(1, FPS)
                frame_i += 1
                for p in vs.encode(vf):
                    c.mux(p)
            for k in range(0, len(seg), 1024):
                chunk = seg[k : k + 1024][None, :].astype(np.float32)
                af = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                af.sample_rate = SR
                af.pts = sample_i
                af.time_base = Fraction(1, SR)
                sample_i += chunk.shape[1]
                for p in au.encode(af):
                    c.mux(p)
            t += n_frames / FPS
            pad = round(t * SR) - sample_i  # keep the sound in step with the picture
            if pad > 0:
                z = np.zeros((1, pad), np.float32)
                af = av.AudioFrame.from_ndarray(z, format="flt", layout="mono")
                af.sample_rate, af.pts, af.time_base = SR, sample_i, Fraction(1, SR)
                sample_i += pad
                for p in au.encode(af):
                    c.mux(p)
        for s in (vs, au):
            for p in s.encode():
                c.mux(p)
    return spans


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "build" / "retrain-sessions")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--actors", type=int, nargs="+", default=[21, 22, 23, 24])
    ap.add_argument("--clips", type=int, default=60, help="clips per actor (default: all 60)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--media-only", action="store_true", help="write the videos, record nothing")
    args = ap.parse_args(argv)
    import cv2

    from emodesk.lab.assets.webcam_fer import make_frame_with_box
    from emodesk.recording.session import relabel

    faces = test_faces(args.data)
    media = args.out / "media"
    media.mkdir(parents=True, exist_ok=True)
    made = []
    for actor in args.actors:
        rng = np.random.default_rng([args.seed, actor])  # per actor: runs over other actor lists agree
        clips = ravdess_clips(args.data, actor)
        if args.clips < len(clips):
            clips = [clips[i] for i in sorted(rng.choice(len(clips), args.clips, replace=False))]
        parts, labels = [], []
        for k, (clip, lab) in enumerate(clips):
            pool = faces[lab]
            face_path = pool[int(rng.integers(len(pool)))]
            face = cv2.imread(str(face_path), cv2.IMREAD_GRAYSCALE)
            if face is None:
                raise SystemExit(f"cannot read {face_path}")
            frame, _, _ = make_frame_with_box(face, args.seed * 100_000 + actor * 1000 + k, sizes=(150, 220))
            parts.append((frame, read_audio(clip)))
            labels.append(lab)
        video = media / f"actor{actor:02d}.mp4"
        spans = write_video(video, parts)
        (media / f"actor{actor:02d}.labels.json").write_text(
            json.dumps([[a, b, lab] for (a, b), lab in zip(spans, labels, strict=True)]), encoding="utf-8"
        )
        print(f"{video}: {len(clips)} clips, {spans[-1][1]:.0f} s", flush=True)
        if args.media_only:
            continue
        # the user's commands: record headless, then label each span
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "emodesk",
                "record",
                str(video),
                "--out",
                str(args.out),
                "--device",
                "cpu",
            ],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            print(r.stdout + r.stderr, file=sys.stderr)
            return 1
        session = Path(r.stdout.strip().splitlines()[-1].split()[-1])
        for (t0, t1), lab in zip(spans, labels, strict=True):
            relabel(session, t0, t1, lab)
        made.append(session)
        print(f"  recorded and labeled {session}", flush=True)
    print(f"{len(made)} session(s) in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
