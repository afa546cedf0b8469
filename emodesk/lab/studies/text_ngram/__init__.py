"""A second text member: TF-IDF n-grams beside MiniLM: see README.md beside this file."""
