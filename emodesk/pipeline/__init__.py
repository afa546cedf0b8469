"""The Qt-free pipeline: face path, utterance path, model loading and batch analysis.

Workers (``emodesk.workers``) drive these same objects live; ``analyze`` drives
them from files as fast as they go.
"""
