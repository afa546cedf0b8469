"""Does AO-tuned fusion pay? Fusion methods compared on pseudo-paired val/test rows (README.md)."""
