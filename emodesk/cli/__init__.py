"""The ``emodesk`` command line (docs/formats.md, "Command-line conventions")."""
