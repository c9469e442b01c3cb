"""Find the model(s) a run logged: through MLflow tracking, or straight from the NAS.

Two layouts exist (see docs/design notes):
- MLflow 3 logged models: <root>/<exp>/models/m-<id>/artifacts/MLmodel
- MLflow 2 style run artifacts: <root>/<exp>/<run_id>/artifacts/<path>/MLmodel
Both finders return ModelLocation values; nothing here downloads a whole model.
"""
from __future__ import annotations

import os
import tempfile
from urllib.parse import unquote, urlparse
from dataclasses import dataclass
from pathlib import Path

import yaml

from home_mlops.errors import BadInput, HomeMlopsError, NotFound, Unavailable
from home_mlops.resolve.mlflow_errors import translate_errors
from home_mlops.resolve.mlmodel import MODEL_ID, checked_id, read_mlmodel
from home_mlops.params import validate_model_name


@dataclass(frozen=True)
class ModelLocation:
    experiment_id: str
    run_id: str
    artifact_uri: str  # the folder that holds MLmodel
    model_id: str | None = None  # MLflow 3 logged models only
    name: str = "model"
    created: int = 0  # ms since epoch, for a deterministic choice

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_id}" if self.model_id else f"runs:/{self.run_id}/{self.name}"

    @property
    def cache_key(self) -> str:
        return self.model_id or f"run-{self.run_id}-{self.name.replace('/', '_')}"


def local_folder(uri: str) -> Path | None:
    """The local folder of a file:// (or plain path) artifact URI, None for remote stores."""
    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path))
    return Path(uri) if uri.startswith("/") else None


def check_tree_inside(folder: Path, root: Path) -> None:
    """Refuse a model folder that reaches outside itself through a symlink, before anything is copied.

    MLflow's local artifact repository copies with shutil (following links), so
    a link to /etc/... would otherwise land in the cache and in the image. The
    folder itself must lie inside ``root`` (the NAS root) once resolved."""
    real_root = root.resolve()
    real = folder.resolve()
    if real != real_root and real_root not in real.parents:
        raise BadInput(
            f"model folder {folder} resolves to {real}, outside the artifact root {root}",
            "a model folder that is a real folder under the artifact root",
            "remove the symlink and log the model again",
        )
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                continue
            rel = path.relative_to(folder)
            if path.is_dir():  # even one inside: a link to a parent folder would loop forever
                raise _symlink_refused(f"model folder {rel} is a symlink to a folder ({os.readlink(path)!r})")
            target = path.resolve()
            if target != real and real not in target.parents:
                raise _symlink_refused(
                    f"model file {rel} is a symlink to {os.readlink(path)!r}, which leads out of the model folder"
                )


def _symlink_refused(what: str) -> BadInput:
    return BadInput(what, "regular files and folders inside the model folder", "remove the symlink and log the model again")


# --------------------------------------------------------------------------- tracking


class TrackingFinder:
    def __init__(self, tracking_uri: str):
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)

    def find(self, experiment_id: str, run_id: str) -> list[ModelLocation]:
        with translate_errors(f"tracking server {self.tracking_uri}"):
            run = self._get_run(run_id)
            owner = run.info.experiment_id
            if owner != experiment_id:
                raise NotFound(
                    f"run {run_id} belongs to experiment {owner}, not to experiment {experiment_id}",
                    f"EXPERIMENT_ID {owner} for this run",
                    "check both ids in the MLflow UI; use the experiment that owns the run",
                )
            self._experiment_exists(experiment_id)
            found = [
                ModelLocation(
                    experiment_id=experiment_id,
                    run_id=run_id,
                    artifact_uri=m.artifact_location,
                    model_id=m.model_id,
                    name=m.name or "model",
                    created=m.creation_timestamp or 0,
                )
                for m in self.client.search_logged_models(
                    experiment_ids=[experiment_id],
                    filter_string=f"source_run_id = '{run_id}'",  # run_id is validated hex
                )
            ]
            if not found:
                found = self._run_artifact_models(run_id, experiment_id, run.info.artifact_uri)
            return found

    def _get_run(self, run_id: str):
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                raise NotFound(
                    f"run {run_id} does not exist on {self.tracking_uri}",
                    "the id of a run on this tracking server",
                    "check MLFLOW_TRACKING_URI / --tracking-uri and the run id",
                ) from None
            raise

    def _experiment_exists(self, experiment_id: str) -> None:
        if self.client.get_experiment(experiment_id) is None:
            raise NotFound(f"experiment {experiment_id} does not exist on {self.tracking_uri}")

    def _run_artifact_models(self, run_id: str, experiment_id: str, root: str) -> list[ModelLocation]:
        """MLflow 2 style: folders holding MLmodel inside the run's artifacts."""
        found = []
        pending = [""]
        while pending:
            path = pending.pop()
            entries = self.client.list_artifacts(run_id, path or None)
            if any(not e.is_dir and e.path.rsplit("/", 1)[-1] == "MLmodel" for e in entries):
                found.append(
                    ModelLocation(experiment_id, run_id, f"{root.rstrip('/')}/{path}", None, path or ".")
                )
                continue
            if path.count("/") < 3:
                pending.extend(e.path for e in entries if e.is_dir)
        return sorted(found, key=lambda m: m.name)

    def download(self, location: ModelLocation, dst: Path) -> Path:
        import mlflow.artifacts

        folder = local_folder(location.artifact_uri)
        if folder is not None and folder.is_dir():
            check_tree_inside(folder, folder)
        with translate_errors(f"tracking server {self.tracking_uri}"):
            dst.mkdir(parents=True, exist_ok=True)
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=location.artifact_uri, dst_path=str(dst), tracking_uri=self.tracking_uri
            )
        return Path(local)


