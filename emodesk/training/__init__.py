"""Training and export (the ``train`` extra). The only place torch may be imported.

``emodesk train face|voice|text`` (:mod:`.face`, :mod:`.voice`, :mod:`.text`),
retraining from recorded sessions (:mod:`.retrain`, :mod:`.voice_finetune`).
Reached from the command line through ``importlib`` only, so the bundle, which
leaves this package out, never imports torch.
"""
