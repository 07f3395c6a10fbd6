"""Credentials out of everything xalign prints, logs or writes (docs/failures.md).

One rule, used by every output path (CLI errors and warnings, MLflow params, tags and text
artifacts, ``config.yaml`` files, tracking backlogs, compare reports): in a URI, the password
of the userinfo (``scheme://user:PASSWORD@host``) and the value of every query parameter whose
name says it holds a secret (``token``, ``access_token``, ``api_key``, ``X-Amz-Signature``,
``X-Amz-Credential``, ``sig``, ``password``, ...) become :data:`MASK`. Everything else, and a URI
without secrets, is left exactly as given (no re-quoting or normalisation).

Free text (an error MLflow or a library raised, a log line) is also searched for credentials
that stand alone: tokens of a known shape (Databricks ``dapi...``, GitHub ``ghp_...``,
``github_pat_...``, GitLab ``glpat-...``, Hugging Face ``hf_...``, OpenAI ``sk-...``, Slack
``xox.-...``, AWS key ids ``AKIA...``, JWTs ``eyJ...``), ``Bearer``/``Basic`` credentials and
``token = VALUE`` / ``"password": "VALUE"`` / ``AccountKey=VALUE`` / ``passphrase=VALUE``
pairs and the bodies of PEM private keys. A secret once masked in a URI is masked
wherever it shows up again in the process (MLflow repeats parts of a URI in its own words).

xalign never copies environment variables into params, artifacts or configs;
:func:`secret_env_values` lists the values of the ones that hold credentials (MLflow, cloud
and hub tokens) so that tests and callers can check that none leaks.
"""

from __future__ import annotations

import os
import re
from typing import Any

#: What a secret is replaced by.
MASK = "***"

