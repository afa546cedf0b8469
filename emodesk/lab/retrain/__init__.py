"""``emodesk retrain``: adapt the installed members to recorded sessions (:mod:`.adapt`), re-search
the fusion, compare with the active set on held-out sessions, install or roll back (:mod:`.retrain`)."""
