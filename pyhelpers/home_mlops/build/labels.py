"""OCI and home-mlops labels for both images. Never a secret in here."""
from __future__ import annotations

import subprocess
from datetime import datetime, timezone

from home_mlops import __version__, settings
from home_mlops.resolve.resolver import ResolvedModel


def source_revision() -> str:
    root = settings.project_root()
    if not root:
        return "unknown"
    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or "unknown"


def image_labels(app: str, role: str, resolved: ResolvedModel) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": f"{app}-{role}",
        "org.opencontainers.image.created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "org.opencontainers.image.revision": source_revision(),
        "org.opencontainers.image.source": "home-mlops",
        "org.opencontainers.image.version": __version__,
        "io.homemlops.app": app,
        "io.homemlops.role": role,
        "io.homemlops.experiment-id": resolved.experiment_id,
        "io.homemlops.run-id": resolved.run_id,
        "io.homemlops.model-id": resolved.model_id or "",
        "io.homemlops.model-uri": resolved.model_uri,
        "io.homemlops.model-digest": resolved.content_digest,
    }
