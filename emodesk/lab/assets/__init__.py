"""The media the project builds rather than downloads: the demo clip (:mod:`.demo_clip`), the far-face
demo (:mod:`.far_demo`), and the simulated cross-condition corpora — RAVDESS through an office
microphone (:mod:`.office_ravdess`), FER-2013 in webcam frames (:mod:`.webcam_fer`).
Each is ``python -m emodesk.lab.assets.X``; all are seeded and deterministic."""
