"""The seed's mlflow-ui.sh as a command: an MLflow server that proxies artifacts."""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from home_mlops import settings
from home_mlops.errors import BadInput


def server_argv(host: str, port: int, backend_store_uri: str | None, artifacts_destination: str | None,
                workers: int | None = None) -> list[str]:
    backend = backend_store_uri or settings.default_tracking_uri()
    destination = artifacts_destination or settings.default_artifact_root().as_uri()
    if not destination.startswith(("gs://", "s3://", "file:", "/")):
        raise BadInput(
            f"artifacts destination {destination!r} is not supported",
            "a folder, file:///folder, gs://bucket/prefix or s3://bucket/prefix",
        )
    if destination.startswith("/"):
        destination = Path(destination).as_uri()
    mlflow_bin = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    return [
        mlflow_bin, "server",
        "--host", host, "--port", str(port),
        "--backend-store-uri", backend,
        "--artifacts-destination", destination,
        "--serve-artifacts",
        # MLflow starts 4 workers by default, each importing the whole server: on a 2-core home
        # machine that is most of its start-up time, for a server a team of a few people uses
        *(["--workers", str(workers)] if workers else []),
    ]


# MLflow 3 starts a job runner beside a database-backed server: nine more processes (a runner and
# eight huey consumers, about 30 s of CPU to start on 2 cores) for GenAI jobs (scorers, prompt
# optimization) that nothing in home-mlops submits. Off unless the operator sets it.
JOB_EXECUTION = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def server_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The server's environment: ours (its artifact store may need the cloud credentials the runner
    would drop), with MLflow's job execution off unless the environment says otherwise."""
    return {JOB_EXECUTION: "false", **environ}


def serve(host: str, port: int, backend_store_uri: str | None, artifacts_destination: str | None,
          workers: int | None = None) -> None:
    argv = server_argv(host, port, backend_store_uri, artifacts_destination, workers)
    # The server replaces this process: Ctrl-C and the supervisor's signals reach it directly.
    os.execvpe(argv[0], argv, server_env(os.environ))
