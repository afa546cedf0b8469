"""A per-class logit bias for the text member, fitted on the validation splits;
see README.md beside this file."""
