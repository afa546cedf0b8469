"""``emodesk report`` and its pictures: drawn with QPainter (offscreen), looked at by their pixels."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emodesk.cli.main import main
from emodesk.errors import InputError
from emodesk.imaging import read_image
from emodesk.labels import LABEL_COLORS, LABELS
from emodesk.results.inputs import find_results
from emodesk.results.report import build_input_report
from emodesk.ui.render import confusion as cf
from emodesk.ui.render import report as rr
from tests.test_tables import RECORDS, _jsonl, _run_folder, _session

CONFUSION = np.array(
    [
        [310, 12, 40, 9, 55, 60, 14],
        [7, 31, 3, 1, 4, 6, 2],
        [0, 0, 0, 0, 0, 0, 0],
        [11, 0, 9, 1480, 60, 22, 31],
        [40, 2, 30, 70, 900, 120, 12],
        [52, 4, 61, 25, 130, 402, 9],
        [5, 0, 41, 30, 18, 7, 620],
    ]
)


def _rgb(img: Any) -> np.ndarray:
    """A QImage as an (h, w, 3) uint8 RGB array."""
    from PySide6.QtGui import QImage

    im = img.convertToFormat(QImage.Format.Format_RGB888)
    a = np.frombuffer(im.constBits(), np.uint8).reshape(im.height(), im.bytesPerLine())
    return a[:, : im.width() * 3].reshape(im.height(), im.width(), 3).copy()


def _hex(c: str) -> np.ndarray:
    return np.array([int(c[i : i + 2], 16) for i in (1, 3, 5)])


def _near(a: np.ndarray, color: np.ndarray, tol: int = 6) -> np.ndarray:
    return np.abs(a.astype(int) - color).max(axis=-1) <= tol


def test_confusion_cells_are_coloured_by_row_share_and_carry_their_text() -> None:
    img = _rgb(cf.draw_confusion(CONFUSION, title="face  accuracy 0.64", subtitle="n = 5190"))
    assert img.shape == (cf.TOP + 7 * cf.CELL + cf.BOTTOM, cf.LEFT + 7 * cf.CELL + cf.RIGHT, 3)
    support = CONFUSION.sum(axis=1)
    for i in range(7):
        for j in range(7):
            corner = img[cf.TOP + i * cf.CELL + 4, cf.LEFT + j * cf.CELL + 4]  # inside, away from text
            if support[i] == 0:
                want = np.array([225, 225, 225])
            else:
                c = cf.cell_color(CONFUSION[i, j] / support[i])
                want = np.array([c.red(), c.green(), c.blue()])
            assert np.abs(corner.astype(int) - want).max() <= 1, (i, j)
    happy = img[
        cf.TOP + 3 * cf.CELL + 2 : cf.TOP + 4 * cf.CELL - 1,
        cf.LEFT + 3 * cf.CELL + 2 : cf.LEFT + 4 * cf.CELL - 1,
    ]
    assert (happy.min(axis=2) > 200).sum() > 40  # "1480" and "92%" in white on dark blue
    pale = img[cf.TOP + cf.CELL + 2 : cf.TOP + 2 * cf.CELL - 1, cf.LEFT + 2 : cf.LEFT + cf.CELL - 1]
    assert (pale.max(axis=2) < 100).sum() > 40  # "7" and "13%" in dark on pale blue
    assert (img[10:40, 100:-100].max(axis=2) < 100).sum() > 300  # the title
    assert (img[cf.TOP :, 40:145].max(axis=2) < 100).sum() > 400  # the row labels


def test_confusion_png_round_trips_and_bad_paths_are_input_errors(tmp_path: Path) -> None:
    out = cf.write_confusion_png(tmp_path / "c.png", CONFUSION, title="t")
    assert np.array_equal(
        read_image(out, gray=False)[..., ::-1], _rgb(cf.draw_confusion(CONFUSION, title="t"))
    )
    assert out.stat().st_mode & 0o077 == 0
    (tmp_path / "file").write_text("x", encoding="utf-8")
    for bad, says in (("c.jpg", ".png"), ("file/c.png", "file")):
        with pytest.raises(InputError, match=says):
            cf.write_confusion_png(tmp_path / bad, CONFUSION, title="t")


def test_the_timeline_draws_each_panel_where_it_has_readings(tmp_path: Path) -> None:
    session = _session(tmp_path / "s1")
    (inp,) = find_results([session])
    loaded = inp.load()
    rep = build_input_report(inp, loaded)
    series = rr.series_from_records(loaded.records, rep.utterances)
    img = _rgb(
        rr.draw_timeline(series, start=0.0, end=3.0, utterances=rep.utterances, label_spans=rep.label_spans)
    )
    assert img.shape[:2] == (rr.timeline_height(True), rr.WIDTH)
    tm = rr.TimeMap(0.0, 3.0, rr.GUTTER, rr.WIDTH - rr.GUTTER - rr.RIGHT)
    y, panels = rr.LEGEND_H, {}
    for name, h in rr.PANELS:
        panels[name] = img[y + 2 : y + h - 2, rr.GUTTER + 2 : rr.WIDTH - rr.RIGHT - 2]
        y += h + rr.PANEL_GAP
    # fused: happy high (near the top) before 1 s, sad after; voice: angry over the first utterance
    fused = panels["fused"]
    top_rows = fused[: fused.shape[0] // 4]
    happy, sad = _hex(LABEL_COLORS["happy"]), _hex(LABEL_COLORS["sad"])
    x_half = int(tm.x(0.5)) - rr.GUTTER - 2
    x_1_5 = int(tm.x(1.5)) - rr.GUTTER - 2
    assert _near(top_rows[:, x_half - 3 : x_half + 3], happy).any()
    assert _near(top_rows[:, x_1_5 - 3 : x_1_5 + 3], sad).any()
    assert _near(panels["voice"][:, x_half - 3 : x_half + 3], _hex(LABEL_COLORS["angry"]), tol=40).any()
    # the last fused row (angry, at 1.8 s) holds; a lone face frame (sad, 1.2 s) is drawn
    x_2 = int(tm.x(2.2)) - rr.GUTTER - 2
    assert _near(top_rows[:, x_2 - 3 : x_2 + 3], _hex(LABEL_COLORS["angry"]), tol=40).any()
    x_lone = int(tm.x(1.2)) - rr.GUTTER - 2
    assert _near(panels["face"][:, x_lone - 2 : x_lone + 4], sad, tol=40).any()
    # the doubted utterance's words (fear) are not drawn; the label strip has happy then sad
    assert not _near(panels["words"], _hex(LABEL_COLORS["fear"]), tol=20).any()
    strip_y = rr.LEGEND_H + sum(h + rr.PANEL_GAP for _, h in rr.PANELS) + rr.STRIP_H // 2
    assert _near(img[strip_y, int(tm.x(0.5))], happy, tol=2)
    assert _near(img[strip_y, int(tm.x(2.0))], sad, tol=2)


def test_share_bars_are_as_long_as_the_shares() -> None:
    share = {lab: 0.0 for lab in LABELS} | {"happy": 0.5, "sad": 0.25, "angry": 0.25}
    img = _rgb(rr.draw_shares([("fused", share, 100.0), ("face", {}, 0.0)]))
    row = img[rr.LEGEND_H + 4 + 3]  # near the top of the first bar, above its text
    bar_w = rr.WIDTH - 170 - 90 - rr.RIGHT
    for lab, frac in (("happy", 0.5), ("sad", 0.25), ("angry", 0.25)):
        assert abs(_near(row, _hex(LABEL_COLORS[lab]), tol=2).sum() - frac * bar_w) <= 2, lab
    second = img[rr.LEGEND_H + 4 + 30 + 3]
    assert not any(_near(second, _hex(c), tol=2).sum() > 5 for c in LABEL_COLORS.values())  # "no readings"


def _no_network(html: str) -> None:
    """The page loads nothing, runs nothing, and every tag it opens it closes."""
    from html.parser import HTMLParser

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.open: list[str] = []
            self.bad: list[str] = []

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            if tag not in ("img", "meta", "br"):
                self.open.append(tag)

        def handle_endtag(self, tag: str) -> None:
            if self.open and self.open[-1] == tag:
                self.open.pop()
            else:
                self.bad.append(f"</{tag}> inside {self.open[-3:]}")

    tags = Tags()
    tags.feed(html)
    assert not tags.bad and not tags.open, (tags.bad, tags.open)
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.I), "the page must load nothing"


def test_a_session_report_is_one_self_contained_page(tmp_path: Path) -> None:
    session = _session(tmp_path / "20261203-101010-abcdef")
    rows = [dict(r) for r in RECORDS]
    rows[5]["text"] = "hello <b>there</b> & you"
    _jsonl(session / "scores.jsonl", rows)
    out = tmp_path / "report"
    assert main(["report", str(session), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion.png",
        "index.html",
        "shares.png",
        "timeline.png",
    ]
    html = (out / "index.html").read_text(encoding="utf-8")
    _no_network(html)
    assert html.count('src="data:image/png;base64,') == 3
    assert "hello &lt;b&gt;there&lt;/b&gt; &amp; you" in html and "<b>there</b>" not in html
    # labels happy then sad; fused happy, sad, angry per second: 2 of 3 labelled seconds agree
    assert "accuracy <b>66.7%</b>" in html and "UAR" in html
    assert "(doubted, not fused)" in html
    # the label at each utterance's middle: "hello" (0.2-1.8 s) happy, the doubted one (2.0-2.6 s) sad
    (inp,) = find_results([session])
    assert [u["label"] for u in build_input_report(inp, inp.load()).utterances] == ["happy", "sad"]
    assert all(p.stat().st_mode & 0o077 == 0 for p in out.iterdir())
    picture = read_image(out / "confusion.png", gray=False)
    assert picture.shape[1] == cf.LEFT + 7 * cf.CELL + cf.RIGHT


def test_a_run_report_has_a_row_per_input_and_a_page_each(tmp_path: Path) -> None:
    run = _run_folder(tmp_path)
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out), "--title", "study 1"]) == 0
    html = (out / "index.html").read_text(encoding="utf-8")
    _no_network(html)
    assert "<h1>study 1</h1>" in html and 'href="inputs/a.html"' in html
    assert "not a video" in html and "1 failed" in html
    assert (out / "shares.png").is_file() and not (out / "confusion.png").exists()  # nothing labelled
    page = (out / "inputs" / "a.html").read_text(encoding="utf-8")
    assert 'href="../index.html"' in page and "hello there" in page
    assert {p.name for p in (out / "inputs").iterdir()} >= {
        "a.html",
        "a-timeline.png",
        "a-shares.png",
        "b.html",
    }
    assert main(["report", str(tmp_path / "missing"), "--out", str(out)]) == 2


def test_the_sessions_browser_writes_and_opens_the_report(
    qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtGui import QDesktopServices

    from emodesk.ui import sessions_dialog as sd
    from tests.test_timeline import _session as recorded_session

    session = recorded_session(tmp_path)  # a real one, as the recorder writes it
    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    browser = sd.SessionsDialog(tmp_path)
    qtbot.addWidget(browser)
    browser.table.selectRow(0)
    browser.buttons["Report"].click()
    assert not browser.buttons["Report"].isEnabled()  # written on a thread, the window goes on
    qtbot.waitUntil(lambda: browser.last_report is not None, timeout=20000)
    assert browser.buttons["Report"].isEnabled() and opened == [str(browser.last_report)]
    assert browser.last_report.name == "index.html" and session.name in str(browser.last_report)
    page = browser.last_report.read_text(encoding="utf-8")
    assert "<h1>" in page and "Timeline" in page


def test_report_files_stay_inside_out_and_a_rerun_replaces_the_report(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("x.jsonl", "y.jsonl", "z.jsonl"):
        _jsonl(run / name, RECORDS)
    _jsonl(
        run / "runs.jsonl",
        [
            {"id": "../escape", "output": "x.jsonl", "status": "ok"},
            {"id": str(tmp_path / "abs"), "output": "y.jsonl", "status": "ok"},
            {"id": "s #1", "output": "z.jsonl", "status": "ok"},
        ],
    )
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out)]) == 0
    written = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    assert all(p.startswith(("index.html", "shares.png", "inputs")) for p in written), written
    assert not (tmp_path / "escape.html").exists() and not list(tmp_path.glob("abs*"))
    html = (out / "index.html").read_text(encoding="utf-8")
    for link in re.findall(r'href="([^"]+)"', html):
        assert (out / link.replace("%23", "#").replace("%20", " ")).is_file(), link
    assert "#" not in "".join(re.findall(r'href="([^"]+)"', html))  # quoted: a # would cut the link
    # the utterance that ended at 1.8 s: the fused row there (angry) is the read-out after it
    (inp,) = find_results([run / "x.jsonl"])
    assert build_input_report(inp, inp.load()).utterances[0]["fused_top"] == "angry"
    # a rerun replaces the whole report (no stale page); a folder of other things is refused
    stale = out / "inputs" / "stale.html"
    stale.write_text("old", encoding="utf-8")
    assert main(["report", str(run / "x.jsonl"), "--out", str(out)]) == 0
    assert not stale.exists() and not (out / "inputs").exists() and (out / "timeline.png").is_file()
    assert not (tmp_path / "report.partial").exists() and not (tmp_path / "report.old").exists()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("keep", encoding="utf-8")
    assert main(["report", str(run / "x.jsonl"), "--out", str(other)]) == 2
    assert [p.name for p in other.iterdir()] == ["thesis.tex"]


def test_a_folder_of_labelled_sessions_gets_their_summed_agreement(tmp_path: Path) -> None:
    parent = tmp_path / "sessions"
    parent.mkdir()
    for name in ("20261203-101010-aaaaaa", "20261203-111111-bbbbbb"):
        _session(parent / name)
    out = tmp_path / "report"
    assert main(["report", str(parent), "--out", str(out)]) == 0
    html = (out / "index.html").read_text(encoding="utf-8")
    _no_network(html)
    # each session: 3 labelled seconds, 2 agreeing (see the single-session test); summed over both
    assert "6 labelled seconds in 2 sessions: accuracy <b>66.7%</b>" in html
    assert (out / "confusion.png").is_file() and html.count('src="data:image/png;base64,') == 2
