"""Data sources: in-memory arrays, torch datasets, files, and the embedded digits."""

from faultlines.data.digits import digits
from faultlines.data.files import image_folder, load, load_embedding_table, load_npz
from faultlines.data.frames import from_hf, from_pandas
from faultlines.data.sources import ArraySource, EmbeddingTable, Source, Splits, TorchSource

__all__ = [
    "ArraySource",
    "EmbeddingTable",
    "Source",
    "Splits",
    "TorchSource",
    "digits",
    "from_hf",
    "from_pandas",
    "image_folder",
    "load",
    "load_embedding_table",
    "load_npz",
]
