"""The dual-joint search space: operands, ops, decays, the genome and its notation.

Pure data and math: nothing here knows about Optuna or training. docs/method.md describes
the space and its notation; docs/extending.md how to add an operation.
"""

from optuna_nos.space.compute import CompiledGenome, apply_update
from optuna_nos.space.decays import (
    BASE_SCHEDULES,
    DECAY_BINARY_OPS,
    DECAY_HIDDEN,
    DECAY_UNARY_OPS,
    N_BASE_SCHEDULES,
    Decay,
    DecayNode,
    base_schedule,
    decay_phenotype,
    decay_values,
    is_valid_decay,
)
from optuna_nos.space.genome import HIDDEN_COLUMNS, N_HIDDEN, ROOT, Genome, Momentum, Node
from optuna_nos.space.operands import N_OPERANDS, OPERANDS, OperandInputs
from optuna_nos.space.update_ops import BINARY_OPS, EPS, UNARY_OPS, OpContext

__all__ = [
    "BASE_SCHEDULES",
    "BINARY_OPS",
    "DECAY_BINARY_OPS",
    "DECAY_HIDDEN",
    "DECAY_UNARY_OPS",
    "EPS",
    "HIDDEN_COLUMNS",
    "N_BASE_SCHEDULES",
    "N_HIDDEN",
    "N_OPERANDS",
    "OPERANDS",
    "ROOT",
    "UNARY_OPS",
    "apply_update",
    "CompiledGenome",
    "Decay",
    "DecayNode",
    "Genome",
    "Momentum",
    "Node",
    "OpContext",
    "OperandInputs",
    "base_schedule",
    "decay_phenotype",
    "decay_values",
    "is_valid_decay",
]
