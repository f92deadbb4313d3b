"""The trained network outside fastmlp: an ONNX model for serving, a PyTorch module for building on.

**ONNX** (:func:`to_onnx`, ``fastmlp export``; needs ``pip install "fastmlp[onnx]"``). The graph,
built with the ``onnx`` package's helpers at opset :data:`OPSET` and checked with ``onnx.checker``::

    images (N, 784) -> Gemm(W1, b1) -> S1 -> Relu -> A1 -> Gemm(W2, b2) -> S2 (the logits, N x K)
    S2 -> Softmax(axis 1) -> probabilities (N, K)
    S2 -> ArgMax(axis 1) -> index (N,) -> Gather(classes) -> label (N,), the class names as strings

``images`` are scaled as the data are: each row a 28 x 28 image row by row, grey level / 255, the
letter light on a dark background (see :mod:`fastmlp.images`). The graph computes in the model's
dtype: float32, or float64 for a model trained in float64 (its input is then float64 too), so the
outputs are the model's own, not a converted copy's. ``label`` is the name of the most probable
class (the first of equal maxima, like :meth:`MLP.predict <fastmlp.MLP.predict>`), so that a
served model answers in letters without a lookup table; the index is ``probabilities.argmax(1)``.
The model's ``metadata_props`` hold ``classes`` (JSON list, in output order), ``fastmlp_version``,
``dtype`` and, when the model knows them, ``training``: the settings of each fit (JSON list).

**PyTorch** (:func:`to_torch`, :func:`torch_params`; needs ``pip install "fastmlp[torch]"``):
``torch.nn.Sequential(Linear(D, H), ReLU(), Linear(H, K))`` holding exactly the model's weights
(``Linear`` stores W transposed: ``weight`` is W1ᵀ), in its dtype, on the CPU. It ends in the
logits, without a softmax layer, as PyTorch's losses (``cross_entropy``) expect.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from . import __version__
from .errors import BackendError, InvalidInputError, InvalidTypeError
from .files import atomic_write, check_file_destination

__all__ = ["OPSET", "to_onnx", "to_torch", "torch_params"]

#: the ONNX opset of the exported graph: the first whose Softmax is the row-wise softmax as defined
#: today; every ONNX Runtime since 1.6 runs it
OPSET = 13
_INSTALL = {"onnx": 'pip install "fastmlp[onnx]"', "torch": 'pip install "fastmlp[torch]"'}


def _import(package, doing):
    """The optional ``package``, or a BackendError saying how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise BackendError(
            f"{doing} needs the package {package!r}, which cannot be imported ({exc}); "
            f"install it with: {_INSTALL[package]}"
        ) from None


# ------------------------------------------------------------------ ONNX
def to_onnx(model, path, *, overwrite=False):
    """Write ``model`` (an :class:`~fastmlp.MLP`) to ``path`` as an ONNX model; returns the path.

    ``path`` must end in ``.onnx``; an existing file is replaced only with ``overwrite=True``. The
    destination is checked before anything is built, and the file is written atomically."""
    if Path(path).suffix.lower() != ".onnx":
        raise InvalidInputError(
            f"ONNX file {path}: give a file name ending in .onnx (e.g. letters.onnx)", parameter="path"
        )
    path = check_file_destination(path, name="ONNX file", overwrite=overwrite)
    onnx = _import("onnx", "exporting to ONNX")
    proto = _onnx_model(onnx, model)
    atomic_write(path, lambda handle: handle.write(proto.SerializeToString()))
    return path


def _onnx_model(onnx, model):
    """The checked ModelProto of ``model``'s network (see the module's docstring)."""
    helper, params = onnx.helper, model.params
    size = sum(array.nbytes for array in params.values())
    if size >= onnx.checker.MAXIMUM_PROTOBUF:
        raise InvalidInputError(
            f"the model's parameters take {size} bytes, more than one ONNX file holds "
            f"({onnx.checker.MAXIMUM_PROTOBUF} bytes); export a model with fewer hidden units"
        )
    graph = _onnx_graph(onnx, params, model.classes)
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="fastmlp",
        producer_version=__version__,
        doc_string=graph.doc_string,
    )
    proto.ir_version = helper.find_min_ir_version_for(proto.opset_import)
    properties = {"classes": json.dumps(list(model.classes)), "fastmlp_version": __version__, "dtype": model.dtype}
    if model.training_ is not None:
        properties["training"] = json.dumps(model.training_)
    helper.set_model_props(proto, properties)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _onnx_graph(onnx, params, classes):
    """images -> (probabilities, label): the network as ONNX nodes, its weights as initializers."""
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    n_in, n_out = params["W1"].shape[0], params["W2"].shape[1]
    element = helper.np_dtype_to_tensor_dtype(params["W1"].dtype)
    nodes = [
        helper.make_node("Gemm", ["images", "W1", "b1"], ["S1"], name="hidden_layer"),  # S1 = X W1 + b1, N×H
        helper.make_node("Relu", ["S1"], ["A1"], name="relu"),  # A1 = relu(S1), N×H
        helper.make_node("Gemm", ["A1", "W2", "b2"], ["S2"], name="output_layer"),  # S2 = A1 W2 + b2, N×K
        helper.make_node("Softmax", ["S2"], ["probabilities"], name="softmax", axis=1),  # P, N×K
        helper.make_node("ArgMax", ["S2"], ["index"], name="argmax", axis=1, keepdims=0),  # N, first maximum
        helper.make_node("Gather", ["classes", "index"], ["label"], name="class_name", axis=0),  # N strings
    ]
    initializers = [numpy_helper.from_array(params[name], name) for name in ("W1", "b1", "W2", "b2")]
    initializers.append(helper.make_tensor("classes", onnx.TensorProto.STRING, [n_out], [c.encode() for c in classes]))
    dtype = params["W1"].dtype.name
    images = helper.make_tensor_value_info(
        "images",
        element,
        ["N", n_in],
        doc_string=f"{dtype} (N, {n_in}): each row a 28 x 28 image row by row, grey level / 255 "
        "(0 the background, 1 full ink: the letter light on a dark background, as in notMNIST)",
    )
    outputs = [
        helper.make_tensor_value_info(
            "probabilities", element, ["N", n_out], doc_string=f"{dtype} (N, {n_out}): softmax, in the order of classes"
        ),
        helper.make_tensor_value_info(
            "label", onnx.TensorProto.STRING, ["N"], doc_string="(N,) the most probable class's name"
        ),
    ]
    doc = (
        f"fastmlp's two-layer network, {n_in} -> {params['W1'].shape[1]} (ReLU) -> {n_out} (softmax), in {dtype}. "
        f"Input images: {images.doc_string}. Outputs: probabilities, and label, the most probable class "
        f"({', '.join(classes)})."
    )
    return helper.make_graph(nodes, "fastmlp", [images], outputs, initializer=initializers, doc_string=doc)


