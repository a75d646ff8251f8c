"""The views a notebook shows: HTML and DataFrames of a scan and its modes."""

import numpy as np
import pytest

import faultlines as fl
from faultlines.errors import DataError


@pytest.fixture(scope="module")
def result(clf, splits):
    return fl.scan(clf, splits.test, [fl.Spotlight(n_spotlights=2, alpha=None)], quiet=True)


def test_scan_result_as_a_dataframe(result):
    frame = result.to_pandas()
    assert len(frame) == result.outputs.n == 360
    assert list(frame.columns[:5]) == ["row", "label", "pred", "correct", "loss"]
    assert (frame["correct"] == (frame["label"] == frame["pred"])).all()
    assert frame["heldout"].sum() == result.heldout.sum()
    for mode in result.modes:
        assert set(frame.index[frame["modes"].map(lambda ids, m=mode.id: m in ids)]) == set(mode.members.tolist())


def test_a_mode_as_a_dataframe(result):
    mode = result.modes[0]
    frame = mode.to_pandas(result.outputs)
    assert frame["row"].tolist() == mode.members.tolist()
    assert np.allclose(frame["weight"], mode.weights)
    assert frame["loss"].tolist() == pytest.approx(result.outputs.losses[mode.members].tolist())
    assert list(mode.to_pandas().columns) == ["row", "weight"]
    other = result.outputs.subset(np.arange(10))
    with pytest.raises(DataError):
        mode.to_pandas(fl.types.Outputs(other.labels, other.preds, other.probs, other.losses, other.embeddings,
                                        other.class_names, source="train"))


def test_html_views_show_the_modes_and_escape_names(result):
    page = result._repr_html_()
    assert all(m.id in page for m in result.modes) and "accuracy" in page and "data:image/png;base64" in page
    mode = result.modes[0]
    assert mode.id in mode._repr_html_() and str(int(mode.members[0])) in mode._repr_html_()
    hostile = fl.FailureMode("x-0", "x", "<script>alert(1)</script>", np.arange(3),
                             evidence={"confusions": [["<blink>", "c", 2]], "description": {"sentence": "site = <b>north</b>"}})
    assert "<script>" not in hostile._repr_html_()
    mixed = fl.types.ScanResult(result.outputs, [hostile])
    assert "<blink>" not in mixed._repr_html_() and "&lt;blink&gt;" in mixed._repr_html_()
    assert "site = &lt;b&gt;north&lt;/b&gt;" in mixed._repr_html_()  # the description, escaped


# -- data from DataFrames and Hugging Face datasets ------------------------------------------------


def test_a_dataframe_of_outputs_is_an_embedding_table():
    import pandas as pd

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), 50).astype(np.float32)
    frame = pd.DataFrame({"emb": list(rng.normal(size=(50, 4)).astype(np.float32)), "y": rng.integers(0, 3, 50),
                          "p": list(probs), "sentence": [f"s{i}" for i in range(50)]})
    table = fl.data.from_pandas(frame, embedding="emb", label="y", probs="p", text="sentence", class_names=["a", "b", "c"])
    out = table.to_outputs()
    assert out.embeddings.shape == (50, 4) and np.allclose(out.probs, probs) and table.texts[3] == "s3"
    wide = pd.DataFrame({"e0": rng.normal(size=50), "e1": rng.normal(size=50), "y": frame["y"],
                         "p0": probs[:, 0], "p1": probs[:, 1], "p2": probs[:, 2]})
    assert fl.data.from_pandas(wide, embedding=["e0", "e1"], label="y", probs=["p0", "p1", "p2"]).to_outputs().embeddings.shape == (50, 2)
    # other columns are the metadata; string labels become class ids; a column of mixed objects is left out, with a warning
    extra = frame.assign(y=np.array(["a", "b", "c"])[frame["y"]], site=["x", "y"] * 25, odd=[1, "one"] * 25)
    with pytest.warns(fl.errors.InputWarning, match="'odd'"):
        named = fl.data.from_pandas(extra, embedding="emb", label="y", probs="p")
    assert named.metadata.column_names == ["sentence", "site"] and named.class_names == ("a", "b", "c")
    assert np.array_equal(named.labels, frame["y"].to_numpy())
    with pytest.raises(DataError, match="no column"):
        fl.data.from_pandas(frame, embedding="missing", label="y", probs="p")
    ragged = frame.copy()
    ragged.at[0, "emb"] = np.zeros(7, np.float32)
    with pytest.raises(DataError, match="one length"):
        fl.data.from_pandas(ragged, embedding="emb", label="y", probs="p")
    with pytest.raises(DataError, match="DataFrame"):
        fl.data.from_pandas({"emb": []})


def test_a_hugging_face_dataset_of_images_is_scanned(clf, splits):
    from datasets import ClassLabel, Dataset, Features, Image, Value
    from PIL import Image as PILImage

    x, y = splits.test.x[:40], splits.test.y[:40]
    images = [PILImage.fromarray((im[0] * 255).astype(np.uint8), mode="L") for im in x]
    features = Features({"img": Image(), "label": ClassLabel(names=[f"digit {i}" for i in range(10)]), "id": Value("int32")})
    ds = Dataset.from_dict({"img": images, "label": y.tolist(), "id": list(range(40))}, features=features)
    source = fl.data.from_hf(ds, image="img")
    assert source.x.shape == (40, 1, 16, 16) and source.class_names[3] == "digit 3"
    assert np.abs(source.x - x).max() <= 1 / 255 + 1e-6  # the same digits, through 8-bit PNGs
    assert np.array_equal(fl.probe(clf, source, quiet=True).preds, fl.probe(clf, splits.test.subset(np.arange(40)), quiet=True).preds)
    with pytest.raises(DataError, match="no column"):
        fl.data.from_hf(ds, image="picture")
    odd = Dataset.from_dict({"img": images[:1] + [PILImage.new("L", (8, 8))], "label": [0, 1]}, features=Features(
        {"img": Image(), "label": Value("int64")}))
    with pytest.raises(DataError, match="one size"):
        fl.data.from_hf(odd, image="img")
    with pytest.raises(DataError, match="datasets.Dataset"):
        fl.data.from_hf({"img": images})


def test_a_hugging_face_dataset_of_texts_is_embedded():
    from datasets import Dataset

    ds = Dataset.from_dict({"sentence": ["great film", "awful film", "loved it"], "label": [1, 0, 1]})
    source = fl.data.from_hf(ds, text="sentence")
    assert source.x.shape == (3, 384) and source.texts == ["great film", "awful film", "loved it"]
    assert np.allclose(np.linalg.norm(source.x, axis=1), 1, atol=1e-4)
