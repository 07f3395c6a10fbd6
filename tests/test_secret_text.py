"""Credentials in free text (an MLflow or library error, a log line, a bug's traceback) are
masked before xalign prints them: tokens of known shapes, Authorization values, ``token =``
pairs, and secrets that xalign already masked in a URI (MLflow repeats them in its own words)."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from xalign.cli import app
from xalign.redact import MASK, redact_log_records, redact_text, redact_uri, secret_env_names

pytestmark = pytest.mark.usefixtures("one_thread")

DAPI = "dapi" + "0123456789abcdef" * 2  #: a Databricks personal access token's shape
TOKENS = {
    "databricks": DAPI,
    "databricks-suffix": DAPI + "-2",
    "github": "ghp_" + "a1B2c3D4e5" * 4,
    "github-fine-grained": "github_pat_11ABCDEFG0" + "x1Y2z3" * 5,
    "gitlab": "glpat-" + "Ab1_Cd2-Ef3" * 2,
    "huggingface": "hf_" + "QwErTy123" * 4,
    "openai": "sk-proj-" + "Zx9Yw8Vu7" * 3,
    "slack": "xoxb-1234567890-" + "abcDEF123" * 2,
    "aws-key-id": "AKIAIOSFODNN7EXAMPL3",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
}


@pytest.mark.parametrize("kind", sorted(TOKENS))
def test_tokens_of_known_shapes_are_masked_in_free_text(kind: str) -> None:
    token = TOKENS[kind]
    for text, kept in [
        (f"invalid access token {token} for workspace", ("invalid access token ", " for ws")),
        (f"request failed ({token})", ("request failed (", ")")),
        (f"headers={{'X-Api': '{token}'}}", ("headers={'X-Api': '", "'}")),
    ]:
        out = redact_text(text)
        assert token not in out and MASK in out, out
        assert out.startswith(kept[0]), out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Authorization: Bearer {DAPI}", "Authorization: Bearer ***"),
        ("Authorization: Bearer abc.DEF-ghi_123", "Authorization: Bearer ***"),
        ("authorization=Basic dXNlcjpwYXNzd29yZA==", "authorization=Basic ***"),
        ("Authorization: s3cr3tValue", "Authorization: ***"),
        (
            "[prof]\nhost = https://h\ntoken = s3cr3tValue9\n",
            "[prof]\nhost = https://h\ntoken = ***\n",
        ),
        ('{"password": "hunter2hunter", "user": "bob"}', '{"password": "***", "user": "bob"}'),
        ("client_secret=abcdef123456 scope=all", "client_secret=*** scope=all"),
        ("MLFLOW_TRACKING_TOKEN: abcdefgh1", "MLFLOW_TRACKING_TOKEN: ***"),
    ],
)
def test_authorization_values_and_secret_pairs_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "basic settings are kept",
        "Bearer of bad news",
        "the tokenizer: bert-base-cased",
        "max_tokens=128 and token_limit: 64",
        "run 0123456789abcdef0123456789abcdef finished",
        "task-0123456789abcdefghijk",
        "model.name=sentence-transformers/LaBSE",
        "hf_hub_download failed",
        "the password is masked as ***: password: ***",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_a_secret_masked_in_a_uri_is_masked_in_later_text() -> None:
    """MLflow's databricks error repeats the part of ``databricks://scope:prefix`` that the URI
    rule masks ("databricks secrets put-secret scope PREFIX-host")."""
    uri = "databricks://prof:DbxToken9@x"
    assert redact_uri(uri) == "databricks://prof:***@x"
    text = "create it: 'databricks secrets put-secret prof DbxToken9@x-host'"
    assert redact_text(text) == "create it: 'databricks secrets put-secret prof ***@x-host'"


def test_library_log_lines_with_tokens_are_redacted(caplog) -> None:
    redact_log_records()
    with caplog.at_level(logging.WARNING):
        logging.getLogger("mlflow.utils.databricks_utils").warning(
            "Failed to create workspace client, error: %s", f"Bearer {DAPI} rejected"
        )
    assert DAPI not in caplog.text and "Bearer ***" in caplog.text


# ----------------------------------------------------------------- through every entry point
def mlflow_error_text() -> str:
    return (
        f"Databricks workspace rejected the request: INVALID_TOKEN ({TOKENS['databricks']}); "
        f"headers={{'Authorization': 'Bearer {TOKENS['github']}'}}; cfg token = "
        f"{TOKENS['huggingface']}; retry with {TOKENS['openai']}"
    )


@pytest.fixture
def mlflow_fails(monkeypatch):
    """Every MlflowClient fails with an error text holding tokens (what the databricks-sdk and
    MLflow's REST client put in their messages)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    def fail(self, *args, **kwargs):
        raise MlflowException(mlflow_error_text())

    monkeypatch.setattr(MlflowClient, "__init__", fail)


def assert_clean(output: str) -> None:
    for token in TOKENS.values():
        assert token not in output, output
    assert "error:" in output and MASK in output, output


URIS = ["databricks://prof", f"https://token:{DAPI}@127.0.0.1:9/", "databricks://prof:DbxToken9@x"]


@pytest.mark.parametrize("uri", URIS)
@pytest.mark.parametrize("command", ["run", "eval", "compare", "sync-tracking"])
def test_mlflow_errors_are_redacted_at_every_entry_point(
    mlflow_fails, tiny_model, tmp_path, command: str, uri: str
) -> None:
    sets = ["--set", f"model.name={tiny_model}", "--set", "data.limit=4"]
    backlog = tmp_path / "run"
    backlog.mkdir()
    record = {"uri": uri, "run_id": "0" * 32, "op": "tags", "tags": {"a": "b"}}
    (backlog / "tracking-backlog.jsonl").write_text(json.dumps(record) + "\n")
    args = {
        "run": ["run", "-q", "-o", "sinkhorn", *sets, "--tracking-uri", uri],
        "eval": ["eval", str(tiny_model), "--task", "align", "--tracking-uri", uri],
        "compare": ["compare", "sinkhorn", "--tasks", "align", *sets, "--tracking-uri", uri],
        "sync-tracking": ["sync-tracking", str(backlog), "--tracking-uri", uri],
    }[command]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert_clean(result.output)
    assert DAPI not in result.output and "DbxToken9" not in result.output


def test_a_bugs_traceback_is_redacted(monkeypatch, capsys) -> None:
    """An unexpected exception (a bug, or a library error xalign does not wrap) still prints
    its traceback, with credentials masked."""
    import xalign.cli as cli

    def boom() -> None:
        raise RuntimeError(mlflow_error_text())

    monkeypatch.setattr(cli, "app", boom)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: Databricks workspace rejected" in err
    for token in TOKENS.values():
        assert token not in err


def test_long_texts_are_redacted_in_linear_time() -> None:
    """A long error line (a base64 blob, a repeated pattern) cannot stall the error path:
    100,000 characters of each shape that made the URI patterns scan quadratically (minutes)
    are redacted in seconds."""
    import subprocess
    import sys

    units = ["a", "a_", "ab-", "x=", "a:", "https://a:", "Bearer ", "hf_", "token", "'x://a:"]
    units += ["-----BEGIN PRIVATE KEY-----", "-----BEGIN PRIVATE KEY-----a-", "-", "passphrase="]
    units += ["/x:", "a://b:c?", "http://h/?a", "a://b?c", "/x:?@", "h://#-="]
    code = (
        "from xalign.redact import redact_text\n"
        f"for unit in {units!r}:\n"
        "    redact_text(unit * (100_000 // len(unit)))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'https://u:Pw0rd@host'", "'https://u:***@host'"),
        ('"https://u:Pw0rd@host/x"', '"https://u:***@host/x"'),
        ("<https://u:Pw0rd@host>", "<https://u:***@host>"),
        ("(https://u:Pw0rd@host/x)", "(https://u:***@host/x)"),
        ("url=https://u:Pw0rd@host", "url=https://u:***@host"),
        ("['http://u:Pw0rd@host']", "['http://u:***@host']"),
        ("jdbc:mysql://u:Pw0rd@host/db", "jdbc:mysql://u:***@host/db"),
        ("uri:postgresql://pg:p@ss@db:5432/x", "uri:postgresql://pg:***@db:5432/x"),
    ],
)
def test_a_uri_not_at_the_start_of_a_spaceless_text_is_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=ab+/Zx09==;Suffix=x",
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=***;Suffix=x",
        ),
        ("conn: SharedAccessKey=abcdefgh123= ok", "conn: SharedAccessKey=*** ok"),
        ("passphrase=correct-horse", "passphrase=***"),
        ('{"passphrase": "battery-staple"}', '{"passphrase": "***"}'),
        ("ssh_key_passphrase: s3cr3tphrase", "ssh_key_passphrase: ***"),
    ],
)
def test_connection_string_keys_and_passphrases_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize("kind", ["", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED "])
def test_pem_private_key_bodies_are_masked(kind: str) -> None:
    body = "MIIEvQIBADANBgkqhkiG9w0B\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B\nQk1Q+/=="
    begin, end = f"-----BEGIN {kind}PRIVATE KEY-----", f"-----END {kind}PRIVATE KEY-----"
    text = f"error reading key:\n{begin}\n{body}\n{end}\nafter the key"
    assert redact_text(text) == f"error reading key:\n{begin}\n{MASK}\n{end}\nafter the key"
    cut = redact_text(f"{begin}\n{body[:30]}")  # a key cut short: the rest is masked
    assert cut == f"{begin}\n{MASK}\n" and "MIIE" not in cut
    public = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----"
    assert redact_text(public) == public


@pytest.mark.parametrize(
    "name", ["PGPASSWORD", "MYSQL_PWD", "OPENAI_KEY", "AZURE_OPENAI_KEY", "DB_PASS", "MY_API_KEY"]
)
def test_database_and_api_key_variables_are_secret(monkeypatch, name: str) -> None:
    monkeypatch.setenv(name, "value-of-a-secret-1")
    assert name in secret_env_names()
    assert redact_text("connect failed: value-of-a-secret-1 refused") == (
        f"connect failed: {MASK} refused"
    )


def test_working_folder_variables_are_not_secret(monkeypatch) -> None:
    monkeypatch.setenv("PWD", "/home/someone/work")
    monkeypatch.setenv("OLDPWD", "/home/someone")
    monkeypatch.setenv("KEYBOARD_LAYOUT", "de")
    names = secret_env_names()
    assert not {"PWD", "OLDPWD", "KEYBOARD_LAYOUT"} & set(names)
    assert redact_text("in /home/someone/work") == "in /home/someone/work"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [  # ``#`` and ``?`` typed unencoded in a password (a fragment or query cannot hold ``@``)
        ("http://gina:Hash#Secret42@127.0.0.1:9", "http://gina:***@127.0.0.1:9"),
        ("http://hank:Q?Secret4242@h:9/x", "http://hank:***@h:9/x"),
        ("https://u:a#b?c@d#e@h/p?token=zz", "https://u:***@h/p?token=***"),
        ("mysql://u:p#w:rd@db:3306/x", "mysql://u:***@db:3306/x"),
        # a user name alone (a token) holding an unencoded # or ?
        ("https://Zq9abcdefghij#klmnopqrstuv@127.0.0.1:9/", "https://***@127.0.0.1:9/"),
        ("https://Zq9ab?cd@h/x", "https://***@h/x"),
        # and what must stay: the host, a query or fragment after the host holding an @
        ("http://u:pass@host/path?q=a@b", "http://u:***@host/path?q=a@b"),
        ("http://u:p@ss/word@host/x?y=1", "http://u:***@host/x?y=1"),
        ("http://u:a#b@h/x#c@d", "http://u:***@h/x#c@d"),
        ("http://host:8080/path#frag@x", "http://host:8080/path#frag@x"),
    ],
)
def test_a_password_with_hash_or_question_mark_is_masked(uri: str, expected: str) -> None:
    assert redact_uri(uri) == expected
    assert redact_text(uri) == expected
    said = f"error: MLflow tracking store {uri} is unreachable (Invalid url: {uri})"
    assert (
        redact_text(said)
        == f"error: MLflow tracking store {expected} is unreachable (Invalid url: {expected})"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: token ghsecretvalue123", "Authorization: token ***"),
        ("Authorization: Digest username1234", "Authorization: Digest ***"),
        ("key=AIzaSyA1234567890abcdefghijklmnopqrstuv used", "key=*** used"),
        ("calling AIzaSyA1234567890abcdefghijklmnopqrstuv now", "calling *** now"),
        ("Cookie: session=abc123xyz; other=1", "Cookie: ***; other=1"),
        ("password='quoted pass'", "password='***'"),
        ('api_key: "two words here"', 'api_key: "***"'),
        ("https://h/x?sessionid=abcd1234&page=2", "https://h/x?sessionid=***&page=2"),
        (
            "GET http://h/app;jsessionid=ABCDEF123456 failed",
            "GET http://h/app;jsessionid=*** failed",
        ),
        ("x npm_" + "a1" * 18 + " y", "x *** y"),
        ("pypi-AgEIcHlwaS5vcmcCJGI" + "x" * 30, "***"),
        ("key sk_live_4eC39HqLyjWDarjtT1zdp7dc", "key ***"),
        ("https://hooks.slack.com/services/T000/B000/XXXXabcd", "https://***"),
        ("xapp-1-A0123-456-abcdef", "***"),
        ("secret_key=Zq9secretkey private_key: Zq9privkeyval", "secret_key=*** private_key: ***"),
        ("PWD=Zq9pwd123;Server=x", "PWD=***;Server=x"),
        # ordinary words stay
        ("the private key is missing", "the private key is missing"),
        ("unexpected token in line 3", "unexpected token in line 3"),
        ("the session ended", "the session ended"),
    ],
)
def test_more_credential_shapes_in_free_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_a_config_error_never_shows_part_of_a_secret():
    """A YAML problem mark's excerpt (a fixed-width window) and the 200-character quote of an
    override could cut a secret in two, past recognition: 'api_key="Zq9a ...'."""
    from xalign.config import load_config
    from xalign.errors import ConfigError

    item = (
        "data.corpus=/x/{src}.txt Proxy-Authorization: Basic Zq9dXNlcjpwYXNz "
        'X-Api-Key: Zq9KEYabcdef1234 api_key="Zq9apikey1" more'
    )
    long_item = "data.corpus=[" + "a" * 180 + " token=Zq9tokenvalue42 " + "b" * 50  # unclosed
    for override in (item, long_item):
        with pytest.raises(ConfigError) as exc:
            load_config(None, (override,))
        assert "Zq9" not in str(exc.value), str(exc.value)
