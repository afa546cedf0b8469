"""The model zoo's table: ``models/README.md`` from the shipped manifests (:mod:`.model_table`)."""
