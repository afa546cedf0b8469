"""``emodesk bench``: the real pipeline and models, replayed headless and measured (``docs/formats.md``,
"Benchmark JSON").

:mod:`.run` measures (a paced pass for latency, CPU and memory, an unpaced
pass for throughput), :mod:`.report` writes ``docs/performance.md``. The
``fer``-style peer pipeline it compares against is lab code
(:mod:`emodesk.lab.baseline`), reached through :func:`emodesk.cli.common.lab_module`.
"""
