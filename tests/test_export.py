"""The trained network outside fastmlp: ONNX files run by ONNX Runtime, PyTorch modules, `fastmlp export`.
(The documentation's own examples of both run in test_docs.py.)"""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp.weights import save_weights

from .helpers import to_host
from .test_cli import fastmlp_cli


@pytest.fixture
def onnx():
    return pytest.importorskip("onnx", reason='onnx is not installed (pip install "fastmlp[onnx]")')


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason='PyTorch is not installed (pip install "fastmlp[torch]")')


def run_onnx(path, images):
    """(probabilities, labels, session): ``images`` through ONNX Runtime's CPU provider."""
    ort = pytest.importorskip("onnxruntime", reason='ONNX Runtime is not installed (pip install "fastmlp[onnx]")')
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities, labels = session.run(None, {"images": images})
    return probabilities, labels, session


def metadata(onnx, path):
    return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}


# ------------------------------------------------------------------ ONNX
def test_onnx_runtime_reads_every_test_image_as_predict_does(onnx, trained_model, notmnist, tmp_path):
    path = trained_model.to_onnx(tmp_path / "letters.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    images = notmnist.test[0]
    probabilities, labels, session = run_onnx(path, images)
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [("images", "tensor(float)", ["N", 784])]
    assert [(o.name, o.type) for o in session.get_outputs()] == [
        ("probabilities", "tensor(float)"),
        ("label", "tensor(string)"),
    ]
    predicted = np.array(trained_model.classes)[trained_model.predict(images)]
    assert labels.shape == (2000,) and (labels == predicted).all()  # the same letter for every image
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, trained_model.predict_proba(images), rtol=0, atol=1e-5)
    assert "grey level / 255" in onnx.load(str(path)).graph.input[0].doc_string


def test_label_is_the_first_of_equal_maxima_as_in_predict(onnx, trained_model, notmnist, tmp_path):
    params = dict(trained_model.params)
    params["W2"][:, 2:] = params["W2"][:, 1:2]  # outputs 1 to 9 equal: ties everywhere
    params["b2"][2:] = params["b2"][1]
    model = fastmlp.MLP.from_params(params, backend="numpy")
    _, labels, _ = run_onnx(model.to_onnx(tmp_path / "ties.onnx"), notmnist.test[0])
    predicted = model.predict(notmnist.test[0])
    assert set(predicted) == {0, 1}  # the first of the tied outputs, or A
    assert list(labels) == [model.classes[k] for k in predicted]


def test_the_onnx_file_records_classes_version_and_training(onnx, notmnist, tmp_path):
    model = fastmlp.MLP(784, 16, 10, seed=3, classes=[f"letter {c}" for c in "ABCDEFGHIJ"])
    model.fit(*notmnist.train, epochs=2, lr=0.05, momentum=0.5)
    model.save(tmp_path / "model.npz")
    path = fastmlp.MLP.load(tmp_path / "model.npz").to_onnx(tmp_path / "model.onnx")
    props = metadata(onnx, path)
    assert json.loads(props["classes"]) == [f"letter {c}" for c in "ABCDEFGHIJ"]
    assert props["fastmlp_version"] == fastmlp.__version__ and props["dtype"] == "float32"
    assert json.loads(props["training"]) == [
        {
            "epochs": 2,
            "lr": 0.05,
            "momentum": 0.5,
            "batch_size": None,
            "seed": 3,
            "backend": model.backend,
            "dtype": "float32",
            "precision": "float32",
            "train_accuracy": model.history_.train_acc[-1],
        }
    ]
    _, labels, _ = run_onnx(path, notmnist.test[0][:50])
    assert list(labels) == [model.classes[k] for k in model.predict(notmnist.test[0][:50])]


def test_a_float64_model_exports_in_float64(onnx, trained_model, notmnist64, tmp_path):
    model = fastmlp.MLP.from_params({name: a.astype(np.float64) for name, a in trained_model.params.items()})
    path = model.to_onnx(tmp_path / "model64.onnx")
    images = notmnist64.test[0]
    probabilities, labels, session = run_onnx(path, images)
    assert session.get_inputs()[0].type == "tensor(double)" and probabilities.dtype == np.float64
    assert metadata(onnx, path)["dtype"] == "float64"
    np.testing.assert_allclose(probabilities, model.predict_proba(images), rtol=0, atol=1e-12)
    assert (labels == np.array(model.classes)[model.predict(images)]).all()


