"""Transfer evaluation of discovered optimizers."""
