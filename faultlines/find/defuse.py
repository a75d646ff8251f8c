"""Defuse (Slack, Rauschmayr, Kenthapadi 2021, arXiv 2102.06162): natural-looking inputs the
classifier gets wrong, found in a VAE's latent space and grouped into regions.

Identification. Seeds are samples the classifier gets right *and* whose VAE reconstruction
it also gets right (otherwise a "failure" could be the VAE's, not the classifier's). Around
each seed's latent mean, Q zero-mean perturbations are drawn (isotropic Gaussian directions)
at distances growing linearly up to `max_radius` (the reference code's Beta(50, 50) noise has
mean 0.5 and shifts every code), decoded and classified in batches; of those whose prediction differs
from the seed's label, the k closest to the seed are kept as hits.

Distillation. One Dirichlet-process Gaussian mixture (scikit-learn's BayesianGaussianMixture)
is fitted to all the hit codes, as in the paper. Each component's hits are then split by the
class the model predicts for them, and every part with enough hits is a candidate region: a
place in latent space where the model makes one mistake. (A component at the border of two
classes holds hits of both: seeds of each class cross into the other. Split by prediction,
each part is one-sided, and the component, whose seeds are mixed, tells the labeller so; see
`faultlines.repair.labels.from_seeds`.) A region's label is its hits' majority seed class.
Each region is sampled from N(mu, s * Sigma), its hits' mean and covariance, and kept when
its samples are mostly misclassified, with a consistent predicted label. Every sample carries
its region and a split: "train" and "val" samples are for correcting the model, "heldout"
samples only measure the correction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from sklearn.mixture import BayesianGaussianMixture

from faultlines.data.sources import Source
from faultlines.errors import DataError
from faultlines.find.base import SEED, Finder, Interval, IsA
from faultlines.generative.vae import VAE
from faultlines.model import Classifier
from faultlines.progress import track
from faultlines.types import FailureMode, Outputs

#: Codes of the split column of the generated table.
SPLIT_CODES = {"train": 0, "val": 1, "heldout": 2}


@dataclass(eq=False, repr=False)
class Defuse(Finder):
    """Find, group and describe regions of a VAE's latent space that the classifier gets wrong.

    Args:
        vae: a fitted VAE of the classifier's inputs; None trains one on the data searched
            (`vae_epochs` epochs, from `seed`). The VAE searched is `vae_` after `find`.
        vae_epochs: epochs to train the VAE when none is given.
        n_perturb: Q, latent perturbations drawn per seed.
        k: hits kept per seed (the closest misclassified codes).
        max_radius: distance of the farthest perturbation from the seed's code (the prior has unit variance).
        max_seeds: seeds used at most (a random subset of the eligible ones).
        max_regions: components of the Dirichlet-process mixture, at most.
        min_hits: least number of hits of a component, and of a region (a component's hits
            with one prediction).
        min_share: the same bound as a share of all hits; the larger of the two applies.
        sample_scale: s in N(mu, s * Sigma).
        region_samples: samples drawn per region (split 50% train, 20% val, 30% heldout).
        min_error: least share of a region's samples that must be misclassified.
        min_consistency: least share of its misclassified samples with the commonest prediction.
        n_typical: region samples kept as "most typical" for the report.
        batch_size: decodes classified per forward pass.
        seed: seed for every random draw.
        quiet: hide the progress bars.
    """

    name: ClassVar[str] = "defuse"
    #: its modes are generated inputs; its seeds are rows the model gets right
    looks_at_errors: ClassVar[bool] = False
    requires: ClassVar[tuple[str, ...]] = ("model", "images")
    constraints: ClassVar[dict] = {
        "vae": IsA(VAE, none=True),
        "vae_epochs": Interval(1, None, integer=True),
        "n_perturb": Interval(1, None, integer=True),
        "k": Interval(1, None, integer=True),
        "max_radius": Interval(0, None, open_low=True),
        "max_seeds": Interval(1, None, integer=True),
        "max_regions": Interval(1, None, integer=True),
        "min_hits": Interval(1, None, integer=True),
        "min_share": Interval(0, 1),
        "sample_scale": Interval(0, None, open_low=True),
        "region_samples": Interval(10, None, integer=True),
        "min_error": Interval(0, 1),
        "min_consistency": Interval(0, 1),
        "n_typical": Interval(0, None, integer=True),
        "batch_size": Interval(1, None, integer=True),
        "seed": SEED,
    }

    vae: VAE | None = None
    vae_epochs: int = 80
    n_perturb: int = 50
    k: int = 5
    max_radius: float = 2.0
    max_seeds: int = 1000
    max_regions: int = 20
    min_hits: int = 10
    min_share: float = 0.01
    sample_scale: float = 1.0
    region_samples: int = 300
    min_error: float = 0.6
    min_consistency: float = 0.6
    n_typical: int = 16
    batch_size: int = 2048
    seed: int = 0
    quiet: bool = True

    def _classify(self, clf: Classifier, images: torch.Tensor) -> np.ndarray:
        return clf.predict_probs(images, self.batch_size).argmax(1)

    @torch.no_grad()
    def _seeds(self, clf: Classifier, outputs: Outputs, data: Source, rng: np.random.Generator):
        x = torch.from_numpy(data.arrays(self.batch_size)[0])
        y = outputs.labels
        self.vae_.eval()
        mu = torch.cat([self.vae_.encode(b)[0] for b in x.split(self.batch_size)])
        recon = torch.cat([self.vae_.decode(m) for m in mu.split(self.batch_size)])
        eligible = np.flatnonzero(outputs.correct & (self._classify(clf, recon) == y))
        if len(eligible) == 0:
            raise DataError("no seed: the classifier gets no sample and its reconstruction right; train the VAE longer")
        chosen = np.sort(rng.choice(eligible, min(self.max_seeds, len(eligible)), replace=False))
        return chosen, y[chosen], mu[chosen], x[:16], recon[:16]

    @torch.no_grad()
    def _hits(self, clf: Classifier, seeds: np.ndarray, labels: np.ndarray, mu: torch.Tensor, gen: torch.Generator):
        radii = torch.linspace(self.max_radius / self.n_perturb, self.max_radius, self.n_perturb)
        rows = []
        per_chunk = max(1, self.batch_size // self.n_perturb)
        chunks = range(0, len(seeds), per_chunk)
        for start in track(chunks, "searching latent space", len(chunks), self.quiet):
            m = mu[start : start + per_chunk]
            eps = torch.randn(len(m), self.n_perturb, m.shape[1], generator=gen)
            z = m[:, None] + radii[None, :, None] * eps / eps.norm(dim=2, keepdim=True)
            preds = self._classify(clf, self.vae_.decode(z.reshape(-1, m.shape[1]))).reshape(len(m), self.n_perturb)
            dist = (z - m[:, None]).norm(dim=2).numpy()
            for j in range(len(m)):
                i = start + j
                wrong = np.flatnonzero(preds[j] != labels[i])
                for q in wrong[np.argsort(dist[j, wrong], kind="stable")][: self.k]:
                    rows.append((seeds[i], labels[i], preds[j, q], z[j, q].numpy(), dist[j, q]))
        if not rows:
            return None
        seed_idx, seed_label, pred, z, dist = zip(*rows)
        return {"seed": np.array(seed_idx), "seed_label": np.array(seed_label), "pred": np.array(pred),
                "z": np.stack(z).astype(np.float32), "distance": np.array(dist, np.float32)}

    def _find(self, outputs: Outputs, *, clf: Classifier, data: Source, **_) -> list[FailureMode]:
        """Search the VAE's latent space around the samples of `data`; return one mode per region.

        After the call, `tables_` holds the hits, the generated region samples and the VAE's
        reconstruction and sample grids, for the run folder and the report; `vae_` the VAE.
        """
        if self.vae is not None:
            self.vae_ = self.vae
        else:
            c, h, w = data.sample_shape()
            if h != w:
                raise DataError(f"Defuse's VAE takes square images; these are {h}x{w}: give a VAE of your own (vae=...)")
            self.vae_ = VAE(in_channels=c, size=h).fit(data, epochs=self.vae_epochs, seed=self.seed, quiet=self.quiet)
        rng = np.random.default_rng(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        seeds, labels, mu, originals, recon = self._seeds(clf, outputs, data, rng)
        hits = self._hits(clf, seeds, labels, mu, gen)
        self.tables_ = {
            "vae": {"originals": originals.numpy(), "reconstructions": recon.numpy(), "samples": self.vae_.sample(16, self.seed)},
            "defuse_seeds": {"index": seeds, "label": labels, "z": mu.numpy()},
        }
        self.n_seeds_ = len(seeds)
        if hits is None or len(hits["z"]) < 2:
            self.tables_["defuse_hits"] = hits or {}
            return []
        self.tables_["defuse_hits"] = hits
        modes, generated = self._distil(clf, hits, self._candidates(hits), rng, outputs.class_names)
        if modes:
            self.tables_["generated"] = generated
        return modes

    def _candidates(self, hits: dict[str, np.ndarray]) -> list[dict]:
        """Candidate regions: the parts of each mixture component's hits with one prediction.

        Sets hits["component"] to each hit's mixture component (-1: in no component big enough).
        """
        n = len(hits["z"])
        least = max(self.min_hits, self.min_share * n)
        hits["component"] = np.full(n, -1)
        if n < least:
            return []
        mixture = BayesianGaussianMixture(
            n_components=max(1, min(self.max_regions, int(n // least))),
            weight_concentration_prior_type="dirichlet_process",
            covariance_type="full",
            reg_covar=1e-3,
            max_iter=500,
            random_state=self.seed,
        ).fit(hits["z"])
        assigned = mixture.predict(hits["z"])
        candidates = []
        for c in range(mixture.n_components):
            in_c = assigned == c
            if in_c.sum() < least:
                continue
            hits["component"][in_c] = c
            for pred in np.unique(hits["pred"][in_c]):
                rows = in_c & (hits["pred"] == pred)
                if rows.sum() < least:
                    continue
                label = np.bincount(hits["seed_label"][rows]).argmax()  # a tie goes to the lower class id
                z = hits["z"][rows].astype(np.float64)
                cov = np.cov(z, rowvar=False) + 1e-3 * np.eye(z.shape[1])
                candidates.append({"label": int(label), "pred": int(pred), "component": c, "mean": z.mean(0), "cov": cov,
                                   "rows": rows})
        return candidates

    def _distil(self, clf, hits, candidates, rng, names) -> tuple[list[FailureMode], dict[str, np.ndarray]]:
        """Sample every candidate; keep the regions mostly misclassified with one consistent prediction."""
        modes, images, region_of, preds, splits, labels = [], [], [], [], [], []
        for cand in sorted(candidates, key=lambda cand: -cand["rows"].sum()):
            label = cand["label"]
            z = rng.multivariate_normal(cand["mean"], self.sample_scale * cand["cov"], self.region_samples)
            with torch.no_grad():
                decoded = self.vae_.decode(torch.from_numpy(z.astype(np.float32)))
            pred = self._classify(clf, decoded)
            wrong = pred != label
            if not wrong.any():
                continue
            top_pred, top_count = Counter(pred[wrong].tolist()).most_common(1)[0]
            error, consistency = wrong.mean(), top_count / wrong.sum()
            if error < self.min_error or consistency < self.min_consistency:
                continue
            n_train, n_val = int(0.5 * len(z)), int(0.2 * len(z))
            split = np.repeat([0, 1, 2], [n_train, n_val, len(z) - n_train - n_val])
            rng.shuffle(split)
            members = sum(len(p) for p in preds) + np.arange(len(z))
            modes.append(self._region_mode(len(modes), members, cand, hits, top_pred, error, consistency, pred, names))
            images.append(decoded.numpy())
            region_of.append(np.full(len(z), len(modes) - 1))
            preds.append(pred)
            splits.append(split)
            labels.append(np.full(len(z), label))
        if not modes:
            return [], {}
        generated = {"images": np.concatenate(images).astype(np.float32), "region": np.concatenate(region_of),
                     "pred": np.concatenate(preds), "label": np.concatenate(labels), "split": np.concatenate(splits)}
        return modes, generated

    def _region_mode(self, j, members, cand, hits, top_pred, error, consistency, pred, names) -> FailureMode:
        label, in_c, component = cand["label"], cand["rows"], cand["component"]
        purity = float((hits["seed_label"][in_c] == label).mean())
        around = hits["seed_label"][hits["component"] == component]
        pair_share = float(((hits["seed_label"][in_c] == label) & (hits["pred"][in_c] == top_pred)).mean())
        summary = (f"{names[label]} read as {names[top_pred]}: {error:.0%} of {len(members)} region samples are misclassified, "
                   f"{consistency:.0%} of those as {names[top_pred]}; {int(in_c.sum())} hits, {purity:.0%} from seeds of {names[label]}")
        typical = [int(members[i]) for i in np.argsort(pred != label, kind="stable")[::-1][: self.n_typical]]
        return self._mode(
            j, members, summary=summary, source="generated",
            metrics={"hits": float(in_c.sum()), "size": float(len(members)), "error_rate": float(error),
                     "consistency": float(consistency), "seed_purity": purity, "pair_share": pair_share,
                     "component_purity": float((around == label).mean())},
            evidence={"region": j, "typical": typical, "label": names[label], "label_id": int(label), "pred": names[top_pred],
                      "pred_id": int(top_pred), "component": int(component), "hit_pred": cand["pred"],
                      "hit_seeds": sorted({int(s) for s in hits["seed"][in_c]})},
        )
