"""Parse the paper notation back into a :class:`Genome`.

The paper notation is not uniquely bracketed: softsign ``{x}/(1+|{x}|)`` and abs ``|{x}|`` put
no parentheses around their argument, and the sigmoid decay ``1/(1+exp(-{x})`` leaves one
parenthesis open. The parser is therefore a span-based backtracking parser: for a span
``s[i:j]`` it tries an operand name, a decorated argument ``[decay][input]`` and every op
format, matching the format's literal pieces exactly (a repeated ``{x}`` must repeat the same
text). Results are memoised per span, so the work stays polynomial, and a work budget turns
pathological input into an error instead of a hang.

A parse is accepted only if re-printing the genome reproduces the input exactly. Identical
sub-expressions (same printed text) become one hidden node, so a node read twice, or repeated
by softsign, is stored once; a decoration belongs to the edge, not to the node. The one
exception: a binary node whose two arguments print the same node text reads a twin copy as its
second input, since a node may not read one input twice. Hidden nodes are numbered in
post-order of their first occurrence; unused hidden slots get an inactive identity node on
operand 0.
Decay ranges are not checked here (the released log holds out-of-range decays);
:meth:`Genome.validate` does that.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate, repeat
from typing import TypeVar

from optuna_nos.core.errors import NOSError
from optuna_nos.space.decays import (
    DECAY_BINARY_OPS,
    DECAY_HIDDEN,
    DECAY_UNARY_OPS,
    N_BASE_SCHEDULES,
    Decay,
    DecayNode,
)
from optuna_nos.space.genome import Genome
from optuna_nos.space.node import N_HIDDEN, Momentum, Node
from optuna_nos.space.operands import N_OPERANDS, OPERANDS
from optuna_nos.space.update_ops import BINARY_OPS, IDENTITY, UNARY_OPS

__all__ = ["MAX_EQUATION_LENGTH", "parse_decay", "parse_equation"]

#: Longest equation text accepted. A valid genome prints well below this (at most 64 copies of
#: one decorated operand, when six softsigns are nested).
MAX_EQUATION_LENGTH = 20_000
#: Elementary parser steps allowed for one equation before it is rejected as too complex.
_WORK_LIMIT = 200_000
#: A chain of nested node expressions longer than root + 5 hidden nodes needs > 5 hidden nodes.
_MAX_NODE_DEPTH = N_HIDDEN + 1
#: Opening text of the sigmoid decay, the only format whose parentheses do not balance.
_SIGMOID_LEAD = DECAY_UNARY_OPS[0].paper.split("{x}")[0]
_SNIPPET = 24

_OPERAND_INDEX: dict[str, int] = {op.name: op.index for op in OPERANDS}
_BASE_INDEX: dict[str, int] = {f"a{k + 1}": k for k in range(N_BASE_SCHEDULES)}
_PREFIXES: tuple[tuple[str, Momentum], ...] = tuple((m.prefix, m) for m in Momentum)


@dataclass(frozen=True)
class _Format:
    """An op's print format split at its slots: ``lead {x} middle {y} tail``.

    A unary format has ``middle == ""`` unless it repeats its argument (``repeated``), as
    softsign's ``{x}/(1+|{x}|)`` does.
    """

    code: int
    binary: bool
    lead: str
    middle: str
    tail: str
    repeated: bool


def _compile(code: int, fmt: str, binary: bool) -> _Format:
    pieces = re.split(r"\{[xy]\}", fmt)
    slots = re.findall(r"\{([xy])\}", fmt)
    if binary:
        if slots != ["x", "y"]:
            raise AssertionError(f"binary format {fmt!r} must use {{x}} then {{y}}")
        return _Format(code, True, pieces[0], pieces[1], pieces[2], False)
    if slots == ["x"]:
        return _Format(code, False, pieces[0], "", pieces[1], False)
    if slots == ["x", "x"]:
        return _Format(code, False, pieces[0], pieces[1], pieces[2], True)
    raise AssertionError(f"unary format {fmt!r} must use {{x}} once or twice")


def _dispatch(formats: list[_Format]) -> dict[str, tuple[_Format, ...]]:
    """Formats by the first character of their lead; ``""`` holds the lead-less ones."""
    leadless = [f for f in formats if not f.lead]
    table: dict[str, tuple[_Format, ...]] = {"": tuple(leadless)}
    for char in {f.lead[0] for f in formats if f.lead}:
        table[char] = tuple(f for f in formats if not f.lead or f.lead[0] == char)
    return table


_UPDATE_FORMATS = _dispatch(
    [_compile(c, op.paper, False) for c, op in sorted(UNARY_OPS.items())]
    + [_compile(c, op.paper, True) for c, op in sorted(BINARY_OPS.items())]
)
_DECAY_FORMATS = _dispatch(
    [_compile(c, op.paper, False) for c, op in sorted(DECAY_UNARY_OPS.items())]
    + [_compile(c, op.paper, True) for c, op in sorted(DECAY_BINARY_OPS.items())]
)


def _token_table() -> dict[str, tuple[str, ...]]:
    """Every literal piece of the notation, by first character (to locate unknown text)."""
    pieces = {*_OPERAND_INDEX, *_BASE_INDEX, "[", "]"}
    for table in (_UPDATE_FORMATS, _DECAY_FORMATS):
        for fmt in table[""] + tuple(f for fs in table.values() for f in fs):
            pieces.update(p for p in (fmt.lead, fmt.middle, fmt.tail) if p)
    by_first: dict[str, tuple[str, ...]] = {}
    for piece in sorted(pieces, key=len, reverse=True):
        by_first[piece[0]] = (*by_first.get(piece[0], ()), piece)
    return by_first


_TOKENS = _token_table()


# -- parse results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _NodeParse:
    """A node expression spanning ``text[start:end]`` of the body."""

    start: int
    end: int
    fmt: _Format
    args: tuple[_Arg, ...]
    #: Both arguments print the same node text: the second reads a twin copy of the node.
    twin: bool = False


@dataclass(frozen=True)
class _Arg:
    """One input edge: its decay (or None) and an operand index or a node expression."""

    decay: Decay | None
    target: int | _NodeParse


@dataclass(frozen=True)
class _DecayInput:
    """An input of a decay root: base schedule ``index``, or the hidden decay node."""

    index: int
    hidden: DecayNode | None = None


_FAIL = object()
_T = TypeVar("_T")


class _TooComplex(Exception):
    pass


class _Parser:
    """Backtracking parser over one equation body ``text`` (columns are offset by ``base``)."""

    def __init__(self, text: str, base: int, what: str = "equation") -> None:
        self.text = text
        self.base = base
        self.what = what
        self.work = 0
        self.reached = 0
        #: (start, end, message) of the first structural problem met, for error messages.
        self.problem: tuple[int, int, str] | None = None
        self._node_memo: dict[tuple[int, int], tuple[int, object]] = {}
        self._decay_memo: dict[tuple[int, int], object] = {}
        self._paren, self._bracket, self._pipe = _balances(text)

    # -- helpers -----------------------------------------------------------------------------

    def _tick(self) -> None:
        self.work += 1
        if self.work > _WORK_LIMIT:
            raise _TooComplex

    def _note(self, start: int, end: int, message: str) -> None:
        if self.problem is None:
            self.problem = (start, end, message)

    def _balanced(self, start: int, end: int) -> bool:
        """Necessary for any argument text: balanced (sigmoid-adjusted) parens, brackets, bars."""
        return (
            self._paren[end] == self._paren[start]
            and self._bracket[end] == self._bracket[start]
            and not (self._pipe[end] - self._pipe[start]) & 1
        )

    def _match(
        self,
        start: int,
        end: int,
        formats: tuple[_Format, ...],
        arg: Callable[[int, int, int], _T | None],
        depth: int,
    ) -> tuple[_Format, tuple[_T, ...]] | None:
        """First format (with parsed arguments) whose literal pieces fit ``text[start:end]``."""
        text = self.text
        for fmt in formats:
            self._tick()
            lo = start + len(fmt.lead)
            hi = end - len(fmt.tail)
            if (
                hi <= lo
                or not text.startswith(fmt.lead, start)
                or not text.endswith(fmt.tail, lo, end)
            ):
                continue
            self.reached = max(self.reached, lo)
            middle = fmt.middle
            if not middle:
                x = arg(lo, hi, depth)
                if x is not None:
                    return fmt, (x,)
            elif fmt.repeated:
                twice = hi - lo - len(middle)
                if twice <= 0 or twice & 1:
                    continue
                mid = lo + twice // 2
                if text.startswith(middle, mid) and text[lo:mid] == text[mid + len(middle) : hi]:
                    x = arg(lo, mid, depth)
                    if x is not None:
                        return fmt, (x,)
            else:
                split = text.find(middle, lo + 1, hi - 1)
                while split != -1:
                    self._tick()
                    if self._balanced(lo, split):
                        x = arg(lo, split, depth)
                        if x is not None:
                            y = arg(split + len(middle), hi, depth)
                            if y is not None:
                                return fmt, (x, y)
                    split = text.find(middle, split + 1, hi - 1)
        return None

    # -- update graph ------------------------------------------------------------------------

    def node(self, start: int, end: int, depth: int) -> _NodeParse | None:
        """A node expression (an op applied to its arguments) exactly covering the span."""
        if end <= start:
            return None
        if depth > _MAX_NODE_DEPTH:
            self._note(
                start,
                end,
                f"sub-expressions nest deeper than the root and {N_HIDDEN} hidden nodes allow",
            )
            return None
        key = (start, end)
        memo = self._node_memo.get(key)
        if memo is not None and (memo[1] is not _FAIL or memo[0] <= depth):
            return None if memo[1] is _FAIL else memo[1]  # type: ignore[return-value]
        self._tick()
        formats = _UPDATE_FORMATS.get(self.text[start], _UPDATE_FORMATS[""])
        found = self._match(start, end, formats, self.arg, depth + 1)
        result: _NodeParse | None = None
        if found is not None:
            fmt, args = found
            twin = len(args) == 2 and self._same_target(args[0], args[1])
            if twin and isinstance(args[0].target, int):
                self._note(start, end, "a binary node reads the same operand twice")
            else:
                result = _NodeParse(start, end, fmt, args, twin)
        self._node_memo[key] = (depth, _FAIL if result is None else result)
        return result

    def _same_target(self, a: _Arg, b: _Arg) -> bool:
        """True when both arguments read the same operand or print the same node text."""
        if isinstance(a.target, int) or isinstance(b.target, int):
            return a.target == b.target
        return self.text[a.target.start : a.target.end] == self.text[b.target.start : b.target.end]

    def bare(self, start: int, end: int, depth: int) -> int | _NodeParse | None:
        """An operand name or a node expression, without decoration."""
        operand = _OPERAND_INDEX.get(self.text[start:end])
        if operand is not None:
            self.reached = max(self.reached, end)
            return operand
        return self.node(start, end, depth)

    def arg(self, start: int, end: int, depth: int) -> _Arg | None:
        """An op argument: ``[decay][input]`` or a bare input."""
        self._tick()
        text = self.text
        if text.startswith("[", start) and text[end - 1] == "]":
            decorated = self._decorated(start, end, depth)
            if decorated is not None:
                return decorated
        # A bare node may start with "[" too: softsign of a decorated argument.
        target = self.bare(start, end, depth)
        return None if target is None else _Arg(None, target)

    def _decorated(self, start: int, end: int, depth: int) -> _Arg | None:
        """``[decay][input]``; the decay string contains no brackets."""
        close = self.text.find("]", start + 1, end)
        if close == -1 or not self.text.startswith("[", close + 1):
            return None
        decay = self.decay(start + 1, close)
        if decay is None:
            return None
        self.reached = max(self.reached, close + 2)
        target = self.bare(close + 2, end - 1, depth)
        return None if target is None else _Arg(decay, target)

    # -- decays ------------------------------------------------------------------------------

    def decay(self, start: int, end: int) -> Decay | None:
        """A decay string: root R over base schedules a1..a14 or one inlined hidden node D."""
        key = (start, end)
        memo = self._decay_memo.get(key, None)
        if memo is not None:
            return None if memo is _FAIL else memo  # type: ignore[return-value]
        result = self._decay_uncached(start, end)
        self._decay_memo[key] = _FAIL if result is None else result
        return result

    def _decay_uncached(self, start: int, end: int) -> Decay | None:
        if end <= start:
            return None
        if self.text[start:end] in _BASE_INDEX:
            self._note(start, end, "a decay applies an op; it is never a bare base schedule")
            return None
        formats = _DECAY_FORMATS.get(self.text[start], _DECAY_FORMATS[""])
        found = self._match(start, end, formats, self._decay_input, 0)
        if found is None:
            return None
        fmt, args = found
        hidden = [a for a in args if a.hidden is not None]
        if len(hidden) == 2:
            self._note(start, end, "a decay has one hidden node and reads it at most once")
            return None
        if len(args) == 2 and args[0].index == args[1].index:
            self._note(start, end, "a binary decay node reads the same schedule twice")
            return None
        inputs = tuple(a.index for a in args)
        root = (
            DecayNode(inputs, unary_op=fmt.code)
            if not fmt.binary
            else DecayNode(inputs, binary_op=fmt.code)
        )
        if hidden and hidden[0].hidden is not None:
            return Decay(root=root, hidden=hidden[0].hidden, hidden_flag=True)
        return Decay(root=root)

    def _decay_input(self, start: int, end: int, depth: int) -> _DecayInput | None:
        base = _BASE_INDEX.get(self.text[start:end])
        if base is not None:
            self.reached = max(self.reached, end)
            return _DecayInput(base)
        if depth > 0:  # the hidden decay node reads base schedules only
            return None
        formats = _DECAY_FORMATS.get(self.text[start], _DECAY_FORMATS[""])
        found = self._match(start, end, formats, self._decay_input, depth + 1)
        if found is None:
            return None
        fmt, args = found
        if len(args) == 2 and args[0].index == args[1].index:
            self._note(start, end, "a binary decay node reads the same schedule twice")
            return None
        inputs = tuple(a.index for a in args)
        node = (
            DecayNode(inputs, binary_op=fmt.code)
            if fmt.binary
            else DecayNode(inputs, unary_op=fmt.code)
        )
        return _DecayInput(DECAY_HIDDEN, node)


_PAREN_WEIGHT = {"(": 1, ")": -1}
_BRACKET_WEIGHT = {"[": 1, "]": -1}
_PIPE_WEIGHT = {"|": 1}


def _balances(text: str) -> tuple[list[int], list[int], list[int]]:
    """Prefix sums of paren depth (each sigmoid decay counted closed), bracket depth and bars."""
    zeros = repeat(0)
    paren = list(map(_PAREN_WEIGHT.get, text, zeros))
    at = text.find(_SIGMOID_LEAD)
    while at != -1:
        paren[at] -= 1
        at = text.find(_SIGMOID_LEAD, at + 1)
    return (
        list(accumulate(paren, initial=0)),
        list(accumulate(map(_BRACKET_WEIGHT.get, text, zeros), initial=0)),
        list(accumulate(map(_PIPE_WEIGHT.get, text, zeros), initial=0)),
    )


# -- building the genome ---------------------------------------------------------------------


def _build(parser: _Parser, root: _NodeParse, momentum: Momentum) -> Genome:
    """Merge identical sub-expressions into hidden nodes and assemble the genome.

    One node per distinct text, except that a binary node whose two arguments print the same
    node text (two distinct nodes of the printed genome) reads a twin copy as its second input.
    """
    text = parser.text
    columns: dict[tuple[str, bool], int] = {}
    nodes: list[Node] = []

    def column_of(target: int | _NodeParse, twin: bool) -> int:
        if isinstance(target, int):
            return target
        key = (text[target.start : target.end], twin)
        if key not in columns:
            node = to_node(target)
            if len(nodes) == N_HIDDEN:
                raise _error(
                    parser,
                    target.start,
                    f"the equation needs more than {N_HIDDEN} hidden nodes (distinct "
                    "sub-expressions); a genome has 5",
                )
            columns[key] = N_OPERANDS + len(nodes)
            nodes.append(node)
        return columns[key]

    def to_node(expr: _NodeParse) -> Node:
        inputs = tuple(
            column_of(a.target, twin=expr.twin and k == 1) for k, a in enumerate(expr.args)
        )
        decays = {c: a.decay for c, a in zip(inputs, expr.args, strict=True) if a.decay}
        if expr.fmt.binary:
            return Node(inputs=inputs, unary_op=IDENTITY, binary_op=expr.fmt.code, decays=decays)
        return Node(inputs=inputs, unary_op=expr.fmt.code, decays=decays)

    root_node = to_node(root)
    if all(isinstance(a.target, int) for a in root.args):
        raise _error(
            parser,
            root.start,
            "the root reads only operands; it must read at least one hidden node",
        )
    filler = Node(inputs=(0,), unary_op=IDENTITY)
    hidden = tuple(nodes) + (filler,) * (N_HIDDEN - len(nodes))
    return Genome(hidden=hidden, root=root_node, momentum=momentum)


# -- errors ----------------------------------------------------------------------------------


def _snippet(text: str, at: int) -> str:
    piece = text[at : at + _SNIPPET]
    return piece + ("..." if len(text) > at + _SNIPPET else "")


def _error(parser: _Parser, at: int, reason: str) -> NOSError:
    column = parser.base + at + 1
    return NOSError(
        f"cannot parse {parser.what} at column {column}: {reason}; near "
        f"{_snippet(parser.text, at)!r}"
    )


def _first_unknown(text: str) -> int | None:
    """Where the text stops being a sequence of known notation pieces, or None."""
    reachable = bytearray(len(text) + 1)
    reachable[0] = 1
    last = 0
    for at in range(len(text)):
        if not reachable[at]:
            continue
        last = at
        for token in _TOKENS.get(text[at], ()):
            if text.startswith(token, at):
                reachable[at + len(token)] = 1
    return None if reachable[len(text)] else last


def _unbalanced(parser: _Parser) -> tuple[int, str] | None:
    """The first bracket or parenthesis that does not match, with a reason."""
    text = parser.text
    opens: list[int] = []
    for at, char in enumerate(text):
        if char == "[":
            opens.append(at)
        elif char == "]":
            if not opens:
                return at, "']' without a matching '['"
            opens.pop()
    if opens:
        return opens[-1], "'[' is never closed"
    paren = parser._paren
    for at in range(len(text)):
        if paren[at + 1] < 0 and text[at] == ")":
            return at, "')' without a matching '('"
    if paren[-1] > 0:
        depth_at = [k for k in range(len(text)) if text[k] == "(" and paren[k] == paren[-1] - 1]
        return (depth_at[-1] if depth_at else 0), "'(' is never closed"
    return None


def _explain(parser: _Parser) -> NOSError:
    """The most useful error for a body that does not parse."""
    text = parser.text
    unknown = _first_unknown(text)
    if unknown is not None:
        return _error(
            parser,
            unknown,
            "unknown text; expected an operand, a base schedule or a piece of an op format",
        )
    unbalanced = _unbalanced(parser)
    if unbalanced is not None:
        return _error(parser, *unbalanced)
    if parser.problem is not None and parser.problem[1] >= parser.reached:
        return _error(parser, parser.problem[0], parser.problem[2])
    return _error(
        parser,
        min(parser.reached, max(len(text) - 1, 0)),
        "no operand, decorated argument or op format of this space fits here",
    )


# -- public API ------------------------------------------------------------------------------


def _momentum_prefix(text: str) -> tuple[Momentum, int]:
    """The momentum type named by the equation's prefix and where the body starts."""
    for prefix, momentum in _PREFIXES:
        if text.startswith(prefix):
            return momentum, len(prefix)
    raise NOSError(
        "cannot parse equation at column 1: it must start with 'None ~ ', 'Mom ~ ' or "
        f"'Nest ~ '; near {_snippet(text, 0)!r}"
    )


