"""The five job parameters as whole-value regular expressions, for Jenkins' UI.

The jobs (jobs/templates.yaml) declare the parameters with the validating-string-parameter
plugin, which checks a value with Java's `Pattern.matches(regex, value)` when the build
is requested (form, buildWithParameters, CLI), before anything runs. These regexes are
assembled from the very patterns params.py validates with, so the form refuses what the
CLI would refuse; tests/jenkins/test_jjb.py checks that the rendered jobs carry exactly
these strings and that each accepts the same values as its params.validate_* on a corpus
of good and hostile values. Only constructs Java and Python read alike (classes,
quantifiers, lookahead); separators are mandatory between repeated parts, so no input
makes the matcher backtrack exponentially.

APP_NAME is fixed to the job's app: its regex is the app's name (a DNS label has no
regex metacharacter), so another app cannot be built from this app's job.
"""
from __future__ import annotations

from home_mlops import params

_NO_DOT_SEGMENT = r"(?!\.\.?(?:/|$))"
_SEGMENT = _NO_DOT_SEGMENT + params._PATH_SEGMENT.pattern
# one or more '/'-separated segments, none '.' or '..' (params.validate_nas drops empty ones)
_SEGMENTS = rf"{_SEGMENT}(?:/+{_SEGMENT})*/*"
_ABSOLUTE = rf"/+(?:{_SEGMENTS})?"
_BUCKET_URI = rf"(?:{'|'.join(s for s in params.NAS_SCHEMES if s != 'file')})://{params._BUCKET.pattern}(?:/+(?:{_SEGMENTS})?)?"
# models:/ URIs without named groups (Java spells them differently), reserved aliases refused
_MODELS_URI = (rf"models:/{params._MODEL_NAME.pattern}"
               rf"(?:@(?!(?:{params._RESERVED_ALIAS.pattern})$){params._ALIAS.pattern}|/[1-9][0-9]{{0,9}})")

EXPERIMENT_ID = params._EXPERIMENT_ID.pattern
RUN_ID = rf"{params._RUN_ID.pattern}|{_MODELS_URI}"
NAS = rf"(?!.{{1025}})(?:|(?:file://)?{_ABSOLUTE}|{_BUCKET_URI})"
AR_NAME = rf"(?!.{{256}}){params._REGISTRY.pattern}"


def app_name(app: str) -> str:
    """APP_NAME's regex for the job of ``app``: exactly that name."""
    return params.validate_app(app)


UI_PATTERNS = {"EXPERIMENT_ID": EXPERIMENT_ID, "RUN_ID": RUN_ID, "NAS": NAS, "AR_NAME": AR_NAME}


def jjb_escaped(pattern: str) -> str:
    """How a pattern is written in a JJB job-template (literal braces are doubled)."""
    return pattern.replace("{", "{{").replace("}", "}}")
