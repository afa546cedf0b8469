"""Which fusion rule and Aquila variant ship: chosen by cross-validation inside the validation rows."""
