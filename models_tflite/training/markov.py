"""The baseline the melody LSTM must beat: a variable-order Markov model with back-off.

This is the Continuator's idea (Pachet 2003: variable-order Markov over the player's notes,
longest matching context first) made into a proper probability model so that its test NLL
is comparable: interpolated Witten-Bell smoothing over contexts of 0..``order`` previous
tokens. For a context ``u`` seen ``c(u)`` times with ``t(u)`` distinct followers,

    P(w | u) = (c(u, w) + t(u) * P(w | u')) / (c(u) + t(u)),    u' = u minus its oldest token

and an unseen context backs off to ``u'`` entirely. Order 0 is the add-one unigram.
Counting is vectorised with numpy (context codes in base VOCAB+1, a start symbol pads the
beginning of each piece), so 2M training steps count in seconds. The order is chosen on the
validation split (:func:`fit_best`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from piano_buddy.encoding import MELODY_VOCAB

START = MELODY_VOCAB          # padding symbol before a piece begins
BASE = MELODY_VOCAB + 1


def _padded(seqs: Sequence[np.ndarray], order: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate sequences with ``order`` start symbols before each; return the stream and
    the positions of real tokens (the ones predicted)."""
    parts, positions, off = [], [], 0
    for s in seqs:
        s = np.asarray(s, np.int64)
        parts += [np.full(order, START, np.int64), s]
        positions.append(np.arange(off + order, off + order + len(s)))
        off += order + len(s)
    return np.concatenate(parts), np.concatenate(positions)


def _context_codes(stream: np.ndarray, pos: np.ndarray, k: int) -> np.ndarray:
    """Integer code of the k tokens before each position (k <= 10: the context and the next
    token together fit int64 in base 40)."""
    code = np.zeros(len(pos), np.int64)
    for j in range(k, 0, -1):
        code = code * BASE + stream[pos - j]
    return code


@dataclass
class MarkovModel:
    order: int
    # per order k >= 1: sorted context codes, their counts and follower types; sorted
    # (context, token) codes and their counts
    ctx_codes: list = field(default_factory=list)
    ctx_counts: list = field(default_factory=list)
    ctx_types: list = field(default_factory=list)
    pair_codes: list = field(default_factory=list)
    pair_counts: list = field(default_factory=list)
    unigram: np.ndarray | None = None

    @classmethod
    def fit(cls, seqs: Sequence[np.ndarray], order: int) -> "MarkovModel":
        if not 0 <= order <= 10:
            raise ValueError(f"order {order} outside 0-10")
        stream, pos = _padded(seqs, order)
        tokens = stream[pos]
        counts = np.bincount(tokens, minlength=MELODY_VOCAB).astype(np.float64)
        model = cls(order, unigram=(counts + 1) / (counts.sum() + MELODY_VOCAB))
        for k in range(1, order + 1):
            ctx = _context_codes(stream, pos, k)
            pair = ctx * BASE + tokens
            pc, pn = np.unique(pair, return_counts=True)
            cc, cn = np.unique(ctx, return_counts=True)
            types = np.bincount(np.searchsorted(cc, pc // BASE), minlength=len(cc))
            model.ctx_codes.append(cc)
            model.ctx_counts.append(cn.astype(np.float64))
            model.ctx_types.append(types.astype(np.float64))
            model.pair_codes.append(pc)
            model.pair_counts.append(pn.astype(np.float64))
        return model

    @staticmethod
    def _lookup(keys: np.ndarray, table: np.ndarray, values: np.ndarray) -> np.ndarray:
        idx = np.minimum(np.searchsorted(table, keys), len(table) - 1)
        return np.where(table[idx] == keys, values[idx], 0.0)

    def token_probs(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        """P(actual next token | history) for every token of every sequence, concatenated."""
        stream, pos = _padded(seqs, self.order)
        tokens = stream[pos]
        p = self.unigram[tokens]
        for k in range(1, self.order + 1):
            ctx = _context_codes(stream, pos, k)
            c = self._lookup(ctx, self.ctx_codes[k - 1], self.ctx_counts[k - 1])
            t = self._lookup(ctx, self.ctx_codes[k - 1], self.ctx_types[k - 1])
            cw = self._lookup(ctx * BASE + tokens, self.pair_codes[k - 1],
                              self.pair_counts[k - 1])
            seen = c > 0
            p = np.where(seen, (cw + t * p) / np.maximum(c + t, 1e-12), p)
        return p

    def nll(self, seqs: Sequence[np.ndarray], skip_first: bool = True) -> float:
        """Mean negative log-likelihood per step (nats).

        ``skip_first`` leaves out each piece's first token, which the LSTM (primed on it, not
        predicting it) is not scored on either: both models are scored on the same steps.
        """
        p = self.token_probs(seqs)
        if skip_first:
            keep = np.ones(len(p), bool)
            keep[np.cumsum([0] + [len(s) for s in seqs[:-1]])] = False
            p = p[keep]
        return float(-np.mean(np.log(p)))


def fit_best(train: Sequence[np.ndarray], valid: Sequence[np.ndarray],
             orders: Sequence[int] = tuple(range(1, 11))) -> tuple[MarkovModel, dict]:
    """Fit each order, keep the one with the lowest validation NLL; also {order: valid NLL}."""
    scores, best = {}, None
    for k in orders:
        m = MarkovModel.fit(train, k)
        scores[k] = m.nll(list(valid))
        if best is None or scores[k] < scores[best.order]:
            best = m
    return best, scores
