"""The lab: everything that makes, converts, studies or benchmarks models. Never shipped.

The app (every other package of ``emodesk``) never imports it (an import-linter
contract); the commands that start lab work — ``emodesk train``, ``emodesk retrain``,
``emodesk fusion benchmark-ao`` and ``emodesk bench``'s fer-style baseline — reach it
through :func:`emodesk.cli.common.lab_module`, and the bundle and the wheel leave it out.
torch may be imported here and nowhere else. What is where: ``docs/index.md``.

- :mod:`.train` — ``emodesk train face|voice|text``: one subpackage per modality;
- :mod:`.retrain` — ``emodesk retrain`` from recorded sessions;
- :mod:`.convert` — the converters that made the shipped models from PyPI wheels;
- :mod:`.assets` — the demo media and the simulated corpora (webcam, office);
- :mod:`.studies` — one folder per study: its code beside its ``README.md`` and results;
- :mod:`.aquila_benchmark` — the Aquila Optimizer on the classic functions;
- :mod:`.baseline` — the ``fer``-style peer pipeline ``emodesk bench`` compares against.
"""