#: A query-parameter name that holds a secret (case-insensitive, anywhere in the name).
_SECRET_NAME = re.compile(
    r"token|secret|passw|pwd|signature|credential|api[-_]?key|access[-_]?key|auth|"
    r"session[-_]?id|(?:^|[-_.])(?:key|sig|code|session)(?:$|[-_.])",
    re.IGNORECASE,
)
#: ``scheme://user:PASSWORD@`` inside free text, also ``scheme:/user:PASSWORD@`` (a URI that
#: went through a path, which folds ``//``). The password runs to the LAST ``@`` before a
#: space, quote, ``?`` or ``#`` (users type ``@ : /`` in it unencoded), or else to the last
#: ``@`` before a ``/`` (a password with ``?`` or ``#`` typed unencoded).
_TEXT_USERINFO = re.compile(
    r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]{0,30}:/{1,2})([^/?#@:\s'\"]{0,256}):"
    r"((?:[^\s?#'\"]{0,512}|[^\s/'\"]{0,512}))@"
)  # bounded: each of many candidate starts in one long word scans at most 512 characters
#: ``name=value`` after ``?``/``&``/``;`` inside free text (the value stops at punctuation).
_TEXT_PARAM = re.compile(r"([?&;])([^=&;#?\s'\"]+)=([^&;#\s'\"()<>,\]\[{}]*)")
#: ``user:password@`` right after ``scheme://``; the password runs to the last ``@`` before
#: ``?`` or ``#`` (it may hold ``@ : /`` typed unencoded), or else to the last ``@`` before a
#: ``/`` (it may hold ``?`` or ``#`` typed unencoded).
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@:]*):((?:[^?#]*|[^/]*))@")
#: A user name that is itself a token (``https://ghp_xxx@github.com``, ``https://hf_xxx@...``):
#: a known token prefix, or 20+ characters mixing letters and digits (no ordinary name).
_TOKEN_USER = re.compile(
    r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]{0,30}:/{1,2})"
    r"((?:ghp_|gho_|ghs_|ghu_|github_pat_|glpat-|hf_|sk-|xox[abprs]-)[A-Za-z0-9_-]+"
    r"|(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{20,}"
    r"|[^/?#@:\s'\"]{0,256}[?#][^/@:\s'\"]{0,256})@"  # a user holding an unencoded ? or #
)
#: ``name=value`` of a query string (or a fragment written like one).
_PARAM = re.compile(r"([?&;#])([^=&;#?\s]+)=([^&;#\s]*)")  # no ``?`` in a name: linear time
#: A token of a known shape anywhere in text (not inside a longer word).
_TOKEN_SHAPE = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"dapi[0-9a-f]{32}(?:-[0-9]+)?|dose[0-9a-f]{32}"  # Databricks access token, OAuth secret
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}"
    r"|hf_[A-Za-z0-9]{20,}|sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}"
    r"|npm_[A-Za-z0-9]{36}|pypi-AgE[A-Za-z0-9_-]{20,}|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|xapp-[A-Za-z0-9-]{10,}|hooks\.slack\.com/services/[A-Za-z0-9/]{10,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # a JWT
    r")"
)
#: ``Bearer VALUE`` / ``Basic VALUE`` (an HTTP Authorization value); VALUE has a digit or ``=``.
_AUTH_SCHEME = re.compile(
    r"\b([Bb]earer|BEARER|Basic|[Tt]oken|Digest)(\s+)(?=[A-Za-z0-9._~+/=-]*[0-9=])"
    r"[A-Za-z0-9._~+/=-]{8,}"
)
#: ``token = VALUE``, ``"password": "VALUE"``, ``client_secret=VALUE`` in free text (a config
#: file, a JSON body or a header that an error message quotes).
_SECRET_PAIR = re.compile(
    r"(?i)(\b(?:[a-z0-9]{1,40}[_-]){0,4}(?:token|password|passwd|passphrase|secret|api[_-]?key|"
    r"access[_-]?key|account[_-]?key|shared[_-]?access[_-]?key|authorization|cookie|"
    r"session[_-]?id|secret[_-]?key|private[_-]?key|pwd)[\"']?\s*[:=]\s*[\"']?)(?!\*\*\*|(?:[Bb]earer|Basic|[Tt]oken|Digest)\s)"
    r"([^\s\"',;&}\]]{6,})"
)
#: ``password='a quoted value'`` (spaces inside): the whole quoted value.
_SECRET_QUOTED = re.compile(
    r"(?i)(\b(?:[a-z0-9]{1,40}[_-]){0,4}(?:token|password|passwd|passphrase|secret|"
    r"api[_-]?key|cookie)[\"']?\s*[:=]\s*)([\"'])([^\"'\n]{1,400})\2"
)
#: The body of a PEM private key (``-----BEGIN ... PRIVATE KEY-----`` to ``-----END``, or to the
#: end of the text when cut): one pass, no backtracking (a ``-`` is taken only when no
#: ``-----END`` starts there).
_PEM_KEY = re.compile(r"(-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----)(?:[^-]|-(?!----END))*")
#: A URI at the start of a text (``redact_text`` of a text that is one URI).
_URI_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
#: Secrets :func:`redact_uri` masked in a URI (at least :data:`MIN_SECRET_LEN` characters),
#: masked again wherever they appear in later text of this process.
_SEEN: set[str] = set()

#: Environment variables whose values are credentials (exact names; see also
#: :data:`_SECRET_ENV_PART`).
SECRET_ENV = (
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_SECRET",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_CLIENT_SECRET",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "PGPASSWORD",
)
_SECRET_ENV_PART = re.compile(
    r"(?:^|_)(?:TOKEN|SECRET|PASSWORD|PASSWD|PASS|PWD|KEY|API_KEY|ACCESS_KEY|SECRET_KEY)(?:$|_)"
)
#: Names that match :data:`_SECRET_ENV_PART` but hold no secret (the shell's working folders).
_NOT_SECRET_ENV = frozenset({"PWD", "OLDPWD"})
#: Shorter values are not replaced in free text (they would mangle ordinary words).
MIN_SECRET_LEN = 8


def redact_uri(uri: str) -> str:
    """``uri`` with its userinfo password and secret query values replaced by :data:`MASK`.

    ``http://alice:pw@host`` -> ``http://alice:***@host``; a user name that is a token
    (``https://ghp_x1y2@github.com``, 20+ letters and digits) -> ``https://***@github.com``;
    ``https://h/x?token=abc&run=1`` -> ``https://h/x?token=***&run=1``; a URI with no secret
    (``file:///tmp/mlruns``, ``sqlite:///mlflow.db``, ``databricks://profile``) is returned
    unchanged. Not a URI: returned unchanged.
    """
    if "://" not in uri:
        return uri
    _remember(uri)
    out = _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", uri, count=1)
    out = _TOKEN_USER.sub(lambda m: f"{m.group(1)}{MASK}@", out)
    return _PARAM.sub(_mask_param, out)


