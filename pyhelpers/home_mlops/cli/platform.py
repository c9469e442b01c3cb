"""`home-mlops platform up|down|status`: the local platform as a command."""
from __future__ import annotations

from typing import Any, Optional

import typer

from home_mlops import console

platform_app = typer.Typer(help="Bring the local platform (dockerd, registry, base image) up or down.", no_args_is_help=True)


@platform_app.command()
def up(json_path: Optional[str] = typer.Option(None, "--json")) -> None:
    """Start dockerd and the local registry, build the offline base image (idempotent)."""
    from home_mlops.cli.common import run_command
    from home_mlops.platform.host import BASE_IMAGE, up as platform_up

    def body() -> dict[str, Any]:
        creds = platform_up()
        console.ok(f"platform ready: registry {creds.address} (user {creds.user}), base image {BASE_IMAGE}")
        return {"registry": creds.address, "user": creds.user, "base_image": BASE_IMAGE}

    run_command("platform up", json_path, body)


@platform_app.command()
def down() -> None:
    """Stop the local registry (its data is kept)."""
    from home_mlops.cli.common import run_command
    from home_mlops.platform.host import down as platform_down

    run_command("platform down", None, lambda: (platform_down(), {})[1])


@platform_app.command()
def status(json_path: Optional[str] = typer.Option(None, "--json")) -> None:
    """Show what is up."""
    from home_mlops.cli.common import run_command
    from home_mlops.platform.host import status as platform_status

    def body() -> dict[str, Any]:
        state = platform_status()
        for key, value in state.items():
            console.info(f"{key:18} {value}")
        return state

    run_command("platform status", json_path, body)
