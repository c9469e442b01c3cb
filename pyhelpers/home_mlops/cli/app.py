"""The `home-mlops` command line: parse options, call the stages, report.

No logic lives here beyond wiring: each stage is a module with plain functions.
Human progress goes to stderr (output.py chooses how), the machine result to --json PATH or -.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, Optional

import typer

from home_mlops import console, env, output
from home_mlops.errors import ExitCode, HomeMlopsError
from home_mlops.extras import missing_dependency
from home_mlops.params import JobParams
from home_mlops.results import error_log_tail, failure_text, summary_text, write_json

app = typer.Typer(
    name="home-mlops",
    help="From an MLflow run to a served BentoML model server + FastAPI gateway.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Options shared by the job commands; each also reads the job parameter's environment variable.
AppOpt = typer.Option(None, "--app", envvar=env.APP_NAME.name, help="App name (APP_NAME).")
ExpOpt = typer.Option(None, "--experiment-id", envvar=env.EXPERIMENT_ID.name, help="MLflow experiment id (EXPERIMENT_ID).")
RunOpt = typer.Option(None, "--run-id", envvar=env.RUN_ID.name, help="MLflow run id (RUN_ID).")
NasOpt = typer.Option(None, "--nas", envvar=env.NAS.name, help="Artifact root to read without a tracking server (NAS).")
RegOpt = typer.Option(None, "--registry", envvar=env.AR_NAME.name, help="Image repository prefix (AR_NAME).")
TrackOpt = typer.Option(None, "--tracking-uri", envvar=env.MLFLOW_TRACKING_URI.name, help="MLflow tracking URI.")
JsonOpt = typer.Option(None, "--json", envvar=env.JSON.name, help="Write the result as JSON here (- for stdout).")
ModelNameOpt = typer.Option(None, "--model-name", help="Which model, when a run logged several: its name or id (m-...).")


def run_command(name: str, json_path: str | None, body: Callable[[], dict[str, Any]]) -> None:
    """Run one command: its result or its error goes to --json, the exit code says which.

    The last lines printed are the summary: the text the Jenkins build description uses
    (also the result's "summary"), followed here by the seconds the command took."""
    started = time.monotonic()
    output.settings().failed_stage = ""
    with output.stage(name):
        try:
            result = _missing_modules_named(name, body)
        except HomeMlopsError as exc:
            tail = error_log_tail(exc)
            console.error(exc)
            if not all(line in str(exc) for line in tail):  # pip and deploy errors quote theirs already
                console.error("the failing tool's last output lines:\n" + "\n".join(f"  | {line}" for line in tail))
            _fail(name, json_path, exc.code, output.clean_message(exc), exc, started, log_tail=tail)
        except KeyboardInterrupt:
            console.error("interrupted")
            _fail(name, json_path, 130, "interrupted", "interrupted", started)
        except Exception as exc:  # noqa: BLE001 - a bug: short message, traceback only on request
            if env.DEBUG.get():
                raise
            console.internal_error(
                f"{type(exc).__name__}: {exc}\n"
                "  this is a bug in home-mlops; run again with HOME_MLOPS_DEBUG=1 for the traceback"
            )
            error = output.clean_message(f"{type(exc).__name__}: {exc}")
            _fail(name, json_path, ExitCode.INTERNAL, error, error, started)
        seconds = round(time.monotonic() - started, 3)
        summary = summary_text(name, result)
        result = {"command": name, "ok": True, **result, "summary": summary, "seconds": seconds}
        _print_summary(summary, seconds)
    write_json(json_path, result)


def _missing_modules_named(name: str, body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A module an extra (or the model) needs and this install lacks is the user's to fix: exit 2
    naming the extra, not a bug's exit 1. A missing module of home-mlops itself stays a bug."""
    try:
        return body()
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "home_mlops":
            raise
        raise missing_dependency(exc, f"home-mlops {name}") from None


def _print_summary(summary: str, seconds: float) -> None:
    first, _, rest = summary.partition("\n")
    console.summary(f"{first} ({seconds:.1f} s)" + (f"\n{rest}" if rest else ""))


def _fail(name: str, json_path: str | None, code: int, error: str, reason: object, started: float,
          log_tail: list[str] | None = None) -> None:
    seconds = round(time.monotonic() - started, 3)
    summary = failure_text(output.failed_stage() or name, reason)
    _print_summary(summary, seconds)
    write_json(json_path, {"command": name, "ok": False, "exit_code": int(code), "error": error,
                           "log_tail": list(log_tail or []), "summary": summary, "seconds": seconds})
    raise typer.Exit(int(code))


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


def job_params(app_name, experiment_id, run_id, nas, registry, need_app=True) -> JobParams:
    return JobParams.parse(
        app=app_name, experiment_id=experiment_id, run_id=run_id, nas=nas, registry=registry, need_app=need_app
    )


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
        from home_mlops.cli.build import registered_params, resolve_run, with_registered

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
) -> None:
    """Start an MLflow tracking server that proxies artifacts (clients need only HTTP)."""
    from home_mlops.platform.tracking_server import serve

    def body() -> dict[str, Any]:
        serve(host=host, port=port, backend_store_uri=backend_store_uri, artifacts_destination=artifacts_destination)
        return {}

    run_command("mlflow-server", None, body)


def _register_optional_commands() -> None:
    """Commands from other modules, mounted only when their module imports."""
    for module, attr, name in (
        ("home_mlops.cli.build", "register", None),
        ("home_mlops.cli.schema", "register", None),
        ("home_mlops.cli.platform", "platform_app", "platform"),
        ("home_mlops.jenkins.ops", "jenkins_app", "jenkins"),
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
