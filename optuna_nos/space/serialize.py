"""Versioned JSON for genomes: everything a mutation may revive, so nothing is lost.

Layout (version 1)::

    {"format": "optuna-nos/genome", "version": 1,
     "momentum": "none" | "momentum" | "nesterov", "flip": false,
     "hidden": [node, node, node, node, node], "root": node}
    node  = {"inputs": [column, ...], "unary_op": int, "binary_op": int,
             "decays": [{"input": column, "decay": decay}, ...]}
    decay = {"root": dnode, "hidden": dnode, "hidden_flag": bool}
    dnode = {"inputs": [index, ...], "unary_op": int, "binary_op": int}

Latent ops, inactive nodes, decays stored on absent edges and the decay's sticky hidden flag
are all kept, so ``Genome.from_json(g.to_json()) == g``. Reading checks every key and
type explicitly (booleans are not integers, floats are not accepted) and raises
:class:`NOSError` naming the JSON path of the first problem.
"""

from __future__ import annotations

import json
from typing import Any

from optuna_nos.core.errors import NOSError
from optuna_nos.space import decays
from optuna_nos.space.decays import Decay, DecayNode
from optuna_nos.space.node import N_HIDDEN, ROOT, Momentum, Node
from optuna_nos.space.update_ops import BINARY_OPS, UNARY_OPS

__all__ = ["FORMAT", "MAX_JSON_LENGTH", "VERSION", "decode_genome", "encode_genome"]

FORMAT = "optuna-nos/genome"
VERSION = 1
#: Longest JSON text accepted; a real genome needs a few kilobytes at most.
MAX_JSON_LENGTH = 1_000_000

_MOMENTUM_NAMES: dict[Momentum, str] = {
    Momentum.NONE: "none",
    Momentum.MOMENTUM: "momentum",
    Momentum.NESTEROV: "nesterov",
}
_MOMENTUM_BY_NAME = {name: momentum for momentum, name in _MOMENTUM_NAMES.items()}
_GENOME_KEYS = ("format", "version", "momentum", "flip", "hidden", "root")
_NODE_KEYS = ("inputs", "unary_op", "binary_op", "decays")
_EDGE_KEYS = ("input", "decay")
_DECAY_KEYS = ("root", "hidden", "hidden_flag")
_DECAY_NODE_KEYS = ("inputs", "unary_op", "binary_op")


# -- writing ---------------------------------------------------------------------------------


def _decay_node_doc(node: DecayNode) -> dict[str, Any]:
    return {"inputs": list(node.inputs), "unary_op": node.unary_op, "binary_op": node.binary_op}


def _decay_doc(decay: Decay) -> dict[str, Any]:
    return {
        "root": _decay_node_doc(decay.root),
        "hidden": _decay_node_doc(decay.hidden),
        "hidden_flag": decay.hidden_flag,
    }


def _node_doc(node: Node) -> dict[str, Any]:
    return {
        "inputs": list(node.inputs),
        "unary_op": node.unary_op,
        "binary_op": node.binary_op,
        "decays": [
            {"input": column, "decay": _decay_doc(decay)}
            for column, decay in sorted(node.decays.items())
        ],
    }


def encode_genome(hidden: tuple[Node, ...], root: Node, momentum: Momentum, flip: bool) -> str:
    """A genome's fields as compact, versioned JSON (see the module docstring for the layout).

    :meth:`Genome.to_json <optuna_nos.space.genome.Genome.to_json>` is the public entry point.
    """
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "momentum": _MOMENTUM_NAMES[momentum],
        "flip": flip,
        "hidden": [_node_doc(node) for node in hidden],
        "root": _node_doc(root),
    }
    return json.dumps(doc, separators=(",", ":"))


# -- reading ---------------------------------------------------------------------------------


