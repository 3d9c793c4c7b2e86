"""The project's import graph: no circles, and imports at the top of modules.

The packages' sources are parsed (nothing is imported): every ``import`` and ``from ...
import`` becomes an edge between modules, whether at module level or inside a function,
except those under ``if TYPE_CHECKING:``. Imports inside functions are allowed only at
the command-line edge (``cli/``, installed as ``disentangle_eval.cli``, where they keep
``--help`` fast) and for the optional heavy dependencies named, module by module, in
``FUNCTION_LEVEL_ALLOWED``.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Source folder -> package name (cli/ installs as disentangle_eval.cli, see pyproject.toml).
PACKAGES = {"disentangle_eval": "disentangle_eval", "reference_models": "reference_models",
            "cli": "disentangle_eval.cli"}
CLI_EDGE = "disentangle_eval.cli"
# The only imports allowed inside functions outside the command-line edge: optional heavy
# dependencies that only one path needs, keyed (importing module, top-level package).
# Each would otherwise be paid by every ``import disentangle_eval`` or by every training
# run that never takes that path.
FUNCTION_LEVEL_ALLOWED = {
    # DCI's backend="sklearn" only. Importing scikit-learn's ensembles and linear models
    # (and joblib) at the top would add 1.4-2.9 s to ``import disentangle_eval`` (2.8-3.5 s
    # without them; ``python -X importtime``, five runs each, loaded 2-core machine). The
    # plain references of the other metrics import scikit-learn at the top of
    # _sklearn_references, which only the tests and benchmarks import.
    ("disentangle_eval._dci_predictors", "sklearn"): "DCI's scikit-learn backend",
    ("disentangle_eval._dci_predictors", "joblib"): "DCI's scikit-learn backend",
    # Figures are written on request only (about a second to import matplotlib).
    ("disentangle_eval.plotting", "matplotlib"): "plots of scores",
    ("reference_models.training.figures", "matplotlib"): "training figures",
    # Only the Shapes3D dataset is stored as HDF5 (h5py: about 0.4 s).
    ("reference_models.data.shapes3d", "h5py"): "the Shapes3D file",
}


def _modules() -> dict[str, Path]:
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imports(name: str, path: Path, modules: dict[str, Path]):
    """Yield (imported module, line, inside a function) for every import of a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if _is_package(path) else name.rpartition(".")[0]

    def visit(node, in_function: bool):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                yield from visit(child, in_function)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, in_function
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                yield (submodule if submodule in modules else target), node.lineno, in_function
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                 ast.Lambda))
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner)

    yield from visit(tree, False)


def _graph():
    modules = _modules()
    edges, function_level = {name: set() for name in modules}, []
    for name, path in modules.items():
        for target, line, in_function in _imports(name, path, modules):
            if target in modules and target != name:
                edges[name].add(target)
            if in_function:
                function_level.append((name, target, f"{path.relative_to(ROOT)}:{line}"))
    return edges, function_level


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def test_the_walk_sees_the_project():
    edges, function_level = _graph()
    assert {"reference_models.training.loop", "reference_models.training.run_folder",
            "disentangle_eval._dci", "disentangle_eval.cli.train_reference"} <= set(edges)
    assert "reference_models.training.run_folder" in edges["reference_models.training.loop"]
    assert any(module == CLI_EDGE + ".main" for module, _, _ in function_level)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    assert _cycles(_graph()[0]) == []


def _not_allowed(function_level) -> list[str]:
    """The function-level imports outside the CLI edge that the allow-list does not name."""
    return [f"{where}: {module} imports {target} inside a function"
            for module, target, where in function_level
            if not module.startswith(CLI_EDGE)
            and (module, target.partition(".")[0]) not in FUNCTION_LEVEL_ALLOWED]


def test_function_level_imports_only_at_the_cli_edge_or_allowed_heavy_dependencies():
    assert _not_allowed(_graph()[1]) == []


def test_every_allowed_function_level_import_is_still_there():
    used = {(module, target.partition(".")[0]) for module, target, _ in _graph()[1]}
    assert set(FUNCTION_LEVEL_ALLOWED) - used == set()


def test_a_function_level_import_is_caught(tmp_path):
    path = tmp_path / "lazy.py"
    path.write_text("import numpy\n\n\ndef f():\n    import torch\n    from sklearn import svm\n"
                    "    return torch, svm\n")
    name = "disentangle_eval._lazy"
    found = [(name, target, f"lazy.py:{line}")
             for target, line, in_function in _imports(name, path, {}) if in_function]
    assert _not_allowed(found) == ["lazy.py:5: disentangle_eval._lazy imports torch inside a "
                                   "function", "lazy.py:6: disentangle_eval._lazy imports "
                                   "sklearn inside a function"]
    assert _not_allowed([("disentangle_eval._dci_predictors", "sklearn.svm", "x.py:1"),
                         ("disentangle_eval.cli.main", "torch", "y.py:1")]) == []
