"""The bento stage without Docker: per-app service override, unservable models."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from conftest import cli_env, run_cli

RUN = "0123456789abcdef0123456789abcdef"


def fake_nas(root: Path, flavors: dict) -> Path:
    """An MLflow 2-style run-artifact model, written by hand."""
    model = root / "7" / RUN / "artifacts" / "model"
    model.mkdir(parents=True)
    signature = json.dumps([{"type": "double", "name": "x", "required": True}])
    (model / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors, "run_id": RUN, "signature": {"inputs": signature}}))
    return root


def test_model_without_pyfunc_flavor_is_a_build_failure_and_registers_nothing(tmp_path, state):
    nas = fake_nas(tmp_path / "nas", {"foo": {"data": "x"}})
    env = cli_env(state)
    out = tmp_path / "result.json"
    proc = run_cli(["bento-build", "--app", "fake-app", "--experiment-id", "7", "--run-id", RUN,
                    "--nas", str(nas), "--no-push", "--json", str(out)], env)
    assert proc.returncode == 4, proc.stderr
    assert "python_function" in proc.stderr and "Traceback" not in proc.stderr
    result = json.loads(out.read_text())
    assert result["ok"] is False and result["exit_code"] == 4
    models = state / "bentoml" / "models"
    assert not models.exists() or not any(models.rglob("model.yaml")), "a half-imported model was left registered"
    assert not (state / "bentoml" / "bentos").exists() or not any((state / "bentoml" / "bentos").iterdir())


def test_service_override_replaces_the_default(tmp_path, monkeypatch, trained_run):
    from home_mlops import settings
    from home_mlops.build import bento
    from home_mlops.resolve.resolver import resolve

    run = trained_run("tabular-iris-multi-classifier")
    monkeypatch.setenv("HOME_MLOPS_HOME", str(run.state))
    resolved = resolve(run.experiment_id, run.run_id, tracking_uri=run.tracking_uri)
    root = tmp_path / "checkout"
    override = root / "serving" / "tabular-iris-multi-classifier" / "bento-ml" / "service.py"
    override.parent.mkdir(parents=True)
    override.write_text("# custom service for this app\n")
    monkeypatch.setattr(settings, "project_root", lambda: root)
    source = bento.render_source(tmp_path / "out", "tabular-iris-multi-classifier", resolved, "base:1", resolved.requirements)
    assert source.service_overridden
    assert (source.folder / "service.py").read_text() == "# custom service for this app\n"
    other = bento.render_source(tmp_path / "out2", "tabular-diabetes-regressor", resolved, "base:1", resolved.requirements)
    assert not other.service_overridden
    assert "class ModelService" in (other.folder / "service.py").read_text()
    config = json.loads((other.folder / "home_mlops_service.json").read_text())
    assert [c["name"] for c in config["inputs"]] == [
        "sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def test_build_folders_avoid_hidden_paths(tmp_path, monkeypatch):
    """BentoML refuses a build context with a hidden component anywhere in its path."""
    from home_mlops import settings

    monkeypatch.setenv("HOME_MLOPS_HOME", str(tmp_path / ".hidden" / "state"))
    assert not any(part.startswith(".") for part in settings.builds_dir().parts)
    monkeypatch.setenv("HOME_MLOPS_HOME", str(tmp_path / "visible"))
    assert settings.builds_dir() == (tmp_path / "visible" / "builds").resolve()
    monkeypatch.delenv("HOME_MLOPS_HOME")
    if settings.project_root():
        assert settings.state_dir().name == "home-mlops-state"