# ---------------------------------------------------------------- PyTorch
def to_torch(model):
    """``torch.nn.Sequential(Linear, ReLU, Linear)`` with exactly ``model``'s weights (see above);
    its ``classes`` attribute holds the class names, which :func:`torch_params` reads back."""
    torch = _import("torch", "MLP.to_torch")
    params = model.params  # host copies, from any backend
    nn, dtype = torch.nn, getattr(torch, model.dtype)
    module = nn.Sequential(  # skip_init: no random initial weights drawn (the caller's RNG is left alone)
        nn.utils.skip_init(nn.Linear, model.n_in, model.n_hidden, dtype=dtype),
        nn.ReLU(),
        nn.utils.skip_init(nn.Linear, model.n_hidden, model.n_out, dtype=dtype),
    )
    with torch.no_grad():
        for layer, (W, b) in ((module[0], ("W1", "b1")), (module[2], ("W2", "b2"))):
            layer.weight.copy_(torch.from_numpy(params[W].T.copy()))  # Linear computes x Wᵀ + b
            layer.bias.copy_(torch.from_numpy(params[b]))
    module.classes = model.classes
    return module


def torch_params(module):
    """(host parameters {W1, b1, W2, b2}, class names or None) of ``module``, a
    ``torch.nn.Sequential(Linear, ReLU, Linear)`` like :func:`to_torch` returns (on any device,
    float32 or float64); the class names are the module's ``classes`` attribute, which
    :func:`to_torch` sets. :meth:`MLP.from_torch <fastmlp.MLP.from_torch>` makes the model."""
    torch = _import("torch", "MLP.from_torch")
    first, second = _linear_layers(torch, module)
    tensors = {"W1": first.weight.T, "b1": first.bias, "W2": second.weight.T, "b2": second.bias}
    _check_dtypes(tensors)
    params = {name: tensor.detach().cpu().numpy().copy() for name, tensor in tensors.items()}
    return params, getattr(module, "classes", None)


def _linear_layers(torch, module):
    """The two Linear layers of a Sequential(Linear, ReLU, Linear), or an error naming what is not."""
    nn = torch.nn
    expected = "a torch.nn.Sequential(Linear(D, H), ReLU(), Linear(H, K)), as MLP.to_torch returns"
    if not isinstance(module, nn.Sequential):
        raise InvalidTypeError(f"from_torch takes {expected}; got {type(module).__name__}", parameter="module")
    layers = list(module)
    if len(layers) == 4 and isinstance(layers[3], (nn.Softmax, nn.LogSoftmax)):
        raise InvalidInputError(
            f"the module ends in {layers[3]}, but fastmlp's network ends in the logits (its softmax is "
            "part of the loss and of predict_proba); pass module[:3]",
            parameter="module",
        )
    kinds = [type(layer) for layer in layers]
    if kinds != [nn.Linear, nn.ReLU, nn.Linear]:
        found = ", ".join(kind.__name__ for kind in kinds) or "no layers"
        raise InvalidTypeError(f"from_torch takes {expected}; got Sequential({found})", parameter="module")
    first, second = layers[0], layers[2]
    for index, layer in ((0, first), (2, second)):
        if layer.bias is None:
            raise InvalidInputError(
                f"module[{index}] is {layer}, without a bias; fastmlp's layers have one (Linear(..., bias=True))",
                parameter="module",
            )
    if first.out_features != second.in_features:
        raise InvalidInputError(
            f"module[0] gives {first.out_features} features but module[2] takes {second.in_features}; "
            "they must agree (the hidden units H)",
            parameter="module",
        )
    return first, second


def _check_dtypes(tensors):
    """Every parameter float32, or every one float64: what fastmlp computes in."""
    dtypes = {str(tensor.dtype).removeprefix("torch.") for tensor in tensors.values()}
    if len(dtypes) > 1 or not dtypes <= {"float32", "float64"}:
        raise InvalidTypeError(
            f"the module's parameters are {', '.join(sorted(dtypes))}; fastmlp computes in float32 or "
            "float64: convert the module with module.float() or module.double()",
            parameter="module",
        )
