"""`Classifier`: a trained torch module, or a fitted scikit-learn classifier, read for logits,
probabilities, embeddings and losses."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import pickle
import sys
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from faultlines.errors import LayerNotFoundError, ModelError, SettingsError, first_line
from faultlines.preprocess import as_preprocess
from faultlines.types import as_class_names

#: Marks a file written by `save_checkpoint`, so `Classifier.load` can rebuild the module.
CHECKPOINT_FORMAT = "faultlines-checkpoint-1"

#: `Classifier.layer_name` when the representation is the logits themselves (TorchScript).
LOGITS = "<logits>"


#: The kinds of device a model may run on.
DEVICES = ("cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`device` as a torch.device, checked to exist on this machine; None: the best there is
    (a CUDA GPU, then Apple's MPS, then the CPU).

    Raises:
        SettingsError: an unknown kind of device, or one this machine does not have.
    """
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        found = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise SettingsError(f"unknown device {device!r}: give one of {', '.join(DEVICES)} (cuda:1 names a GPU)") from e
    if found.type not in DEVICES:
        raise SettingsError(f"device {device!r} is not supported: give one of {', '.join(DEVICES)}")
    if found.type == "cuda" and not torch.cuda.is_available():
        raise SettingsError(f"device {device!r}: this machine has no CUDA GPU that torch can use; use --device cpu")
    if found.type == "cuda" and found.index is not None and found.index >= torch.cuda.device_count():
        raise SettingsError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    if found.type == "mps" and not torch.backends.mps.is_available():
        raise SettingsError(f"device {device!r}: Apple's MPS is not available here; use --device cpu")
    return found


