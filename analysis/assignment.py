"""Batched exact linear assignment in pure torch: Bertsekas' auction with epsilon-scaling.

For two samples of equal size n with uniform weights, exact optimal transport is a linear
assignment problem (the optimal plans include a permutation, Birkhoff-von Neumann):
    OT(x, y) = (1/n) min_sigma sum_i C[i, sigma(i)].
`auction` solves N such problems [N, n, n] in one call on any torch device (CPU or CUDA), and
proves each answer with a dual certificate: a permutation's cost (primal) and a lower bound on
every permutation's cost (dual), whose difference `gap` bounds the error.

References:
    D. P. Bertsekas, "The auction algorithm: a distributed relaxation method for the assignment
    problem", Annals of Operations Research 14 (1988) 105-123 (Jacobi bidding, epsilon-scaling,
    the bound n * eps). D. P. Bertsekas, D. A. Castanon, "Parallel synchronous and asynchronous
    implementations of the auction algorithm", Parallel Computing 17 (1991) 707-732.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

RTOL = 1e-9            # default certified relative gap: cost <= optimum * (1 + RTOL)
THETA = 8.0            # epsilon shrinks by this factor per phase (benchmarks/ot_solvers.py)
FLOOR = 1e-12          # smallest epsilon, relative to max |C|: float64 prices resolve ~1e-16
MAX_ROUNDS = 2_000_000  # a guard against a stalled auction (never reached in the tests)


class Assignment(NamedTuple):
    cost: torch.Tensor  # [N] sum_i C[i, col[i]] of the returned permutation (float64)
    gap: torch.Tensor   # [N] cost - dual bound >= cost - optimum >= 0 (float64)
    col: torch.Tensor   # [N, n] the permutation: row i -> column col[i]


def sq_euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """C[k, i, j] = |x[k, i] - y[k, j]|^2 in float64 for x [N, n, d], y [N, m, d].

    Low dimensions sum coordinate differences (no cancellation, exact for far outliers);
    high dimensions (pixels, features) use |x|^2 + |y|^2 - 2 x.y, as POT's `ot.dist` does."""
    x, y = x.to(torch.float64), y.to(torch.float64)
    d = x.shape[-1]
    if d <= 8:
        C = torch.zeros(x.shape[0], x.shape[1], y.shape[1], dtype=torch.float64, device=x.device)
        for k in range(d):
            C.add_((x[:, :, None, k] - y[:, None, :, k]).square_())
        return C
    C = torch.baddbmm((y * y).sum(-1)[:, None, :], x, y.transpose(1, 2), alpha=-2)
    return C.add_((x * x).sum(-1)[:, :, None]).clamp_(min=0)


