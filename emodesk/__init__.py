"""emodesk: local, live multimodal emotion recognition (face, voice, words)."""

__version__ = "0.1.0"
