"""Face members: the ResNet-style network (:mod:`.net`) and its trainer (:mod:`.train`)."""
