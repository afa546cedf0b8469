"""Many inputs through ``analyze``: the inputs, the run index, the engines that run them."""
