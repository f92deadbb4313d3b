"""Checks on the package's source (no pickle, no backend names in the math, no fastmath, no import
cycle, short functions) and on tests/README.md (every test file, a fault index naming real tests)."""

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
    # a module converting the network to a library's own types names that library, not a backend
    converters = {"export.py": {"torch"}}
    outside = [path for path in SOURCES if "backends" not in path.relative_to(PACKAGE).parts]
    assert len(outside) > 10
    found = []
    for path in outside:
        for line, text, is_docstring in _string_constants(path):
            for name in set(BACKEND_NAMES) - converters.get(path.name, set()):
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


def _module_name(path):
    """fastmlp/backends/base.py -> "fastmlp.backends.base"; a package's __init__.py -> the package."""
    parts = ["fastmlp", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in SOURCES}


def _type_checking_only(tree):
    """The nodes inside ``if TYPE_CHECKING:`` blocks: imports for annotations, never run."""
    blocks = [node for node in ast.walk(tree) if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    return {id(inner) for block in blocks for statement in block.body for inner in ast.walk(statement)}


def _imports(path):
    """The fastmlp modules that ``path`` imports when it runs, at module level and inside functions alike."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . / .. / .module
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            # "from package import module" imports the module; "from module import name" the module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        yield from (target for target in targets if target in MODULES and target != name)


def _cycle(graph):
    """One import cycle of ``graph`` {module: {imported modules}} as a list of names, or None."""
    finished, path = set(), []

    def visit(module):
        path.append(module)
        for imported in sorted(graph[module]):
            if imported in path:
                return [*path[path.index(imported) :], imported]
            if imported not in finished and (found := visit(imported)):
                return found
        finished.add(path.pop())
        return None

    return next((found for module in sorted(graph) if module not in finished and (found := visit(module))), None)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_package_imports_form_no_cycle():
    """Module-level and function-level imports alike: an import inside a function must not hide a knot."""
    graph = {name: set(_imports(path)) for name, path in MODULES.items()}
    assert graph["fastmlp.cli"] >= {"fastmlp.backends", "fastmlp.mlp"}  # the graph sees imports inside functions
    assert _cycle(graph) is None


MAX_FUNCTION_LINES = 45


def test_every_function_is_at_most_45_lines():
    long = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in SOURCES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


TESTS = Path(__file__).resolve().parent
TESTS_README = (TESTS / "README.md").read_text()


def test_tests_readme_names_every_test_file():
    files = sorted(path.name for path in TESTS.glob("test_*.py"))
    assert len(files) > 20
    assert [name for name in files if f"`{name}`" not in TESTS_README] == []


def _defined_tests(path):
    return {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}


def test_the_fault_index_names_tests_that_exist_for_every_row():
    """tests/README.md's fault index: rows 1-52 in order, each naming at least one test, every one defined."""
    index = TESTS_README.split("## The fault list and the tests that cover it", 1)[1]
    rows = re.findall(r"^\| (\d+) \| [^|]+ \| (.+) \|$", index, re.M)
    assert [int(number) for number, _ in rows] == list(range(1, 53))
    missing = []
    for number, tests in rows:
        named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", tests)
        assert named, f"row {number} names no test"
        missing += [f"row {number}: {file}::{name}" for file, name in named if name not in _defined_tests(TESTS / file)]
    assert missing == []