class _Auction:
    """State of N forward auctions (min-cost form): prices p [N, n] (column duals -p), owner of
    each column, column of each row, each seed's epsilon and whether its certificate is met.
    Flat arrays carry one extra dummy slot at index N*n that losing bids write to, so that a
    round's updates need no boolean-mask indexing (each would synchronize with the host)."""

    def __init__(self, C: torch.Tensor, rtol: float, theta: float):
        N, n, _ = C.shape
        self.C, self.n, self.F, self.rtol, self.theta = C, n, N * n, rtol, theta
        dev = C.device
        # column reduction (as Jonker-Volgenant start): p_j = -min_i C_ij makes every column
        # some row's zero-margin choice, so a column far from all rows (an outlier of y) need
        # not wait for prices elsewhere to climb by its cost in steps of eps
        self.price_ = torch.zeros(self.F + 1, dtype=C.dtype, device=dev)
        self.price_[:self.F] = -C.amin(1).flatten()
        self.col_ = torch.full((self.F + 1,), -1, dtype=torch.long, device=dev)
        self.row_ = torch.full((self.F + 1,), -1, dtype=torch.long, device=dev)
        self.price = self.price_[:self.F].view(N, n)
        self.col = self.col_[:self.F].view(N, n)
        self.top = torch.empty(self.F, dtype=C.dtype, device=dev)
        self.win = torch.empty(self.F, dtype=torch.long, device=dev)
        scale = C.abs().flatten(1).amax(1)
        self.floor = (scale * FLOOR).clamp(min=torch.finfo(C.dtype).tiny)
        # start at the typical cost (median of a row subsample) over theta, or higher where a
        # column's two nearest rows differ by more: there prices must climb that far
        rows = C[:, ::max(1, n // 64)].flatten(1)
        two = C.topk(2, dim=1, largest=False).values
        climb = (two[:, 1] - two[:, 0]).amax(1)
        self.eps = torch.maximum(torch.maximum(rows.median(1).values, climb) / theta, self.floor)
        self.done = scale == 0          # all costs 0: any permutation is optimal
        self.col[self.done] = torch.arange(n, device=dev)
        self.cost = torch.zeros(N, dtype=C.dtype, device=dev)
        self.gap = torch.zeros(N, dtype=C.dtype, device=dev)

    def bid(self, free: torch.Tensor) -> None:
        """One Jacobi round: every free row i of seed s bids for its best column j1 (least
        C[i, j] + p[j]) the price p[j1] + (second least - least) + eps; each column goes to its
        highest bidder (ties: the largest row id) and frees its previous owner."""
        n, F = self.n, self.F
        s = torch.div(free, n, rounding_mode="floor")
        w = self.C.view(F, n).index_select(0, free).add_(self.price.index_select(0, s))
        v, j = w.topk(2, dim=1, largest=False)
        key = s * n + j[:, 0]
        bid = self.price_[key] + (v[:, 1] - v[:, 0]) + self.eps[s]
        top = self.top.fill_(-math.inf).scatter_reduce_(0, key, bid, "amax")
        cand = torch.where(bid == top[key], free, -1)
        win = self.win.fill_(-1).scatter_reduce_(0, key, cand, "amax")
        won = win[key] == free
        key, free = torch.where(won, key, F), torch.where(won, free, F)
        old = self.row_[key]
        self.col_[torch.where(old >= 0, old, F)] = -1
        self.row_[key] = free
        self.col_[free] = j[:, 0]
        self.price_[key] = bid

    def end_phase(self, seeds: torch.Tensor) -> None:
        """Seeds whose rows are all assigned: certify, then stop or shrink eps and free the rows
        that violate eps-complementary slackness for the new eps."""
        C, p, col = self.C[seeds], self.price[seeds], self.col[seeds]
        u = (C + p[:, None, :]).amin(2)                 # row duals: u_i - p_j <= C_ij
        primal = C.gather(2, col[..., None]).squeeze(2)
        slack = primal + p.gather(1, col) - u           # >= 0, and <= eps for every row
        cost, gap = primal.sum(1), slack.sum(1)          # gap = primal - (sum u - sum p)
        self.cost[seeds], self.gap[seeds] = cost, gap
        eps = self.eps[seeds]
        fin = (gap <= self.rtol * cost) | (eps <= self.floor[seeds])
        self.done[seeds] = fin
        eps = torch.where(fin, eps, torch.maximum(eps / self.theta, self.floor[seeds]))
        self.eps[seeds] = eps
        drop = (slack > eps[:, None]) & ~fin[:, None]
        rows = (seeds[:, None] * self.n + torch.arange(self.n, device=C.device))[drop]
        self.row_[(rows - rows % self.n) + self.col_[rows]] = -1
        self.col_[rows] = -1


def auction(C: torch.Tensor, rtol: float = RTOL, theta: float = THETA,
            max_rounds: int = MAX_ROUNDS) -> Assignment:
    r"""Solve N linear assignment problems min_sigma sum_i C[k, i, sigma(i)] at once.

    Forward auction (Bertsekas 1988) in Jacobi form, over all seeds together: every unassigned
    row bids for its best column, raising that column's price p_j by the bidder's margin plus
    eps. A phase ends, per seed, when every row holds a column; the rows then satisfy
    eps-complementary slackness, C[i, sigma(i)] + p[sigma(i)] <= min_j (C[i, j] + p[j]) + eps.
    The certificate: with u_i = min_j (C[i, j] + p[j]), (u, -p) is dual feasible, so
    sum_i u_i - sum_j p_j <= optimum <= cost, and

        gap = cost - (sum_i u_i - sum_j p_j) = sum_i slack_i <= n * eps.

    A seed stops when gap <= rtol * cost (or eps reaches 1e-12 max|C|, float64's resolution of
    the prices); otherwise eps /= theta, rows with slack > eps are freed and bidding resumes.
    Each seed runs its own phases, so a seed's result does not depend on its batch. Prices
    start at the column reduction p_j = -min_i C[i, j]; a seed whose columns lie farther out
    than its rows (sum of column minima > sum of row minima) is solved transposed.

    Parameters
    ----------
    C : [N, n, n] costs (any real values; use float64 for 1e-9 certificates)
    rtol : target certified relative gap
    theta : epsilon-scaling factor between phases
    max_rounds : raise RuntimeError after this many bidding rounds

    Returns
    -------
    Assignment(cost [N], gap [N], col [N, n]); the optimum lies in [cost - gap, cost]:
    cost <= optimum * (1 + rtol) whenever gap <= rtol * cost.

    Examples
    --------
    >>> C = torch.tensor([[[4., 1., 3.], [2., 0., 5.], [3., 2., 2.]]], dtype=torch.float64)
    >>> a = auction(C)
    >>> a.cost.item(), a.col.tolist(), a.gap.item() <= 1e-9 * a.cost.item()
    (5.0, [[1, 0, 2]], True)
    """
    if C.ndim != 3 or C.shape[1] != C.shape[2]:
        raise ValueError(f"auction needs square costs [N, n, n], got {tuple(C.shape)}")
    N, n, _ = C.shape
    if n == 1 or N == 0:
        col = torch.zeros(N, n, dtype=torch.long, device=C.device)
        return Assignment(C[:, 0, 0].clone() if n else C.new_zeros(N), C.new_zeros(N), col)
    # rows bid: a far point among the rows bids at once with a large margin, while a far
    # column waits for prices to climb towards its cost. Put the side farther out in rows.
    flip = C.amin(1).sum(1) > C.amin(2).sum(1)
    if bool(flip.any()):
        C = torch.where(flip[:, None, None], C.transpose(1, 2), C).contiguous()
    a = _solve(_Auction(C, rtol, theta), max_rounds)
    if bool(flip.any()):   # row i of the transposed problem is column i: invert the permutation
        inv = torch.empty_like(a.col).scatter_(1, a.col, torch.arange(n, device=C.device).expand_as(a.col))
        a = a._replace(col=torch.where(flip[:, None], inv, a.col))
    return a


def _solve(state: _Auction, max_rounds: int) -> Assignment:
    """Bid until every seed's certificate holds; a seed whose rows are all assigned ends its
    phase at once, whatever the other seeds are doing."""
    N, n = state.col.shape
    for _ in range(max_rounds):
        free = (state.col.view(-1) < 0).nonzero().squeeze(1)
        busy = torch.zeros(N, dtype=torch.bool, device=free.device)
        busy[torch.div(free, n, rounding_mode="floor")] = True
        ready = (~busy & ~state.done).nonzero().squeeze(1)
        if ready.numel():
            state.end_phase(ready)
            continue   # the freed rows bid in the next round
        if free.numel() == 0:
            return Assignment(state.cost, state.gap, state.col)
        state.bid(free)
    raise RuntimeError(f"auction did not finish in {max_rounds} rounds")
