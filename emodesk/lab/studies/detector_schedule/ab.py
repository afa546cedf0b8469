"""A/B of the face detector schedule: the unpaced face path with boxes reused for 40 ms vs detection on
every frame, alternated so both see the same machine load.

    python -m emodesk.lab.studies.detector_schedule.ab [--source demo] [--frames 600] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics

from emodesk.bench.run import unpaced_pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="demo")
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    fps: dict[str, list[float]] = {"boxes reused for 40 ms": [], "detector on every frame": []}
    for rep in range(args.repeats):
        for name, reuse in zip(fps, (None, 0.0), strict=True):
            r = unpaced_pass(args.source, frames=args.frames, device="cpu", log=None, reuse_boxes_s=reuse)
            fps[name].append(float(r["fps"]))
            print(
                f"run {rep + 1}: {name}: {r['fps']:.1f} frames/s, "
                f"{r['detections_per_frame']:.2f} detections a frame"
            )
    for name, v in fps.items():
        print(
            f"{name}: mean {statistics.mean(v):.1f} frames/s over {len(v)} runs "
            f"({', '.join(f'{x:.1f}' for x in v)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
