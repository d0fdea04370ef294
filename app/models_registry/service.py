"""Model versions: the catalogue of policies and reward models that generation and training can use.
No HTTP types here; the kinds of run that make versions live in app/runs/."""

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.ids import parse_id
from app.jobs.models import Job
from app.models_registry.models import ModelKind, ModelVersion


def register_from_job(session: Session, *, job: Job, artifact: str | None, kind: ModelKind) -> ModelVersion:
    """A finished training job's model becomes a version of `kind` (and the job points at it)."""
    if not artifact:
        raise InvalidInput("A training job must report the artifact it wrote.", details={"field": "artifact"})
    path = PurePosixPath(artifact)
    if path.is_absolute() or ".." in path.parts:
        raise InvalidInput(
            "artifact must be a path inside the artifact store, e.g. reward/job-7.",
            details={"field": "artifact"},
        )
    version = ModelVersion(
        kind=kind.value,
        artifact=str(path),
        job_id=job.id,
        project_id=job.project_id,
        base_model=str(job.config.get("base_model", "default")),
        metrics=dict(job.metrics),
    )
    session.add(version)
    session.flush()
    job.model_id = version.id
    return version


def policy_version(session: Session, model_id: int, *, field: str = "generation.model") -> ModelVersion:
    """A registered policy version (422 naming `field` if the id is unknown or names a reward model)."""
    version = session.get(ModelVersion, model_id)
    if version is None or version.kind != ModelKind.policy.value:
        what = "a reward model" if version is not None else "unknown"
        raise InvalidInput(
            f"Model {model_id} is {what}, not a policy version: use 'default', a local model directory, "
            "or the id of a registered policy version (see GET /models?kind=policy).",
            code="unknown_model",
            details={"field": field, "model_id": model_id},
        )
    return version


def generation_model(
    session: Session, model: str | int, *, model_dirs: Sequence[Path], field: str = "generation.model"
) -> dict[str, str]:
    """What a generation job needs to know about a model to generate with (422 naming `field` if unknown).

    ``model``: "default", a local Hugging Face model directory, a policy version id, or "model:<id>".
    Returns ``{"model": spec}`` where spec is recorded with every completion ("default", the path, or
    "model:<id>"), plus ``"model_artifact"`` for a version (its path in the artifact store), so that the
    worker loads it from its own mount of the store.
    """
    if isinstance(model, str) and (version_id := parse_id(model.removeprefix("model:"))):
        model = version_id
    if isinstance(model, int):
        version = policy_version(session, model, field=field)
        return {"model": f"model:{version.id}", "model_artifact": version.artifact}
    require_local_model_dir(
        model,
        model_dirs=model_dirs,
        field=field,
        alternatives="'default', a local model directory, or a model version id",
    )
    return {"model": model}


def list_models(
    session: Session, *, project_id: int | None = None, kind: ModelKind | None = None
) -> list[ModelVersion]:
    query = select(ModelVersion).order_by(ModelVersion.id.desc())
    if project_id is not None:
        query = query.where(ModelVersion.project_id == project_id)
    if kind is not None:
        query = query.where(ModelVersion.kind == kind.value)
    return list(session.scalars(query))


def get_model(session: Session, model_id: int) -> ModelVersion:
    version = session.get(ModelVersion, model_id)
    if version is None:
        raise NotFound(f"No model version with id {model_id}.", code="model_not_found")
    return version


def require_local_model_dir(
    model: str,
    *,
    model_dirs: Sequence[Path],
    field: str,
    alternatives: str = "'default' or a local model directory",
) -> None:
    """'default', or a local Hugging Face model directory inside one the admin allowed (422 naming
    `field` otherwise)."""
    if model != "default":
        local_model_dir(model, model_dirs=model_dirs, field=field, alternatives=alternatives)


def local_model_dir(
    path: str, *, model_dirs: Sequence[Path], field: str, alternatives: str = "a local model directory"
) -> Path:
    """The directory `path` names, resolved, if it lies inside one of `model_dirs` (PREFLAB_MODEL_DIRS)
    and holds a Hugging Face model (config.json); 422 naming `field` otherwise. Whether a path outside
    the allowed directories exists is never said."""
    try:
        resolved = Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):  # "~nobody", a name the OS cannot take
        resolved = None
    if resolved is None or not any(resolved.is_relative_to(root) for root in model_dirs):
        allowed = ", ".join(str(root) for root in model_dirs) or "none are set"
        raise InvalidInput(
            f"'{path}' is not inside a directory allowed for models (PREFLAB_MODEL_DIRS: {allowed}). Use "
            f"{alternatives} inside one, or ask the server's operator to allow its directory.",
            code="model_dir_not_allowed",
            details={"field": field},
        )
    if not _is_file(resolved / "config.json"):
        raise InvalidInput(
            f"'{path}' is not a Hugging Face model directory (no config.json there); use {alternatives}.",
            code="unknown_model",
            details={"field": field},
        )
    return resolved


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system, say: not a model directory either way
        return False
