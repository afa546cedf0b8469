"""Text member: re-fitting the head on the frozen int8 encoder (study, nothing shipped);
see README.md beside this file."""
