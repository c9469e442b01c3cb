"""deploy's image pull against the real Docker daemon and the platform registry: missing image and
refused login told apart by the daemon's status (404 -> exit 3) and, where the daemon has only
HTTP 500 to give (a refused login), its registry error; nothing is pulled or left behind."""
from __future__ import annotations

import pytest

from home_mlops.errors import ExitCode, HomeMlopsError

pytestmark = pytest.mark.docker

MISSING = "127.0.0.1:5000/hmt-s/no-such-image:1"


@pytest.fixture(scope="module")
def client():
    try:
        from home_mlops.platform.host import docker_client

        docker = docker_client()
        docker.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"needs the Docker daemon and the platform registry (home-mlops platform up): {type(exc).__name__}")
    return docker


def pull_error(client, auth) -> HomeMlopsError:
    from home_mlops.deploy.switch import ensure_image

    with pytest.raises(HomeMlopsError) as info:
        ensure_image(client, MISSING, auth)
    return info.value


def test_missing_image_is_not_found(client):
    from home_mlops.build.registry import auth_for

    auth = auth_for(MISSING)
    if auth is None:
        pytest.skip("the platform registry's password is not on this host (home-mlops platform up)")
    error = pull_error(client, auth)
    assert error.code == ExitCode.NOT_FOUND, error
    assert "neither on this host nor in its registry" in str(error)


def test_refused_login_is_not_not_found(client):
    error = pull_error(client, {"username": "hmt-s", "password": "hmt-s-wrong-password"})
    assert error.code == ExitCode.UNAVAILABLE, error
    assert "refused the credentials" in str(error) and "hmt-s-wrong-password" not in str(error)
