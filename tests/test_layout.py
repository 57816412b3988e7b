"""The layout of the library (docs/ARCHITECTURE.md): its modules import one another without a
circle, and so do its folders; the command-line boundary is imported by no library module; the
library imports no script; the architecture names the real modules."""

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIBRARY = ("spherical_models", "utils")
ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_modules() -> dict[str, Path]:
    return {module_name(path): path for package in LIBRARY
            for path in sorted((REPO / package).rglob("*.py"))}


def script_roots() -> set[str]:
    """Top-level names of the repository that are not the library: scripts and their folders."""
    roots = {path.stem for path in REPO.glob("*.py")}
    roots |= {path.name for path in REPO.iterdir() if path.is_dir()
              and not path.name.startswith((".", "_")) and path.name not in LIBRARY}
    return roots


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The names ``path`` imports, at the top or inside a function, each cut to its longest
    prefix in ``known`` (or to its first component when none is)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parents + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for imported in names:
            prefix = imported
            while prefix and prefix not in known:
                prefix = prefix.rpartition(".")[0]
            found.add(prefix or imported.split(".")[0])
    found.discard(name)
    return found


def module_graph() -> dict[str, set[str]]:
    modules = library_modules()
    return {name: imports_of(path, set(modules)) & set(modules)
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of ``graph`` (its nodes in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target):], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def floor(module: str) -> str:
    """The folder of a module of spherical_models (a top-level module is its own), or utils."""
    parts = module.split(".")
    return parts[0] if parts[0] != "spherical_models" else ".".join(parts[:2])


def test_the_library_imports_itself_without_a_circle():
    graph = module_graph()
    assert "spherical_models.training.trainer" in graph and "spherical_models.cli" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_folders_import_each_other_without_a_circle():
    graph: dict[str, set[str]] = {}
    for module, targets in module_graph().items():
        graph.setdefault(floor(module), set()).update(
            floor(t) for t in targets if floor(t) != floor(module))
    assert {"spherical_models.entropy", "spherical_models.coding", "spherical_models.training",
            "spherical_models.evaluation", "spherical_models.models",
            "spherical_models.planar"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    assert not {t for t in graph["utils"] if t.startswith("spherical_models")}


def test_no_library_module_imports_the_command_line_boundary():
    importers = sorted(m for m, targets in module_graph().items() if "spherical_models.cli"
                       in targets)
    assert importers == []
    # the boundary itself reaches the pipeline only when it runs one
    cli = ast.parse((REPO / "spherical_models" / "cli.py").read_text())
    top = {n.module for n in cli.body if isinstance(n, ast.ImportFrom)}
    assert "spherical_models.config" in top and "spherical_models.pipeline" not in top


def test_the_library_imports_no_script():
    roots = script_roots()
    assert {"main_sphere_compression", "oslo_codec", "misc", "scripts", "tests"} <= roots
    modules = library_modules()
    offenders = {m: sorted(t for t in imports_of(path, set(modules)) if t.split(".")[0] in roots)
                 for m, path in modules.items()}
    assert {m: t for m, t in offenders.items() if t} == {}
    code = ("import sys, spherical_models, utils; "
            "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, text=True,
                            capture_output=True).stdout.split()
    assert sorted(set(loaded) & roots) == []


def test_the_architecture_names_the_real_modules():
    text = ARCHITECTURE.read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    # every module of spherical_models, in the row of its folder
    for path in sorted((REPO / "spherical_models").rglob("*.py")):
        if path.name == "__init__.py":
            continue
        folder = path.parent.relative_to(REPO).as_posix() + "/"
        if folder == "spherical_models/":
            rows = [row for row in table if f"`spherical_models/{path.name}`" in row
                    or ("`spherical_models/" in row and f"`{path.name}`" in row)]
        else:
            rows = [row for row in table if f"`{folder}`" in row and f"`{path.name}`" in row]
        assert rows, f"{path.relative_to(REPO)} is not in the table of {ARCHITECTURE.name}"
    # every path it names exists
    for named in re.findall(r"`((?:spherical_models|utils)/[\w/]*(?:\.py)?)`", text):
        assert (REPO / named).exists(), named
    # every dotted name of the data-flow picture is a module, or a name one defines
    picture = text[text.index("```"):text.rindex("```")]
    modules = library_modules()
    short = {name.split(".", 1)[1] for name in modules if name.startswith("spherical_models.")}
    checked = 0
    for dotted in re.findall(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+", picture):
        if dotted.split(".")[0] in LIBRARY:
            full = dotted
        elif dotted.split(".")[0] in {s.split(".")[0] for s in short}:
            full = "spherical_models." + dotted
        else:
            continue  # a file name, model.code_latents...
        prefix, rest = full, []
        while prefix not in modules:
            assert "." in prefix, dotted
            prefix, _, last = prefix.rpartition(".")
            rest.insert(0, last)
        if rest:
            tree = ast.parse(modules[prefix].read_text())
            defined = {n.name for n in tree.body if isinstance(
                n, (ast.FunctionDef, ast.ClassDef))}
            defined |= {t.id for n in tree.body if isinstance(n, ast.Assign)
                        for t in n.targets if isinstance(t, ast.Name)}
            assert rest[0] in defined, f"{dotted}: {prefix} defines no {rest[0]}"
        checked += 1
    assert checked >= 20
