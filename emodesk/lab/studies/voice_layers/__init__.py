"""Which whisper encoder block carries emotion? (tiny.en, RAVDESS actors 01–20);
see README.md beside this file."""
