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
from optuna_nos.space.genome import Genome
from optuna_nos.space.node import HIDDEN_COLUMNS, N_HIDDEN, ROOT, Momentum, Node, column_name
from optuna_nos.space.operands import N_OPERANDS, OPERANDS, OperandInputs
from optuna_nos.space.update_ops import (
    BINARY_OPS,
    DROPOUT_OPS,
    EPS,
    IDENTITY,
    UNARY_OPS,
    OpContext,
)

__all__ = [
    "BASE_SCHEDULES",
    "BINARY_OPS",
    "DECAY_BINARY_OPS",
    "DECAY_HIDDEN",
    "DECAY_UNARY_OPS",
    "DROPOUT_OPS",
    "EPS",
    "HIDDEN_COLUMNS",
    "IDENTITY",
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
    "column_name",
    "decay_phenotype",
    "decay_values",
    "is_valid_decay",
]
