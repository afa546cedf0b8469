"""Short-window whisper decoding against the standard 30 s window: see README.md beside this file."""
