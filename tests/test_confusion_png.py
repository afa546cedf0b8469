"""The confusion picture, drawn without OpenCV, against the OpenCV drawing it replaced.

``_opencv_confusion`` is the former ``draw_confusion`` (cv2.putText with
FONT_HERSHEY_SIMPLEX, which OpenCV 5 draws in its Rubik face); the glyph
atlas must reproduce its text, so a misplaced, missing or wrong-sized string
shows up as differing pixels.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from emodesk.errors import InputError
from emodesk.evaluation.confusion_png import CELL, draw_confusion, write_confusion_png
from emodesk.imaging import read_image
from emodesk.labels import LABELS

# fear has no rows (greyed out); happy and the diagonal mostly right; a few counts over 1000
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
TITLE = "face-fer-minixception  accuracy 0.6412"
SUBTITLE = "face, n = 5190, UAR 0.5873, source FER2013"


def _opencv_confusion(conf: np.ndarray, *, title: str, subtitle: str = "") -> np.ndarray:
    """The OpenCV implementation this module replaced, kept as the reference picture."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    white, dark_blue = np.array([255.0, 255.0, 255.0]), np.array([107.0, 48.0, 8.0])
    ink_dark, absent = (40, 40, 40), (225, 225, 225)

    def text(img, s, center, scale, color, thickness=1):
        (w, h), _ = cv2.getTextSize(s, font, scale, thickness)
        org = (round(center[0] - w / 2), round(center[1] + h / 2))
        cv2.putText(img, s, org, font, scale, color, thickness, cv2.LINE_AA)

    def fit_scale(s, width, scale, thickness=1):
        w = cv2.getTextSize(s, font, scale, thickness)[0][0]
        return scale if w <= width else scale * width / w

    k = len(LABELS)
    left, top, right, bottom = 150, 150, 24, 56
    width, height = left + k * CELL + right, top + k * CELL + bottom
    img = np.full((height, width, 3), 255, np.uint8)
    text(img, title, (width // 2, 26), fit_scale(title, width - 20, 0.7, 2), ink_dark, 2)
    if subtitle:
        text(img, subtitle, (width // 2, 58), fit_scale(subtitle, width - 20, 0.55), ink_dark)
    text(img, "predicted", (left + k * CELL // 2, 96), 0.6, ink_dark)
    for j, lab in enumerate(LABELS):
        text(img, lab, (left + j * CELL + CELL // 2, 130), fit_scale(lab, CELL - 6, 0.5), ink_dark)
    (tw, th), _ = cv2.getTextSize("true", font, 0.6, 1)
    strip = np.full((th + 10, tw + 10, 3), 255, np.uint8)
    cv2.putText(strip, "true", (5, th + 4), font, 0.6, ink_dark, 1, cv2.LINE_AA)
    upright = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y0 = top + k * CELL // 2 - upright.shape[0] // 2
    img[y0 : y0 + upright.shape[0], 8 : 8 + upright.shape[1]] = upright
    support = conf.sum(axis=1)
    for i, lab in enumerate(LABELS):
        cy = top + i * CELL + CELL // 2
        text(img, lab, (44 + (left - 44) // 2, cy), fit_scale(lab, left - 52, 0.5), ink_dark)
        for j in range(k):
            x0, y0 = left + j * CELL, top + i * CELL
            centre = (x0 + CELL // 2, y0 + CELL // 2)
            if support[i] == 0:
                cv2.rectangle(img, (x0, y0), (x0 + CELL, y0 + CELL), absent, -1)
                if j == 0:
                    text(img, "no rows", centre, 0.4, (130, 130, 130))
                continue
            share = conf[i, j] / support[i]
            color = (white + (dark_blue - white) * share).round().astype(int)
            cv2.rectangle(img, (x0, y0), (x0 + CELL, y0 + CELL), tuple(int(c) for c in color), -1)
            ink = (255, 255, 255) if share > 0.5 else ink_dark
            text(img, str(int(conf[i, j])), (centre[0], centre[1] - 10), 0.6, ink, 2 if i == j else 1)
            text(img, f"{share:.0%}", (centre[0], centre[1] + 16), 0.42, ink)
    for t in range(k + 1):
        cv2.line(img, (left, top + t * CELL), (left + k * CELL, top + t * CELL), (190, 190, 190), 1)
        cv2.line(img, (left + t * CELL, top), (left + t * CELL, top + k * CELL), (190, 190, 190), 1)
    note = "colour and % : share of the true row; number: rows"
    text(img, note, (left + k * CELL // 2, top + k * CELL + 30), 0.45, (110, 110, 110))
    return img


@pytest.fixture(scope="module")
def cv2_with_rubik() -> ModuleType:
    cv2 = pytest.importorskip("cv2")
    if int(cv2.__version__.split(".")[0]) < 5:
        pytest.skip(f"OpenCV {cv2.__version__} draws Hershey strokes; the atlas holds OpenCV 5's text")
    return cv2


def _gray_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.shape == b.shape
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)


def test_text_matches_the_opencv_drawing(cv2_with_rubik: ModuleType) -> None:
    old = _opencv_confusion(CONFUSION, title=TITLE, subtitle=SUBTITLE)
    new = draw_confusion(CONFUSION, title=TITLE, subtitle=SUBTITLE)
    diff = _gray_diff(old, new)
    # edges in the old picture, nearly all of them strokes of its text
    inked = _gray_diff(old, np.roll(old, 1, axis=1)) > 40
    assert inked.sum() > 10_000, "the reference picture holds text"
    assert diff.mean() < 3
    assert (diff > 16).sum() < inked.sum() / 100, "text missing, moved or resized"


def test_text_shrunk_to_fit_stays_close_to_opencv(cv2_with_rubik: ModuleType) -> None:
    """A title too wide for the picture shrinks to the same box (resampled here, drawn smaller by OpenCV)."""
    title = "a-model-name-far-too-long-for-the-width-of-the-picture-" * 2 + "  accuracy 0.5000"
    boxes, inks = [], []
    for img in (_opencv_confusion(CONFUSION, title=title), draw_confusion(CONFUSION, title=title)):
        ink = img[:45].max(axis=2) < 128
        cols, rows = np.nonzero(ink.any(axis=0))[0], np.nonzero(ink.any(axis=1))[0]
        boxes.append(np.array([cols[0], cols[-1], rows[0], rows[-1]]))
        inks.append(ink.sum())
    assert np.abs(boxes[0] - boxes[1]).max() <= 2, boxes
    assert 0.8 < inks[1] / inks[0] < 1.25, inks


def test_text_is_drawn_where_expected() -> None:
    """Without OpenCV to compare with: ink in the title, headers and cells, white on dark cells."""
    img = draw_confusion(CONFUSION, title=TITLE, subtitle=SUBTITLE)
    gray = img.max(axis=2)
    assert (gray[10:40, 100:-100] < 100).sum() > 300  # title
    assert (gray[120:140, 150:-24] < 100).sum() > 200  # column labels
    assert (gray[150:-56, 40:145] < 100).sum() > 400  # row labels
    happy = img[150 + 3 * CELL + 2 : 150 + 4 * CELL - 1, 150 + 3 * CELL + 2 : 150 + 4 * CELL - 1]
    assert (happy.min(axis=2) > 200).sum() > 40  # "1480" and "92%" in white on dark blue
    disgust_angry = gray[150 + CELL + 2 : 150 + 2 * CELL - 1, 152 : 150 + CELL - 1]
    assert (disgust_angry < 100).sum() > 40  # "7" and "13%" in dark on pale blue


def test_png_round_trips(tmp_path: Path) -> None:
    out = write_confusion_png(tmp_path / "c.png", CONFUSION, title=TITLE, subtitle=SUBTITLE)
    assert np.array_equal(
        read_image(out, gray=False), draw_confusion(CONFUSION, title=TITLE, subtitle=SUBTITLE)
    )


@pytest.mark.parametrize(
    ("name", "says"),
    [("missing-folder/c.png", "missing-folder"), ("c.jpg", ".png")],
)
def test_bad_path_gives_input_error(tmp_path: Path, name: str, says: str) -> None:
    with pytest.raises(InputError, match=says):
        write_confusion_png(tmp_path / name, CONFUSION, title=TITLE)
    assert not (tmp_path / name).exists()
