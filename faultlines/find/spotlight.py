"""Spotlight (d'Eon, d'Eon, Wright, Leyton-Brown 2022, arXiv 2107.00758).

A spotlight is a kernel over representation space: with centre mu and precision tau,

    linear:   k_i = max(1 - tau * ||x_i - mu||^2, 0)
    gaussian: k_i = exp(-tau * ||x_i - mu||^2 / 2)

It maximises the kernel-weighted mean loss  sum(k_i l_i) / sum(k_i)  subject to covering at
least S points, sum(k_i) >= S. The constraint enters as the paper's annealed quadratic
barrier, penalty = c * max(S + b - sum(k), 0)^2 / b^2, whose margin b shrinks over the run
from S/2 to S/100, so the spotlight first settles on a region and is then held to its size.
Adam optimises (mu, log tau), and each search keeps its best iterate that meets the size.

Where the reference code starts every search at mu = 0 with a tiny precision (one huge
spotlight drifting towards the losses), this implementation starts several searches at once,
as one batched tensor program, from the neighbourhoods with the highest mean loss, and keeps
the best that meets the size constraint. Spotlights are found one after another; each one
down-weights the losses it covered, l_i <- l_i (1 - k_i / max k), so the next looks elsewhere.

Embeddings are standardised first (each feature to zero mean, unit variance): the kernel is
spherical, and without scaling a few high-variance units would decide every distance. PCA
after standardising is optional (`pca=`): it speeds up very wide embeddings and drops noise
directions, at the price of distances the model itself does not use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from faultlines.errors import DataError
from faultlines.find.base import Finder, Interval, OneOf
from faultlines.progress import track
from faultlines.types import FailureMode, Outputs


@dataclass(eq=False, repr=False)
class Spotlight(Finder):
    """Find contiguous high-loss regions of representation space.

    Args:
        size: the least a spotlight may cover, S: a fraction of the samples (< 1) or a count (>= 1).
            The default, 5%, leaves a mode found on half of a few hundred rows enough held-out
            rows to be tested (`faultlines.significance`); at 2%, the planted slices of the
            benchmark were confirmed in fewer seeds (BENCHMARKS.md).
        n_spotlights: how many spotlights to find, one after another.
        kernel: "linear" (the paper's default; compact support) or "gaussian".
        pca: reduce standardised embeddings to this many components first; None keeps all.
        n_starts: searches run together per spotlight, from the highest-loss neighbourhoods.
        steps: Adam steps per spotlight.
        lr: Adam learning rate: the step, as a fraction of a spotlight's radius, that a
            centre takes per step.
        barrier_scale: weight of the size penalty, relative to the loss range.
        n_typical: members kept as "most typical" (highest kernel weight) for the report.
        seed: seed for the choice of starts and for PCA.
        quiet: hide the progress bar.

    Attributes (after `find`):
        centers_: (n_spotlights, D) spotlight centres in the standardised (and reduced) space.
        precisions_: (n_spotlights,) kernel precisions tau.
        weights_: (N, n_spotlights) kernel weight of every sample in every spotlight.
        thresholds_: (n_spotlights,) the least kernel weight of a member (`assign` uses it).
        scaler_, pca_: the fitted standardisation and PCA (None without `pca`).
        objectives_: (n_spotlights,) weighted mean loss each spotlight reached on the losses it saw.
    """

    name: ClassVar[str] = "spotlight"
    constraints: ClassVar[dict] = {
        "size": Interval(0, None, open_low=True, hint="a fraction of the samples (< 1) or a count (>= 1)"),
        "n_spotlights": Interval(1, None, integer=True),
        "kernel": OneOf(("linear", "gaussian")),
        "pca": Interval(1, None, integer=True, none=True),
        "n_starts": Interval(1, None, integer=True),
        "steps": Interval(1, None, integer=True),
        "lr": Interval(0, None, open_low=True),
        "barrier_scale": Interval(0, None, open_low=True),
        "n_typical": Interval(0, None, integer=True),
        "seed": Interval(0, None, integer=True),
    }

    size: float = 0.05
    n_spotlights: int = 5
    kernel: str = "linear"
    pca: int | None = None
    n_starts: int = 8
    steps: int = 150
    lr: float = 0.006
    barrier_scale: float = 1.0
    n_typical: int = 16
    seed: int = 0
    quiet: bool = True

    # -- the search -----------------------------------------------------------------

    def _kernel(self, d2: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        scaled = tau.unsqueeze(-1) * d2
        return torch.clamp(1 - scaled, min=0) if self.kernel == "linear" else torch.exp(-scaled / 2)

    @staticmethod
    def _sq_dist(x: torch.Tensor, x_sq: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x_sq - 2 * mu @ x.T + (mu * mu).sum(1, keepdim=True), min=0)

    def _starts(self, x: torch.Tensor, x_sq: torch.Tensor, losses: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Centres and precisions of `n_starts` searches at distinct high-mean-loss neighbourhoods."""
        n = len(x)
        k = max(1, min(n, count))
        n_cand = min(n, max(128, 8 * self.n_starts))
        cand = torch.topk(losses, n_cand).indices
        scores, centers, radii = [], [], []
        for chunk in cand.split(64):
            d2 = self._sq_dist(x, x_sq, x[chunk])
            nd2, nn_idx = torch.topk(d2, k, dim=1, largest=False)
            scores.append(losses[nn_idx].mean(1))
            centers.append(x[nn_idx].mean(1))
            radii.append(nd2[:, -1])
        scores, centers, radii = torch.cat(scores), torch.cat(centers), torch.cat(radii)
        chosen: list[int] = []
        for i in torch.argsort(scores, descending=True, stable=True).tolist():
            if all(((x[cand[i]] - centers[j]) ** 2).sum() > radii[j] for j in chosen):
                chosen.append(i)
            if len(chosen) == self.n_starts:
                break
        mu = centers[chosen]
        return mu, self._precision_for(self._sq_dist(x, x_sq, mu), 1.5 * count)

    def _precision_for(self, d2: torch.Tensor, target: float) -> torch.Tensor:
        """Per row of d2, the precision whose kernel weights sum to about `target` (bisection on log tau)."""
        lo = torch.full((len(d2),), -30.0)
        hi = torch.full((len(d2),), 30.0)
        for _ in range(60):
            mid = (lo + hi) / 2
            too_wide = self._kernel(d2, mid.exp()).sum(1) > target
            lo, hi = torch.where(too_wide, mid, lo), torch.where(too_wide, hi, mid)
        return ((lo + hi) / 2).exp()

    def _search(self, x: torch.Tensor, x_sq: torch.Tensor, losses: torch.Tensor, count: float) -> tuple[torch.Tensor, torch.Tensor, float]:
        mu0, tau0 = self._starts(x, x_sq, losses, int(math.ceil(count)))
        # Adam moves every coordinate by about lr per step, so a raw centre would take steps of
        # lr * sqrt(D). Optimise an offset in units of each start's radius / sqrt(D) instead:
        # every step then moves a centre by about lr of its own radius, in any dimension.
        unit = (tau0.rsqrt() / math.sqrt(x.shape[1])).unsqueeze(1)
        offset = torch.zeros_like(mu0, requires_grad=True)
        log_tau = tau0.log().clone().requires_grad_(True)
        opt = torch.optim.Adam([offset, log_tau], lr=self.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.steps, eta_min=0.1 * self.lr)
        scale = self.barrier_scale * float(losses.max() - losses.mean()) + 1e-8
        # The loss surface is rough: keep, per start, the best iterate that meets the size.
        best_obj = torch.full((len(mu0),), -math.inf)
        best_mu, best_tau = mu0.clone(), tau0.clone()
        for margin in count * np.geomspace(0.5, 0.01, self.steps):
            mu, tau = mu0 + unit * offset, log_tau.exp()
            _, weight, objective = self._evaluate(x, x_sq, losses, mu, tau)
            with torch.no_grad():
                better = (weight >= count) & (objective > best_obj)
                best_obj = torch.where(better, objective, best_obj)
                best_mu = torch.where(better[:, None], mu, best_mu)
                best_tau = torch.where(better, tau, best_tau)
            penalty = scale * torch.clamp(count + margin - weight, min=0) ** 2 / margin**2
            opt.zero_grad()
            (penalty - objective).sum().backward()
            opt.step()
            sched.step()
        best = int(torch.argmax(best_obj))
        return best_mu[best], best_tau[best], float(best_obj[best])

    def _evaluate(self, x, x_sq, losses, mu, tau) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Kernel weights (B, N), their sums (B,) and the weighted mean losses (B,)."""
        k = self._kernel(self._sq_dist(x, x_sq, mu), tau)
        weight = k.sum(1)
        return k, weight, (k @ losses) / (weight + 1e-12)

    def _find(self, outputs: Outputs, **_) -> list[FailureMode]:
        """Find `n_spotlights` high-loss regions in `outputs.embeddings`.

        Returns:
            One FailureMode per spotlight (id "spotlight-j"), members ordered by kernel
            weight, `weights` their kernel weights.
        """
        n = outputs.n
        count = self.size * n if self.size < 1 else float(self.size)
        if count >= n:
            raise DataError(f"a spotlight of size {count:g} cannot fit in {n} samples; use a smaller size")
        x = self._space(outputs, fit=True)
        x_sq = (x * x).sum(1)
        losses = torch.from_numpy(outputs.losses.astype(np.float32))
        centers, precisions, objectives, weights = [], [], [], []
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            for _ in track(range(self.n_spotlights), "spotlights", self.n_spotlights, self.quiet):
                mu, tau, objective = self._search(x, x_sq, losses, count)
                k = self._kernel(self._sq_dist(x, x_sq, mu[None]), tau)[0]
                losses = losses * (1 - k / k.max().clamp(min=1e-12))
                centers.append(mu.numpy())
                precisions.append(float(tau))
                objectives.append(objective)
                weights.append(k.numpy())
        self.centers_ = np.stack(centers)
        self.precisions_ = np.array(precisions)
        self.objectives_ = np.array(objectives)
        self.weights_ = np.stack(weights, axis=1)
        self.thresholds_ = np.zeros(self.n_spotlights)
        return [self._spotlight_mode(outputs, j) for j in range(self.n_spotlights)]

    def _space(self, outputs: Outputs, fit: bool = False) -> torch.Tensor:
        """Embeddings in the searched space: standardised (and PCA-reduced), by the scaler and
        PCA fitted on `outputs` when `fit`, else by those fitted at `find`."""
        emb = outputs.embeddings.astype(np.float64)
        if fit:
            self.scaler_ = StandardScaler().fit(emb)
        emb = self.scaler_.transform(emb)
        if fit:
            self.pca_ = None if self.pca is None else PCA(n_components=min(self.pca, *emb.shape), random_state=self.seed).fit(emb)
        if self.pca_ is not None:
            emb = self.pca_.transform(emb)
        return torch.from_numpy(emb.astype(np.float32))

    def assign(self, outputs: Outputs) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per spotlight, the rows of `outputs` whose kernel weight reaches that of its lightest
        member at `find` (its members are the heaviest rows), heaviest first, and their weights."""
        x = self._space(outputs)
        d2 = self._sq_dist(x, (x * x).sum(1), torch.from_numpy(self.centers_))
        k = self._kernel(d2, torch.from_numpy(self.precisions_).float()).numpy()
        assigned = []
        for j in range(self.n_spotlights):
            rows = np.flatnonzero((k[j] >= self.thresholds_[j]) & (k[j] > 0))
            rows = rows[np.argsort(-k[j, rows], kind="stable")]
            assigned.append((rows, k[j, rows]))
        return assigned

    def _spotlight_mode(self, outputs: Outputs, j: int) -> FailureMode:
        k = self.weights_[:, j]
        # Members: the round(sum k) heaviest samples, the spotlight's effective size. (The
        # kernel's support would also count the thin outer shell, which in many dimensions
        # holds a crowd of barely-weighted points.)
        size = max(1, round(float(k.sum())))
        members = np.argsort(-k, kind="stable")[:size]
        w = k[members]
        self.thresholds_[j] = float(w.min())
        metrics = {
            "weight": float(k.sum()),
            "weighted_loss": float(w @ outputs.losses[members] / max(w.sum(), 1e-12)),
            "objective": float(self.objectives_[j]),
        }
        evidence = {"precision": float(self.precisions_[j]), "kernel": self.kernel}
        return self._mode(j, members, outputs, weights=w, metrics=metrics, evidence=evidence)
