"""``emodesk fusion benchmark-ao``: the Aquila Optimizer against mealpy's and differential evolution
on the classic functions (:mod:`.functions`), run by :mod:`.run`, summarised by :mod:`.report`.
Results and the reproduction command: ``README.md`` beside this file."""
