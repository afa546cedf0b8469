"""``emodesk train face|voice|text``: each modality's ``train`` module has ``add_arguments``
and ``run``; :mod:`.common` holds what all three share (seeding, checkpoints, ONNX export,
agreement checks, quantisation, manifests). Needs the ``train`` extra (torch)."""
