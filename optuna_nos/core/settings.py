"""One switch for every place where the released code and the project differ.

docs/paper-mode.md tabulates each switch: what paper mode does, what the default does, and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from optuna_nos.core.errors import NOSError

__all__ = ["Settings", "DEFAULT_SETTINGS", "PAPER_SETTINGS"]


@dataclass(frozen=True)
class Settings:
    """Behaviour switches shared by random init, mutation, the integrity check and the optimizer.

    ``paper_mode=True`` selects the released code's behaviour everywhere, which is what
    reproducing the released search log needs. The two tunable differences stay
    separate fields because their defaults are the same in both modes:

    * ``unary_root_decay_prob`` - probability that a random unary root gets a decay on its
      edge (0.85 in the released code, probably a slip for 0.15).
    * ``change_op_max_unary`` - the change-op mutation draws unary ops from ``0..max``
      (23 in the released code, so ``MaxValue`` = 24 only enters through latent ops).
    """

    paper_mode: bool = False
    unary_root_decay_prob: float = 0.85
    change_op_max_unary: int = 23

    def __post_init__(self) -> None:
        if not 0.0 <= self.unary_root_decay_prob <= 1.0:
            raise NOSError(
                f"unary_root_decay_prob must lie in [0, 1], got {self.unary_root_decay_prob!r}"
            )
        if not 0 <= self.change_op_max_unary <= 24:
            raise NOSError(
                f"change_op_max_unary must lie in 0..24, got {self.change_op_max_unary!r}"
            )

    # -- the differences, named by what they change ---------------------------------------------

    @property
    def expmovavg_zero_bias_step(self) -> bool:
        """``expMovAvg`` divides by 1 - 0.95^0 (= 0) instead of 1 - 0.95^(t+1)."""
        return self.paper_mode

    @property
    def inherit_flip(self) -> bool:
        """A mutant keeps its parent's flip even when it passes unflipped."""
        return self.paper_mode

    @property
    def ignore_decay_mutation_checks(self) -> bool:
        """A mutated decay is kept even if out of range or unchanged."""
        return self.paper_mode

    @property
    def sticky_decay_hidden_flag(self) -> bool:
        """A decay's hidden node stays 'active' once it has been used."""
        return self.paper_mode

    @property
    def nan_decays_valid(self) -> bool:
        """A decay whose values contain NaN passes the [0, 1] validity check."""
        return self.paper_mode

    @property
    def hidden_init_allows_self_loop(self) -> bool:
        """A random hidden node's 2nd input may be the node itself."""
        return self.paper_mode

    @property
    def root_rewire_skips_lowest(self) -> bool:
        """Re-wiring the root's hidden input excludes the lowest unused hidden node."""
        return self.paper_mode

    @property
    def hold_at_zero(self) -> bool:
        """The search optimizer's hold phase uses a learning rate of 0, not eta."""
        return self.paper_mode

    @property
    def numpy_nan_semantics(self) -> bool:
        """The LR screen's argmax and thresholds follow numpy's NaN rules."""
        return self.paper_mode

    @property
    def float32_ema_constants(self) -> bool:
        """The EMAs' beta, 1 - beta and bias corrections 1 - beta^(t+1) are float32 values
        (1 - 0.999 = 0.00099998713), not float64 ones."""
        return self.paper_mode

    @property
    def sign_keeps_nan(self) -> bool:
        """The operands sign(g) and sign(v hat) give NaN for NaN, not torch's 0."""
        return self.paper_mode

    @property
    def records_broken_epoch(self) -> bool:
        """A run whose loss turns non-finite keeps its unfinished epoch in its curves, as Keras'
        TerminateOnNaN leaves it in the history: the training accuracy over the batches up to
        and including the bad one."""
        return self.paper_mode

    @property
    def shuffle(self) -> bool:
        """Training data is reshuffled each pass (project) or read in fixed order."""
        return not self.paper_mode


DEFAULT_SETTINGS = Settings()
PAPER_SETTINGS = Settings(paper_mode=True)
