"""Would a candidate text member improve the fused read-out?: see README.md beside this file."""
