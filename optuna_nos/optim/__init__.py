"""Optimizer math: a genome as a torch optimizer, its integrity check, export, evolution."""
