"""Helpers the tests share: fakes, generated media, the virtual microphone, test voice heads.

Imported one way, ``from tests.support.X import …`` (pytest puts the repository root on
``sys.path``: ``pythonpath = ["."]`` in pyproject.toml); nothing outside ``tests/`` imports them.
"""
