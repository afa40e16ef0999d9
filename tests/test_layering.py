"""The project's import structure, read from the source with ``ast`` (nothing is imported, so this runs in ms).

- Four layers, visible in the tree, from the bottom up:
  - the networks (``nada/nets/``: StyleGAN2, e4e, IR-SE and their low-level ops), which import only each other;
  - the library (``nada/*.py`` and its packages such as ``nada/styles/``), which imports the networks;
  - the command line (``nada/cli/`` and ``python -m nada``'s ``nada/__main__.py``) and
  - the app (``nada/app/`` and ``app.py``), side by side on top: each imports the library and the networks, never the
    other. Imports run downwards only: the networks import nothing else of nada, the library never imports
    ``nada.cli`` or ``nada.app``, and ``nada.cli`` never imports ``nada.app``. The library stays at most
    :data:`MAX_LIBRARY_MODULES` files at the top of ``nada/``.
- No module is longer than :data:`MAX_MODULE_LINES` lines (aim for ~500): one module per job.
- No import cycle among ``nada/**/*.py`` and ``app.py``, counting imports inside functions too (a cycle hidden in a
  function is still a cycle: it only fails later, at call time, and hides the layering).
- Gradio belongs to the app layer: no other ``nada`` module imports ``gradio`` / ``gradio_client``, or imports an
  app-layer module (which would pull gradio in), so ``import nada.cli`` and ``python -m nada`` never load gradio.
- The project's own modules are imported at the top of each module; imports inside functions are for heavy or
  optional third-party packages only (``clip``, ``dlib``, ``huggingface_hub``, ...).
"""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import PROJECT_ROOT

PACKAGE = "nada"
MAX_LIBRARY_MODULES = 30  # files at the top of nada/, __init__.py and __main__.py included
MAX_MODULE_LINES = 600  # no module of nada/, app.py or bench/ is longer (aim for ~500)
UI_PACKAGES = {"gradio", "gradio_client"}
NETS = "nada.nets"
# What each layer may import (of the project's own modules).
ALLOWED = {"nets": {"nets"}, "library": {"library", "nets"}, "cli": {"library", "nets", "cli"},
           "app": {"library", "nets", "app"}}
SHIMS = {"nada.stylegan2": "nada.nets.stylegan2", "nada.e4e": "nada.nets.e4e", "nada.irse": "nada.nets.irse"}
LOADERS = {"nada.e4e": ("E4ECheckpointError", "encoder_from_checkpoint", "load_e4e")}  # shim names from nada.weights


@dataclass(frozen=True)
class Import:
    importer: str  # module name, e.g. "nada.cli"
    target: str  # imported module, e.g. "nada.weights" or "gradio"
    line: int
    in_function: bool

    def where(self) -> str:
        return f"{_path_of(self.importer)}:{self.line}"


