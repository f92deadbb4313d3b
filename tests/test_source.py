"""Checks on the package's source: no pickle, no backend names in the math, no fastmath."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fastmlp"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_package_has_sources():
    assert len(SOURCES) > 10


def test_no_pickle_import_anywhere():
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            module = getattr(node, "module", None) or ""
            assert "pickle" not in names and "pickle" not in module.split("."), f"{path.name} imports pickle"


def test_every_np_load_refuses_pickles():
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("load", "read_array")
            ):
                owner = ast.unparse(node.func.value)
                if owner in ("np", "numpy", "np.lib.format"):
                    keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                    assert keywords.get("allow_pickle") == "False", f"{path.name}:{node.lineno} {ast.unparse(node)}"


def test_the_math_and_the_loop_never_name_a_backend():
    for name in ("ops.py", "network.py", "train.py"):
        text = (PACKAGE / name).read_text()
        assert not re.search(r"""==\s*['"](numpy|numba|cupy|torch|jax)['"]""", text), name
        assert not re.search(r"^\s*(import|from)\s+(numba|cupy|torch|jax)", text, re.M), name
        assert "fastmlp.backends" not in text and "from .backends" not in text, name


def _string_constants(path):
    """(line, text, is_docstring) of every string constant in a module."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value, id(node) in docstrings


def test_backend_names_live_only_in_the_backends_package():
    """Every module outside fastmlp/backends/ asks the registry: no backend name, no FASTMLP_BACKEND."""
    from fastmlp.backends import BACKEND_NAMES, ENV_VAR

    library_names = {"numpy"}  # also the name of the library every backend is measured against
    outside = [path for path in SOURCES if "backends" not in path.relative_to(PACKAGE).parts]
    assert len(outside) > 10
    found = []
    for path in outside:
        for line, text, is_docstring in _string_constants(path):
            for name in BACKEND_NAMES:
                pattern = (
                    rf"^{name}$|backend[= ]+['\"]?{name}\b" if name in library_names else rf"(?<![\w.]){name}(?![\w])"
                )
                if re.search(pattern, text.strip()):
                    found.append(f"{path.name}:{line}: {name!r} in {text[:60]!r}")
            if ENV_VAR in text and not is_docstring:
                found.append(f"{path.name}:{line}: {ENV_VAR} in {text[:60]!r}")
    assert found == []


def test_no_kernel_uses_fastmath():
    text = (PACKAGE / "backends" / "_numba_kernels.py").read_text()
    assert "fastmath" not in text.replace("without ``fastmath``", "")
    assert text.count("@njit(") >= 6