# --------------------------------------------------------------------------- NAS


def nas_root_uri(nas: str) -> str:
    return Path(nas).as_uri() if nas.startswith("/") else nas


class NasFinder:
    """Resolve with no tracking server: read MLmodel files under <NAS>/<experiment_id>/."""

    def __init__(self, nas: str):
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        self.nas = nas
        self.root_uri = nas_root_uri(nas)
        with translate_errors(f"NAS {nas}"):
            self.repo = get_artifact_repository(self.root_uri)
            self._check_root()

    def _check_root(self) -> None:
        if self.root_uri.startswith("file:"):
            root = Path(unquote(urlparse(self.root_uri).path))
            if not root.is_dir():
                raise NotFound(
                    f"NAS {self.nas} does not exist or is not a folder",
                    "the artifact root that holds <experiment_id>/ folders",
                    "check the path (is the share mounted on this agent?)",
                )
        elif not self.repo.list_artifacts(""):
            raise NotFound(
                f"NAS {self.nas} is empty or the bucket does not exist",
                "the artifact root that holds <experiment_id>/ folders",
                "check the bucket name and prefix, and the credentials of this agent",
            )

    def _dirs(self, path: str) -> list[str]:
        return [e.path for e in self.repo.list_artifacts(path) if e.is_dir]

    def _local(self, rel: str) -> Path | None:
        root = local_folder(self.root_uri)
        return root / rel if root is not None else None

    def _read_mlmodel(self, folder: str) -> dict | None:
        local = self._local(f"{folder}/MLmodel")
        if local is not None and (local.is_symlink() or not local.is_file()):
            return None  # no MLmodel, or a link to somewhere else: not read, not a model
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = self.repo.download_artifacts(f"{folder}/MLmodel", tmp)
            except Exception:  # a folder without MLmodel: not a model
                return None
            try:  # the one MLmodel reader; one it refuses is not a model here either
                return read_mlmodel(Path(local).parent) or None
            except HomeMlopsError:
                return None

    def _model_name(self, model_dir: str) -> str | None:
        """A file store keeps the logged model's name in meta.yaml; a SQL store keeps it in
        its database, out of our reach: then only the model id can pick the model."""
        local = self._local(f"{model_dir}/meta.yaml")
        if local is not None and local.is_symlink():
            return None
        with tempfile.TemporaryDirectory() as tmp:
            try:
                meta = yaml.safe_load(Path(self.repo.download_artifacts(f"{model_dir}/meta.yaml", tmp)).read_text())
            except Exception:  # noqa: BLE001 - no meta.yaml: fine
                return None
        return _valid_name(meta.get("name") if isinstance(meta, dict) else None)

    def _models_in(self, experiment_id: str, run_id: str | None) -> list[ModelLocation]:
        found = []
        for model_dir in self._dirs(f"{experiment_id}/models"):
            mlmodel = self._read_mlmodel(f"{model_dir}/artifacts")
            if mlmodel and (run_id is None or mlmodel.get("run_id") == run_id):
                found.append(
                    ModelLocation(
                        experiment_id=experiment_id,
                        run_id=checked_id(mlmodel, "run_id") or "",
                        artifact_uri=f"{model_dir}/artifacts",
                        model_id=_folder_model_id(model_dir, mlmodel),
                        name=self._model_name(model_dir) or _valid_name(mlmodel.get("name")) or "model",
                        created=_created_ms(mlmodel),
                    )
                )
        return found

    def _run_artifact_models(self, experiment_id: str, run_id: str) -> list[ModelLocation]:
        base = f"{experiment_id}/{run_id}/artifacts"
        found, pending = [], [base]
        while pending:
            folder = pending.pop()
            mlmodel = self._read_mlmodel(folder)
            if mlmodel is not None:
                name = folder[len(base) + 1:] or "."
                found.append(ModelLocation(experiment_id, run_id, folder, None, name, _created_ms(mlmodel)))
                continue
            if folder.count("/") - base.count("/") < 3:
                pending.extend(self._dirs(folder))
        return sorted(found, key=lambda m: m.name)

    def find(self, experiment_id: str, run_id: str) -> list[ModelLocation]:
        with translate_errors(f"NAS {self.nas}"):
            experiments = [d.rsplit("/", 1)[-1] for d in self._dirs("")]
            if experiment_id not in experiments:
                raise NotFound(
                    f"experiment {experiment_id} has no folder in NAS {self.nas}",
                    f"one of the experiment folders found there: {', '.join(sorted(experiments)[:20]) or 'none'}",
                    "check EXPERIMENT_ID, and that NAS is the artifact root (without the experiment id)",
                )
            found = self._models_in(experiment_id, run_id) or self._run_artifact_models(experiment_id, run_id)
            if found:
                return found
            owner = self._owner_of(run_id, [e for e in experiments if e != experiment_id])
            if owner:
                raise NotFound(
                    f"run {run_id} belongs to experiment {owner}, not to experiment {experiment_id}",
                    f"EXPERIMENT_ID {owner} for this run",
                    "use the experiment that owns the run",
                )
            raise NotFound(
                f"run {run_id} has no model in experiment {experiment_id} under NAS {self.nas}",
                "a run that logged a model (mlflow.<flavor>.log_model)",
                "check RUN_ID, and that the run finished logging its model",
            )

    def _owner_of(self, run_id: str, experiments: list[str]) -> str | None:
        for exp in experiments:
            if f"{exp}/{run_id}" in self._dirs(exp) or self._models_in(exp, run_id):
                return exp
        return None

    def download(self, location: ModelLocation, dst: Path) -> Path:
        folder = self._local(location.artifact_uri)
        if folder is not None:
            check_tree_inside(folder, local_folder(self.root_uri))
        with translate_errors(f"NAS {self.nas}"):
            dst.mkdir(parents=True, exist_ok=True)
            return Path(self.repo.download_artifacts(location.artifact_uri, str(dst)))


