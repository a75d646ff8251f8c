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

Each spotlight must be a new region whose errors are above the rest's (`max_overlap`,
`alpha`): a search whose best start repeats an earlier spotlight is replaced by its next
start, and a search with none left keeps nothing. Members are the rows nearest the centre, of
the classes that fail there, from the spotlight's size out to where their errors are most
significant (`grow`). A kept region's members are explained: the next search sees their losses
as zero, and a candidate most of whose errors are an earlier region's members is a shell of that
region, not a failure of its own.

At scale the search runs on a random `search_rows` of the rows and each spotlight is then
set on every row, a chunk of rows at a time (`faultlines.arrays`): the 150 Adam steps cost
what they cost on 50,000 rows, and one pass over all rows places each spotlight.

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
from scipy import stats

from faultlines.arrays import fit_space, row_chunks, to_space
from faultlines.errors import DataError
from faultlines.find.base import SEED, Finder, Interval, OneOf
from faultlines.progress import track
from faultlines.significance import enrichment_p
from faultlines.types import FailureMode, Outputs

#: How many of the highest-loss rows are considered as the centres of neighbourhoods a search
#: may start from. Among rows the model gets wrong, losses say little about where a failure
#: region is; the neighbourhood's mean loss does. A thousand leaves several rows of a region of
#: 1% of the wrong rows among them.
CANDIDATES = 1024
#: The default size: this share of the rows, but no more than DEFAULT_MAX_ROWS of them. On a
#: million rows 5% is 50,000, and a spotlight that large holds a failure of a thousand rows
#: diluted fifty times; members still grow past the size where a region is larger (`grow`).
DEFAULT_SHARE = 0.05
DEFAULT_MAX_ROWS = 100
#: How many numbers (rows x width) the search reads at each step, by default (`search_rows`).
SEARCH_NUMBERS = 3_200_000
#: A class is among a region's failing classes when its core rows are wrong more often than
#: its rows are overall at this level (`failing_classes`).
FAILING_ALPHA = 0.05
#: How many of a grown region's errors are tried as the seeds of other parts (`Spotlight._split`).
SPLIT_SEEDS = 8
#: Mean-shift steps that take a seed to the densest place near it, the centre of its part.
SHIFTS = 5
#: How unlikely a valley's few middle rows must be, were the middle as dense as the ends.
VALLEY_ALPHA = 0.001
#: Two high-error cores are two regions when the rows midway between them are fewer than this
#: share of the rows at either core (`valley`): a quarter is a clear dip, where one region that
#: holds both cores is about as dense between them as at them.
VALLEY = 0.25


