"""The ``emodesk`` command line (CONTRACTS.md, "Command-line conventions")."""