def parse_equation(text: str) -> Genome:
    """Read an equation in the paper notation, e.g. ``Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))``.

    Raises :class:`NOSError` naming the column of the problem for anything that is not an
    equation of this space. Decay ranges are not checked (see :meth:`Genome.validate`).
    """
    if not isinstance(text, str):
        raise NOSError(f"an equation must be a str, got {type(text).__name__}")
    if len(text) > MAX_EQUATION_LENGTH:
        raise NOSError(
            f"equation is {len(text)} characters long; the limit is {MAX_EQUATION_LENGTH}"
        )
    momentum, body_start = _momentum_prefix(text)
    parser = _Parser(text[body_start:], body_start)
    try:
        root = parser.node(0, len(parser.text), 1)
    except _TooComplex:
        raise NOSError(
            f"equation is too complex to parse within {_WORK_LIMIT} steps; it is not an "
            "equation of this space"
        ) from None
    if root is None:
        if parser.text in _OPERAND_INDEX:
            raise _error(parser, 0, "the root is an op; a bare operand is not an equation")
        raise _explain(parser)
    genome = _build(parser, root, momentum)
    from optuna_nos.space.notation import format_equation

    if format_equation(genome) != text:
        raise _error(parser, 0, "the parsed genome does not re-print as the input")
    return genome


def parse_decay(text: str) -> Decay:
    """Read a decay string such as ``(a13)*(a2)`` or ``1/(1+exp(-a11)`` (sic)."""
    if not isinstance(text, str):
        raise NOSError(f"a decay must be a str, got {type(text).__name__}")
    if len(text) > MAX_EQUATION_LENGTH:
        raise NOSError(f"decay is {len(text)} characters long; the limit is {MAX_EQUATION_LENGTH}")
    parser = _Parser(text, 0, what="decay")
    try:
        decay = parser.decay(0, len(text))
    except _TooComplex:
        raise NOSError(f"decay {_snippet(text, 0)!r} is too complex to parse") from None
    if decay is None:
        raise _explain(parser)
    from optuna_nos.space.notation import format_decay

    if format_decay(decay) != text:
        raise NOSError(f"decay {text!r} does not re-print as the input")
    return decay
