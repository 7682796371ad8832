"""The ``metarm`` solver: the meta-learned reward model of SPEC section 4."""
