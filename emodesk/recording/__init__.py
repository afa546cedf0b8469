"""Recorded sessions: the writer (:mod:`.writer`, :mod:`.files`), the format (:mod:`.format`,
``docs/sessions.md``), check/repair/relabel (:mod:`.session`), export to manifests
(:mod:`.export`, which ``emodesk retrain`` in the lab reads sessions through) and what a live
session hands the writer (:mod:`.recorder`)."""