def _valid_name(name: object) -> str | None:
    """A model name read from a file, kept only when it is a valid --model-name (else None)."""
    try:
        return validate_model_name(name) if isinstance(name, str) else None
    except BadInput:
        return None


def _folder_model_id(model_dir: str, mlmodel: dict) -> str:
    """MLflow 3 names a logged model's folder by its id: the folder is the id, and an MLmodel
    that claims another id (or none that is valid) is refused, not believed."""
    folder_id = model_dir.rsplit("/", 1)[-1]
    claimed = checked_id(mlmodel, "model_id")
    if not MODEL_ID.fullmatch(folder_id):
        raise BadInput(
            f"model folder {model_dir} is not named like a logged model (m-<32 hex>)",
            "<NAS>/<experiment_id>/models/m-<id>/artifacts/MLmodel, as MLflow 3 writes it",
            "point NAS at the artifact root MLflow wrote; do not rename model folders",
        )
    if claimed is not None and claimed != folder_id:
        raise BadInput(
            f"MLmodel field model_id = {claimed!r} does not match its folder {folder_id!r}",
            "the id of the logged model whose folder holds the MLmodel",
            "the model folder was copied or edited by hand: log the model again",
        )
    return folder_id


def _created_ms(mlmodel: dict) -> int:
    from datetime import datetime

    stamp = mlmodel.get("utc_time_created")
    try:
        return int(datetime.fromisoformat(str(stamp)).timestamp() * 1000) if stamp else 0
    except ValueError:
        return 0


__all__ = ["ModelLocation", "TrackingFinder", "NasFinder", "Unavailable"]
