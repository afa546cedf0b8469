"""QPainter drawing shared by the live window, the sessions browser and reports.

No widgets here: functions that paint onto any ``QPainter`` (a widget, a
``QPixmap``, a ``QImage`` written to a PNG) and a Qt-free ring buffer of
probabilities over media time, so the same strip looks the same everywhere.
"""

from emodesk.ui.render.strips import TimeMap, paint_axis, paint_span, paint_trace, tick_step
from emodesk.ui.render.trace import ProbabilityTrace

__all__ = ["ProbabilityTrace", "TimeMap", "paint_axis", "paint_span", "paint_trace", "tick_step"]
