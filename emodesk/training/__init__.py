"""Training and export (the ``train`` extra). The only place torch may be imported.

Not built yet: the model-zoo issue adds ``emodesk train``; today the shipped
face models are converted by ``scripts/convert_*.py`` without torch.
"""
