"""The SpotCheck-style family (several blindspots per data set) and the PlaneSpot peer."""

import numpy as np
import pytest

import faultlines as fl
from faultlines.bench.peers import PlaneSpot
from faultlines.bench.spotcheck import BLUE, SIZE, _draw_blindspots, match, score, spotcheck


@pytest.mark.parametrize("seed", range(20))
def test_blindspots_are_valid_conjunctions_with_the_square(seed):
    spots = _draw_blindspots(np.random.default_rng(seed), 3)
    for i, b in enumerate(spots):
        clauses = dict(b.clauses)
        assert clauses["square"] == 1 and 3 <= len(clauses) <= 6
        for attribute in ("circle_orange", "rectangle_orange"):  # an object's colour comes with the object
            if attribute in clauses:
                assert clauses[attribute.split("_")[0]] == 1
        for other in spots[:i]:  # SpotCheck's rule: every two contradict each other in two attributes at least
            theirs = dict(other.clauses)
            assert sum(theirs.get(k, v) != v for k, v in clauses.items()) >= 2


def test_the_blindspots_squares_are_mislabelled_in_training_only():
    p = spotcheck(seed=3, blindspots=2, counts={"train": 400, "val": 100, "test": 300})
    attrs, masks = p.facts["attributes"], p.facts["masks"]
    for split, source in (("train", p.splits.train), ("val", p.splits.val), ("test", p.splits.test)):
        assert source.x.shape == (len(source), 3, SIZE, SIZE) and 0 <= source.x.min() and source.x.max() <= 1
        inside = masks[split].any(1)
        assert inside.any() and np.all(attrs[split]["square"][inside] == 1)
        expected = np.where(inside, 0, attrs[split]["square"]) if split != "test" else attrs[split]["square"]
        assert np.array_equal(source.y, expected)
        for b, spot in enumerate(p.facts["blindspots"]):
            assert np.array_equal(masks[split][:, b], spot.holds(attrs[split]))
    # images are drawn from their attributes: a blue square alone in its image is blue pixels
    # (a striped small one 5 x 2 of them), and an image of no object has none
    a = attrs["test"]
    alone = (a["circle"] == 0) & (a["rectangle"] == 0)
    blue_pixels = np.isclose(p.splits.test.x, BLUE[None, :, None, None], atol=1e-6).all(1).sum(axis=(1, 2))
    assert np.all(blue_pixels[alone & (a["square"] == 1) & (a["square_orange"] == 0)] >= 10)
    assert np.all(blue_pixels[alone & (a["square"] == 0)] == 0)


def test_discovery_needs_precision_and_recall_and_counts_false_modes():
    masks = np.zeros((100, 2), bool)
    masks[:10, 0] = True
    masks[50:70, 1] = True
    core = np.arange(8)  # precision 1, recall 0.8 on the first
    shell = np.arange(30)  # recall 1 on the first, precision 1/3: matches nothing
    part = np.arange(50, 58)  # precision 1 on the second, recall 0.4: a match, not a discovery
    assert np.allclose(match(core, masks)[0], [1, 0]) and np.allclose(match(core, masks)[1], [0.8, 0])
    s = score([core, shell, part], masks)
    assert (s["discovered"], s["modes"], s["false"]) == (1, 3, 1) and s["fdr"] == pytest.approx(1 / 3)
    assert score([], masks)["fdr"] == 0.0 and score([], masks)["discovered"] == 0
    # a blindspot the model did not learn is not to be discovered, but a mode on it is no false one
    s = score([core, part], masks, learned=np.array([True, False]))
    assert (s["blindspots"], s["discovered"], s["false"]) == (1, 1, 0)


def test_planespot_ranks_the_cluster_of_low_confidence_first():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 8, (4, 6))
    emb = np.concatenate([c + rng.normal(0, 1, (80, 6)) for c in centres]).astype(np.float32)
    labels = np.zeros(320, int)
    probs = np.tile([0.95, 0.05], (320, 1)).astype(np.float32)
    probs[160:240] = [0.2, 0.8]  # the third cluster: the model doubts its (true) label
    out = fl.Outputs.from_probs(labels, probs, emb, ("a", "b"))
    modes = PlaneSpot(min_components=2, max_components=6).find(out)
    top = set(modes[0].members.tolist())
    assert len(top & set(range(160, 240))) >= 0.8 * len(top) and len(top & set(range(160, 240))) >= 60
    assert all(modes[j].metrics["planespot_score"] >= modes[j + 1].metrics["planespot_score"] for j in range(len(modes) - 1))
