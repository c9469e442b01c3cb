"""What home-mlops made of an MLflow model, written back to MLflow: image refs and digests after a
push, URL/target/time after a deploy, the state after an undeploy or a rollback, and an optional
registry alias moved to the deployed version.

Writing back is a courtesy to the MLflow UI, never part of the build's success: every failure is a
warning. With no tracking server (NAS only) nothing is written, said once per command.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from home_mlops import console, settings
from home_mlops.deploy import state
from home_mlops.params import validate_app
from home_mlops.resolve.mlflow_errors import bounded_mlflow_http

PREFIX = "home-mlops."
_said_nas_only = False


@dataclass(frozen=True)
class Target:
    """Where tags go: the run, its logged model, and the registered version when one was named."""

    tracking_uri: str
    run_id: str
    model_id: str = ""
    model_name: str = ""  # registered model
    version: str = ""

    @classmethod
    def of(cls, resolved, registered=None, tracking_uri: str | None = None) -> "Target | None":
        """Where a resolved model's tags go; None for a model read from a NAS."""
        if resolved.source != "tracking":
            return None
        if registered is not None:
            return cls(registered.tracking_uri, resolved.run_id, resolved.model_id or "",
                       registered.name, registered.version)
        return cls(settings.tracking_uri(tracking_uri), resolved.run_id, resolved.model_id or "")


def _nas_only() -> None:
    global _said_nas_only
    if not _said_nas_only:
        console.info("NAS only (no tracking server): nothing is written back to MLflow")
        _said_nas_only = True


def write(target: "Target | None", tags: dict[str, str]) -> bool:
    """Set ``tags`` (keys without the prefix) on the run, logged model and registered version."""
    if target is None:
        _nas_only()
        return False
    tags = {PREFIX + k: str(v) for k, v in tags.items()}
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=target.tracking_uri)
        # bounded retries: a tracking server gone since the resolve costs seconds, not MLflow's minutes
        with bounded_mlflow_http():
            _set_tags(client, target, tags)
    except Exception as exc:  # noqa: BLE001 - a write-back never fails the build
        console.warn(f"could not write {', '.join(sorted(tags))} back to MLflow ({target.tracking_uri}): "
                     f"{type(exc).__name__}: {str(exc)[:300]}")
        return False
    console.ok(f"wrote {len(tags)} tags back to MLflow run {target.run_id}")
    return True


def _set_tags(client, target: "Target", tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_tag(target.run_id, key, value)
    if target.model_id:
        client.set_logged_model_tags(target.model_id, tags)
    if target.model_name:
        for key, value in tags.items():
            client.set_model_version_tag(target.model_name, target.version, key, value)


def after_push(target: "Target | None", role: str, image: str, digest: str) -> None:
    write(target, {f"image.{role}": image, f"digest.{role}": digest})


def move_alias(target: Target, alias: str) -> str:
    """Point ``alias`` at the target's version; returns the version it named before ('' if none)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=target.tracking_uri)
    with bounded_mlflow_http():
        try:
            before = client.get_model_version_by_alias(target.model_name, alias).version
        except Exception:  # noqa: BLE001 - no such alias yet
            before = ""
        client.set_registered_model_alias(target.model_name, alias, target.version)
    console.ok(f"alias {alias} of {target.model_name} now names version {target.version}")
    return str(before)


# --------------------------------------------------------------------------- per-app record
# undeploy and rollback know only the app: where each of its deploys was written back is kept
# next to the app's deploy history (same folder, same sharing between users).


def _record_file(app: str) -> Path:
    return state.state_dir() / f"{validate_app(app)}.mlflow.json"


def _read(app: str) -> list[dict]:
    try:
        data = json.loads(_record_file(app).read_text())
    except (OSError, ValueError):
        return []
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def _save(app: str, entries: list[dict]) -> None:
    state._atomic_write(_record_file(app), json.dumps(entries[-20:], indent=2))


def after_deploy(app: str, target: "Target | None", result: dict, alias: str = "") -> None:
    """Tag the deployed run; remember the target (and the alias move) for undeploy/rollback."""
    if target is None:
        _nas_only()
        return
    write(target, {"deploy.app": app, "deploy.url": result.get("url", ""), "deploy.target": result.get("target", "docker"),
                   "deploy.time": state.now_iso(), "deploy.status": "deployed"})
    previous_version = ""
    if alias and target.model_name:
        try:
            previous_version = move_alias(target, alias)
        except Exception as exc:  # noqa: BLE001
            console.warn(f"could not move alias {alias} of {target.model_name}: {type(exc).__name__}: {str(exc)[:300]}")
            alias = ""
    entries = _read(app)
    entries.append({**asdict(target), "alias": alias, "alias_before": previous_version})
    _save(app, entries)


def _target(entry: dict) -> Target:
    return Target(**{k: entry.get(k, "") for k in Target.__dataclass_fields__})


def after_undeploy(app: str) -> None:
    entries = _read(app)
    if entries:
        write(_target(entries[-1]), {"deploy.status": "undeployed", "deploy.time": state.now_iso()})
        _save(app, [])  # like the deploy history: a rollback never reaches back past an undeploy


def after_rollback(app: str, result: dict) -> None:
    """The run rolled back from says so; the run served again says deployed; a moved alias goes back."""
    entries = _read(app)
    if not entries:
        return
    current = entries[-1]
    write(_target(current), {"deploy.status": f"rolled back to run {result.get('run_id', '')}", "deploy.time": state.now_iso()})
    back = [e for e in entries[:-1] if e.get("run_id") == result.get("run_id")]
    if back:
        write(_target(back[-1]), {"deploy.status": "deployed", "deploy.url": result.get("url", ""),
                                  "deploy.time": state.now_iso()})
    if current.get("alias") and current.get("alias_before"):
        try:
            move_alias(Target(current["tracking_uri"], "", model_name=current["model_name"],
                              version=current["alias_before"]), current["alias"])
        except Exception as exc:  # noqa: BLE001
            console.warn(f"could not move alias {current['alias']} back: {type(exc).__name__}: {str(exc)[:300]}")
    _save(app, entries[:-1])