def _remember(uri: str) -> None:
    """Keep the secrets :func:`redact_uri` masks in ``uri`` (see :data:`_SEEN`)."""
    found = []
    m = _USERINFO.match(uri)
    if m:
        found.append(m.group(3))
    found += [m.group(2) for m in _TOKEN_USER.finditer(uri)]
    found += [v for _, name, v in _PARAM.findall(uri) if _SECRET_NAME.search(name)]
    _SEEN.update(v for v in found if len(v) >= MIN_SECRET_LEN and v != MASK)


def _mask_param(m: re.Match[str]) -> str:
    sep, name, value = m.groups()
    if value and value != MASK and _SECRET_NAME.search(name):
        return f"{sep}{name}={MASK}"
    return m.group(0)


def redact_text(text: str) -> str:
    """``text`` (an error message, a log line, a config value) with the secrets of the URIs
    in it masked as by :func:`redact_uri`, tokens and credential pairs in free text masked
    (module doc), and the values of credential environment variables
    (:func:`secret_env_values`) and of secrets masked in earlier URIs replaced by
    :data:`MASK`. ``"Bearer dapi0123...ef"`` -> ``"Bearer ***"``; ``"token = s3cr3tValue"``
    -> ``"token = ***"``."""
    if _URI_START.match(text) and not any(c.isspace() for c in text):  # one URI: its rule
        out = redact_uri(text)
    else:
        for m in _TEXT_USERINFO.finditer(text):
            if len(m.group(3)) >= MIN_SECRET_LEN and m.group(3) != MASK:
                _SEEN.add(m.group(3))
        out = _TEXT_USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", text)
        out = _TOKEN_USER.sub(lambda m: f"{m.group(1)}{MASK}@", out)
        out = _TEXT_PARAM.sub(_mask_param, out)
        out = _SECRET_QUOTED.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}{m.group(2)}", out)
        out = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{MASK}", out)
        out = _PEM_KEY.sub(lambda m: f"{m.group(1)}\n{MASK}\n", out)
    out = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", out)
    out = _TOKEN_SHAPE.sub(MASK, out)
    for value in sorted({*secret_env_values(), *_SEEN}, key=len, reverse=True):
        if value in out:
            out = out.replace(value, MASK)
    return out


def redact(value: Any) -> Any:
    """:func:`redact_text` on every string inside ``value`` (dicts, lists, tuples kept)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value


def is_redacted(uri: str) -> bool:
    """True when ``uri`` carries a :data:`MASK` where :func:`redact_uri` puts one (a URI read
    back from a saved ``config.yaml`` or backlog): it cannot be used to connect."""
    m = _USERINFO.match(uri)
    if m is not None and m.group(3) == MASK:
        return True
    if re.match(rf"[A-Za-z][A-Za-z0-9+.-]*://{re.escape(MASK)}@", uri):  # a masked token user
        return True
    return any(
        value == MASK and _SECRET_NAME.search(name) for _, name, value in _PARAM.findall(uri)
    )


def secret_env_names() -> list[str]:
    """Names of the set environment variables that hold credentials."""
    return sorted(
        name
        for name, value in os.environ.items()
        if value
        and name not in _NOT_SECRET_ENV
        and (name in SECRET_ENV or _SECRET_ENV_PART.search(name))
    )


def secret_env_values() -> list[str]:
    """Values of :func:`secret_env_names` of at least :data:`MIN_SECRET_LEN` characters,
    longest first."""
    values = {os.environ[n] for n in secret_env_names() if len(os.environ[n]) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def redact_log_records() -> None:
    """Make every log record (any library's: MLflow, urllib3, ...) carry its message already
    redacted by :func:`redact_text`. Installed once per process by the CLI."""
    import logging

    old = logging.getLogRecordFactory()
    if getattr(old, "xalign_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = old(*args, **kwargs)
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report
            return record
        redacted = redact_text(text)
        if redacted != text:
            record.msg, record.args = redacted, None
        return record

    factory.xalign_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
