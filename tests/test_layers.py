"""The imports of app/ run one way: the layers of docs/architecture.md, read from the source.

Each package has a domain face (models, schemas, service, ...) and an HTTP face (router.py, pages.py,
dependencies.py, and a kind's __init__.py, which registers its routes). All domain faces sit below the
shared HTTP plumbing (app.dependencies, app.web, app.forms), which sits below all HTTP faces; within each,
packages are ordered as in LAYERS. An import must point to a lower layer, into its own package, or at a
`models` module (the ORM tables: any service may query any table, since foreign keys run both ways).
"""

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"

# Each list is from the bottom up: a module may import those before it.
UTILITIES = [
    "errors",
    "settings",
    "ids",
    "names",
    "storable",
    "db",
    "pagination",
    "uploads",
    "markdown",
    "static_files",
    "migrate",
    "access_log",
]
# Packages from the bottom up; those on one line may not import each other.
LAYERS = [
    ["auth"],
    ["models_registry"],
    ["projects"],
    ["prompts"],
    ["labeling"],
    ["agreement", "imports"],
    ["exports"],
    ["jobs"],
    ["runs"],  # what the kinds share (app/runs/*.py)
    # each kind of work, one package each, found on disk (a new kind is a new folder, nothing else);
    # kinds never import each other
    sorted(f"runs.{kind.name}" for kind in (APP / "runs").iterdir() if (kind / "__init__.py").is_file()),
    ["evaluations"],
    ["dashboard"],
]
PLUMBING = ["admission", "body_limits", "dependencies", "web", "forms", "response_headers", "api_docs"]
TOP = ["models", "demo", "main", "cli"]
HTTP_FACES = {"router", "pages", "dependencies"}
HTTP_ONLY = {"dashboard"}  # a page made of other packages' cards: all of it is HTTP face


def package_of(module: str) -> str:
    """app.runs.reward.service -> runs.reward; app.projects.pages -> projects; app.web -> web."""
    parts = module.split(".")[1:]
    if len(parts) > 1 and parts[0] == "runs" and (APP / "runs" / parts[1]).is_dir():
        return f"runs.{parts[1]}"
    return parts[0]


def is_http_face(module: str) -> bool:
    package = package_of(module)
    last = module.split(".")[-1]
    if package in PLUMBING or package in TOP:
        return False
    if package in HTTP_ONLY:
        return True
    if package.startswith("runs.") and module == f"app.{package}":  # a kind registers its routes
        return True
    # a package with more than one page or router module names them `<what>_pages`, `<what>_router`
    named_face = last.endswith(tuple(f"_{face}" for face in HTTP_FACES))
    return last in HTTP_FACES or named_face or (package == "runs" and last == "project_card")


def rank(module: str) -> tuple[int, int]:
    """(layer, position): an import must go to a smaller rank."""
    package = package_of(module)
    if package in UTILITIES:
        return (0, UTILITIES.index(package))
    if package in TOP:
        return (4, TOP.index(package))
    if package in PLUMBING:
        return (2, PLUMBING.index(package))
    position = next(i for i, line in enumerate(LAYERS) if package in line)
    return (3 if is_http_face(module) else 1, position)


def app_modules() -> dict[str, Path]:
    modules = {}
    for path in APP.rglob("*.py"):
        parts = path.relative_to(APP.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every `from app.x import ...` in the file, lazy ones inside functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app."):
            found.append((node.lineno, node.module))
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("app.")]
    return found


def test_every_package_has_a_layer() -> None:
    placed = set(UTILITIES) | set(PLUMBING) | set(TOP) | {p for line in LAYERS for p in line}
    packages = {package_of(module) for module in app_modules() if module != "app"}
    assert packages <= placed, f"add these to a layer in {__name__}: {sorted(packages - placed)}"


def test_imports_run_one_way() -> None:
    wrong = []
    for module, path in sorted(app_modules().items()):
        if module == "app":
            continue
        for line, target in imports_of(path):
            if package_of(target) == package_of(module) or target.endswith(".models"):
                continue
            if rank(target) >= rank(module):
                wrong.append(f"{path.relative_to(APP.parent)}:{line} imports {target}")
    assert not wrong, "imports against the layers (docs/architecture.md):\n" + "\n".join(wrong)


def test_the_layer_rule_catches_an_upward_import() -> None:
    """The rule itself: a service importing a kind's package, or a page of a lower package, is refused."""
    assert rank("app.runs.reward.service") >= rank("app.projects.service")
    assert rank("app.projects.service") < rank("app.dependencies") < rank("app.projects.pages")
    assert rank("app.jobs.service") < rank("app.runs.ppo.service")
    assert rank("app.runs.ppo.service") == rank("app.runs.reward.service")  # siblings: neither way
