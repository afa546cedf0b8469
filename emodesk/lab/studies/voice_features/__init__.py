"""Would log-mel and loudness statistics help the voice member?: see README.md beside this file."""
