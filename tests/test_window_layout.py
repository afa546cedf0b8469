"""The live window's layout, timeline, honest panels, controls and remembered state.

Driven with hand-made snapshots (a fake pipeline that returns them), so each
state the window must show — fresh, stale, missing, a source that ended — is
set exactly, and the real window code draws it.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from PySide6.QtCore import QObject, QPoint, QRect, Qt, Signal
from PySide6.QtGui import QColor, QKeySequence
from PySide6.QtWidgets import QApplication, QWidget

from emodesk.fusion.config import FusionConfig
from emodesk.labels import LABELS
from emodesk.types import FaceFrameResult, Frame, FusedScores, ModalityScores, SlotStatus, Transcript
from emodesk.ui.live_timeline import LiveTimeline, Utterance
from emodesk.ui.main_window import MainWindow, fit_to_screen
from emodesk.ui.render import ProbabilityTrace
from emodesk.ui.render.strips import LABEL_COLORS
from emodesk.ui.widgets import ProbabilityPanel, utterance_tags
from emodesk.workers.snapshot import LiveSnapshot, LiveStats


def onehot(label: str, p: float = 0.94) -> np.ndarray:
    v = np.full(len(LABELS), (1 - p) / (len(LABELS) - 1))
    v[LABELS.index(label)] = p
    return v


STATS = LiveStats(
    capture_fps=30.0,
    face_fps=30.0,
    face_latency_p50_ms=10.0,
    face_latency_p95_ms=20.0,
    frames_captured=300,
    frames_scored=280,
    dropped_frames=20,
    display_dropped=0,
    audio_overflows=0,
    audio_dropped=0,
    audio_backlog=0,
    utterances=1,
    transcript_latency_p50_ms=300.0,
    transcript_latency_p95_ms=400.0,
    transcript_delay_p50_ms=900.0,
    transcript_delay_p95_ms=1200.0,
    scores_delay_p50_ms=None,
    scores_delay_p95_ms=None,
    speech_lag_s=0.0,
    speech_backlog_s=0.0,
    shed=None,
    media_time=None,
    uptime_s=10.0,
)
STATUSES = (
    SlotStatus("face detector", "ok", "blazeface on CPU", ("blazeface",), "CPUExecutionProvider"),
    SlotStatus(
        "face",
        "ok",
        "face-a on CPU (onnxruntime-gpu is not installed (pip install 'emodesk[gpu]'))",
        ("face-a",),
        "CPUExecutionProvider",
    ),
    SlotStatus("asr", "ok", "tiny.en on CPU", ("tiny.en",), "CPUExecutionProvider"),
    SlotStatus("voice", "ok", "voice-a on CPU", ("voice-a",), "CPUExecutionProvider"),
    SlotStatus("text", "ok", "text-a on CPU", ("text-a",), "CPUExecutionProvider"),
)
DEVICES = (SlotStatus("video", "ok", "video file clip.mp4"), SlotStatus("audio", "ok", "audio of clip.mp4"))
FRAME = Frame(0.0, np.full((480, 640, 3), 90, np.uint8), 1)


def face_result(t: float, label: str = "happy") -> FaceFrameResult:
    s = ModalityScores("face", "face-a", t, onehot(label), track=1, box=(200.0, 120.0, 160.0, 160.0))
    return FaceFrameResult(t, 1, (640, 480), (s,), smoothed=(onehot(label),))


def snapshot(t: float, **kw: object) -> LiveSnapshot:
    base: dict[str, object] = {
        "frame": FRAME,
        "face": face_result(t),
        "transcripts": (),
        "partial": None,
        "transcript_version": 0,
        "voice": (),
        "text": (),
        "utterance_scores": (),
        "fused": FusedScores(t, onehot("happy"), ("face-a",), 1, {"face-a": 1.0}),
        "statuses": STATUSES,
        "devices": DEVICES,
        "stats": dataclasses.replace(STATS, media_time=t),
        "source": "clip.mp4",
        "demo": False,
        "notes": (),
        "errors": (),
        "running": True,
        "ended": False,
        "t": t,
    }
    base.update(kw)
    return LiveSnapshot(**base)  # type: ignore[arg-type]


class FakePipeline(QObject):
    """What MainWindow uses of a LivePipeline; ``snap`` is what the next refresh shows."""

    error = Signal(str)
    finished = Signal()

    def __init__(self, snap: LiveSnapshot, notes: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.snap = snap
        self.notes = notes
        self.recorder: object | None = None
        self.fusion_config = FusionConfig.equal(["face-a", "voice-a", "text-a"])
        self.stopped = False

    def snapshot(self) -> LiveSnapshot:
        return self.snap

    def reload_fusion(self) -> FusionConfig:
        return self.fusion_config

    def stop(self) -> bool:
        self.stopped = True
        return True


def fake(win: MainWindow) -> FakePipeline:
    return cast(FakePipeline, win.pipeline)


@pytest.fixture
def window(qtbot: object) -> MainWindow:
    pipe = FakePipeline(snapshot(1.0))
    win = MainWindow(pipe, refresh_ms=10_000)  # type: ignore[arg-type]  # refreshed by hand
    qtbot.addWidget(win)  # type: ignore[attr-defined]
    return win


# ------------------------------------------------------------------ the ring and the timeline


def test_trace_keeps_the_newest_points_in_order_and_refuses_bad_ones() -> None:
    tr = ProbabilityTrace(10)
    for k in range(25):
        tr.append(k * 0.1, None if k == 20 else onehot(LABELS[k % 7]))
    assert len(tr) == 10 and tr.last_time() == pytest.approx(2.4)
    t, p = tr.since(2.0)
    assert t[0] == pytest.approx(1.9) and t[-1] == pytest.approx(2.4) and p.shape == (6, 7)  # one before
    assert np.isnan(p[1]).all() and not np.isnan(p[0]).any()  # the gap at 2.0 s
    t_all, _ = tr.since(-100)
    assert t_all[0] == pytest.approx(1.5) and len(t_all) == 10  # the 15 oldest were overwritten
    with pytest.raises(ValueError, match="time order"):
        tr.append(1.0, onehot("sad"))
    with pytest.raises(ValueError, match="shape"):
        tr.append(3.0, np.ones(3))


def _color_near(img: object, x: int, y0: int, y1: int, color: str) -> bool:
    """Any pixel in column x between y0 and y1 within a small distance of ``color``."""
    want = QColor(color)
    for y in range(y0, y1):
        c = img.pixelColor(x, y)  # type: ignore[attr-defined]
        if abs(c.red() - want.red()) + abs(c.green() - want.green()) + abs(c.blue() - want.blue()) < 60:
            return True
    return False


def test_timeline_appends_columns_trims_to_its_window_and_draws_labels_and_utterances(qtbot: object) -> None:
    tl = LiveTimeline(window_s=30)
    qtbot.addWidget(tl)  # type: ignore[attr-defined]
    tl.resize(640, 160)
    tl.show()
    qtbot.waitExposed(tl)  # type: ignore[attr-defined]
    t = 0.0
    assert tl.append(t, onehot("happy", 1.0))
    assert not tl.append(0.01, onehot("happy", 1.0))  # faster than 10 points a second: skipped
    QApplication.processEvents()
    redraws = tl.full_redraws
    while t < 50.0:
        t = round(t + 0.1, 3)
        label = "angry" if 40.0 <= t < 45.0 else None
        fused = None if 30.0 <= t < 32.0 else onehot("happy" if t < 35.0 else "sad", 1.0)
        tl.append(t, fused, recording=t >= 38.0, label=label)
    tl.add_utterances([Utterance(41.0, 43.0, "hello there"), Utterance(46.0, 47.0, "mm", trusted=False)])
    assert tl.add_utterances([Utterance(41.0, 43.0, "hello there")]) == 0  # each once
    assert tl.full_redraws == redraws and tl.column_draws > 400  # appends painted only new columns
    m = tl.time_map()
    assert m.t1 == pytest.approx(50.0, abs=0.11) and m.t1 - m.t0 == pytest.approx(30.0)
    assert len(tl.traces["fused"].since(m.t0)[0]) in (301, 302)  # 30 s at 10 Hz (+ the one before)
    img = tl.grab().toImage()
    r = tl._plot_rect()
    top = int(r.top())
    x = lambda s: round(m.x(s))  # noqa: E731
    assert _color_near(img, x(48.0), top, top + 6, LABEL_COLORS["sad"])  # 100 % sad near the end
    assert _color_near(img, x(25.0), top, top + 6, LABEL_COLORS["happy"])  # happy earlier
    assert not _color_near(img, x(31.0), top, int(r.bottom()) - 2, LABEL_COLORS["happy"])  # the gap
    strip = int(r.bottom()) + 3 + 4
    assert _color_near(img, x(42.0), strip - 2, strip + 3, LABEL_COLORS["angry"])  # the label span
    speech = strip + 11
    assert _color_near(img, x(42.0), speech - 2, speech + 3, "#4a6fa5")
    assert not _color_near(img, x(44.5), speech - 2, speech + 3, "#4a6fa5")
    assert tl.label_spans() == [(38.0, 40.0, None), (40.0, 45.0, "angry"), (45.0, 50.0, None)]
    assert "hello there" in tl.describe(m.x(42.0)) and "label angry" in tl.describe(m.x(42.0))
    assert "nothing fresh" in tl.describe(m.x(31.0))
    tl.set_window(120)  # a view change: the one full redraw it needs
    QApplication.processEvents()
    tl.repaint()
    assert tl.full_redraws == redraws + 1
    assert tl.time_map().t1 - tl.time_map().t0 == pytest.approx(120.0)


# ------------------------------------------------------------------ honest panels


def test_stale_face_greys_out_with_its_age_and_the_fusion_says_what_it_left_out(window: MainWindow) -> None:
    pipe = fake(window)
    window.refresh()
    assert window.face_panel.stale_reason is None and "0.0 s ago" in window.face_panel.caption.text()
    assert "onnxruntime-gpu" not in window.face_panel.caption.text()  # the GPU hint: status bar only
    assert "onnxruntime-gpu" in window.provider_label.toolTip()
    # 3 s later the same face result is past the fusion's 1 s cut-off; the file has ended
    ended = tuple(
        SlotStatus("video", "ok", "video file clip.mp4 (ended)") if d.slot == "video" else d for d in DEVICES
    )
    pipe.snap = snapshot(4.0, face=face_result(1.0), fused=None, devices=ended, ended=True)
    window.refresh()
    face = window.face_panel
    assert face.values() is not None and face.bars_view.stale  # still shown, in grey
    assert face.stale_reason is not None and "3.0 s old" in face.stale_reason and "ended" in face.stale_reason
    assert window.fused_panel.message_text() == "nothing fresh to fuse"
    assert "face stale" in window.fused_panel.caption.text()
    assert window.headline.label.text() == "—"
    assert window.perf_label.text().startswith("source ended")


def test_voice_and_words_show_age_and_go_stale_after_the_fusion_cutoff(window: MainWindow) -> None:
    pipe = fake(window)
    v = ModalityScores("voice", "voice-a", 5.0, onehot("angry"), t0=3.0, t1=5.0)
    w = ModalityScores("text", "text-a", 5.0, onehot("sad"), t0=3.0, t1=5.0)
    tr = Transcript(3.0, 5.0, "I lost my keys")
    fused = FusedScores(
        6.0, onehot("sad"), ("face-a", "text-a", "voice-a"), 1, {"face-a": 0.5, "text-a": 0.3}
    )
    kw = {
        "voice": (v,),
        "text": (w,),
        "utterance_scores": (v, w),
        "transcripts": (tr,),
        "transcript_version": 1,
    }
    pipe.snap = snapshot(6.0, fused=fused, **kw)
    window.refresh()
    assert "1.0 s ago" in window.voice_panel.caption.text() and window.voice_panel.stale_reason is None
    assert "face + voice + words" in window.headline.detail.text()
    assert "text-a: weight 0.300" in window.headline.detail.toolTip()
    assert window.transcript.tags == ["[voice angry 94%] [words sad 94%]"]
    pipe.snap = snapshot(16.5, face=face_result(16.5), **kw)
    window.refresh()
    assert window.voice_panel.stale_reason is not None and "11.5 s old" in window.voice_panel.stale_reason
    assert window.text_panel.bars_view.stale and not window.face_panel.bars_view.stale


def test_utterance_tags_leave_out_the_words_of_a_doubted_transcript() -> None:
    v = ModalityScores("voice", "voice-a", 5.0, onehot("fear"), t0=3.0, t1=5.0)
    w = ModalityScores("text", "text-a", 5.0, onehot("sad"), t0=3.0, t1=5.0, trusted=False, reason="x")
    doubted = Transcript(3.0, 5.0, "uh", trusted=False, reason="probably not speech")
    assert utterance_tags(doubted, [v, w]) == "[voice fear 94%]"
    assert utterance_tags(Transcript(7.0, 8.0, "other"), [v, w]) == ""


def test_panel_message_and_bars_share_one_size(qtbot: object) -> None:
    panel = ProbabilityPanel("Voice")
    qtbot.addWidget(panel)  # type: ignore[attr-defined]
    panel.resize(300, 160)
    panel.show()
    panel.set_message("waiting for speech… " * 20)
    QApplication.processEvents()
    before = panel.size()
    panel.set_probs(onehot("sad"), "voice-a · 0.2 s ago " * 10)
    QApplication.processEvents()
    assert panel.size() == before and panel.minimumSizeHint().height() <= 44


# ------------------------------------------------------------------ layout


def _leaf_widgets(win: MainWindow) -> list[QWidget]:
    names = (
        "video",
        "headline",
        "fused_panel",
        "face_panel",
        "voice_panel",
        "text_panel",
        "timeline",
        "transcript",
        "banner",
        "notes",
        "toolbar",
    )
    return [getattr(win, n) for n in names]


def _global_rect(w: QWidget) -> QRect:
    return QRect(w.mapTo(w.window(), QPoint(0, 0)), w.size())


@pytest.mark.parametrize("size", [(800, 500), (1024, 600), (1366, 768)])
def test_every_part_is_inside_the_window_and_none_overlaps_another(
    qtbot: object, size: tuple[int, int]
) -> None:
    notes = ("voice-a: non-commercial use only: trained on RAVDESS",)
    pipe = FakePipeline(snapshot(1.0, notes=notes), notes=notes)
    win = MainWindow(pipe, refresh_ms=10_000, demo_banner="Demo mode: …")  # type: ignore[arg-type]
    qtbot.addWidget(win)  # type: ignore[attr-defined]
    win.resize(*size)
    win.show()
    qtbot.waitExposed(win)  # type: ignore[attr-defined]
    win.refresh()
    QApplication.processEvents()
    assert (win.width(), win.height()) == size  # the minimum size never forces the window larger
    inside = win.rect()
    parts = _leaf_widgets(win)
    rects = {}
    for w in parts:
        assert w.isVisible(), w
        r = _global_rect(w)
        assert inside.contains(r), (w.objectName() or type(w).__name__, r, inside)
        assert r.width() >= 40 and r.height() >= 16, (type(w).__name__, r)
        rects[id(w)] = (w, r)
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            if a.isAncestorOf(b) or b.isAncestorOf(a):
                continue
            ra, rb = rects[id(a)][1], rects[id(b)][1]
            assert not ra.intersects(rb), (type(a).__name__, ra, type(b).__name__, rb)
    bar = win.statusBar()
    assert inside.contains(QRect(bar.mapTo(win, QPoint(0, 0)), bar.size()))
    # every label button is on the toolbar, none hidden behind its "»" extension
    for act in win.label_actions:
        button = win.toolbar.widgetForAction(act)
        assert button is not None and button.isVisible(), act.text()
        assert win.toolbar.rect().contains(QRect(button.mapTo(win.toolbar, QPoint(0, 0)), button.size()))
    # nothing changes size when data arrives
    before = {n: getattr(win, n).geometry() for n in ("video", "fused_panel", "timeline", "transcript")}
    v = ModalityScores("voice", "voice-a", 1.0, onehot("angry"), t0=0.2, t1=1.0)
    tr = Transcript(0.2, 1.0, "a rather long sentence that goes on " * 6)
    pipe.snap = snapshot(1.2, voice=(v,), transcripts=(tr,), transcript_version=1, notes=notes)
    win.refresh()
    QApplication.processEvents()
    assert {n: getattr(win, n).geometry() for n in before} == before
    win.close()


def test_the_window_opens_at_a_size_its_screen_can_show() -> None:
    assert fit_to_screen(QRect(0, 0, 800, 500)) == QRect(32, 20, 736, 460)
    assert fit_to_screen(QRect(0, 0, 2560, 1440)).size().toTuple() == (1280, 800)
    r = fit_to_screen(QRect(1920, 24, 1366, 744))  # a second screen, a panel at the top
    assert QRect(1920, 24, 1366, 744).contains(r)


def test_size_splitters_and_timeline_view_are_remembered(qtbot: object, emodesk_home: Path) -> None:
    win = MainWindow(FakePipeline(snapshot(1.0)), refresh_ms=10_000)  # type: ignore[arg-type]
    qtbot.addWidget(win)  # type: ignore[attr-defined]
    win.show()
    win.resize(700, 520)  # the offscreen screen is 800×600
    win.main_split.setSizes([300, 120, 80])
    win.window_box.setCurrentIndex(2)
    win.series_boxes["voice"].setChecked(True)
    QApplication.processEvents()
    sizes = win.main_split.sizes()
    win.close()
    assert (emodesk_home / "settings.ini").is_file()
    again = MainWindow(FakePipeline(snapshot(1.0)), refresh_ms=10_000)  # type: ignore[arg-type]
    qtbot.addWidget(again)  # type: ignore[attr-defined]
    again.show()
    QApplication.processEvents()
    assert again.size().toTuple() == (700, 520)
    assert again.main_split.sizes() == sizes
    assert again.timeline.window_s == 120 and again.window_box.currentText() == "last 120 s"
    assert "voice" in again.timeline.shown and again.series_boxes["voice"].isChecked()
    again.close()
    # a hand-broken file never breaks the window: defaults instead
    (emodesk_home / "settings.ini").write_text("[timeline]\nwindow_s=banana\nshow_face=maybe\n")
    third = MainWindow(FakePipeline(snapshot(1.0)), refresh_ms=10_000)  # type: ignore[arg-type]
    qtbot.addWidget(third)  # type: ignore[attr-defined]
    assert third.timeline.window_s == 60 and "face" not in third.timeline.shown
    third.close()


def test_notes_line_names_every_restriction_once_grouped_by_model(window: MainWindow) -> None:
    window._update_notes(
        (
            "no microphone found",
            "voice-a: non-commercial use only: RAVDESS",
            "voice-b: non-commercial use only: RAVDESS",
            "text-a: trained on MELD (GPL-3.0)",
        )
    )
    text = window.notes.text()
    assert text.count("non-commercial") == 1 and "(voice-a, voice-b)" in text
    assert "GPL-3.0" in text and "no microphone found" in text
    assert window.notes.isVisible() or not window.isVisible()


# ------------------------------------------------------------------ controls


def test_every_shortcut_the_docs_name_does_what_they_say(qtbot: object, window: MainWindow) -> None:
    """Keys pressed on the real window: record, labels, notes, sessions, reload, about, settings
    (Ctrl+O, the source picker, in tests/test_source_settings.py: it needs a switchable window)."""
    calls: list[str] = []
    fake(window).recorder = None
    window.show()
    qtbot.waitExposed(window)  # type: ignore[attr-defined]
    window.windowHandle().requestActivate()  # window shortcuts fire only in the active window
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=3000)  # type: ignore[attr-defined]
    names = (
        "toggle_recording",
        "edit_notes",
        "browse_sessions",
        "reload_fusion",
        "show_about",
        "show_settings",
    )
    for name in names:
        setattr(window, name, lambda n=name: calls.append(n))
    # the actions were connected to the bound methods at construction: reconnect to the spies
    for act, name in (
        (window.record_action, "toggle_recording"),
        (window.notes_action, "edit_notes"),
        (window.sessions_action, "browse_sessions"),
        (window.reload_fusion_action, "reload_fusion"),
        (window.about_action, "show_about"),
        (window.settings_action, "show_settings"),
    ):
        act.triggered.disconnect()
        act.triggered.connect(lambda _c=False, n=name: calls.append(n))
    labels: list[int] = []
    for act in window.label_actions:
        act.triggered.disconnect()
        act.triggered.connect(partial(labels.append, int(act.data())))
    keys = {
        "Ctrl+Shift+R": "toggle_recording",
        "Ctrl+Shift+N": "edit_notes",
        "Ctrl+Shift+S": "browse_sessions",
        "Ctrl+R": "reload_fusion",
        "F1": "show_about",
        "Ctrl+,": "show_settings",
    }
    for seq, name in keys.items():
        ks = QKeySequence(seq)[0]  # type: ignore[index]
        qtbot.keyClick(window, ks.key(), ks.keyboardModifiers())  # type: ignore[attr-defined]
        assert calls[-1:] == [name], seq
    for key in range(8):
        qtbot.keyClick(window, getattr(Qt.Key, f"Key_{key}"))  # type: ignore[attr-defined]
    assert labels == list(range(8))
    texts = [a.text() for a in window.label_actions]
    assert texts == [*LABELS, "none"] and [a.shortcut().toString() for a in window.label_actions] == [
        *"1234567",
        "0",
    ]


def test_label_buttons_show_the_label_in_force_while_recording(window: MainWindow) -> None:
    class Rec:
        label: str | None = None

        def hotkey(self, key: int, t: float) -> str | None:
            self.label = LABELS[key - 1] if key else None
            return self.label

        class writer:
            class stats:
                audio_samples, frames, dropped_frames, dropped_records = 16000, 0, 0, 0

    window.label_hotkey(3)  # not recording: nothing checked, a hint
    assert window.label_group.checkedAction() is None
    fake(window).recorder = Rec()
    window.label_hotkey(3)
    assert window.label_group.checkedAction() is window.label_actions[2]
    window.label_hotkey(0)
    assert window.label_group.checkedAction() is window.label_actions[-1]
    fake(window).recorder = None
    window._update_recording()
    assert window.label_group.checkedAction() is None


def test_about_names_every_model_license_in_full_weights_and_the_log(
    qtbot: object, window: MainWindow
) -> None:
    from emodesk.inference.registry import installed_manifests

    window.log_path = Path("/tmp/emodesk-test.log")
    window.refresh()
    window.show_about()
    text = window.about_dialog.browser.toPlainText()
    for m in installed_manifests().values():
        assert m.id in text and " ".join(m.license.split()) in " ".join(text.split())
    assert "face-a: 1.000" in text and "/tmp/emodesk-test.log" in text
    assert "onnxruntime-gpu is not installed" in text  # the GPU hint, once, here
    window.about_dialog.close()


def test_about_says_which_sessions_a_retrained_set_learned_from_and_its_verdict() -> None:
    from emodesk.fusion.config import FusionConfig
    from emodesk.ui.about import about_html

    raw = {
        "optimizer": {"name": "ao", "seed": 0},
        "data": {"sessions": {"adapt": ["s1", "s2"], "fusion": ["s3"], "held_out": ["s4"]}},
        "verdict": {
            "held_out_macro_f1": {"active": {"fused": 0.7, "face": 0.6}, "new": {"fused": 0.8, "face": 0.75}},
            "gain_ci95": [0.02, 0.18],
            "held_out_rows": 59,
        },
    }
    text = about_html([], FusionConfig({"m": 1.0}, raw=raw), [], None)
    assert "found by:</b> ao" in text
    assert "adapted on:</b> 2 session(s): s1, s2" in text and "judged on:</b> 1 session(s): s4" in text
    assert "(59 held-out utterances):</b> fused 0.700 → 0.800, face 0.600 → 0.750" in text
    assert "[+0.020, +0.180]" in text
    shipped = about_html(
        [], FusionConfig({"m": 1.0}, raw={"optimizer": {"name": "differential-evolution"}}), [], None
    )
    assert "found by:</b> differential-evolution" in shipped and "judged on" not in shipped
