"""`home-mlops jenkins register|build|undeploy|status`: the typer commands over jenkins/ops.py."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer

from home_mlops.errors import HomeMlopsError
from home_mlops.jenkins import ops
from home_mlops.params import DEFAULT_REGISTRY

jenkins_app = typer.Typer(
    name="jenkins",
    help="Register the app jobs in Jenkins (JJB), trigger a build and follow it, list their state.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _run(body: Callable[[], int | None]) -> None:
    """Run a command body; a HomeMlopsError becomes its message on stderr and its exit code."""
    try:
        code = body() or 0
    except HomeMlopsError as exc:
        ops.say(f"error: {exc}")
        raise typer.Exit(int(exc.code)) from None
    except KeyboardInterrupt:
        ops.say("interrupted")
        raise typer.Exit(130) from None
    if code:
        raise typer.Exit(code)


@jenkins_app.command()
def register(
    jobs: Optional[Path] = typer.Option(None, "--jobs", help="JJB folder (default: jobs/ of this checkout)"),
    names: Optional[list[str]] = typer.Argument(None, help="Only these apps (default: all apps)"),
) -> None:
    """Create or update the home-mlops folder, its view and each app's jobs from jobs/:
    `home-mlops/<app>` and `home-mlops/<app>-undeploy` (Jenkins Job Builder `update`)."""
    _run(lambda: ops.register_jobs(jobs, names))


@jenkins_app.command()
def build(
    app: str = typer.Option(..., "--app", help="The app; its job is home-mlops/<app>"),
    experiment_id: str = typer.Option(..., "--experiment-id", help="MLflow experiment id"),
    run_id: str = typer.Option(..., "--run-id", help="MLflow run id"),
    nas: str = typer.Option("", "--nas", help="Artifact root to read without the tracking server"),
    registry: str = typer.Option(DEFAULT_REGISTRY, "--registry", help="Image repository prefix (AR_NAME)"),
    timeout: float = typer.Option(3600, "--timeout", help="Seconds to wait for the build"),
    poll: float = typer.Option(2.0, "--poll", help="Seconds between polls", hidden=True),
) -> None:
    """Trigger the app's job (home-mlops/<app>) with the five parameters and follow its console live;
    exit 0 on SUCCESS, else the failing step's home-mlops exit code (4 when the build has none)."""
    _run(lambda: ops.trigger_build(app, experiment_id, run_id, nas, registry, timeout, poll))


@jenkins_app.command()
def undeploy(
    app: str = typer.Option(..., "--app", help="The app; its undeploy job is home-mlops/<app>-undeploy"),
    timeout: float = typer.Option(600, "--timeout", help="Seconds to wait for the build"),
    poll: float = typer.Option(2.0, "--poll", help="Seconds between polls", hidden=True),
) -> None:
    """Run the app's `home-mlops/<app>-undeploy` job (no parameters), follow its console, exit 0 only on SUCCESS."""
    _run(lambda: ops.trigger_undeploy(app, timeout, poll))


@jenkins_app.command()
def status(
    jobs: Optional[Path] = typer.Option(None, "--jobs", help="JJB folder whose apps to list (default: jobs/)"),
) -> None:
    """List each app and the result of its last build (job home-mlops/<app>)."""
    _run(lambda: ops.print_status(jobs))
