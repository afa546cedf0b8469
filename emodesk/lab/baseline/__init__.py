"""The ``fer``-style peer pipeline (OpenCV 4 Haar cascade + mini-Xception) that ``emodesk bench``
measures its speed against: :mod:`.fer_pipeline` runs in its own virtual environment, which
:mod:`.runner` creates on first use."""
