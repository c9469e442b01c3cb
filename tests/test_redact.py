"""The one secret scrubber (home_mlops.redact): every path that prints or raises uses it."""
from __future__ import annotations

from home_mlops import output, redact
from home_mlops.build import registry
from home_mlops.deploy import probe


def test_known_values_and_named_values_are_masked():
    text = "login alice:Sup3rSecret ok; password=hunter22 token: abc Authorization: Bearer.xyz"
    out = redact.scrub(text, ["Sup3rSecret"])
    assert out == "login alice:*** ok; password=*** token: *** Authorization: ***"


def test_short_values_are_not_masked_everywhere():
    # a 3-character "secret" would turn every "abc" in a log into ***
    assert redact.scrub("abc abc", ["abc"]) == "abc abc"


def test_a_secret_that_contains_another_is_masked_whole():
    assert redact.scrub("x=longpassword1", ["longpass", "longpassword1"]) == "x=***"


def test_secret_values_by_name_pattern():
    env = {"REGISTRY_PASSWORD": "pw-1234", "JENKINS_TOKEN": "tok-5678", "MY_API_KEY": "key-9012",
           "PATH": "/usr/bin", "EMPTY_PASSWORD": ""}
    assert sorted(redact.secret_values(env)) == ["key-9012", "pw-1234", "tok-5678"]


def test_every_caller_uses_the_one_scrubber(monkeypatch):
    monkeypatch.setenv("REGISTRY_PASSWORD", "from-the-environment")
    assert output.clean("pushing with from-the-environment") == "pushing with ***"
    assert probe.scrub is redact.scrub
    # the registry's errors: the login's password and a named secret the daemon echoes
    assert registry.scrub("denied for pw-login-1, secret=zzz", {"password": "pw-login-1"}) == "denied for ***, secret=***"
