"""Genome structure: construction checks, validate(), activity and key()."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from strategies import genomes

from optuna_nos.core.errors import NOSError
from optuna_nos.space.genome import HIDDEN_COLUMNS, ROOT, Genome, Momentum, Node
from optuna_nos.space.notation import format_equation
from optuna_nos.space.parse import parse_decay, parse_equation

G, V_HAT, S_HAT = 0, 3, 4
N0, N1, N2, N3, N4 = HIDDEN_COLUMNS
FILLER = Node(inputs=(G,))


def genome(*hidden: Node, root: Node, **kwargs: object) -> Genome:
    nodes = list(hidden) + [FILLER] * (5 - len(hidden))
    return Genome(hidden=tuple(nodes), root=root, **kwargs)  # type: ignore[arg-type]


def tanh_of_g() -> Genome:
    return genome(Node((G,), unary_op=11), root=Node((N0,), unary_op=-1))


def test_layout_constants() -> None:
    assert HIDDEN_COLUMNS == (20, 21, 22, 23, 24)
    assert ROOT == 25
    assert [m.prefix for m in Momentum] == ["None ~ ", "Mom ~ ", "Nest ~ "]


def test_a_minimal_genome_prints_and_orders_its_nodes() -> None:
    g = tanh_of_g()
    assert format_equation(g) == "None ~ id(tanh(g))"
    assert g.topological_order() == (N0, ROOT)
    assert g.active_hidden() == (N0,)
    assert str(g) == g.equation() == "None ~ id(tanh(g))"


@pytest.mark.parametrize(
    "build,message",
    [
        # a cycle among active nodes
        (lambda: genome(Node((N1,)), Node((N0,)), root=Node((N0,))), "cycle"),
        (lambda: genome(Node((N0,)), root=Node((N0,))), "cycle"),
        # the root must read a hidden node
        (lambda: genome(root=Node((G,))), "root must read"),
        (lambda: genome(root=Node((G, V_HAT), binary_op=0)), "root must read"),
        # missing inputs / wrong arity
        (lambda: genome(Node(()), root=Node((N0,))), "1 or 2 inputs"),
        (lambda: genome(root=Node(())), "1 or 2 inputs"),
        (lambda: genome(Node((G, V_HAT, S_HAT)), root=Node((N0,))), "1 or 2 inputs"),
        # unknown ops (the inactive latent op is checked too)
        (lambda: genome(Node((G,), unary_op=25), root=Node((N0,))), "unknown unary op"),
        (lambda: genome(Node((G,), unary_op=-2), root=Node((N0,))), "unknown unary op"),
        (lambda: genome(Node((G,), binary_op=10), root=Node((N0,))), "unknown binary op"),
        (lambda: genome(Node((G,), unary_op=True), root=Node((N0,))), "unknown unary op"),
        (lambda: genome(root=Node((N0,), binary_op=-1)), "unknown binary op"),
        # duplicate input
        (lambda: genome(Node((G, G), binary_op=0), root=Node((N0,))), "twice"),
        (lambda: genome(root=Node((N0, N0), binary_op=2)), "twice"),
        # inputs out of range or of the wrong type
        (lambda: genome(Node((ROOT,)), root=Node((N0,))), "outside"),
        (lambda: genome(Node((-1,)), root=Node((N0,))), "outside"),
        (lambda: genome(Node(("g",)), root=Node((N0,))), "outside"),  # type: ignore[arg-type]
        (lambda: genome(Node((True,)), root=Node((N0,))), "outside"),
        # stored decays
        (
            lambda: genome(Node((G,), decays={ROOT: parse_decay("id(a1)")}), root=Node((N0,))),
            "decay",
        ),
        (
            lambda: genome(Node((G,), decays={G: "id(a1)"}), root=Node((N0,))),  # type: ignore[dict-item]
            "non-decay",
        ),
        # whole-genome fields
        (lambda: Genome(hidden=(FILLER,) * 4, root=Node((N0,))), "exactly 5 hidden"),
        (lambda: genome(root=Node((N0,)), momentum=3), "momentum"),
        (lambda: genome(root=Node((N0,)), momentum=True), "momentum"),
        (lambda: genome(root=Node((N0,)), flip=1), "flip"),
    ],
)
def test_structural_errors_raise_nos_error(build, message: str) -> None:  # noqa: ANN001
    with pytest.raises(NOSError, match=message):
        build()


def test_inactive_nodes_may_hold_cycles_and_self_loops() -> None:
    g = genome(
        Node((G,), unary_op=11),
        Node((N1,)),  # self-loop
        Node((N3, G), binary_op=0),
        Node((N2,)),  # N2 <-> N3 cycle
        Node((N4, N1), binary_op=3, unary_op=24),
        root=Node((N0,)),
    )
    assert g.active_columns == frozenset({N0, ROOT})
    assert format_equation(g) == "None ~ id(tanh(g))"
    with pytest.raises(NOSError, match="cycle"):
        g.with_node(ROOT, Node((N2,)))  # activating the cycle is an error


def test_latent_ops_and_absent_edge_decays_are_kept_but_not_printed() -> None:
    stored = parse_decay("(a12)+(a9)")  # out of range, but on an absent edge
    g = genome(
        Node((G,), unary_op=11, binary_op=7, decays={V_HAT: stored}),
        root=Node((N0,), unary_op=-1, binary_op=9),
    )
    assert format_equation(g) == "None ~ id(tanh(g))"
    assert g.hidden[0].decays[V_HAT] == stored
    assert g.hidden[0].decay_on(V_HAT) is None
    assert g.validate() is g
    revived = g.with_node(N0, g.hidden[0].replace(inputs=(G, V_HAT)))
    assert format_equation(revived) == "None ~ id(clip(g, [(a12)+(a9)][v hat]))"
    with pytest.raises(NOSError, match="v hat -> n0|operand 3 -> n0"):
        revived.validate()


def test_validate_checks_every_active_decay_and_names_the_edge() -> None:
    ok = parse_equation("Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))")
    assert ok.validate() is ok
    # The released log holds a decay that goes below 0.
    bad = parse_equation(
        "Nest ~ [(a11)-(a6)][g]/(1+|[(a11)-(a6)][g]|)/(1+|[(a11)-(a6)][g]/(1+|[(a11)-(a6)][g]|)|)"
    )
    with pytest.raises(NOSError, match="leaves \\[0, 1\\]"):
        bad.validate()
    on_root_edge = parse_equation("None ~ id([(a12) / (a5)][tanh(g)])")
    with pytest.raises(NOSError, match="n0 -> root"):
        on_root_edge.validate()


def test_validate_rejects_huge_values_and_applies_the_nan_policy(monkeypatch) -> None:  # noqa: ANN001
    """NaN passes only with nan_decays_valid (paper mode); non-finite fails else."""
    huge = parse_equation("None ~ id([(a1) / (a2)][tanh(g)])")  # 1/(0 + 1e-7) at t = 0
    with pytest.raises(NOSError):
        huge.validate()
    import optuna_nos.space.decays as decays_module

    nan_phenotype = torch.full((100,), 0.5, dtype=torch.float64)
    nan_phenotype[7] = math.nan
    monkeypatch.setattr(decays_module, "decay_phenotype", lambda decay: nan_phenotype)
    g = parse_equation("None ~ id([id(a1)][tanh(g)])")
    assert g.validate(nan_decays_valid=True) is g
    with pytest.raises(NOSError):
        g.validate()


def test_key_ignores_numbering_latent_genes_inactive_nodes_and_flip() -> None:
    a = genome(
        Node((G,), unary_op=11),
        Node((N0, V_HAT), binary_op=2),
        root=Node((N1,), unary_op=14),
    )
    b = Genome(
        hidden=(
            Node((S_HAT,), unary_op=3, binary_op=5),  # inactive, different genes
            Node((N4, V_HAT), binary_op=2, unary_op=7),
            Node((N2,)),  # inactive self-loop
            FILLER,
            Node((G,), unary_op=11, binary_op=9),
        ),
        root=Node((N1,), unary_op=14, binary_op=4),
        flip=True,
    )
    assert format_equation(a) == format_equation(b) == "None ~ bessel_i1e((tanh(g))*(v hat))"
    assert a.key() == b.key()
    assert a != b
    assert a.key() != a.replace(momentum=Momentum.NESTEROV).key()
    assert a.key() != tanh_of_g().key()


def test_genome_is_hashable_and_compares_by_value() -> None:
    assert tanh_of_g() == tanh_of_g()
    assert hash(tanh_of_g()) == hash(tanh_of_g())
    assert len({tanh_of_g(), tanh_of_g(), tanh_of_g().replace(flip=True)}) == 2


@settings(max_examples=200, deadline=None)
@given(genomes())
def test_generated_genomes_are_structurally_valid(g: Genome) -> None:
    order = g.topological_order()
    assert order[-1] == ROOT
    assert any(c in HIDDEN_COLUMNS for c in g.root.inputs)
    seen: set[int] = set()
    for column in order:
        assert all(c < 20 or c in seen for c in g.node(column).inputs)
        seen.add(column)
    assert Genome(hidden=g.hidden, root=g.root, momentum=g.momentum, flip=g.flip) == g
