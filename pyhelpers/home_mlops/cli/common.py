"""What every command module shares: the job options, the command runner, the five parameters.

Kept apart from ``cli/app.py`` (which mounts the command modules when it is imported) so
that a command module can be imported on its own without an import cycle.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import typer

from home_mlops import console, env, output
from home_mlops.errors import ExitCode, HomeMlopsError
from home_mlops.extras import missing_dependency
from home_mlops.params import JobParams
from home_mlops.results import check_target, error_log_tail, failure_text, summary_text, write_json

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
            check_target(json_path)
        except HomeMlopsError as exc:  # nowhere to write a result: say so and stop, nothing done
            console.error(exc)
            raise typer.Exit(exc.code) from None
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



def job_params(app_name, experiment_id, run_id, nas, registry, need_app=True) -> JobParams:
    return JobParams.parse(
        app=app_name, experiment_id=experiment_id, run_id=run_id, nas=nas, registry=registry, need_app=need_app
    )