def test_a_weights_file_of_an_older_fastmlp_exports_with_the_default_letters(onnx, trained_model, notmnist, tmp_path):
    older = tmp_path / "older.npz"  # as fastmlp 0.1.0 wrote them: no class names, precision or training
    save_weights(older, trained_model.params, extra_metadata={"fastmlp_version": "0.1.0"})
    result = fastmlp_cli("export", str(older), str(tmp_path / "older.onnx"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {tmp_path / 'older.onnx'}: ONNX opset 13, 784 -> 100 -> 10 in float32")
    onnx.checker.check_model(str(tmp_path / "older.onnx"), full_check=True)
    props = metadata(onnx, tmp_path / "older.onnx")
    assert json.loads(props["classes"]) == list("ABCDEFGHIJ") and "training" not in props
    _, labels, _ = run_onnx(tmp_path / "older.onnx", notmnist.test[0])
    assert (labels == np.array(list("ABCDEFGHIJ"))[trained_model.predict(notmnist.test[0])]).all()


def test_export_replaces_a_file_only_with_overwrite(onnx, trained_model_file, tmp_path):
    out = tmp_path / "letters.onnx"
    out.write_bytes(b"the user's file")
    refused = fastmlp_cli("export", str(trained_model_file), str(out))
    assert refused.returncode == 2 and out.read_bytes() == b"the user's file"
    replaced = fastmlp_cli("export", str(trained_model_file), str(out), "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    onnx.checker.check_model(str(out), full_check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["letters.onnx"]  # no temporary file left


def _without_onnx(model, out):
    """`fastmlp export` in a Python where `import onnx` fails as if it were not installed."""
    code = "import sys; sys.modules['onnx'] = None\nfrom fastmlp.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, "export", str(model), str(out)], capture_output=True, text=True, timeout=120
    )


#: case -> (the destination, relative to the test's folder, and the pattern of the one error line)
BAD_EXPORTS = {
    "missing model": ("letters.onnx", r"weights file \S*missing\.npz does not exist"),
    "existing destination": (
        "exists.onnx",
        r"ONNX file \S*exists\.onnx: already exists; choose another path, or pass --overwrite",
    ),
    "not .onnx": ("letters.npz", r"ONNX file letters\.npz: give a file name ending in \.onnx"),
    "a folder": ("folder.onnx", r"ONNX file \S*folder\.onnx: is a folder; give a file name"),
    "missing folder": ("nowhere/letters.onnx", r"ONNX file \S*letters\.onnx: the folder \S*nowhere does not exist"),
    "onnx not installed": (
        "letters.onnx",
        r"exporting to ONNX needs the package 'onnx'.*install it with: pip install \"fastmlp\[onnx\]\"",
    ),
}


@pytest.mark.parametrize("case", BAD_EXPORTS, ids=list(BAD_EXPORTS))
def test_bad_exports_are_one_line_and_write_nothing(trained_model_file, tmp_path, case):
    out, pattern = BAD_EXPORTS[case]
    (tmp_path / "exists.onnx").write_bytes(b"the user's file")
    (tmp_path / "folder.onnx").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    model = tmp_path / "missing.npz" if case == "missing model" else trained_model_file
    if case == "onnx not installed":
        result = _without_onnx(model, tmp_path / out)
    else:
        result = fastmlp_cli("export", str(model), out if case == "not .onnx" else str(tmp_path / out), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "exists.onnx").read_bytes() == b"the user's file" and not any(
        (tmp_path / "folder.onnx").iterdir()
    )


# ---------------------------------------------------------------- PyTorch
def test_the_torch_round_trip_is_bit_identical_on_every_backend(torch, trained_model, backend_name, dtype):
    host = {name: array.astype(dtype) for name, array in trained_model.params.items()}
    model = fastmlp.MLP.from_params(host, backend=backend_name, classes=list("abcdefghij"))
    module = model.to_torch()
    assert [type(layer) for layer in module] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]
    assert module[0].weight.dtype == getattr(torch, dtype)
    again = fastmlp.MLP.from_torch(module, backend=backend_name)
    assert again.backend == model.backend and again.dtype == dtype and again.classes == tuple("abcdefghij")
    for name, array in host.items():
        assert again.params[name].dtype == array.dtype and np.array_equal(again.params[name], array), name


def test_the_torch_module_gives_fastmlp_logits(torch, trained_model, notmnist, notmnist64, dtype):
    model = fastmlp.MLP.from_params({name: a.astype(dtype) for name, a in trained_model.params.items()})
    images = (notmnist if dtype == "float32" else notmnist64).test[0]
    with torch.no_grad():
        logits = model.to_torch()(torch.from_numpy(images)).numpy()
    expected = to_host(model._logits(images))
    assert logits.dtype == expected.dtype == np.dtype(dtype)
    assert np.abs(logits - expected).max() <= 1e-6 * np.abs(expected).max()  # to 1e-6 of the logits' scale


def test_a_fine_tuned_torch_module_comes_back_with_its_new_weights(torch, trained_model, notmnist):
    module = trained_model.to_torch()
    images, labels = (torch.from_numpy(a) for a in notmnist.train)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(module(images), labels)  # the module ends in the logits
    loss.backward()
    optimizer.step()
    tuned = fastmlp.MLP.from_torch(module)
    assert np.array_equal(tuned.params["W1"], module[0].weight.detach().numpy().T)
    before = trained_model.evaluate(*notmnist.train)[0]
    assert float(loss.detach()) == pytest.approx(before, rel=1e-5)
    assert tuned.evaluate(*notmnist.train)[0] < before


def _with_nan(module):
    module[2].weight.data[0, 0] = float("nan")
    return module


#: case -> (the module, made from torch.nn; the error; the pattern of its message)
BAD_MODULES = {
    "not a Sequential": (lambda nn: nn.Linear(784, 10), fastmlp.InvalidTypeError, r"got Linear$"),
    "a softmax at the end": (
        lambda nn: nn.Sequential(nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10), nn.Softmax(dim=1)),
        fastmlp.InvalidInputError,
        r"ends in Softmax\(dim=1\).*pass module\[:3\]",
    ),
    "other layers": (
        lambda nn: nn.Sequential(nn.Linear(784, 8), nn.Tanh(), nn.Linear(8, 10)),
        fastmlp.InvalidTypeError,
        r"got Sequential\(Linear, Tanh, Linear\)",
    ),
    "no bias": (
        lambda nn: nn.Sequential(nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10, bias=False)),
        fastmlp.InvalidInputError,
        r"module\[2\] is Linear\(in_features=8, out_features=10, bias=False\), without a bias",
    ),
    "hidden sizes disagree": (
        lambda nn: nn.Sequential(nn.Linear(784, 8), nn.ReLU(), nn.Linear(9, 10)),
        fastmlp.InvalidInputError,
        r"module\[0\] gives 8 features but module\[2\] takes 9",
    ),
    "bfloat16": (
        lambda nn: nn.Sequential(nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10)).bfloat16(),
        fastmlp.InvalidTypeError,
        r"parameters are bfloat16; fastmlp computes in float32 or float64: convert the module with module\.float\(\)",
    ),
    "mixed dtypes": (
        lambda nn: nn.Sequential(nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10).double()),
        fastmlp.InvalidTypeError,
        r"parameters are float32, float64;",
    ),
    "NaN weights": (
        lambda nn: _with_nan(nn.Sequential(nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10))),
        fastmlp.InvalidInputError,
        r"W2 contains NaN or infinity",
    ),
}


@pytest.mark.parametrize("case", BAD_MODULES, ids=list(BAD_MODULES))
def test_from_torch_refuses_what_is_not_the_network(torch, case):
    make, error, pattern = BAD_MODULES[case]
    with pytest.raises(error, match=pattern):
        fastmlp.MLP.from_torch(make(torch.nn))
