"""Releases and settings for the k8s tests: every example app of jobs/projects.yaml, made without a
cluster, a registry or a trained run (digests and ids are fixed, so renders are comparable)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from home_mlops.deploy.app_settings import load_apps, resolve_settings
from home_mlops.k8s.render import SERVING_ROLES, ClusterRelease, RoleImage

REPO = Path(__file__).resolve().parents[2]
PROJECTS = REPO / "jobs" / "projects.yaml"
APPS = list(load_apps(PROJECTS))
MODES = list(SERVING_ROLES)
REGISTRY = "127.0.0.1:5000/home-mlops"


def fake_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def release_for(app: str, serving: str, *, run_id: str = "0123456789abcdef0123456789abcdef",
                smoke: dict | None = None) -> ClusterRelease:
    tag = f"{run_id[:12]}-5c040e66"
    images = []
    for role in SERVING_ROLES[serving]:
        ref = f"{REGISTRY}/{app}-{role}:{tag}"
        labels = {"io.homemlops.app": app, "io.homemlops.role": role, "io.homemlops.run-id": run_id,
                  "io.homemlops.experiment-id": "2", "io.homemlops.model-id": "m-" + "a" * 32,
                  "io.homemlops.model-uri": "models:/m-" + "a" * 32,
                  "org.opencontainers.image.title": f"{app}-{role}", "org.opencontainers.image.version": "0.1.0"}
        images.append(RoleImage(role, ref, fake_digest(ref), labels))
    return ClusterRelease(app, "2", run_id, "m-" + "a" * 32, serving, tuple(images), smoke)


def settings_for(app: str, serving: str, **overrides):
    """The app's real settings from jobs/projects.yaml (memory, cpus, ...) plus ``overrides``."""
    return resolve_settings(app, {"serving": serving, **overrides}, projects=PROJECTS)
