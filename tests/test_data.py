import numpy as np
import pytest
import torch
from PIL import Image

import faultlines as fl
from faultlines.data import ArraySource, EmbeddingTable, TorchSource, image_folder, load, load_embedding_table, load_npz
from faultlines.errors import DataError


def test_digits_are_real_upsampled_and_stratified():
    s = fl.data.digits(seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (1077, 360, 360)
    assert s.train.x.shape[1:] == (1, 16, 16)
    assert s.train.x.min() >= 0 and s.train.x.max() <= 1
    for part in (s.train, s.val, s.test):
        counts = np.bincount(part.y, minlength=10) / len(part)
        assert np.all(np.abs(counts - 0.1) < 0.02)
    all_rows = np.concatenate([s.train.x, s.val.x, s.test.x]).reshape(1797, -1)
    assert len(np.unique(all_rows, axis=0)) > 1700  # disjoint splits of real images


def test_digits_depend_only_on_seed():
    a, b, c = fl.data.digits(seed=0), fl.data.digits(seed=0), fl.data.digits(seed=1)
    assert np.array_equal(a.test.x, b.test.x)
    assert not np.array_equal(a.test.y, c.test.y)


def test_digits_size_parameter():
    assert fl.data.digits(size=8).test.x.shape[1:] == (1, 8, 8)


@pytest.mark.parametrize(
    "x, y, message",
    [
        (np.zeros((3, 2)), np.zeros(4, int), "x has 3 rows but y has 4"),
        (np.zeros((0, 2)), np.zeros(0, int), "empty"),
        (np.array([[0.0, np.nan], [1, 1]]), np.zeros(2, int), "NaN"),
        (np.zeros((2, 2)), np.array([0.5, 1.0]), "whole class ids"),
    ],
)
def test_array_source_rejects_bad_input(x, y, message):
    with pytest.raises(DataError, match=message):
        ArraySource(x, y)


def test_array_source_batches_cover_every_sample_once():
    src = ArraySource(np.arange(10, dtype=np.float32)[:, None], np.arange(10) % 3)
    seen = np.concatenate([x.numpy()[:, 0] for x, _ in src.batches(4, shuffle=True, seed=3)])
    assert sorted(seen.tolist()) == list(range(10))


def test_npz_round_trip_and_errors(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((4, 1, 2, 2)), y=np.array([0, 1, 0, 1]))
    src = load_npz(path)
    assert len(src) == 4 and src.x.dtype == np.float32
    with pytest.raises(DataError, match="no such file"):
        load_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", inputs=np.ones(3))
    with pytest.raises(DataError, match=r"no array named \['x', 'y'\]"):
        load_npz(tmp_path / "bad.npz")


def _write_images(root, sizes):
    for cls, size in sizes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            Image.fromarray(np.full(size, 40 * i + 10, np.uint8)).save(root / cls / f"{i}.png")


def test_image_folder_reads_classes_and_pixels(tmp_path):
    _write_images(tmp_path, [("cat", (5, 4)), ("dog", (5, 4))])
    src = image_folder(tmp_path)
    assert src.class_names == ("cat", "dog")
    x, y = src.arrays()
    assert x.shape == (4, 1, 5, 4)
    assert y.tolist() == [0, 0, 1, 1]
    assert np.isclose(x[1].max(), 50 / 255)
    assert src.metadata.column("path").to_pylist() == ["cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png"]


def test_image_folder_is_read_a_batch_at_a_time(tmp_path, monkeypatch):
    from faultlines.data import files

    _write_images(tmp_path, [("cat", (5, 4)), ("dog", (5, 4))])
    src = image_folder(tmp_path)
    opened = []
    monkeypatch.setattr(files, "_read_image", lambda f, read=files._read_image: opened.append(f.name) or read(f))
    batches = src.batches(2)
    next(batches)
    assert len(opened) == 2  # only the first batch's images are read so far


def test_image_folder_sizes_must_agree_unless_resized(tmp_path):
    _write_images(tmp_path, [("a", (5, 4)), ("b", (6, 6))])
    with pytest.raises(DataError, match=r"resize=H,W"):
        image_folder(tmp_path).arrays()
    assert image_folder(tmp_path, size=8).arrays()[0].shape == (4, 1, 8, 8)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no images"):
        image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        image_folder(tmp_path)
    _write_images(tmp_path, [("a", (5, 4))])  # the broken one is no longer the first image: found when read
    with pytest.raises(DataError, match="broken.png"):
        image_folder(tmp_path).arrays()
    with pytest.raises(DataError, match=r"^cannot read image \S+broken.png") as found:  # read in a worker process: the same one line
        list(image_folder(tmp_path).batches(2, num_workers=1))
    assert "\n" not in str(found.value)


def test_embedding_table_from_parquet_and_folder(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    emb = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    probs = np.full((5, 2), 0.5, np.float32)
    labels = np.array([0, 1, 1, 0, 1])
    pq.write_table(
        pa.table({"embedding": list(emb), "probs": list(probs), "label": labels, "text": list("abcde")}),
        tmp_path / "t.parquet",
    )
    table = load_embedding_table(tmp_path / "t.parquet")
    assert np.allclose(table.embeddings, emb) and table.texts == list("abcde")
    out = table.to_outputs()
    assert np.allclose(out.losses, np.log(2))

    folder = tmp_path / "tab"
    folder.mkdir()
    for name, a in {"embeddings": emb, "labels": labels, "probs": probs}.items():
        np.save(folder / f"{name}.npy", a)
    assert isinstance(load(folder), EmbeddingTable)
    (folder / "probs.npy").unlink()
    with pytest.raises(DataError, match="probs"):
        load(folder)


def test_torch_source_matches_array_source():
    x, y = torch.rand(7, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    src = TorchSource(torch.utils.data.TensorDataset(x, y))
    xb, yb = next(src.batches(7))
    assert torch.equal(xb, x) and torch.equal(yb, y)
    assert set(src.preview([0, 3])) == {0, 3}


def test_load_dispatches_on_what_the_path_holds(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.ones((2, 3)), y=np.array([0, 1]))
    assert isinstance(load(tmp_path / "a.npz"), ArraySource)
    assert len(load("digits")) == 360
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "nope")