def _kind(value: object) -> str:
    """The JSON type name of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _object(value: object, path: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NOSError(f"genome JSON: {path} must be an object, got {_kind(value)}")
    missing = [k for k in keys if k not in value]
    if missing:
        raise NOSError(f"genome JSON: {path} lacks key {missing[0]!r}")
    extra = sorted(k for k in value if k not in keys)
    if extra:
        raise NOSError(f"genome JSON: {path} has unknown key {extra[0][:40]!r}")
    return value


def _integer(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise NOSError(f"genome JSON: {path} must be an integer, got {_kind(value)}")
    if not low <= value <= high:
        raise NOSError(f"genome JSON: {path} = {value} is outside {low}..{high}")
    return value


def _boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise NOSError(f"genome JSON: {path} must be true or false, got {_kind(value)}")
    return value


def _array(value: object, path: str, low: int, high: int) -> list[Any]:
    if not isinstance(value, list):
        raise NOSError(f"genome JSON: {path} must be an array, got {_kind(value)}")
    if not low <= len(value) <= high:
        count = f"exactly {low}" if low == high else f"{low} to {high}"
        raise NOSError(f"genome JSON: {path} must hold {count} items, got {len(value)}")
    return value


def _inputs(value: object, path: str, top: int) -> tuple[int, ...]:
    items = _array(value, path, 1, 2)
    inputs = tuple(_integer(v, f"{path}[{k}]", 0, top) for k, v in enumerate(items))
    if len(set(inputs)) != len(inputs):
        raise NOSError(f"genome JSON: {path} reads input {inputs[0]} twice")
    return inputs


def _decay_node(value: object, path: str, top: int) -> DecayNode:
    doc = _object(value, path, _DECAY_NODE_KEYS)
    return DecayNode(
        inputs=_inputs(doc["inputs"], f"{path}.inputs", top),
        unary_op=_integer(doc["unary_op"], f"{path}.unary_op", 0, max(decays.DECAY_UNARY_OPS)),
        binary_op=_integer(doc["binary_op"], f"{path}.binary_op", 0, max(decays.DECAY_BINARY_OPS)),
    )


def _decay(value: object, path: str) -> Decay:
    doc = _object(value, path, _DECAY_KEYS)
    return Decay(
        root=_decay_node(doc["root"], f"{path}.root", decays.DECAY_HIDDEN),
        hidden=_decay_node(doc["hidden"], f"{path}.hidden", decays.N_BASE_SCHEDULES - 1),
        hidden_flag=_boolean(doc["hidden_flag"], f"{path}.hidden_flag"),
    )


def _node(value: object, path: str) -> Node:
    doc = _object(value, path, _NODE_KEYS)
    edge_decays: dict[int, Decay] = {}
    for k, edge in enumerate(_array(doc["decays"], f"{path}.decays", 0, ROOT)):
        edge_path = f"{path}.decays[{k}]"
        edge_doc = _object(edge, edge_path, _EDGE_KEYS)
        column = _integer(edge_doc["input"], f"{edge_path}.input", 0, ROOT - 1)
        if column in edge_decays:
            raise NOSError(f"genome JSON: {path}.decays holds two decays for input {column}")
        edge_decays[column] = _decay(edge_doc["decay"], f"{edge_path}.decay")
    return Node(
        inputs=_inputs(doc["inputs"], f"{path}.inputs", ROOT - 1),
        unary_op=_integer(doc["unary_op"], f"{path}.unary_op", min(UNARY_OPS), max(UNARY_OPS)),
        binary_op=_integer(doc["binary_op"], f"{path}.binary_op", 0, max(BINARY_OPS)),
        decays=edge_decays,
    )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise NOSError(f"genome JSON: key {key[:40]!r} appears twice in one object")
        doc[key] = value
    return doc


def _reject_constant(name: str) -> None:
    raise NOSError(f"genome JSON: {name} is not allowed")


def _decode(text: str | bytes) -> object:
    if isinstance(text, bytes | bytearray):
        if len(text) > MAX_JSON_LENGTH:
            raise NOSError(f"genome JSON is {len(text)} bytes; the limit is {MAX_JSON_LENGTH}")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NOSError(f"genome JSON is not valid UTF-8 (byte {exc.start})") from None
    if not isinstance(text, str):
        raise NOSError(f"genome JSON must be str or bytes, got {type(text).__name__}")
    if len(text) > MAX_JSON_LENGTH:
        raise NOSError(f"genome JSON is {len(text)} characters; the limit is {MAX_JSON_LENGTH}")
    try:
        return json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant
        )
    except NOSError:
        raise
    except json.JSONDecodeError as exc:
        raise NOSError(
            f"genome JSON is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise NOSError("genome JSON is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal with too many digits
        raise NOSError(f"genome JSON is not valid: {str(exc)[:120]}") from None


def _shown(value: object) -> str:
    """A short rendering of a bad scalar for an error message."""
    if isinstance(value, str):
        return repr(value[:40])
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _kind(value)


def _momentum(doc: dict[str, Any]) -> Momentum:
    """Check the header fields (format, version) and return the momentum type."""
    if doc["format"] != FORMAT:
        raise NOSError(f"genome JSON: format must be {FORMAT!r}, got {_shown(doc['format'])}")
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version != VERSION:
        raise NOSError(
            f"genome JSON: version {_shown(version)} is not supported (this reads "
            f"version {VERSION})"
        )
    name = doc["momentum"]
    if not isinstance(name, str) or name not in _MOMENTUM_BY_NAME:
        raise NOSError(
            f"genome JSON: momentum must be 'none', 'momentum' or 'nesterov', got {_shown(name)}"
        )
    return _MOMENTUM_BY_NAME[name]


def decode_genome(text: str | bytes) -> tuple[tuple[Node, ...], Node, Momentum, bool]:
    """(hidden, root, momentum, flip) of a genome's JSON; any problem raises :class:`NOSError`.

    :meth:`Genome.from_json <optuna_nos.space.genome.Genome.from_json>` builds the genome.
    """
    doc = _object(_decode(text), "the document", _GENOME_KEYS)
    momentum = _momentum(doc)
    flip = _boolean(doc["flip"], "flip")
    hidden_docs = _array(doc["hidden"], "hidden", N_HIDDEN, N_HIDDEN)
    hidden = tuple(_node(node, f"hidden[{k}]") for k, node in enumerate(hidden_docs))
    root = _node(doc["root"], "root")
    return hidden, root, momentum, flip
