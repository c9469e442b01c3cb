"""deploy/probe.py's pure logic, no Docker daemon (moved out of test_deploy.py, which is all docker)."""
from __future__ import annotations

from home_mlops.deploy.probe import count_records, scrub


def test_count_records_shapes():
    assert count_records({"dataframe_records": [{}, {}]}) == 2
    assert count_records({"dataframe_split": {"columns": ["a"], "data": [[1], [2], [3]]}}) == 3
    assert count_records({"instances": [[1, 2]]}) == 1
    assert count_records({"inputs": {"a": [1, 2], "b": [3, 4]}}) == 2
    assert count_records({"other": 1}) is None


def test_container_logs_are_scrubbed_with_the_deploys_secrets():
    assert scrub("password=hunter2 token: abc s3cr3tvalue", ["s3cr3tvalue"]) == "password=*** token: *** ***"
