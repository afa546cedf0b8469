"""Speech path: Silero VAD → utterances → faster-whisper transcripts.

Everything here is synchronous and driven by the media time carried in the
audio chunks (no threads, no wall clock), so a worker thread owns it in the
app and a test can push an hour of audio through it in seconds.
"""
