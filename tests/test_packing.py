"""Packing helpers without a database: the ``--pack`` value and the packed-objective check."""

from __future__ import annotations

import pytest

from optuna_nos.errors import NOSError
from optuna_nos.packing import pack_size, packed_objective


class _Sized:
    def auto_pack(self) -> int:
        return 5

    def evaluate_pack(self, pack: object) -> None:
        return None


def test_pack_size_reads_an_int_or_auto() -> None:
    assert pack_size("3", _Sized()) == 3
    assert pack_size("auto", _Sized()) == 5


@pytest.mark.parametrize("text", ["0", "-2", "many", "2.5"])
def test_bad_pack_size_names_the_value(text: str) -> None:
    with pytest.raises(NOSError, match=f"got '{text}'"):
        pack_size(text, _Sized())


def test_objectives_without_packing_are_refused() -> None:
    with pytest.raises(NOSError, match="cannot evaluate packs"):
        packed_objective(lambda trial: 0.0)
    with pytest.raises(NOSError, match="cannot size packs"):
        pack_size("auto", object())
    assert packed_objective(_Sized()) is not None
