"""Every label key home-mlops writes or reads, and the labels both images carry. Never a secret in here.

One place for the keys: images get them at build time (image_labels), containers at
deploy time (deploy/specs), Kubernetes objects as labels or annotations (k8s/render),
and ``status``, ``rollback`` and the port picker read them back; a key spelled twice
could drift between the writer and the reader.
"""
from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from home_mlops import __version__, runner, settings

if TYPE_CHECKING:  # a type only: deploy/ reads the keys without importing the resolver
    from home_mlops.resolve.resolver import ResolvedModel

OCI_PREFIX = "org.opencontainers.image."
OCI_TITLE = OCI_PREFIX + "title"
OCI_CREATED = OCI_PREFIX + "created"
OCI_REVISION = OCI_PREFIX + "revision"
OCI_SOURCE = OCI_PREFIX + "source"
OCI_VERSION = OCI_PREFIX + "version"

LABEL_PREFIX = "io.homemlops."
# what the run decides: on images, containers and Kubernetes objects alike
LABEL_APP = LABEL_PREFIX + "app"
LABEL_ROLE = LABEL_PREFIX + "role"  # bento | gateway | server
LABEL_EXPERIMENT = LABEL_PREFIX + "experiment-id"
LABEL_RUN = LABEL_PREFIX + "run-id"
LABEL_MODEL = LABEL_PREFIX + "model-id"
LABEL_MODEL_URI = LABEL_PREFIX + "model-uri"
LABEL_MODEL_DIGEST = LABEL_PREFIX + "model-digest"
# images only
LABEL_INPUTS_DIGEST = LABEL_PREFIX + "inputs-digest"  # what an image was built from: same digest, no rebuild
LABEL_BASE_RECIPE = LABEL_PREFIX + "base-recipe"  # the platform's base image recipe
# containers (and Kubernetes annotations) only
LABEL_SLOT = LABEL_PREFIX + "slot"  # public | candidate (the front door; empty for a model server behind one)
LABEL_SERVING = LABEL_PREFIX + "serving"  # the serving mode; an annotation on Kubernetes ('+' is no label value)
LABEL_PORT = LABEL_PREFIX + "port"
LABEL_BIND = LABEL_PREFIX + "bind"
LABEL_UPSTREAM = LABEL_PREFIX + "upstream"  # gateway -> its model server container's name
LABEL_DEPLOY_ID = LABEL_PREFIX + "deploy-id"
LABEL_DEPLOYED_AT = LABEL_PREFIX + "deployed-at"

# labels that change with every build of the same inputs (a rendered release leaves them out)
BUILD_TIME_LABELS = frozenset({OCI_CREATED, OCI_REVISION})


def source_revision() -> str:
    root = settings.project_root()
    if not root:
        return "unknown"
    try:
        proc = runner.run(["git", "-C", str(root), "rev-parse", "HEAD"], "git", quiet=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):  # no git on this machine: the label says so
        return "unknown"
    return proc.stdout.strip() or "unknown"


def image_labels(app: str, role: str, resolved: "ResolvedModel") -> dict[str, str]:
    return {
        OCI_TITLE: f"{app}-{role}",
        OCI_CREATED: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        OCI_REVISION: source_revision(),
        OCI_SOURCE: "home-mlops",
        OCI_VERSION: __version__,
        LABEL_APP: app,
        LABEL_ROLE: role,
        LABEL_EXPERIMENT: resolved.experiment_id,
        LABEL_RUN: resolved.run_id,
        LABEL_MODEL: resolved.model_id or "",
        LABEL_MODEL_URI: resolved.model_uri,
        LABEL_MODEL_DIGEST: resolved.content_digest,
    }
