"""The `home-mlops` command line: parse options, call the stages, report.

No logic lives here beyond wiring: each stage is a module with plain functions.
Human progress goes to stderr (output.py chooses how), the machine result to --json PATH or -.
"""
from __future__ import annotations

import sys
from typing import Any, Optional

import typer

from home_mlops import console, env, output
from home_mlops.cli.common import (  # noqa: F401 - re-exported: command modules and tests import them from here too
    AppOpt, ExpOpt, JsonOpt, ModelNameOpt, NasOpt, RegOpt, RunOpt, TrackOpt, job_params, run_command,
)
from home_mlops.errors import HomeMlopsError

app = typer.Typer(
    name="home-mlops",
    help="From an MLflow run to a served BentoML model server + FastAPI gateway.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"home-mlops {version('home-mlops')}")
        raise typer.Exit()


@app.callback()
def options(
    _version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                  help="Print the version and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", envvar=env.QUIET.name,
                               help="Only warnings, errors and the summary line."),
    verbose: bool = typer.Option(False, "--verbose", "-v", envvar=env.VERBOSE.name,
                                 help="Also the tools' own output (pip, docker build) on a terminal."),
    log_format: Optional[str] = typer.Option(
        None, "--log-format", envvar=env.LOG_FORMAT.name,
        help="plain (timestamped lines), json (one object per line) or rich; "
             "default: rich on a terminal, plain without one (CI, Jenkins, a pipe)."),
) -> None:
    """From an MLflow run to a served BentoML model server + FastAPI gateway."""
    try:
        output.configure(log_format=log_format, quiet=quiet, verbose=verbose)
    except HomeMlopsError as exc:
        console.error(exc)
        raise typer.Exit(int(exc.code)) from None


@app.command()
def resolve(
    experiment_id: Optional[str] = ExpOpt,
    run_id: Optional[str] = RunOpt,
    nas: Optional[str] = NasOpt,
    tracking_uri: Optional[str] = TrackOpt,
    model_name: Optional[str] = ModelNameOpt,
    json_path: Optional[str] = JsonOpt,
) -> None:
    """Find a run's model (tracking server or NAS) and fetch it into the local cache."""

    def body() -> dict[str, Any]:
        from home_mlops.cli.run_options import registered_params, resolve_run, with_registered

        params = job_params(None, experiment_id, run_id, nas, None, need_app=False)
        params, registered = registered_params(params, tracking_uri)
        resolved = resolve_run(params, tracking_uri, model_name, registered)
        console.ok(f"{resolved.model_uri} -> {resolved.local_path}")
        return with_registered(resolved.model_dump(), registered)

    run_command("resolve", json_path, body)


@app.command()
def train(
    app_name: str = typer.Argument(..., help="An app with training/<app>/train.py"),
    args: Optional[list[str]] = typer.Argument(None, help="Arguments for the training script"),
) -> None:
    """Train an example app into MLflow (MLFLOW_TRACKING_URI, or the local default)."""

    def body() -> dict[str, Any]:
        from home_mlops.params import validate_app
        from home_mlops.training import run_training

        run_training(validate_app(app_name), list(args or []))
        return {"app": app_name}

    run_command("train", None, body)


@app.command("mlflow-server")
def mlflow_server(
    port: int = typer.Option(8001, help="Port of the MLflow UI and API"),
    host: str = typer.Option("127.0.0.1", help="Address to listen on"),
    backend_store_uri: Optional[str] = typer.Option(None, help="SQL backend (default: the local sqlite file)"),
    artifacts_destination: Optional[str] = typer.Option(
        None, help="Where artifacts go: a folder or gs://bucket/prefix (default: the local artifact folder)"
    ),
    workers: Optional[int] = typer.Option(
        None, min=1, max=64, help="Server worker processes (default: MLflow's own, 4)"
    ),
) -> None:
    """Start an MLflow tracking server that proxies artifacts (clients need only HTTP)."""
    from home_mlops.platform.tracking_server import serve

    def body() -> dict[str, Any]:
        serve(host=host, port=port, backend_store_uri=backend_store_uri, artifacts_destination=artifacts_destination,
              workers=workers)
        return {}

    run_command("mlflow-server", None, body)


def _register_optional_commands() -> None:
    """Commands from other modules, mounted only when their module imports."""
    for module, attr, name in (
        ("home_mlops.cli.build", "register", None),
        ("home_mlops.cli.deploy", "register", None),
        ("home_mlops.cli.pipeline", "register", None),
        ("home_mlops.cli.schema", "register", None),
        ("home_mlops.cli.platform", "platform_app", "platform"),
        ("home_mlops.cli.jenkins", "jenkins_app", "jenkins"),
        ("home_mlops.cli.k8s", "k8s_app", "k8s"),
    ):
        try:
            mod = __import__(module, fromlist=[attr])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        target = getattr(mod, attr)
        if name:
            app.add_typer(target, name=name)
        else:
            target(app)


_register_optional_commands()


def main() -> None:
    app(prog_name="home-mlops")


if __name__ == "__main__":
    sys.exit(main())