@dataclass(eq=False, repr=False)
class Spotlight(Finder):
    """Find contiguous high-loss regions of representation space.

    Args:
        size: the least a spotlight may cover, S: a fraction of the samples (< 1) or a count (>= 1).
            Default (None): 5% of the rows, at most 100 rows. 5% leaves a mode found on half of
            a few hundred rows enough held-out rows to be tested (`faultlines.significance`;
            at 2% the benchmark's planted slices were confirmed in fewer seeds, BENCHMARKS.md);
            the cap keeps a spotlight on a large table near the failures it may hold (a
            larger region is still held whole: see `grow`). A size you give is not capped.
        n_spotlights: how many searches for a spotlight to run, one after another (each keeps
            at most one; see `alpha` and `max_overlap`).
        kernel: "linear" (the paper's default; compact support) or "gaussian".
        pca: reduce standardised embeddings to this many components first; None keeps all.
        n_starts: searches run together per spotlight, from the highest-loss neighbourhoods.
        steps: Adam steps per spotlight.
        lr: Adam learning rate: the step, as a fraction of a spotlight's radius, that a
            centre takes per step.
        barrier_scale: weight of the size penalty, relative to the loss range.
        n_typical: members kept as "most typical" (highest kernel weight) for the report.
        seed: seed for the choice of starts, the searched rows and PCA.
        search_rows: with more rows than this, the search runs on this many, drawn at random,
            and each spotlight is then measured on every row: its precision set so that it
            covers `size` of all rows, its members found among all rows. The standardisation
            is fitted on every row; PCA on the searched ones. Default: as many rows as hold
            3.2 million numbers (25,000 rows of 128; 6,250 of 512), at least 10,000: each
            Adam step reads them all, so this sets the search's time.
        grow: members are the rows nearest the centre: the spotlight's size, and with `grow` as
            many more as makes their error rate most significantly above the rows' (a
            binomial z-score; at most a quarter of the rows), so a region larger than `size`
            is held whole rather than cut at `size`.
        max_overlap: a spotlight must be a new region: a search whose best start shares more
            than this share of the smaller member set with a spotlight found before is
            replaced by its next start, and so on.
        alpha: a spotlight's members must have an error rate above the other rows' at this
            level (one-sided Fisher, on the rows searched: a weak filter, since the search
            chose them; `scan` tests the kept ones on held-out rows); None keeps any. When no
            start of a search passes both checks, that search keeps no spotlight (the next
            still looks elsewhere): fewer than `n_spotlights` are returned, and
            `analyses_["spotlight"]` says so.
        quiet: hide the progress bar.

    Attributes (after `find`):
        centers_: (n_spotlights, D) spotlight centres in the standardised (and reduced) space.
        precisions_: (n_spotlights,) kernel precisions tau.
        weights_: (N, n_spotlights) kernel weight of every sample in every spotlight.
        radii_: (n_spotlights,) squared distance of the farthest member (`assign` uses it).
        classes_: per spotlight, the classes its members are drawn from (`failing_classes`;
            None: every class); `assign` draws from them too.
        parts_: per spotlight, None, or where its growth was split (`_split`): its core's mean
            and the centres of the other parts, (1 + parts, D); `assign` keeps rows nearer the
            first than every other.
        scaler_, pca_: the fitted standardisation and PCA (None without `pca`).
        objectives_: (n_spotlights,) weighted mean loss each spotlight reached on the losses it saw.
        (n_spotlights here is the number kept.)
    """

    name: ClassVar[str] = "spotlight"
    constraints: ClassVar[dict] = {
        "size": Interval(0, None, open_low=True, none=True, hint="a fraction of the samples (< 1) or a count (>= 1)"),
        "n_spotlights": Interval(1, None, integer=True),
        "kernel": OneOf(("linear", "gaussian")),
        "pca": Interval(1, None, integer=True, none=True),
        "n_starts": Interval(1, None, integer=True),
        "steps": Interval(1, None, integer=True),
        "lr": Interval(0, None, open_low=True),
        "barrier_scale": Interval(0, None, open_low=True),
        "n_typical": Interval(0, None, integer=True),
        "seed": SEED,
        "search_rows": Interval(1, None, integer=True, none=True),
        "grow": OneOf((True, False)),
        "max_overlap": Interval(0, 1),
        "alpha": Interval(0, 1, open_low=True, none=True),
    }

    size: float | None = None
    n_spotlights: int = 5
    kernel: str = "linear"
    pca: int | None = None
    n_starts: int = 8
    steps: int = 150
    lr: float = 0.006
    barrier_scale: float = 1.0
    n_typical: int = 16
    seed: int = 0
    search_rows: int | None = None
    grow: bool = True
    max_overlap: float = 0.5
    alpha: float | None = 0.05
    quiet: bool = True

    # -- the search -----------------------------------------------------------------

    def _kernel(self, d2: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        scaled = tau.unsqueeze(-1) * d2
        return torch.clamp(1 - scaled, min=0) if self.kernel == "linear" else torch.exp(-scaled / 2)

    @staticmethod
    def _sq_dist(x: torch.Tensor, x_sq: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x_sq - 2 * mu @ x.T + (mu * mu).sum(1, keepdim=True), min=0)

    def _neighbourhoods(self, x: torch.Tensor, x_sq: torch.Tensor, losses: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The `count` nearest rows (and the squared distance to the farthest of them) of up to
        CANDIDATES of the highest-loss rows: where searches may start. Found once per `find`:
        each search scores them by the losses as they are then."""
        k = max(1, min(len(x), count))
        cand = torch.topk(losses, min(len(x), CANDIDATES)).indices
        hoods, radii = [], []
        for chunk in cand.split(64):
            nd2, nn_idx = torch.topk(self._sq_dist(x, x_sq, x[chunk]), k, dim=1, largest=False)
            hoods.append(nn_idx)
            radii.append(nd2[:, -1])
        return torch.cat(hoods), torch.cat(radii)

    def _starts(self, x: torch.Tensor, x_sq: torch.Tensor, losses: torch.Tensor, hoods: tuple[torch.Tensor, torch.Tensor],
                count: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Centres and precisions of `n_starts` searches at distinct neighbourhoods of the highest mean loss."""
        nn_idx, radii = hoods
        scores = losses[nn_idx].mean(1)
        chosen: list[int] = []
        centers: dict[int, torch.Tensor] = {}
        for i in torch.argsort(scores, descending=True, stable=True).tolist():
            centre = x[nn_idx[i]].mean(0)
            if all(((centre - centers[j]) ** 2).sum() > radii[j] for j in chosen):
                chosen.append(i)
                centers[i] = centre
            if len(chosen) == self.n_starts:
                break
        mu = torch.stack([centers[i] for i in chosen])
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

    def _search(self, x: torch.Tensor, x_sq: torch.Tensor, losses: torch.Tensor, hoods: tuple[torch.Tensor, torch.Tensor],
                count: float) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        """Every start's best (centre, precision, objective) that met the size, best first."""
        mu0, tau0 = self._starts(x, x_sq, losses, hoods, count)
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
        order = torch.argsort(best_obj, descending=True, stable=True).tolist()
        # a start that never met the size is still a candidate when none did (its best is its start)
        found = [i for i in order if best_obj[i] > -math.inf] or order[:1]
        return [(best_mu[i].detach(), best_tau[i].detach(), float(best_obj[i])) for i in found]

    def _evaluate(self, x, x_sq, losses, mu, tau) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Kernel weights (B, N), their sums (B,) and the weighted mean losses (B,)."""
        k = self._kernel(self._sq_dist(x, x_sq, mu), tau)
        weight = k.sum(1)
        return k, weight, (k @ losses) / (weight + 1e-12)

    def _find(self, outputs: Outputs, **_) -> list[FailureMode]:
        """Find up to `n_spotlights` distinct high-loss regions in `outputs.embeddings`.

        Returns:
            One FailureMode per spotlight kept (ids "spotlight-0", ...), members nearest the
            centre first, `weights` their kernel weights. Each of the `n_spotlights` searches
            keeps its best start that is a new region (`max_overlap`) whose errors are above
            the rest's (`alpha`), or nothing when no start is; `analyses_["spotlight"]` says how
            many searches ran, how many spotlights were kept and how many starts were rejected.
        """
        n = outputs.n
        if self.size is None:
            count = min(DEFAULT_SHARE * n, float(DEFAULT_MAX_ROWS))
        else:
            count = self.size * n if self.size < 1 else float(self.size)
        if count >= n:
            raise DataError(f"a spotlight of size {count:g} cannot fit in {n} samples; use a smaller size")
        rng = np.random.default_rng(self.seed)
        width = outputs.embeddings.shape[1] if self.pca is None else min(self.pca, outputs.embeddings.shape[1])
        search_rows = self.search_rows or max(10_000, SEARCH_NUMBERS // width)
        searched = np.sort(rng.choice(n, search_rows, replace=False)) if n > search_rows else None
        self.scaler_, self.pca_ = fit_space(outputs.embeddings, searched, self.pca, self.seed)
        x = self._space(outputs.embeddings if searched is None else outputs.embeddings[searched])
        x_sq = (x * x).sum(1)
        losses = torch.from_numpy(np.ascontiguousarray(outputs.losses if searched is None else outputs.losses[searched], np.float32))
        sub_count = count if searched is None else count * len(searched) / n
        wrong = outputs.failures
        hoods = self._neighbourhoods(x, x_sq, losses, int(math.ceil(sub_count)))

        def embed(rows: np.ndarray) -> torch.Tensor:  # rows of all the outputs, in the searched space
            if searched is None:
                return x[torch.from_numpy(rows)]
            ascending = np.argsort(rows)
            z = torch.empty((len(rows), x.shape[1]))
            z[torch.from_numpy(ascending)] = self._space(outputs.embeddings[rows[ascending]])
            return z
        kept: list[dict] = []
        rejected = 0
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            # each search places its spotlight on every row: the bar counts rows placed
            for _ in track(range(self.n_spotlights), "spotlights", self.n_spotlights * n, self.quiet, unit="rows", step=lambda _: n):
                candidates = self._search(x, x_sq, losses, hoods, sub_count)
                mus = torch.stack([mu for mu, _, _ in candidates])
                d2 = self._sq_dist(x, x_sq, mus) if searched is None else self._distances(outputs.embeddings, mus)
                taus = torch.stack([tau for _, tau, _ in candidates])
                if searched is not None:  # the search saw a sample: set each size on every row
                    taus = self._precision_for(d2, count)
                kernels = self._kernel(d2, taus)
                covered, explained = kernels[0], None  # what the next search steers away from, kept or not
                for c, (mu, _, objective) in enumerate(candidates):
                    order, size, classes, parts = self._members(d2[c].numpy(), float(kernels[c].sum()), wrong, outputs.labels, embed)
                    if self._acceptable(order[:size], wrong, kept):
                        kept.append({"mu": mu, "tau": float(taus[c]), "objective": objective, "k": kernels[c],
                                     "members": order[:size], "radius": float(d2[c, order[size - 1]]), "classes": classes,
                                     "parts": parts})
                        covered, explained = kernels[c], order[:size]
                        break
                    rejected += 1
                k_seen = covered if searched is None else covered[searched]
                losses = losses * (1 - k_seen / k_seen.max().clamp(min=1e-12))
                if explained is not None:  # a kept region's members are explained, grown ones too
                    losses[torch.from_numpy(_positions(explained, searched))] = 0
        self.centers_ = np.stack([s["mu"].numpy() for s in kept]) if kept else np.zeros((0, x.shape[1]), np.float32)
        self.precisions_ = np.array([s["tau"] for s in kept])
        self.objectives_ = np.array([s["objective"] for s in kept])
        self.weights_ = np.stack([s["k"].numpy() for s in kept], axis=1) if kept else np.zeros((n, 0), np.float32)
        self.radii_ = np.array([s["radius"] for s in kept])
        self.classes_ = [s["classes"] for s in kept]
        self.parts_ = [None if s["parts"] is None else s["parts"].numpy() for s in kept]
        self.analyses_["spotlight"] = {"asked": self.n_spotlights, "kept": len(kept), "rejected": rejected,
                                       "searched_rows": n if searched is None else len(searched)}
        return [self._spotlight_mode(outputs, j, s["members"]) for j, s in enumerate(kept)]

    def _members(self, dist: np.ndarray, weight: float, wrong: np.ndarray, labels: np.ndarray | None,
                 embed) -> tuple[np.ndarray, int, np.ndarray | None, torch.Tensor | None]:
        """A candidate's rows nearest its centre first, how many of them are members, the
        classes members are drawn from (None: every class) and, where growth was split, the
        points that split it (`_split`). `dist` is every row's squared distance to the centre,
        `weight` the kernel's sum, `embed(rows)` those rows in the searched space.

        The core is the spotlight's size, round(weight) rows (its kernel's support would also
        count the thin outer shell, which in many dimensions holds a crowd of barely-weighted
        rows). Members are the core's rows of the classes that fail there (`failing_classes`;
        every row, for outputs without classes):
        a model that reads a region's images as another class maps them among that class's rows,
        which it reads right and which are not the failure. With `grow`, as many more rows of
        those classes follow as makes the members' errors most significant against those
        classes' error rate (binomial z), up to a quarter of the rows. Growth does not cross a
        valley of rows into another high-error part (`_split`): that is a second failure,
        found by a later search, not more of this one."""
        order = np.argsort(dist, kind="stable")
        core = max(1, round(weight))
        classes = None if labels is None else failing_classes(wrong[order[:core]], labels[order[:core]], wrong, labels)
        if classes is not None:
            core = int(np.isin(labels[order[:core]], classes).sum())
            order = order[np.isin(labels[order], classes)]
        size = self._grow(order, core, wrong)
        parts = None
        if self.grow and size > core:
            split = self._split(order, core, size, wrong, embed)
            if split is not None:
                keep, parts = split
                order = order[keep]
                size = self._grow(order, core, wrong)
        return order, size, classes, parts

    def _split(self, order: np.ndarray, core: int, size: int, wrong: np.ndarray, embed) -> tuple[np.ndarray, torch.Tensor] | None:
        """Where grown members hold more than one high-error part: a mask over `order` of the rows
        nearer the core's mean than every other part's centre, and those (1 + parts, D) points,
        the core's mean first; or None when there is one part.

        Other parts are looked for from up to SPLIT_SEEDS of the grown errors, each as far as
        can be from the centre and from the seeds before it (farthest-point order, so a part
        away from the centre is reached first), among the 2 x `size` rows nearest the centre
        (rows beyond them are not members once growth is split). A seed's part is a separate
        part when a valley of rows lies between it and the core (`valley`). A part's centre is
        where SHIFTS mean-shift steps (each to the mean of the nearest quarter-core of rows)
        take the seed, so a part may be smaller than the spotlight's size; a part whose rows
        are not wrong more often than the rows' rate is no failure and splits nothing."""
        near = order[: min(len(order), 2 * size)]
        errors = torch.from_numpy(np.flatnonzero(wrong[near[core:size]]) + core)
        if len(errors) < 2:
            return None
        z = embed(near)
        z_sq = (z * z).sum(1)
        mean = z[:core].mean(0, keepdim=True)  # the core's own centre: the spotlight's may lean towards other errors
        d_centre = self._sq_dist(z, z_sq, mean)[0]
        gap = d_centre[errors].clone()  # each error's squared distance to the centre and the seeds so far
        keep = torch.ones(len(near), dtype=torch.bool)
        parts = [mean[0]]
        for _ in range(min(SPLIT_SEEDS, len(errors))):
            if float(gap.max()) <= 0:
                break
            seed = errors[int(torch.argmax(gap))]
            d_seed = self._sq_dist(z, z_sq, z[seed : seed + 1])[0]
            centre = z[seed : seed + 1]
            for _ in range(SHIFTS):  # mean shift: from the seed to the densest place near it
                hood = torch.topk(self._sq_dist(z, z_sq, centre)[0], max(1, core // 4), largest=False).indices
                centre = z[hood].mean(0, keepdim=True)
            d_part = self._sq_dist(z, z_sq, centre)[0]
            gap = torch.minimum(gap, d_seed[errors])
            if not self._enriched(near[hood.numpy()], order, wrong):
                continue
            apart = float(((mean - centre) ** 2).sum())
            radius = max(float(d_centre[:core].median()), float(d_part[hood].median()))
            if valley(d_centre.numpy(), d_part.numpy(), apart, radius):
                keep &= d_centre < d_part
                parts.append(centre[0])
            gap = torch.where(keep[errors], gap, torch.zeros_like(gap))
        if bool(keep.all()):
            return None
        mask = np.zeros(len(order), bool)
        mask[: len(near)] = keep.numpy()
        return mask, torch.stack(parts)

    def _grow(self, order: np.ndarray, size: int, wrong: np.ndarray) -> int:
        """How many of the rows in `order` are members: `size`, and with `grow` as many more as
        makes their errors most significant against the error rate of all of `order` (binomial
        z), up to a quarter of the rows."""
        rate = float(wrong[order].mean()) if len(order) else 0.0
        limit = min(len(order), len(wrong) // 4)
        if self.grow and 0 < rate < 1 and 0 < size < limit:
            m = np.arange(1, limit + 1)
            z = (np.cumsum(wrong[order[:limit]]) - m * rate) / np.sqrt(m * rate * (1 - rate))
            size += int(np.argmax(z[size - 1 :]))
        return max(1, min(size, len(order)))

    def _enriched(self, rows: np.ndarray, among: np.ndarray, wrong: np.ndarray) -> bool:
        """Whether `rows` are wrong more often than the rest of `among` (one-sided Fisher at 0.05)."""
        inside, total = int(wrong[rows].sum()), int(wrong[among].sum())
        return enrichment_p(inside, len(rows), total - inside, len(among) - len(rows)) <= FAILING_ALPHA

    def _acceptable(self, members: np.ndarray, wrong: np.ndarray, kept: list[dict]) -> bool:
        """Whether a candidate's members are a new failure: sharing at most `max_overlap` of the
        smaller member set with every spotlight kept, and at most `max_overlap` of its errors
        with any one of them (a shell around a kept region borrows that region's errors: it is
        not a second failure), with errors above the other rows' (`alpha`)."""
        errors = members[wrong[members]]
        for other in kept:
            shared = len(np.intersect1d(members, other["members"], assume_unique=True))
            if shared > self.max_overlap * min(len(members), len(other["members"])):
                return False
            if len(np.intersect1d(errors, other["members"], assume_unique=True)) > self.max_overlap * len(errors):
                return False
        if self.alpha is None:
            return True
        inside = int(wrong[members].sum())
        return enrichment_p(inside, len(members), int(wrong.sum()) - inside, len(wrong) - len(members)) <= self.alpha

    def _space(self, embeddings: np.ndarray) -> torch.Tensor:
        """Embeddings in the searched space: standardised (and PCA-reduced) as fitted at `find`."""
        return torch.from_numpy(to_space(embeddings, self.scaler_, self.pca_))

    def _distances(self, embeddings: np.ndarray, mus: torch.Tensor) -> torch.Tensor:
        """(len(mus), N) squared distances of every row to each centre, a chunk of rows at a time."""
        d2 = torch.empty((len(mus), len(embeddings)))
        for part in row_chunks(len(embeddings)):
            z = self._space(embeddings[part])
            d2[:, part] = self._sq_dist(z, (z * z).sum(1), mus)
        return d2

    def assign(self, outputs: Outputs) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per spotlight, the rows of `outputs` no farther from its centre than its farthest
        member at `find`, of its classes and on its side of any split, nearest first, and their
        kernel weights."""
        d2 = self._distances(outputs.embeddings, torch.from_numpy(self.centers_))
        k = self._kernel(d2, torch.from_numpy(self.precisions_).float()).numpy()
        d2 = d2.numpy()
        assigned = []
        for j in range(len(self.centers_)):
            near = d2[j] <= self.radii_[j]
            if self.classes_[j] is not None:
                near &= np.isin(outputs.labels, self.classes_[j])
            if self.parts_[j] is not None:  # and on this region's side of every part split from it
                to_parts = self._distances(outputs.embeddings, torch.from_numpy(self.parts_[j])).numpy()
                near &= (to_parts[0] < to_parts[1:]).all(0)
            rows = np.flatnonzero(near)
            rows = rows[np.argsort(d2[j, rows], kind="stable")]
            assigned.append((rows, k[j, rows]))
        return assigned


    def _spotlight_mode(self, outputs: Outputs, j: int, members: np.ndarray) -> FailureMode:
        k = self.weights_[:, j]
        w = k[members]
        metrics = {
            "weight": float(k.sum()),
            "weighted_loss": float(w @ outputs.losses[members] / max(w.sum(), 1e-12)),
            "objective": float(self.objectives_[j]),
        }
        evidence = {"precision": float(self.precisions_[j]), "kernel": self.kernel}
        return self._mode(j, members, outputs, weights=w, metrics=metrics, evidence=evidence)


def failing_classes(core_wrong: np.ndarray, core_labels: np.ndarray, wrong: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """The classes whose rows in a region's core are wrong more often than that class's rows
    are overall (one-sided Fisher at FAILING_ALPHA), or None when every class the core holds
    does, or none does (then the region is not narrowed to classes)."""
    present = np.unique(core_labels)
    failing = [c for c in present
               if enrichment_p(int(core_wrong[core_labels == c].sum()), int((core_labels == c).sum()),
                               int(wrong[labels == c].sum()) - int(core_wrong[core_labels == c].sum()),
                               int((labels == c).sum()) - int((core_labels == c).sum())) <= FAILING_ALPHA]
    return np.array(failing) if 0 < len(failing) < len(present) else None


def valley(near: np.ndarray, far: np.ndarray, apart: float, radius: float) -> bool:
    """Whether two parts, whose centres are `apart` (squared distance), are two regions with a
    valley of rows between them. `near` and `far` are the rows' squared distances to each
    centre. Each row is placed on the line through the centres (t = 0 at the first, 1 at the
    second) and at its distance from that line; among the rows within `radius` (squared) of the
    line, those within 0.1 of its middle are fewer than VALLEY times those within 0.1 of either
    end, and fewer than chance allows were the middle as dense as the ends (one-sided binomial
    test at VALLEY_ALPHA: a handful of rows proves nothing). On the line, not in balls around the centres: in many dimensions every row of a part
    lies at about the same distance from its centre, so counts in balls swing with where a
    centre sits, while a part's spread along one line is its spread in one direction; and
    only rows near the line, so that a third part beside the two does not fill the middle."""
    apart = max(apart, 1e-12)
    t = (near - far + apart) / (2 * apart)
    close = near - t * t * apart <= radius
    t = t[close]
    ends = min(int((np.abs(t) <= 0.1).sum()), int((np.abs(t - 1) <= 0.1).sum()))
    middle = int((np.abs(t - 0.5) <= 0.1).sum())
    return middle < VALLEY * ends and stats.binomtest(middle, middle + ends, 0.5, alternative="less").pvalue <= VALLEY_ALPHA


def _positions(rows: np.ndarray, searched: np.ndarray | None) -> np.ndarray:
    """Where `rows` (of all rows) are among the `searched` rows (all of them when None)."""
    if searched is None:
        return rows
    at = np.searchsorted(searched, rows).clip(max=len(searched) - 1)
    return at[searched[at] == rows]
