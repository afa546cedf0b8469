"""One folder per study: its code, its ``README.md`` (question, method, result, the command that
reproduces it) and its result files."""
