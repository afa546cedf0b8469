"""The bench report: the docs/formats.md JSON, the budgets of this project, and ``docs/performance.md``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEVICES = ("cpu", "cuda")  # the columns of the stage tables (``bench --devices``), in this order

# (key, what, limit, "min" | "max", unit): the budgets on a 2-core machine (issue "Performance")
BUDGETS: tuple[tuple[str, str, float, str, str], ...] = (
    ("face.fps", "face path throughput, unpaced", 30.0, "min", "frames/s"),
    ("face.latency_ms.p95", "frame capture → face scores, p95", 40.0, "max", "ms"),
    ("baseline.ratio", "face throughput over the fer-style baseline's", 2.0, "min", "×"),
    ("utterance.transcript_latency_ms.p95", "end of utterance → transcript, p95", 1000.0, "max", "ms"),
    ("utterance.scores_latency_ms.p95", "end of utterance → voice and text scores, p95", 1000.0, "max", "ms"),
    ("cpu_percent", "process CPU, live at the source's frame rate", 150.0, "max", "% of one core"),
    ("rss_mb.peak", "peak resident memory", 1000.0, "max", "MB"),
    ("rss_mb.growth_pct", "RSS growth from the first quarter of the run to its end", 5.0, "max", "%"),
    ("first_frame_s", "bench start → first scored frame (models warm; headless)", 3.0, "max", "s"),
    ("fusion.row_us.p95", "one fused row (the active rule, every member present), p95", 100.0, "max", "µs"),
)


def get(d: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def budgets(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, what, limit, kind, unit in BUDGETS:
        v = get(report, key)
        met = None if v is None else (v >= limit if kind == "min" else v <= limit)
        out[key] = {"what": what, "value": v, "limit": limit, "kind": kind, "unit": unit, "met": met}
    return out


def build_report(
    paced: Mapping[str, Any],
    unpaced: Mapping[str, Any],
    baseline: Mapping[str, Any],
    machine: Mapping[str, Any],
    settings: Mapping[str, Any],
    fusion: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    ours = unpaced.get("fps")
    base = baseline.get("fps")
    report: dict[str, Any] = {
        "face": {
            "fps": ours,
            "latency_ms": paced["face_latency_ms"],
            "live_fps": paced["face_fps_live"],
            "capture_fps": paced["capture_fps"],
            "frames": unpaced.get("frames"),
            "faces_per_frame": unpaced.get("faces_per_frame"),
            "detections_per_frame": unpaced.get("detections_per_frame"),
            "members": unpaced.get("members"),
        },
        "utterance": {
            "transcript_latency_ms": paced["transcript_latency_ms"],
            "scores_latency_ms": paced["scores_latency_ms"],
            "asr_latency_ms": paced["asr_latency_ms"],
            "utterances": paced["utterances"],
        },
        "baseline": {
            "fps": base,
            "ratio": (ours / base) if ours and base else None,
            **{k: v for k, v in baseline.items() if k != "fps"},
        },
        "dropped_frames": paced["dropped_frames"],
        "audio_overflows": paced["audio_overflows"],
        "cpu_percent": paced["cpu_percent"],
        "rss_mb": paced["rss_mb"],
        "startup_s": paced["startup_s"],
        "first_frame_s": paced["first_frame_s"],
        "providers": paced["providers"],
        "machine": dict(machine),
        "settings": dict(settings),
        "rss_samples": paced["rss_samples"],
        "failed": list(paced.get("failed", [])),
        "fusion": dict(fusion) if fusion is not None else None,
    }
    report["budgets"] = budgets(report)
    return report


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        s = f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
    else:
        s = str(v)
    return f"{s} {unit}".strip()


def text_table(report: Mapping[str, Any]) -> str:
    lines = [f"{'budget':58s} {'measured':>14s} {'limit':>12s}  met"]
    for b in report["budgets"].values():
        sign = "≥" if b["kind"] == "min" else "≤"
        met = {True: "yes", False: "NO", None: "n/a"}[b["met"]]
        lines.append(f"{b['what']:58s} {_fmt(b['value']):>14s} {sign + ' ' + _fmt(b['limit']):>12s}  {met}")
    return "\n".join(lines)


def markdown(report: Mapping[str, Any], *, command: str, extra: str = "") -> str:
    m, st = report["machine"], report["settings"]
    u = report["utterance"]

    def pct(key: str) -> str:
        return f"p50 {_fmt(get(report, key + '.p50'), 'ms')}, p95 {_fmt(get(report, key + '.p95'), 'ms')}"

    rss = [_fmt(get(report, f"rss_mb.{k}"), "MB") for k in ("peak", "final")]
    base_err = report["baseline"].get("error")
    rows = [
        (
            "face path throughput, unpaced (decode, detect, crop, every face member, track)",
            _fmt(get(report, "face.fps"), "frames/s"),
        ),
        (
            "face path, live: frames scored / captured per second",
            f"{_fmt(get(report, 'face.live_fps'))} / {_fmt(get(report, 'face.capture_fps'))}",
        ),
        ("frame capture → face scores", pct("face.latency_ms")),
        (
            "fer-style baseline (Haar + mini-Xception, OpenCV 4), unpaced",
            _fmt(get(report, "baseline.fps"), "frames/s") + (f" — {base_err}" if base_err else ""),
        ),
        ("our throughput / baseline's", _fmt(get(report, "baseline.ratio"), "×")),
        (
            f"end of utterance → transcript ({u['utterances']} utterances)",
            pct("utterance.transcript_latency_ms"),
        ),
        ("end of utterance → voice and text scores", pct("utterance.scores_latency_ms")),
        ("of which ASR alone (utterance cut → text)", pct("utterance.asr_latency_ms")),
        ("dropped frames / audio overflows", f"{report['dropped_frames']} / {report['audio_overflows']}"),
        ("process CPU (100% = one core)", _fmt(report["cpu_percent"], "%")),
        ("RSS peak / final / growth", f"{rss[0]} / {rss[1]} / {_fmt(get(report, 'rss_mb.growth_pct'), '%')}"),
        (
            "bench start → models loaded / → first scored frame",
            f"{_fmt(report['startup_s'], 's')} / {_fmt(report['first_frame_s'], 's')}",
        ),
        (
            f"one fused row ({get(report, 'fusion.rule') or '?'} rule, "
            f"{get(report, 'fusion.members') or 0} members present)",
            f"p50 {_fmt(get(report, 'fusion.row_us.p50'), 'µs')}, "
            f"p95 {_fmt(get(report, 'fusion.row_us.p95'), 'µs')}",
        ),
    ]
    providers = ", ".join(f"`{k}` {v}" for k, v in sorted(report["providers"].items()))
    out = [
        "# Performance",
        "",
        f"Regenerate: `{command}`",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cpus')} logical CPUs, {m.get('os')}; Python "
        f"{m.get('python')}, ONNX Runtime {m.get('onnxruntime')}. Source: {st.get('source')}, paced "
        f"pass {_fmt(st.get('seconds'), 's')}, unpaced pass {st.get('frames')} frames. "
        f"Face members: {st.get('face_member_schedule', '?')}; face detector: "
        f"{st.get('face_detector_schedule', 'every frame')} "
        f"({_fmt(get(report, 'face.detections_per_frame'))} detections a frame, unpaced). "
        f"Providers: {providers}.",
        "",
        "| what | measured |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
        "",
        "## Budgets (2 CPU cores)",
        "",
        "| budget | measured | limit | met |",
        "|---|---|---|---|",
    ]
    for b in report["budgets"].values():
        sign = "≥" if b["kind"] == "min" else "≤"
        met = {True: "yes", False: "**no**", None: "not measured"}[b["met"]]
        out.append(
            f"| {b['what']} | {_fmt(b['value'], b['unit'])} | {sign} {_fmt(b['limit'], b['unit'])} | {met} |"
        )
    stages = report.get("stages") or {}
    if any(d in stages for d in DEVICES):
        out += ["", "## Stages by device (median ms a call)", "", *stage_lines(stages)]
    if extra:
        out += ["", extra.strip()]
    out.append("")
    return "\n".join(out)


# (key, what, limit, "min" | "max", unit): ``emodesk bench --load`` (issue "The live window", load)
LOAD_BUDGETS: tuple[tuple[str, str, float, str, str], ...] = (
    (
        "load.loadavg_1m.mean",
        "1-minute load average while measuring (the load is heavy enough)",
        8.0,
        "min",
        "",
    ),
    (
        "speech.transcript_latency_ms.p95",
        "end of utterance → transcript under load, p95",
        3000.0,
        "max",
        "ms",
    ),
    ("speech.over_bound_s", "speech backlog above the shedding bound (largest excess)", 0.05, "max", "s"),
)


def load_report(
    paced: Mapping[str, Any],
    load: Mapping[str, Any],
    loadavg: Mapping[str, Any],
    machine: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """What ``bench --load`` writes: the generated load, the speech path under it, what was shed."""
    bound = paced.get("shed_bound_s")
    worst = (paced.get("speech_backlog_s") or {}).get("max")
    report: dict[str, Any] = {
        "kind": "load",
        "machine": dict(machine),
        "settings": dict(settings),
        "load": {**load, "loadavg_1m": dict(loadavg)},
        "speech": {
            "utterances": paced.get("utterances"),
            "transcript_latency_ms": paced.get("transcript_latency_ms"),
            "scores_latency_ms": paced.get("scores_latency_ms"),
            "asr_latency_ms": paced.get("asr_latency_ms"),
            "backlog_s": paced.get("speech_backlog_s"),
            "lag_s": paced.get("speech_lag_s"),
            "bound_s": bound,
            "over_bound_s": None if bound is None or worst is None else round(max(0.0, worst - bound), 3),
            "shed": paced.get("shed"),
        },
        "face": {"latency_ms": paced.get("face_latency_ms"), "live_fps": paced.get("face_fps_live")},
        "cpu_percent": paced.get("cpu_percent"),
        "rss_mb": paced.get("rss_mb"),
        "failed": list(paced.get("failed", [])),
    }
    out: dict[str, dict[str, Any]] = {}
    for key, what, limit, kind, unit in LOAD_BUDGETS:
        v = get(report, key)
        met = None if v is None else (v >= limit if kind == "min" else v <= limit)
        out[key] = {"what": what, "value": v, "limit": limit, "kind": kind, "unit": unit, "met": met}
    report["budgets"] = out
    return report


def load_table(report: Mapping[str, Any]) -> str:
    """The budgets, then one line of what the speech path shed."""
    shed = get(report, "speech.shed") or {}
    skipped = ", ".join(f"{k} {v}" for k, v in shed.items() if v and k not in ("max_backlog_s",)) or "nothing"
    return text_table(report) + f"\nshed under load: {skipped}"


def _stage_keys(stages: Mapping[str, Any], devs: list[str]) -> list[tuple[str, int]]:
    keys: list[tuple[str, int]] = []
    for d in devs:
        for r in stages[d].get("rows", []):
            if (r["stage"], r["batch"]) not in keys:
                keys.append((r["stage"], r["batch"]))
    return keys


def _row(stages: Mapping[str, Any], dev: str, key: tuple[str, int]) -> Mapping[str, Any] | None:
    for r in stages.get(dev, {}).get("rows", []):
        if (r["stage"], r["batch"]) == key:
            return r  # type: ignore[no-any-return]
    return None


def _on_cpu(stages: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    """True if a ``cuda`` row's model (any of them, for a row over several) ran on the CPU: a fallback.
    Only the session's provider is known: nodes ONNX Runtime places on the CPU inside a CUDA session
    are not seen."""
    where = stages.get("cuda", {}).get("providers", {})
    got = [where.get(m) for m in str(row.get("model", "")).split(",")]
    return any(g is not None and g not in ("CUDAExecutionProvider", "cuda") for g in got)


def stage_lines(stages: Mapping[str, Any]) -> list[str]:
    """The stage table: one row per stage and batch, a column per device (and CPU ÷ CUDA)."""
    devs = [d for d in DEVICES if d in stages]
    both = devs == list(DEVICES)
    head = "| stage | batch | " + " | ".join(f"{d} ms" for d in devs) + (" | CPU ÷ CUDA |" if both else " |")
    out = [head, "|---|---|" + "---|" * (len(devs) + both)]
    for key in _stage_keys(stages, devs):
        found = [_row(stages, d, key) for d in devs]
        vals = [None if r is None else float(r["ms"]) for r in found]
        cells = [_fmt(v) for v in vals]
        fell_back = found[-1] is not None and devs[-1] == "cuda" and _on_cpu(stages, found[-1])
        if fell_back:
            cells[-1] += " (on the CPU)"
        if both:
            ok = vals[0] and vals[1] and not fell_back
            cells.append(_fmt(vals[0] / vals[1], "×") if ok else "—")  # type: ignore[operator]
        out.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return out


def stages_report(
    stages: Mapping[str, Any], machine: Mapping[str, Any], settings: Mapping[str, Any]
) -> dict[str, Any]:
    """What ``bench --stages-only`` writes; ``failed`` lists a device on which a path did not load
    at all (a model that fell back to the CPU is reported where it ran, not as a failure)."""
    failed = []
    for d in DEVICES:
        if d not in stages:
            continue
        st = stages[d]
        for slot in ("face", "asr"):
            msg = st.get("status", {}).get(slot) or st.get("status", {}).get(f"{slot} detector")
            loaded = any(
                r["stage"].startswith("face detection" if slot == "face" else "whisper") for r in st["rows"]
            )
            if not loaded:
                failed.append(f"{d}: the {slot} path did not run ({msg or 'no status'})")
    return {
        "kind": "stages",
        "machine": dict(machine),
        "settings": dict(settings),
        "stages": dict(stages),
        "failed": failed,
    }


def _pad(row: list[str], widths: list[int]) -> list[str]:
    """The first column left-aligned, the others right-aligned."""
    return [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]


def stages_table(report: Mapping[str, Any]) -> str:
    """The stage table as text, then where the speech recogniser ran on each device."""
    cells = [[c.strip() for c in ln.strip("|").split(" | ")] for ln in stage_lines(report["stages"])]
    cells = [c for c in cells if not c[0].startswith("---")]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(_pad(r, widths)) for r in cells]
    for d in DEVICES:
        asr = (report["stages"].get(d) or {}).get("asr")
        if asr:
            lines.append(f"{d}: {asr['reason']}")
    return "\n".join(lines)


def gpu_markdown(report: Mapping[str, Any], *, command: str) -> str:
    """``docs/performance-gpu.md``: where every model ran on each device and why, the stage times at
    batch 1 and 8 (and 10 faces), and how closely CUDA's answers match the CPU's."""
    m, stages = report["machine"], report["stages"]
    devs = [d for d in DEVICES if d in stages]
    gpu = m.get("gpu") or {}
    out = [
        "# Performance on a GPU",
        "",
        f"Regenerate: `{command}`",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cpus')} logical CPUs, {m.get('os')}; GPU: "
        + (
            f"{gpu.get('name')} ({gpu.get('memory')}, driver {gpu.get('driver')})"
            if gpu
            else "none found (`nvidia-smi` absent or silent)"
        )
        + f". Python {m.get('python')}; ONNX Runtime {m.get('onnxruntime')} with "
        + ", ".join(f"`{p}`" for p in m.get("onnxruntime_providers", []))
        + f"; CTranslate2 {m.get('ctranslate2')} seeing {m.get('ctranslate2_cuda_devices')} CUDA device(s); "
        + f"its cuBLAS: {m.get('ctranslate2_cublas')}.",
        "",
        "## Where each model ran",
        "",
        "| model | " + " | ".join(devs) + " |",
        "|---|" + "---|" * len(devs),
    ]
    names: list[str] = []
    for d in devs:
        names += [k for k in stages[d].get("providers", {}) if k not in names]
    for k in names:
        cells = [
            str(stages[d].get("providers", {}).get(k, "—")).replace("ExecutionProvider", "") for d in devs
        ]
        out.append(f"| `{k}` | " + " | ".join(cells) + " |")
    for d in devs:
        out += ["", f"On `{d}`, as the app reports it (the status bar, `--self-test`):", ""]
        out += [f"- {slot}: {msg}" for slot, msg in stages[d].get("status", {}).items()]
        asr = stages[d].get("asr")
        if asr:
            out.append(f"- faster-whisper: {asr['device']}, {asr['compute_type']}")
    found = {d: stages[d].get("mosaic_faces_found") for d in devs}
    out += [
        "",
        "## Stage times (median ms a call)",
        "",
        "Batch 8: eight face crops in one call, eight utterances in one whisper call (each in the window "
        "of the longest), eight sentences padded into one text call. Batch 10: a frame of ten copies of "
        "the demo clip's face (5 × 2 tiles); the face path row is tracking and every member on its ten "
        "boxes, given (the detector's own row on that frame found "
        + ", ".join(f"{v} on {d}" for d, v in found.items() if v is not None)
        + "). The detector's graph takes one frame at a time and a voice member scores one utterance, so "
        "they have batch-1 rows only; the live window runs everything at batch 1 but the face members, "
        "which score every face of a frame in one call. Every face row crops from the frame (8: the same "
        "face eight times). The CPU column runs as the live window does, one thread a model (ONNX Runtime "
        "and CTranslate2). An ONNX row on CUDA includes copying its input to the GPU and its answer back; "
        "the whisper encoder's output stays on the GPU for the decoder, as in the app. A row marked "
        "(on the CPU) fell back, and gets no ratio; which nodes ONNX Runtime itself places on the CPU "
        "inside a CUDA session is not measured.",
        "",
        *stage_lines(stages),
    ]
    agree = stages.get("agreement") or {}
    if agree:
        out += [
            "",
            "## CUDA against the CPU, on the same input",
            "",
            "The models that ran on CUDA: their largest probability difference, or whether the final "
            "transcript is the same.",
            "",
            "| model | largest difference |",
            "|---|---|",
        ]
        for k, v in agree.items():
            out.append(
                f"| `{k}` | "
                + (
                    ("same transcript" if v else "**transcripts differ**")
                    if isinstance(v, bool)
                    else f"{v:.1e}"
                )
                + " |"
            )
    deltas = {d: stages[d].get("batch_vs_alone") for d in devs if stages[d].get("batch_vs_alone")}
    if deltas:
        out += [
            "",
            "A text member quantized to int8 with dynamic quantization scales each call's activations as "
            "a whole, so a sentence's probabilities move with its batch-mates: largest difference between "
            "a sentence scored in the batch of 8 and alone: "
            + "; ".join(
                f"{d}: " + ", ".join(f"`{k}` {v:.3f}" for k, v in dv.items()) for d, dv in deltas.items()
            )
            + ". The app scores sentences one at a time.",
        ]
    if report.get("failed"):
        out += ["", "## Did not run", "", *[f"- {f}" for f in report["failed"]]]
    out.append("")
    return "\n".join(out)