def _module_files() -> dict[str, Path]:
    files = {"app": PROJECT_ROOT / "app.py"}
    for path in sorted((PROJECT_ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def layer(module: str) -> str:
    """"nets" (``nada.nets``, ``nada.nets.*``), "app" (``app.py``, ``nada.app.*``), "cli" (``nada.cli.*`` and
    ``python -m nada``'s ``nada.__main__``) or "library" (everything else under ``nada``)."""
    if module == NETS or module.startswith(NETS + "."):
        return "nets"
    if module == "app" or module == "nada.app" or module.startswith("nada.app."):
        return "app"
    if module in ("nada.cli", "nada.__main__") or module.startswith("nada.cli."):
        return "cli"
    return "library"


APP_LAYER = {m for m in _module_files() if layer(m) == "app"}  # the Gradio UI: the only modules that may import gradio


def _path_of(module: str) -> str:
    path = _module_files()[module]
    return str(path.relative_to(PROJECT_ROOT))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk_imports(nodes, in_function: bool = False):
    """(import node, inside a function?) for every import that runs (``if TYPE_CHECKING:`` blocks never do)."""
    for node in nodes:
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _walk_imports(node.orelse, in_function)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
        else:
            inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from _walk_imports(ast.iter_child_nodes(node), inner)


def _targets(module: str, node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    """The modules an import statement loads: project modules by full name, others by their top-level package."""
    if isinstance(node, ast.Import):
        return [a.name if a.name.split(".")[0] == PACKAGE else a.name.split(".")[0] for a in node.names]
    if node.level:  # relative: resolved against the importer's package (a package's __init__ is its own package)
        package = module if _module_files()[module].stem == "__init__" else module.rsplit(".", 1)[0]
        base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join(base_parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if base.split(".")[0] != PACKAGE:
        return [base.split(".")[0]]
    # "from nada import weights" loads the submodule nada.weights; "from nada import __version__" loads nada itself
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
    return subs or [base]


def project_imports() -> list[Import]:
    """Every import statement of nada/**/*.py and app.py that runs, with what it loads."""
    files = _module_files()
    known = set(files)
    out = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, in_function in _walk_imports(tree.body):
            for target in _targets(module, node, known):
                out.append(Import(module, target, node.lineno, in_function))
    return out


def _cycles(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """One cycle (as a closed list of modules) per strongly connected component that has one (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, {}):
                components.append(comp)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    cycles = []
    for comp in components:  # shortest way from the component's first module back to itself, inside the component
        members, start = set(comp), sorted(comp)[0]
        paths = {start: [start]}
        frontier = [start]
        cycle = None
        while frontier and cycle is None:
            nxt = []
            for v in frontier:
                for w in sorted(edges.get(v, {})):
                    if w == start:
                        cycle = paths[v] + [start]
                        break
                    if w in members and w not in paths:
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
                if cycle:
                    break
            frontier = nxt
        cycles.append(cycle)
    return cycles


def test_no_import_cycles():
    imports = project_imports()
    known = set(_module_files())
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if imp.target in known and imp.target != imp.importer:
            edges.setdefault(imp.importer, {}).setdefault(imp.target, imp)
    problems = []
    for cycle in _cycles(edges):
        steps = [f"{a} -> {b} ({edges[a][b].where()}{', in a function' if edges[a][b].in_function else ''})"
                 for a, b in zip(cycle, cycle[1:])]
        problems.append(" -> ".join(cycle) + ":\n    " + "\n    ".join(steps))
    assert not problems, "import cycles:\n  " + "\n  ".join(problems)


def test_layers_import_downwards_only():
    """The networks import only networks; the library never imports the command line or the app; the command line
    never imports the app (see :data:`ALLOWED`)."""
    known = set(_module_files())
    bad = [f"{imp.where()}: {imp.importer} ({layer(imp.importer)}) imports {imp.target} ({layer(imp.target)})"
           for imp in project_imports()
           if imp.target in known and layer(imp.target) not in ALLOWED[layer(imp.importer)]]
    assert not bad, "imports across layers:\n" + "\n".join(bad)


def test_the_networks_import_nothing_above_them():
    """``nada.nets`` imports no other part of nada, not even the package ``nada`` itself (``from nada import x``)."""
    bad = [f"{imp.where()}: {imp.importer} imports {imp.target}" for imp in project_imports()
           if layer(imp.importer) == "nets" and imp.target.split(".")[0] == PACKAGE and layer(imp.target) != "nets"]
    assert not bad, "the networks must not import the rest of nada:\n" + "\n".join(bad)


def test_the_tree_shows_the_layers():
    """The library sits at the top of nada/ in at most MAX_LIBRARY_MODULES files; the networks, the app and the
    command line are packages of their own, and nothing named ``app_*`` or ``cli_*`` is left beside the library."""
    top = sorted(p.name for p in (PROJECT_ROOT / PACKAGE).glob("*.py"))
    assert len(top) <= MAX_LIBRARY_MODULES, f"{len(top)} modules at the top of nada/: {top}"
    assert not [n for n in top if n.startswith(("app_", "cli_"))], top
    for package in ("nets", "app", "cli"):
        assert (PROJECT_ROOT / PACKAGE / package / "__init__.py").is_file(), package
    assert {"nada.nets.stylegan2", "nada.nets.e4e", "nada.nets.irse", "nada.nets.ops", "nada.nets.autotune",
            "nada.app.generate_tab", "nada.app.adapt_tab", "nada.app.invert_tab",
            "nada.cli.adapt"} <= set(_module_files())
    listed = re.search(r"^packages = \[(.*)\]", (PROJECT_ROOT / "pyproject.toml").read_text(), re.M)
    packages = set(re.findall(r'"([\w.]+)"', listed[1])) if listed else set()
    folders = {".".join(init.parent.relative_to(PROJECT_ROOT).parts)
               for init in (PROJECT_ROOT / PACKAGE).rglob("__init__.py")}
    assert folders <= packages, f"pyproject.toml's [tool.setuptools] packages miss {sorted(folders - packages)}"


def test_no_module_is_too_long():
    """One module per job: no module of nada/, app.py or bench/ is over MAX_MODULE_LINES lines (tests excluded)."""
    files = [PROJECT_ROOT / "app.py", *(PROJECT_ROOT / PACKAGE).rglob("*.py"), *(PROJECT_ROOT / "bench").rglob("*.py")]
    long = {str(p.relative_to(PROJECT_ROOT)): n for p in files
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by job): {long}"


@pytest.mark.parametrize("old, new", sorted(SHIMS.items()))
def test_the_old_network_paths_still_work_and_warn(old, new):
    """``nada.stylegan2``, ``nada.e4e`` and ``nada.irse`` (the contracts' names) give the very objects of their new
    homes, and say where those live now with a DeprecationWarning, each time they are imported afresh."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the first import may warn here: reloading warns below
        module, moved = importlib.import_module(new), importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {new}\b.*works for one release"):
        importlib.reload(moved)
    public = [n for n in vars(module) if not n.startswith("_") and getattr(module, n).__class__.__name__ != "module"
              and getattr(getattr(module, n), "__module__", new) == new]
    assert public and set(public) <= set(moved.__all__), f"{old} lacks {sorted(set(public) - set(moved.__all__))}"
    for name in moved.__all__:
        assert getattr(moved, name) is getattr(module, name, None) or name in LOADERS.get(old, ()), name
    for name in LOADERS.get(old, ()):
        assert getattr(moved, name) is getattr(importlib.import_module("nada.weights"), name), name


def test_the_old_network_paths_warn_in_a_fresh_process():
    """The warning is seen by a program that imports an old path first (no module cached), and the contracts' classes
    are the networks' own."""
    code = textwrap.dedent("""
        import warnings
        warnings.simplefilter("error", DeprecationWarning)
        for old in ("nada.stylegan2", "nada.e4e", "nada.irse"):
            try:
                __import__(old)
            except DeprecationWarning as exc:
                assert "moved to nada.nets." in str(exc), exc
            else:
                raise AssertionError(old + " imported without a DeprecationWarning")
        warnings.simplefilter("ignore", DeprecationWarning)
        import nada, nada.stylegan2, nada.e4e, nada.irse, nada.nets.stylegan2, nada.nets.e4e, nada.nets.irse
        assert nada.stylegan2.Generator is nada.nets.stylegan2.Generator
        assert nada.e4e.Encoder4Editing is nada.nets.e4e.Encoder4Editing
        assert nada.irse.Backbone is nada.nets.irse.Backbone
        assert nada.e4e.load_e4e is nada.weights.load_e4e
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_gradio_stays_in_the_app_layer():
    bad = [f"{imp.where()}: {imp.importer} imports {imp.target}" for imp in project_imports()
           if imp.importer not in APP_LAYER and (imp.target in UI_PACKAGES or imp.target in APP_LAYER)]
    assert not bad, (f"only the app layer ({', '.join(sorted(APP_LAYER))}) may import gradio or app-layer modules:\n"
                     + "\n".join(bad))


def test_project_modules_are_imported_at_module_level():
    known = set(_module_files())
    bad = [f"{imp.where()}: {imp.importer} imports {imp.target} inside a function" for imp in project_imports()
           if imp.in_function and imp.target in known and imp.importer != "app"]
    assert not bad, "import the project's own modules at the top of the module:\n" + "\n".join(bad)


def test_the_checks_see_what_they_check():
    """The parser finds both kinds of imports and resolves relative and absolute forms (guards against a check
    that passes because it sees nothing)."""
    imports = {(i.importer, i.target, i.in_function) for i in project_imports()}
    assert ("nada.cli", "nada.cli.adapt", False) in imports  # from . import adapt, evaluate, ... (a package)
    assert ("nada.cli.adapt", "nada.train", False) in imports  # from ..train import ... (two dots)
    assert ("nada.id_loss", "nada.weights", False) in imports  # from nada import weights
    assert ("nada.nets.e4e", "nada.nets.irse", False) in imports  # from .irse import ... (inside the networks)
    assert ("nada.tiny", "nada.nets.stylegan2", False) in imports  # from .nets.stylegan2 import Generator
    assert ("nada.stylegan2", "nada.nets.stylegan2", False) in imports  # the old path's shim
    assert ("nada.styles", "nada.styles.style", False) in imports  # from .style import ... (a package's __init__)
    assert ("nada.styles.style", "nada", False) in imports  # from .. import __version__
    assert ("nada.styles.saved", "nada.weights", False) in imports  # from ..weights import ...
    assert all(layer(m) == "nets" for m in ("nada.nets", "nada.nets.ops")) and layer("nada.networks") == "library"
    assert any(importer in APP_LAYER and target == "gradio" for importer, target, _ in imports)
    assert ("nada.clip_models", "clip", True) in imports  # heavy: imported inside import_clip()
    edges = {"a": {"b": None}, "b": {"c": None}, "c": {"a": None}, "d": {"a": None}}
    assert _cycles(edges) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b": None}, "b": {}}) == []


def test_the_code_compiles_on_python_3_10():
    """ZeroGPU Spaces document Python 3.10; CI runs 3.11: nothing may need a newer Python than 3.10."""
    candidates = [shutil.which("python3.10"), *map(str, Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))]
    works = [c for c in candidates if c and subprocess.run([c, "-c", "pass"], capture_output=True).returncode == 0]
    if not works:
        pytest.skip("no working python3.10 on this machine")
    python310 = works[0]
    files = [str(p) for p in (PROJECT_ROOT / "nada").rglob("*.py")] + [str(PROJECT_ROOT / "app.py")]
    code = "import sys\nfor f in sys.argv[1:]:\n    compile(open(f).read(), f, 'exec')"  # writes no .pyc files
    out = subprocess.run([python310, "-c", code, *files], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