class Estimator(nn.Module):
    """A fitted scikit-learn classifier (anything with `predict_proba` and `classes_`: a
    Pipeline, gradient boosting, a random forest...) as a module: `forward(x)` returns the log
    of `predict_proba` (whose softmax is the probabilities) and the embedding. The classes are
    the estimator's, in its order (`classes_`), never guessed; a table's class names apply only
    where the estimator's classes are the ids 0, 1, ... themselves.

    Args:
        estimator: the fitted classifier; it is given each batch as a (N, D) float array.
        transform: a callable from that array to the embedding; default: for a Pipeline, what
            its last step receives (`pipeline[:-1].transform`), else the input features
            themselves (the finders standardise each feature).

    Raises:
        ModelError: the estimator has no `predict_proba`, or is not fitted.
    """

    def __init__(self, estimator: Any, transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        super().__init__()
        if not callable(getattr(estimator, "predict_proba", None)):
            raise ModelError(f"a {type(estimator).__name__} has no predict_proba: give a classifier that predicts probabilities")
        if getattr(estimator, "classes_", None) is None:
            raise ModelError(f"the {type(estimator).__name__} is not fitted (it has no classes_): fit it first")
        if transform is None and hasattr(estimator, "steps") and len(estimator.steps) > 1:
            transform = estimator[:-1].transform
        self.estimator, self.transform = estimator, transform

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The estimator's classes as names, in its order; None where they are the ids 0, 1,
        ... themselves (a model fitted on class ids: the data's names then say what they are)."""
        classes = np.asarray(self.estimator.classes_)
        if classes.dtype.kind in "iu" and np.array_equal(classes, np.arange(len(classes))):
            return None
        return tuple(str(c) for c in classes.tolist())

    @property
    def embedding_name(self) -> str:
        return "pipeline features" if hasattr(self.estimator, "steps") and self.transform is not None else (
            "input features" if self.transform is None else "transformed features")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = x.detach().cpu().numpy().reshape(len(x), -1)
        probs = np.asarray(self.estimator.predict_proba(rows), np.float64)
        emb = rows if self.transform is None else self.transform(rows)
        emb = np.asarray(emb.toarray() if hasattr(emb, "toarray") else emb, np.float32).reshape(len(rows), -1)
        return torch.from_numpy(np.log(np.clip(probs, 1e-12, None))).float(), torch.from_numpy(emb)


class OnnxModel(nn.Module):
    """A classifier saved as ONNX, run with onnxruntime (never unpickled): a scikit-learn model
    converted with skl2onnx, a PyTorch model exported to ONNX, or any other. `forward(x)`
    returns (logits, embedding): the log of its probability output, or its only float output
    taken as logits; the embedding is the intermediate tensor named by `read_at` (the model
    file holds it; faultlines exposes it as an extra output), else the inputs flattened. The
    classes are the model's own (the `classlabels_*` of its classifier node, in its order).

    Raises:
        ModelError: onnxruntime or onnx is missing, or the file is not a model it can run.
    """

    def __init__(self, data: bytes, name: str = "model.onnx") -> None:
        super().__init__()
        try:
            import onnx
            import onnxruntime  # noqa: F401
        except ImportError as e:
            raise ModelError(f"{name} is an ONNX model; running it needs onnxruntime and onnx: pip install 'faultlines[onnx]'") from e
        try:
            self.proto = onnx.load_from_string(data)
        except Exception as e:  # protobuf raises its own DecodeError, among others
            raise ModelError(f"cannot read {name} as an ONNX model ({first_line(e)})") from e
        self.name, self.layer = name, None
        labels = [onnx.helper.get_attribute_value(a) for node in self.proto.graph.node for a in node.attribute
                  if a.name in ("classlabels_strings", "classlabels_int64s", "classlabels_ints")]
        self.classes = [c.decode() if isinstance(c, bytes) else c for c in labels[0]] if labels else None
        self._session()

    def _session(self) -> None:
        import onnx
        import onnxruntime

        proto = self.proto
        if self.layer is not None:
            proto = onnx.ModelProto()
            proto.CopyFrom(self.proto)
            proto.graph.output.append(onnx.ValueInfoProto(name=self.layer))
        try:
            self.session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail / InvalidGraph types
            raise ModelError(f"onnxruntime cannot run {self.name} ({first_line(e)})") from e
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.name} takes {len(inputs)} inputs; faultlines feeds a model one input tensor")
        self.input = inputs[0]  # rebuilt with the session: onnxruntime's NodeArg does not pickle
        outputs = [o for o in self.session.get_outputs() if o.name != self.layer]
        producers = {out: node.op_type for node in proto.graph.node for out in node.output}
        probs = [o for o in outputs if o.type.startswith("seq(map") or "prob" in o.name.lower() or producers.get(o.name) == "Softmax"]
        floats = [o for o in outputs if o.type == "tensor(float)"]
        chosen = probs[0] if probs else floats[0] if len(floats) == 1 else None
        if chosen is None:
            raise ModelError(f"{self.name} has outputs {', '.join(o.name for o in outputs)}: none is its probabilities or logits")
        self.output, self.gives_probs = chosen.name, bool(probs)

    def __getstate__(self) -> dict:  # an onnxruntime session does not pickle (Ray ships the model to its workers)
        state = self.__dict__.copy()
        state.pop("session", None)
        state.pop("input", None)
        state["proto"] = self.proto.SerializeToString()
        return state

    def __setstate__(self, state: dict) -> None:
        import onnx

        self.__dict__.update(state)
        self.proto = onnx.load_from_string(state["proto"])
        self._session()

    def read_at(self, layer: str) -> None:
        """Read the embedding from the intermediate tensor named `layer`."""
        names = {out for node in self.proto.graph.node for out in node.output}
        if layer not in names:
            shown = ", ".join(sorted(names)[:20]) + (", ..." if len(names) > 20 else "")
            raise LayerNotFoundError(f"{self.name} has no tensor named '{layer}'; its tensors are: {shown}")
        self.layer = layer
        self._session()

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The model's classes as names; None where they are the ids 0, 1, ... or unknown."""
        if self.classes is None or list(self.classes) == list(range(len(self.classes))):
            return None
        return tuple(str(c) for c in self.classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feed = x.detach().cpu().numpy()
        if self.input.type == "tensor(float)":
            feed = feed.astype(np.float32, copy=False)
        wanted = [self.output] + ([self.layer] if self.layer is not None else [])
        found = self.session.run(wanted, {self.input.name: feed})
        scores = found[0]
        if isinstance(scores, list):  # a ZipMap: one {class: probability} per row, in the classes' order
            keys = self.classes if self.classes is not None else list(scores[0])
            scores = np.array([[row[k] for k in keys] for row in scores], np.float64)
        scores = np.asarray(scores, np.float64).reshape(len(feed), -1)
        logits = np.log(np.clip(scores, 1e-12, None)) if self.gives_probs else scores
        emb = np.asarray(found[1] if self.layer is not None else feed, np.float32).reshape(len(feed), -1)
        return torch.from_numpy(logits).float(), torch.from_numpy(emb)


class Classifier:
    """A trained classifier and where to read its representation.

    Args:
        module: the trained `nn.Module`; called as `module(preprocess(x))`, returning logits
            of shape (N, C), or a tuple (logits, embeddings). Or a fitted scikit-learn
            classifier, read through `Estimator` (its classes in its own order, its input
            features, or a Pipeline's last step's, as the embedding).
        layer: name of the sub-module (as in `module.named_modules()`) whose output is the
            embedding. Default: the input of the last `nn.Linear` (the penultimate features).
        preprocess: what to do to every input batch first: a `Preprocess`, a spec such as
            "imagenet" or "mean=0.5 std=0.25 resize=32" (`faultlines.preprocess`), or any callable.
        class_names: one name per class id; default "0", "1", ...
        device: where to run the module ("cpu", "cuda", "cuda:1", "mps"; None: the best available).
        expected: what the model scored on its own held-out data ({"accuracy", "confidence",
            "rows"}), as a faultlines checkpoint records it; the input check
            (`faultlines.probe.check_inputs`) compares the scanned data's first batch with it.

    Raises:
        LayerNotFoundError: `layer` is not a sub-module, or there is no `nn.Linear` to default to.
        SettingsError: the device does not exist here.
    """

    def __init__(
        self,
        module: nn.Module,
        layer: str | None = None,
        preprocess: Callable[[torch.Tensor], torch.Tensor] | str | None = None,
        class_names: Sequence[str] | None = None,
        device: str | torch.device | None = "cpu",
        expected: dict[str, float] | None = None,
    ) -> None:
        if not isinstance(module, nn.Module) and callable(getattr(module, "predict_proba", None)):
            module = Estimator(module)
        if not isinstance(module, nn.Module):
            raise ModelError(f"expected a torch nn.Module or a fitted scikit-learn classifier, got {type(module).__name__}")
        if isinstance(module, (Estimator, OnnxModel)):
            device = "cpu"  # scikit-learn and onnxruntime (as faultlines runs it) run on the CPU
            class_names = module.class_names if class_names is None else class_names
        self.device = resolve_device(device)
        self.module = module.to(self.device).eval()
        self.preprocess = as_preprocess(preprocess)
        self.expected = _expectation(expected)
        #: the one batch size an exported program with a static batch dimension takes (None: any)
        self.fixed_batch = fixed_batch(module)
        self.class_names = as_class_names(class_names)
        self._scripted = isinstance(module, torch.jit.ScriptModule)
        self._captured: list[torch.Tensor] = []
        self.layer_name, self._hook_module, self._hook_input = self._resolve_layer(layer)

    def _resolve_layer(self, layer: str | None) -> tuple[str, nn.Module | None, bool]:
        if isinstance(self.module, OnnxModel):
            if layer is not None:
                self.module.read_at(layer)
            return layer or "inputs", None, False
        if isinstance(self.module, Estimator):
            if layer is not None:
                raise LayerNotFoundError("a scikit-learn model has no layers; give Estimator(model, transform=...) for another embedding")
            return self.module.embedding_name, None, False
        modules = dict(self.module.named_modules())
        if layer is not None:
            if layer not in modules or layer == "":
                named = [n for n in modules if n]
                raise LayerNotFoundError(
                    f"the model has no layer named '{layer}'; its layers are: {', '.join(named) or '(none)'}"
                )
            if self._scripted:
                raise ModelError(
                    "a TorchScript model cannot be read at a named layer (it takes no hooks); "
                    "export one whose forward returns (logits, embeddings), or load a state dict with a factory"
                )
            return layer, modules[layer], False
        linears = [n for n, m in modules.items() if _is_linear(m)]
        if self._scripted:
            return LOGITS, None, False
        if not linears:
            raise LayerNotFoundError(
                "the model has no nn.Linear layer to read embeddings from; name one with layer=... "
                f"(its layers are: {', '.join(n for n in modules if n) or '(none)'})"
            )
        return f"{linears[-1]} (input)", modules[linears[-1]], True

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device)
        if self.preprocess is not None:
            x = self.preprocess(x)
        size = self.fixed_batch
        if size is None or len(x) == size:
            return self._run(x)
        # a program exported for one batch size: run it that many at a time, the last batch
        # padded with copies of its first row, and the padding's outputs dropped
        parts = []
        for chunk in x.split(size):
            padded = torch.cat([chunk, chunk[:1].expand(size - len(chunk), *chunk.shape[1:])]) if len(chunk) < size else chunk
            logits, emb = self._run(padded)
            parts.append((logits[: len(chunk)], emb[: len(chunk)]))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._captured.clear()
        handle = None
        if self._hook_module is not None:
            if self._hook_input:
                handle = self._hook_module.register_forward_pre_hook(lambda m, inp: self._captured.append(inp[0]))
            else:
                handle = self._hook_module.register_forward_hook(lambda m, inp, out: self._captured.append(out))
        try:
            out = self.module(x)
        finally:
            if handle is not None:
                handle.remove()
        if isinstance(out, (tuple, list)):
            logits, emb = out[0], out[1]
        else:
            logits = out
            if self._hook_module is None:
                emb = out
            elif not self._captured:
                raise ModelError(f"layer '{self.layer_name}' was never called in the forward pass; name another")
            else:
                emb = self._captured[0]
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise ModelError(f"the model must return logits of shape (batch, classes), got {getattr(logits, 'shape', type(logits))}")
        # results come back on the CPU whatever the device, so every caller (the finders,
        # captum, the attacks) works as on a CPU model; .cpu() keeps gradients flowing to x
        return logits.cpu(), emb.reshape(len(emb), -1).cpu()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, C) and flattened embeddings (N, D) from one forward pass on the model's
        device, without grad, returned on the CPU."""
        with torch.no_grad():
            return self._forward(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[0]

    def logits_with_grad(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) with autograd on, on the CPU: for attacks and attributions that
        differentiate through the model (on its device) with respect to `x`."""
        return self._forward(x)[0]

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.logits(x), dim=1)

    def predict_probs(self, x: torch.Tensor | np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities (N, C) as float32 numpy, for inputs held in memory, in batches."""
        x = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
        return np.concatenate([self.probs(b).float().cpu().numpy() for b in x.split(batch_size)])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[1]

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample cross-entropy, shape (N,)."""
        return F.cross_entropy(self.logits(x), y, reduction="none")

    @classmethod
    def load(
        cls,
        path: str | Path,
        factory: Callable[[], nn.Module] | str | None = None,
        trust_pickle: bool = False,
        **kwargs: Any,
    ) -> Classifier:
        """Load a model file safely.

        Reads, in this order: a `torch.export` program (.pt2); a TorchScript file; a
        checkpoint written by `save_checkpoint`;
        a state dict, rebuilt with `factory` (a callable or "package.module:callable").
        A pickled module is refused unless `trust_pickle=True`, since unpickling can run
        arbitrary code. Other keyword arguments go to `Classifier`.
        """
        module, names, expected = _load(path, factory, trust_pickle)
        kwargs.setdefault("class_names", names)
        kwargs.setdefault("expected", expected)
        return cls(module, **kwargs)


def _is_linear(m: nn.Module) -> bool:
    if isinstance(m, nn.Linear) or getattr(m, "original_name", None) == "Linear":  # eager or TorchScript
        return True
    graph = getattr(m, "graph", None)  # a leaf of an unflattened torch.export program
    return (
        isinstance(graph, torch.fx.Graph)
        and not any(True for _ in m.children())
        and any(node.target is torch.ops.aten.linear.default for node in graph.nodes)
    )


def fixed_batch(module: nn.Module) -> int | None:
    """The batch size a `torch.export` program was exported with when its batch dimension is
    static (it then takes no other), else None."""
    from torch.export.unflatten import UnflattenedModule

    graph = getattr(module, "graph", None)
    if not isinstance(module, UnflattenedModule) or not isinstance(graph, torch.fx.Graph):
        return None
    for node in graph.nodes:
        value = node.meta.get("val") if node.op == "placeholder" else None
        if isinstance(value, torch.Tensor) and value.ndim:
            size = value.shape[0]
            return int(size) if isinstance(size, int) else None
    return None


def _import(spec: str) -> Callable[..., nn.Module]:
    """The callable `spec` ("package.module:callable") names, imported from the current folder or
    the installed packages; a ModelError that says what went wrong (no such module, the module
    failed to import and why, no such callable in it)."""
    mod, colon, attr = spec.partition(":")
    if not colon or not mod.strip() or not attr.strip():
        raise ModelError(f"write the factory as module:callable (e.g. mynet:build for build() in mynet.py), not {spec!r}")
    here = os.getcwd()
    added = here not in sys.path and "" not in sys.path  # `python -m` puts the current folder on the path; the console script does not
    if added:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(mod)
    except ModuleNotFoundError as e:
        if e.name and (mod == e.name or mod.startswith(e.name + ".")):
            raise ModelError(f"cannot import the factory '{spec}': there is no module '{e.name}' in the current folder ({here}) "
                             f"or the installed packages; run from the folder that holds {mod.replace('.', '/')}.py, or install its package") from e
        raise ModelError(f"cannot import the factory '{spec}': importing {mod} failed ({first_line(e)}); install what it needs") from e
    except Exception as e:  # the user's module runs its own code on import and may raise anything
        raise ModelError(f"cannot import the factory '{spec}': importing {mod} failed ({type(e).__name__}: {first_line(e)})") from e
    finally:
        if added:
            sys.path.remove(here)
    if not hasattr(module, attr):
        public = sorted(n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n)))[:10]
        raise ModelError(f"cannot import the factory '{spec}': {mod} ({getattr(module, '__file__', '?')}) has no '{attr}'; "
                         f"it defines {', '.join(public) or 'no public callable'}")
    return getattr(module, attr)


