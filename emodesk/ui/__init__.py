"""The Qt desktop shell: main window, widgets, error dialogs and ``run_app``.

Only this package and ``emodesk.workers`` import PySide6 (docs/architecture.md).
"""

from emodesk.ui.app import LaunchPlan, plan_launch, run_app

__all__ = ["LaunchPlan", "plan_launch", "run_app"]
