"""The text teacher of issue 20: its resumable state, log and soft labels (README.md beside this)."""