def save_checkpoint(module: nn.Module, path: str | Path | BinaryIO, class_names: Sequence[str] | None = None,
                    expected: dict[str, float] | None = None) -> None:
    """Save a faultlines model (one with a `config` dict of its constructor arguments).

    `expected`: what the model scored on its held-out data ({"accuracy", "confidence", "rows"};
    `expectation` computes it), for the input check of later scans. The file holds only
    tensors, strings and numbers, so it loads with weights_only=True.
    """
    config = getattr(module, "config", None)
    if config is None:
        raise ModelError(
            f"{type(module).__name__} has no `config`; save it with torch.jit.save or as a state dict instead"
        )
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "factory": f"{type(module).__module__}:{type(module).__qualname__}",
            "kwargs": dict(config),
            "state_dict": module.state_dict(),
            "class_names": list(class_names) if class_names is not None else None,
            "expected": _expectation(expected),
        },
        path,
    )


def expectation(outputs) -> dict[str, float]:
    """What a checkpoint records of how the model did on held-out `outputs` (its validation
    data): accuracy, mean confidence (the top probability), and how many rows."""
    return {"accuracy": float(outputs.accuracy), "confidence": float(outputs.probs.max(axis=1).mean()), "rows": float(outputs.n)}


def _expectation(expected: Any) -> dict[str, float] | None:
    """`expected` with its three numbers checked (None when absent or not as a checkpoint writes it)."""
    if not isinstance(expected, dict):
        return None
    try:
        found = {k: float(expected[k]) for k in ("accuracy", "confidence", "rows")}
    except (KeyError, TypeError, ValueError):
        return None
    ok = 0 <= found["accuracy"] <= 1 and 0 <= found["confidence"] <= 1 and found["rows"] >= 1
    return found if ok else None


