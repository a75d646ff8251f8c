"""The probe on a Ray cluster: Ray Data batch inference, with the model on each worker.

    outputs = probe_ray(clf, data, address="ray://head:10001")   # or None: a local Ray instance

The inputs are put in Ray's object store once, `map_batches` over the row numbers runs the
classifier on a pool of actors (one GPU each when the cluster has GPUs, else CPU actors), and the driver gathers the
labels, logits and embeddings back in row order into the same `Outputs` the local probe
builds (`faultlines.probe`). Ray is an optional extra: `pip install 'faultlines[ray]'`.

The model travels to the workers pickled (a TorchScript model as its saved bytes): its class
must be importable where the workers run, as Ray requires of any code it ships.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faultlines.data.sources import EmbeddingTable, Source
from faultlines.errors import ModelError, SettingsError
from faultlines.model import Classifier
from faultlines.probe import Gathered
from faultlines.progress import track
from faultlines.types import Outputs


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise SettingsError("the ray engine needs Ray Data: pip install 'faultlines[ray]'") from e
    return ray


def _portable(clf: Classifier) -> dict[str, Any]:
    """What a worker needs to rebuild `clf`: the classifier itself, or a TorchScript module's bytes."""
    if isinstance(clf.module, torch.jit.ScriptModule):
        buf = io.BytesIO()
        torch.jit.save(clf.module, buf)
        return {"script": buf.getvalue(), "class_names": clf.class_names, "preprocess": clf.preprocess}
    return {"classifier": clf}


class _Predict:
    """A Ray Data actor: the classifier on this worker's device, applied to batches of inputs."""

    def __init__(self, shipped: dict[str, Any], inputs: Any, amp: bool) -> None:
        self.inputs = _ray().get(inputs)  # the object store's copy: zero-copy arrays on this node
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if "script" in shipped:
            module = torch.jit.load(io.BytesIO(shipped["script"]), map_location=device)
            self.clf = Classifier(module, class_names=shipped["class_names"], preprocess=shipped["preprocess"], device=device)
        else:
            self.clf = shipped["classifier"]
            self.clf.device = torch.device(device)
            self.clf.module.to(device)
        self.amp = amp and device == "cuda"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = batch["id"]
        x = torch.from_numpy(np.ascontiguousarray(self.inputs["x"][rows]))
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            logits, emb = self.clf.forward(x)
        return {"row": rows, "y": self.inputs["y"][rows], "logits": logits.float().cpu().numpy(),
                "embedding": emb.float().cpu().numpy()}


def probe_ray(
    clf: Classifier,
    data: Source | EmbeddingTable,
    batch_size: int = 256,
    quiet: bool = False,
    source: str = "test",
    *,
    address: str | None = None,
    workers: int | None = None,
    amp: bool = False,
    embeddings_file: str | Path | None = None,
) -> Outputs:
    """`faultlines.probe` as Ray Data batch inference; the same outputs (within float tolerance).

    Args:
        clf, data, batch_size, quiet, source, amp, embeddings_file: as for `faultlines.probe`.
        address: the Ray cluster to join ("auto", "ray://host:10001", ...); None starts a
            local Ray instance on this machine (and stops it afterwards).
        workers: model actors to run; default: one per GPU of the cluster, else one per
            two CPUs (at least one).

    Raises:
        SettingsError: Ray is not installed, or the cluster cannot be reached.
        ModelError: the model cannot take the inputs.
    """
    if isinstance(data, EmbeddingTable):
        return data.to_outputs(source)
    if clf is None:
        raise ModelError("a model is needed to probe this data (only an embedding table can be scanned without one)")
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        # Ray's notices (its token authentication, Ray Data's progress and stage lines) are for
        # Ray's users, not for the person running a scan: only its errors reach the terminal
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise SettingsError(f"cannot reach the Ray cluster at {address!r} ({e})") from e
    try:
        return _run(ray, clf, data, batch_size, quiet, source, workers, amp, embeddings_file)
    finally:
        if started:
            ray.shutdown()


def _run(ray, clf, data, batch_size, quiet, source, workers, amp, embeddings_file) -> Outputs:
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # faultlines shows its own, with rows/s
    context.print_on_execution_start = False
    x, y = data.arrays(batch_size)
    n = len(y)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    workers = workers or (gpus if gpus else max(1, int(resources.get("CPU", 1)) // 2))
    # the rows to predict are a dataset of row numbers; the inputs go to the object store once,
    # and every actor reads its batches' rows from there (zero-copy on the same node)
    inputs = ray.put({"x": x, "y": y.astype(np.int64)})
    predicted = ray.data.range(n).map_batches(
        _Predict,
        fn_constructor_args=(_portable(clf), inputs, amp),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_gpus=1 if gpus else 0,
        # an actor whose constructor arguments live in the object store cannot be restarted
        # safely (Ray's core says so on stderr at every start): a failed probe fails, as locally
        max_restarts=0,
    )
    gathered = Gathered(n, embeddings_file)
    for batch in track(predicted.iter_batches(batch_size=batch_size, batch_format="numpy"), f"probing {data.name} on Ray",
                       n, quiet, unit="rows", step=lambda b: len(b["row"])):
        gathered.put(batch["row"], batch["y"], batch["logits"], batch["embedding"])
    return gathered.outputs(clf.class_names or data.class_names, source)
