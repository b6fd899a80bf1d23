"""Proxy tasks for scoring candidate optimizers."""