def checkpoint_bytes(module: nn.Module, class_names: Sequence[str] | None = None, expected: dict[str, float] | None = None) -> bytes:
    """A model as the bytes of a file `load_module` reads back: TorchScript stays TorchScript, a
    faultlines model (one with a `config`) becomes a checkpoint, any other module a state dict
    (rebuilt on loading by the same factory)."""
    buf = io.BytesIO()
    if isinstance(module, torch.jit.ScriptModule):
        torch.jit.save(module, buf)
    elif getattr(module, "config", None) is not None:
        save_checkpoint(module, buf, class_names, expected)
    else:
        torch.save(module.state_dict(), buf)
    return buf.getvalue()


def load_module(
    path: str | Path, factory: Callable[[], nn.Module] | str | None = None, trust_pickle: bool = False
) -> tuple[nn.Module, tuple[str, ...] | None]:
    """The module stored at `path`, and its class names if the file records them (see `Classifier.load`)."""
    return _load(path, factory, trust_pickle)[:2]


def _load(
    path: str | Path, factory: Callable[[], nn.Module] | str | None = None, trust_pickle: bool = False
) -> tuple[nn.Module, tuple[str, ...] | None, dict[str, float] | None]:
    """`load_module`, and what the file records of the model's held-out scores (faultlines checkpoints)."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"no such model file: {p}")
    try:
        names = zipfile.ZipFile(p).namelist() if zipfile.is_zipfile(p) else []
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ModelError(f"cannot read {p}: a damaged zip archive ({first_line(e)}); save or copy the model again") from e
    if p.suffix.lower() == ".onnx":
        try:
            return OnnxModel(p.read_bytes(), p.name), None, None
        except OSError as e:
            raise ModelError(f"cannot read {p} ({first_line(e)})") from e
    if "schema.json" in names:  # a skops file: a scikit-learn model, read without unpickling
        return _load_skops(p, trust_pickle), None, None
    if any(n.endswith("/archive_format") for n in names):  # torch.export.save (.pt2)
        try:
            # unflatten restores the module hierarchy, so forward hooks reach named layers
            with warnings.catch_warnings(), _quiet_logger("torch.export"):  # torch.export's notices about its own future
                warnings.simplefilter("ignore", FutureWarning)
                return torch.export.unflatten(torch.export.load(p)), None, None
        except Exception as e:  # torch.export raises many types for a bad archive
            raise ModelError(f"cannot load the exported program {p} ({first_line(e)})") from e
    if any("/code/" in n for n in names):
        try:
            return torch.jit.load(str(p), map_location="cpu"), None, None
        except Exception as e:  # a damaged TorchScript archive fails in the loader or in the code it holds
            raise ModelError(f"cannot load the TorchScript file {p} ({first_line(e)})") from e
    try:
        with warnings.catch_warnings():  # torch's notes on a pickle it then refuses (its protocol, say)
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trust_pickle:
            raise ModelError(
                f"{p} is a pickled model, and unpickling can run arbitrary code; re-save it as TorchScript "
                "or a state dict, or pass --trust-pickle (trust_pickle=True) if you trust the file"
            ) from e
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.load(p, map_location="cpu", weights_only=False)
        except Exception as e:  # the file's own code may raise anything
            raise ModelError(f"cannot unpickle {p} ({first_line(e)})") from e
    except Exception as e:  # a damaged file: torch.load raises RuntimeError, EOFError, KeyError, ...
        raise ModelError(f"cannot read {p} as a torch model file ({first_line(e)})") from e
    if isinstance(obj, nn.Module):
        return obj, None, None
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        spec, kwargs, state = obj.get("factory"), obj.get("kwargs"), obj.get("state_dict")
        if not isinstance(spec, str) or not isinstance(kwargs, dict) or not isinstance(state, dict):
            raise ModelError(f"{p} is a damaged faultlines checkpoint (its factory, kwargs or state_dict is missing); save the model again")
        if not spec.startswith("faultlines.") and not trust_pickle:
            raise ModelError(f"{p} asks to build its model with '{spec}'; pass trust_pickle=True if you trust it")
        module = _build(_import(spec), spec, kwargs)
        _load_state(module, state, p)
        names = obj.get("class_names")
        return module, as_class_names(names) if names else None, _expectation(obj.get("expected"))
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if factory is None:
            raise ModelError(
                f"{p} holds a state dict (weights only); give the code that builds the model: "
                "factory=... (CLI: --factory package.module:callable)"
            )
        module = _build(_import(factory) if isinstance(factory, str) else factory, factory, {})
        _load_state(module, obj, p)
        return module, None, None
    raise ModelError(f"{p} holds a {type(obj).__name__}, not a model, a state dict or a faultlines checkpoint")


def _load_skops(p: Path, trust: bool) -> Estimator:
    """A scikit-learn classifier from a skops file (skops rebuilds it without pickle). Types
    of scikit-learn, numpy and scipy are trusted; any other type the file names (a third-party
    model, the user's own code) only with `trust`."""
    try:
        import skops.io as sio
    except ImportError as e:
        raise ModelError(f"{p} is a skops file; reading it needs skops: pip install 'faultlines[sklearn]'") from e
    try:
        named = sio.get_untrusted_types(file=p)
        others = [t for t in named if t.split(".")[0] not in ("sklearn", "numpy", "scipy", "builtins")]
        if others and not trust:
            raise ModelError(f"{p} holds types outside scikit-learn ({', '.join(others[:5])}); loading them can run their code: "
                             "pass --trust-pickle (trust_pickle=True) if you trust the file")
        estimator = sio.load(p, trusted=named)
    except ModelError:
        raise
    except Exception as e:  # skops raises many types for a damaged or foreign file
        raise ModelError(f"cannot read the skops file {p} ({first_line(e)})") from e
    return Estimator(estimator)


def _build(factory: Callable[..., nn.Module], name: Any, kwargs: dict[str, Any]) -> nn.Module:
    try:
        module = factory(**kwargs)
    except Exception as e:  # the factory is the user's code (or the checkpoint's recorded arguments are off)
        raise ModelError(f"the factory {getattr(factory, '__name__', name)} failed to build the model ({first_line(e)})") from e
    if not isinstance(module, nn.Module):
        raise ModelError(f"the factory {getattr(factory, '__name__', name)} returned a {type(module).__name__}, not a torch nn.Module")
    return module


@contextlib.contextmanager
def _quiet_logger(name: str):
    """Silence a library's logger for the block (torch.export logs a traceback before raising)."""
    logger = logging.getLogger(name)
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


def _load_state(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    try:
        module.load_state_dict(state)
    except Exception as e:  # RuntimeError for mismatched weights; others for a damaged state dict
        raise ModelError(f"the weights in {path} do not fit the model the factory builds ({first_line(e)})") from e
