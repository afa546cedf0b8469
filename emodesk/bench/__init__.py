"""``emodesk bench``: the real pipeline and models, replayed headless and measured (CONTRACTS.md).

:mod:`.run` measures (a paced pass for latency, CPU and memory, an unpaced
pass for throughput), :mod:`.baseline` runs the ``fer``-style peer pipeline in
its own environment for the speed ratio, :mod:`.report` writes
``docs/performance.md``.
"""
