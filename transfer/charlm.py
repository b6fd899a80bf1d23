"""A character-level language model on Python's own standard-library source text.

Corpus: the top-level public modules of ``sysconfig.get_paths()["stdlib"]`` (``*.py`` not
starting with ``_``), in sorted file-name order, joined with newlines until ``max_chars``
characters. The first ``1 - eval_fraction`` of the text trains, the rest (later modules)
evaluates. Characters are ASCII codes 0..127; any other character becomes 0 (NUL, which
source files do not otherwise contain).

Models, predicting character i+1 from characters 0..i (``arch``):

* ``"transformer"`` (default): Embedding(128, d) + learned positions -> one pre-norm causal
  Transformer block (``heads`` heads, MLP width 4d, GELU, no dropout) -> LayerNorm ->
  Linear(d -> 128);
* ``"gru"``: Embedding(128, d) -> 1-layer GRU(d -> 2d) -> Linear(2d -> 128).

Metrics: next-character accuracy, cross-entropy in nats and bits
per character (cross-entropy / ln 2) on non-overlapping evaluation windows.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from optuna_nos.core.errors import NOSError
from transfer.tasks import Task

__all__ = [
    "VOCAB_SIZE",
    "CharGRU",
    "CharTransformer",
    "charlm_task",
    "encode",
    "stdlib_corpus",
    "stdlib_files",
]

VOCAB_SIZE = 128


def stdlib_files(stdlib: str | Path | None = None) -> list[Path]:
    """The corpus files in corpus order: public top-level ``*.py`` of the stdlib, sorted."""
    base = Path(stdlib if stdlib is not None else sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in base.glob("*.py") if not p.name.startswith("_") and p.is_file())
    if not files:
        raise NOSError(f"no standard-library source files found in {base}")
    return files


def stdlib_corpus(max_chars: int, stdlib: str | Path | None = None) -> str:
    """The first ``max_chars`` characters of the corpus files joined with newlines."""
    if max_chars < 2:
        raise NOSError(f"max_chars must be >= 2, got {max_chars}")
    parts: list[str] = []
    total = 0
    for path in stdlib_files(stdlib):
        text = path.read_text(encoding="utf-8", errors="replace") + "\n"
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return "".join(parts)[:max_chars]


def encode(text: str) -> Tensor:
    """ASCII code of each character (others -> 0) as an int64 tensor."""
    codes = torch.frombuffer(
        bytearray(text.encode("ascii", errors="replace")), dtype=torch.uint8
    ).to(torch.int64)
    replaced = torch.tensor([ord(c) >= VOCAB_SIZE for c in text], dtype=torch.bool)
    return codes.masked_fill(replaced, 0)


class CharGRU(nn.Module):
    """Embedding -> GRU -> Linear next-character model (logits over 128 codes per position)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, width)
        self.rnn = nn.GRU(width, 2 * width, batch_first=True)
        self.head = nn.Linear(2 * width, VOCAB_SIZE)

    def forward(self, codes: Tensor) -> Tensor:
        states, _ = self.rnn(self.embed(codes))
        return self.head(states)


class CharTransformer(nn.Module):
    """One causal pre-norm Transformer block over character embeddings plus positions."""

    causal_mask: Tensor

    def __init__(self, width: int = 64, heads: int = 4, max_len: int = 64) -> None:
        super().__init__()
        if width % heads:
            raise NOSError(f"width {width} is not divisible by heads {heads}")
        self.embed = nn.Embedding(VOCAB_SIZE, width)
        self.position = nn.Parameter(torch.randn(max_len, width) * 0.02)
        self.block = nn.TransformerEncoderLayer(
            width,
            heads,
            4 * width,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCAB_SIZE)
        self.register_buffer(
            "causal_mask",
            nn.Transformer.generate_square_subsequent_mask(max_len),
            persistent=False,
        )

    def forward(self, codes: Tensor) -> Tensor:
        length = codes.shape[1]
        states = self.embed(codes) + self.position[:length]
        mask = self.causal_mask[:length, :length]
        states = self.block(states, src_mask=mask, is_causal=True)
        return self.head(self.norm(states))


def _windows(
    codes: Tensor, length: int, batch_size: int, seed: int
) -> Iterator[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.arange(length + 1)
    while True:
        starts = torch.randint(0, len(codes) - length, (batch_size, 1), generator=generator)
        chunk = codes[starts + offsets]
        yield chunk[:, :-1], chunk[:, 1:]


def charlm_task(
    *,
    max_chars: int = 300_000,
    eval_fraction: float = 0.1,
    seq_len: int = 64,
    batch_size: int = 32,
    arch: str = "transformer",
    width: int = 64,
    heads: int = 4,
    max_eval_windows: int = 256,
    stdlib: str | Path | None = None,
) -> Task:
    """The stdlib character-LM task (see the module docstring)."""
    builders: dict[str, Callable[[], nn.Module]] = {
        "transformer": lambda: CharTransformer(width, heads, seq_len),
        "gru": lambda: CharGRU(width),
    }
    if arch not in builders:
        raise NOSError(f"unknown charlm arch {arch!r}; expected one of {sorted(builders)}")
    if not 0.0 < eval_fraction < 1.0:
        raise NOSError(f"eval_fraction must lie in (0, 1), got {eval_fraction!r}")
    for name, value in (
        ("seq_len", seq_len),
        ("batch_size", batch_size),
        ("max_eval_windows", max_eval_windows),
    ):
        if value < 1:
            raise NOSError(f"{name} must be >= 1, got {value}")
    codes = encode(stdlib_corpus(max_chars, stdlib))
    split = round(len(codes) * (1.0 - eval_fraction))
    train, held_out = codes[:split], codes[split:]
    if len(train) <= seq_len or len(held_out) <= seq_len:
        raise NOSError(f"corpus of {len(codes)} characters is too short for seq_len {seq_len}")
    windows = min(max_eval_windows, (len(held_out) - 1) // seq_len)
    eval_x = held_out[: windows * seq_len].view(windows, seq_len)
    eval_y = held_out[1 : windows * seq_len + 1].view(windows, seq_len)

    return Task(
        name="charlm",
        build_model=builders[arch],
        train_batches=lambda seed: _windows(train, seq_len, batch_size, seed),
        eval_batches=lambda: [
            (eval_x[i : i + 64], eval_y[i : i + 64]) for i in range(0, windows, 64)
        ],
        steps_per_epoch=len(train) / (batch_size * seq_len),
        sequence=True,
    )
