"""Versioned genome JSON: the layout, lossless round trips and every kind of bad input."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import genomes

from optuna_nos.core.errors import NOSError
from optuna_nos.space.decays import Decay, DecayNode
from optuna_nos.space.genome import (
    HIDDEN_COLUMNS,
    Genome,
    Momentum,
    Node,
    genome_from_json,
    genome_to_json,
)
from optuna_nos.space.parse import parse_decay, parse_equation
from optuna_nos.space.serialize import FORMAT, MAX_JSON_LENGTH, VERSION

N0, N1, N2, N3, N4 = HIDDEN_COLUMNS


def everything_stored() -> Genome:
    """A genome with latent ops, inactive cyclic nodes, absent-edge decays and sticky flags."""
    unused_hidden = Decay(
        root=DecayNode((2,), unary_op=5, binary_op=3),
        hidden=DecayNode((4, 9), unary_op=1, binary_op=6),
        hidden_flag=True,
    )
    return Genome(
        hidden=(
            Node(
                (0,),
                unary_op=11,
                binary_op=7,
                decays={0: parse_decay("(a13)*(a2)"), 5: unused_hidden},
            ),
            Node((N1,), unary_op=24, binary_op=9),  # inactive self-loop
            Node((N3, 4), unary_op=3, binary_op=6, decays={N3: parse_decay("(a12)+(a9)")}),
            Node((N2,), unary_op=22),  # inactive cycle with N2
            Node(
                (N0, 3), unary_op=-1, binary_op=4, decays={3: parse_decay("deriv_tanh(tanh(a14))")}
            ),
        ),
        root=Node(
            (N4,),
            unary_op=14,
            binary_op=2,
            decays={N4: parse_decay("1/(1+exp(-a11)"), N0: parse_decay("sqrt(a6)")},
        ),
        momentum=Momentum.NESTEROV,
        flip=True,
    )


def test_layout_of_a_small_genome() -> None:
    g = parse_equation("Mom ~ id([(a13)*(a2)][tanh(g)])")
    doc = json.loads(genome_to_json(g))
    filler = {"inputs": [0], "unary_op": -1, "binary_op": 0, "decays": []}
    assert doc == {
        "format": "optuna-nos/genome",
        "version": 1,
        "momentum": "momentum",
        "flip": False,
        "hidden": [{"inputs": [0], "unary_op": 11, "binary_op": 0, "decays": []}] + [filler] * 4,
        "root": {
            "inputs": [20],
            "unary_op": -1,
            "binary_op": 0,
            "decays": [
                {
                    "input": 20,
                    "decay": {
                        "root": {"inputs": [12, 1], "unary_op": 12, "binary_op": 2},
                        "hidden": {"inputs": [0], "unary_op": 12, "binary_op": 0},
                        "hidden_flag": False,
                    },
                }
            ],
        },
    }
    assert list(doc) == ["format", "version", "momentum", "flip", "hidden", "root"]


def test_round_trip_keeps_everything() -> None:
    g = everything_stored()
    text = genome_to_json(g)
    back = genome_from_json(text)
    assert back == g
    assert back.hidden[1] == g.hidden[1] and back.hidden[0].decays[5].hidden_flag
    assert back.flip is True and back.momentum == Momentum.NESTEROV
    assert genome_to_json(back) == text
    assert genome_from_json(text.encode()) == g
    assert Genome.from_json(g.to_json()) == g


@pytest.mark.parametrize("momentum", list(Momentum))
def test_momentum_names(momentum: Momentum) -> None:
    g = everything_stored().replace(momentum=momentum)
    name = json.loads(genome_to_json(g))["momentum"]
    assert name == {0: "none", 1: "momentum", 2: "nesterov"}[int(momentum)]
    assert genome_from_json(genome_to_json(g)).momentum == momentum


def base_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(genome_to_json(everything_stored()))
    return doc


def with_change(path: list[Any], value: Any) -> str:
    """The base document with the value at ``path`` replaced (or deleted for ``...``)."""
    doc = base_doc()
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(doc)


@pytest.mark.parametrize(
    "path,value,message",
    [
        (["format"], "optuna-nos/genome2", "format must be"),
        (["format"], 1, "format must be"),
        (["version"], 2, "version 2 is not supported"),
        (["version"], True, "version"),
        (["version"], 1.0, "version"),
        (["version"], "1", "version"),
        (["momentum"], "Nesterov", "momentum must be"),
        (["momentum"], 2, "momentum must be"),
        (["flip"], 0, "flip must be true or false"),
        (["flip"], None, "flip must be true or false"),
        (["hidden"], [], "hidden must hold exactly 5"),
        (["hidden"], {}, "hidden must be an array"),
        (["root"], [], "root must be an object"),
        (["root", "inputs"], [], "root.inputs must hold 1 to 2"),
        (["root", "inputs"], [20, 21, 22], "root.inputs must hold 1 to 2"),
        (["root", "inputs"], [24.0], "root.inputs\\[0\\] must be an integer"),
        (["root", "inputs"], [True], "root.inputs\\[0\\] must be an integer"),
        (["root", "inputs"], ["20"], "root.inputs\\[0\\] must be an integer"),
        (["root", "inputs"], [25], "root.inputs\\[0\\] = 25 is outside 0..24"),
        (["root", "inputs"], [-1], "outside"),
        (["root", "inputs"], [21, 21], "reads input 21 twice"),
        (["root", "inputs"], [3], "root must read at least one hidden"),
        (["root", "unary_op"], 25, "root.unary_op = 25 is outside -1..24"),
        (["root", "unary_op"], False, "root.unary_op must be an integer"),
        (["root", "binary_op"], 10, "outside 0..9"),
        (["root", "binary_op"], 2.5, "must be an integer"),
        (["root", "decays"], {}, "root.decays must be an array"),
        (["root", "decays", 0, "input"], 30, "outside 0..24"),
        (["root", "decays", 0, "input"], 24, "two decays for input 24"),
        (["root", "decays", 0, "decay", "root", "inputs"], [15], "outside 0..14"),
        (["root", "decays", 0, "decay", "hidden", "inputs"], [14], "outside 0..13"),
        (["root", "decays", 0, "decay", "root", "unary_op"], 13, "outside 0..12"),
        (["root", "decays", 0, "decay", "root", "binary_op"], 7, "outside 0..6"),
        (["root", "decays", 0, "decay", "hidden_flag"], "yes", "hidden_flag must be true"),
        (["root", "decays", 0, "decay", "root"], None, "must be an object, got null"),
        (["hidden", 0, "inputs"], [N4], "invalid genome: .*cycle"),  # hidden[4] reads N0
        (["hidden", 4, "inputs"], [N4], "invalid genome: .*cycle"),
        (["hidden", 0, "extra"], 1, "hidden\\[0\\] has unknown key 'extra'"),
        (["hidden", 0, "unary_op"], ..., "hidden\\[0\\] lacks key 'unary_op'"),
        (["root", "decays", 0, "decay", "hidden_flag"], ..., "lacks key 'hidden_flag'"),
        (["root", "decays", 0, "color"], "red", "unknown key 'color'"),
        (["flip"], ..., "lacks key 'flip'"),
        (["comment"], "hi", "unknown key 'comment'"),
    ],
)
def test_malformed_documents_name_the_problem(path: list[Any], value: Any, message: str) -> None:
    with pytest.raises(NOSError, match=message):
        genome_from_json(with_change(path, value))


def test_hidden_node_edits_that_stay_valid_are_accepted() -> None:
    g = genome_from_json(with_change(["hidden", 3, "inputs"], [N3]))  # still inactive
    assert g.hidden[3].inputs == (N3,)


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "not valid JSON"),
        ("{", "not valid JSON"),
        ("[1, 2", "not valid JSON"),
        ("null", "must be an object, got null"),
        ('"genome"', "must be an object, got a string"),
        ("[]", "must be an object, got an array"),
        ("3", "must be an object, got an integer"),
        ('{"format": NaN}', "NaN is not allowed"),
        ('{"format": Infinity}', "Infinity is not allowed"),
        ('{"format": 1, "format": 2}', "appears twice"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a": ' * 50_000 + "1" + "}" * 50_000, "nested too deeply"),
        ("1" * 5000, "not valid"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        ("x" * (MAX_JSON_LENGTH + 1), "the limit is"),
        (b"x" * (MAX_JSON_LENGTH + 1), "the limit is"),
    ],
)
def test_bad_json_text_raises_nos_error(text: str | bytes, message: str) -> None:
    with pytest.raises(NOSError, match=message):
        genome_from_json(text)


@pytest.mark.parametrize("value", [None, 3, 2.5, ["{}"], {"format": FORMAT}])
def test_non_text_input_is_rejected(value: object) -> None:
    with pytest.raises(NOSError, match="must be str or bytes"):
        genome_from_json(value)  # type: ignore[arg-type]


def test_to_json_rejects_non_genomes() -> None:
    with pytest.raises(NOSError, match="expected a Genome"):
        genome_to_json("None ~ id(g)")  # type: ignore[arg-type]


def test_constants() -> None:
    assert (FORMAT, VERSION) == ("optuna-nos/genome", 1)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(genomes())
def test_json_round_trip_is_lossless(genome: Genome) -> None:
    text = genome_to_json(genome)
    back = genome_from_json(text)
    assert back == genome
    assert genome_to_json(back) == text


# Keys of the genome document plus one stranger, for random documents.
_KEYS = [
    "inputs",
    "unary_op",
    "binary_op",
    "decays",
    "input",
    "decay",
    "root",
    "hidden",
    "hidden_flag",
    "format",
    "version",
    "momentum",
    "flip",
    "x",
]

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-30, 30)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(_KEYS),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)


def _leaf_paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(doc, dict):
        items = list(doc.items())
    elif isinstance(doc, list):
        items = list(enumerate(doc))
    else:
        return [prefix]
    paths = [prefix]
    for key, value in items:
        paths.extend(_leaf_paths(value, (*prefix, key)))
    return paths


def _load_or_nos_error(text: str | bytes) -> None:
    try:
        genome = genome_from_json(text)
    except NOSError:
        return
    assert genome_from_json(genome_to_json(genome)) == genome


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(genomes(), st.data())
def test_documents_with_a_random_part_replaced_raise_only_nos_error(
    genome: Genome, data: st.DataObject
) -> None:
    doc = json.loads(genome_to_json(genome))
    paths = _leaf_paths(doc)
    path = data.draw(st.sampled_from(paths[1:]))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(_JSON)
    _load_or_nos_error(json.dumps(doc))


@settings(max_examples=200, deadline=None)
@given(st.one_of(_JSON.map(json.dumps), st.text(max_size=60), st.binary(max_size=60)))
def test_random_json_and_text_raise_only_nos_error(text: str | bytes) -> None:
    _load_or_nos_error(text)


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randrange(-30, 30)
    if kind == 3:
        return rng.choice([0.5, -1.0, 1e300, 20.0, 1.0])
    if kind == 4:
        return rng.choice(["", "none", "momentum", FORMAT, "g", "x" * 50])
    if kind == 5:
        return rng.randrange(0, 26)
    if kind in (6, 7):
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(_KEYS): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def _random_document(rng: random.Random, texts: list[str]) -> str | bytes:
    text = rng.choice(texts)
    kind = rng.randrange(5)
    if kind == 0:  # replace a random part of a valid document
        doc = json.loads(text)
        path = rng.choice(_leaf_paths(doc)[1:])
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = _random_json(rng)
        return json.dumps(doc)
    if kind == 1:  # delete a key or an item
        doc = json.loads(text)
        path = rng.choice(_leaf_paths(doc)[1:])
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
        return json.dumps(doc)
    if kind == 2:  # cut or splice the text
        at = rng.randrange(len(text))
        return (
            text[:at]
            + rng.choice(["", "{", "]", ",", '"', "0", "true"])
            + text[at + rng.randrange(10) :]
        )
    if kind == 3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    return json.dumps(_random_json(rng))


@pytest.mark.slow
def test_fuzz_from_json_10k() -> None:
    rng = random.Random(7)
    texts = [genome_to_json(everything_stored())] + [
        genome_to_json(parse_equation(e))
        for e in (
            "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))",
            "None ~ (0.95*(min([min(a12, a9)][2], v hat))+0.05*((10-6w) / (min([min(a12, a9)]"
            "[2], v hat))))",
            "Mom ~ (g)*([arctan(a4)][ln(|1+exp([max(a9, a10)][g^3])|)])",
        )
    ]
    for _ in range(10_000):
        _load_or_nos_error(_random_document(rng, texts))
