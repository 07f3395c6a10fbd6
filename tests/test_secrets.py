"""Credentials in URIs and in the environment are never printed, logged or written."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from conftest import as_sets, migrated_sqlite_uri
from typer.testing import CliRunner

from xalign import tracking
from xalign.cli import app
from xalign.redact import MASK, is_redacted, redact_text, redact_uri
from xalign.tracking import BACKLOG_FILE, Tracker, TrackingError

pytestmark = pytest.mark.usefixtures("one_thread")

#: Secrets that must never show: in URIs, and in environment variables holding credentials.
URI_SECRETS = ("S3cretPW", "T0kenSecret", "AwsSig0123", "DbPassw0rd")
ENV_SECRETS = {
    "MLFLOW_TRACKING_PASSWORD": "EnvPassw0rdX",
    "MLFLOW_TRACKING_TOKEN": "EnvTrackingTok",
    "AWS_SECRET_ACCESS_KEY": "AwsSecretKeyX",
    "HF_TOKEN": "hf_EnvTokenXYZ",
    "MY_SERVICE_API_KEY": "ApiKeyValueX",
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_no_secret(text: str, where: str = "") -> None:
    for secret in (*URI_SECRETS, *ENV_SECRETS.values()):
        assert secret not in text, f"{secret} leaked {where}:\n{text[-2000:]}"


@pytest.fixture
def secret_env(monkeypatch):
    for name, value in ENV_SECRETS.items():
        monkeypatch.setenv(name, value)


# ----------------------------------------------------------------------------- the one rule
@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://alice:S3cretPW@host:5000", "http://alice:***@host:5000"),
        ("https://alice:S3cretPW@host/mlflow/", "https://alice:***@host/mlflow/"),
        ("https://h.example/mlflow?token=T0kenSecret", "https://h.example/mlflow?token=***"),
        (
            "https://h/x?run=1&access_token=T0kenSecret&n=2",
            "https://h/x?run=1&access_token=***&n=2",
        ),
        (
            "https://b.s3.amazonaws.com/o?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA"
            "%2F20240101&X-Amz-Signature=AwsSig0123&X-Amz-Security-Token=T0kenSecret",
            "https://b.s3.amazonaws.com/o?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Security-Token=***",
        ),
        (
            "https://acct.blob.core.windows.net/c?sv=2022-11-02&sig=AwsSig0123&se=2030",
            "https://acct.blob.core.windows.net/c?sv=2022-11-02&sig=***&se=2030",
        ),
        (
            "https://h/?api_key=k1&apikey=k2&key=k3&monkey=4",
            "https://h/?api_key=***&apikey=***&key=***&monkey=4",
        ),
        (
            "postgresql://user:DbPassw0rd@db.example:5432/mlflow",
            "postgresql://user:***@db.example:5432/mlflow",
        ),
        ("mysql+pymysql://u:Db@Pass:w0rd@h/db", "mysql+pymysql://u:***@h/db"),
        ("databricks://user:T0kenSecret@workspace", "databricks://user:***@workspace"),
        ("https://h/x?password=S3cretPW&user=bob", "https://h/x?password=***&user=bob"),
        # a token used as the user name (git and the Hub accept it)
        ("https://ghp_T0kenSecret9@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("https://hf_T0kenSecret@huggingface.co/m", "https://***@huggingface.co/m"),
        ("https://a1b2c3d4e5f6g7h8i9j0k@host/x", "https://***@host/x"),
    ],
)
def test_redact_uri_masks_passwords_and_secret_query_values(uri, expected):
    assert redact_uri(uri) == expected
    assert is_redacted(expected) and not is_redacted(uri)
    assert redact_uri(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "uri",
    [
        "file:///tmp/mlruns",
        "file:./mlruns",
        "sqlite:///mlflow.db",
        "sqlite:////abs/dir/m.db?timeout=20",
        "databricks",
        "databricks://my-profile",
        "databricks://scope:prefix",  # a secret *scope*, not a secret
        "http://127.0.0.1:5000",
        "http://alice@host:5000",  # a user name alone is not a secret
        "https://github-actions@host/x",  # nor a long name without digits
        "https://h/x?run=1&page=2#frag",
        "./mlruns",
    ],
)
def test_uris_without_secrets_are_unchanged(uri):
    assert redact_uri(uri) == uri
    assert not is_redacted(uri)


def test_redact_text_finds_uris_and_credential_env_values(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_EnvTokenXYZ")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # not a credential
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")  # too short to replace in text
    text = (
        "store 'http://alice:S3cretPW@h:1/' is down (see https://h/?token=T0kenSecret), "
        "token hf_EnvTokenXYZ; false stays; pw stays"
    )
    assert redact_text(text) == (
        "store 'http://alice:***@h:1/' is down (see https://h/?token=***), "
        "token ***; false stays; pw stays"
    )


def test_a_redacted_uri_is_completed_from_the_environment_or_refused(monkeypatch):
    real = "http://alice:S3cretPW@127.0.0.1:5000"
    saved = redact_uri(real)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(TrackingError, match=r"without its credentials.*--tracking-uri") as exc:
        tracking.resolve_tracking_uri(saved)
    assert "S3cretPW" not in str(exc.value) and saved in str(exc.value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://bob:Other@127.0.0.1:5000")
    with pytest.raises(TrackingError):  # another user's URI does not complete it
        tracking.resolve_tracking_uri(saved)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", real)
    assert tracking.resolve_tracking_uri(saved) == real
    assert tracking.resolve_tracking_uri(real) == real  # given in full: used as given


# ------------------------------------------------------------- every command's error message
def _unreachable_uris() -> list[str]:
    port = closed_port()
    return [
        f"http://alice:S3cretPW@127.0.0.1:{port}",
        f"http://127.0.0.1:{port}/?token=T0kenSecret",
        f"http://bob:S3cretPW@127.0.0.1:{port}/mlflow?access_token=T0kenSecret",
    ]


@pytest.mark.parametrize("command", ["run", "eval", "compare", "sync-tracking"])
def test_unreachable_store_error_names_it_without_its_secret(
    command, tiny_model, tmp_path, secret_env
):
    backlog = tmp_path / "backlog"
    backlog.mkdir()
    (backlog / BACKLOG_FILE).write_text(
        json.dumps({"op": "tags", "run_id": "0" * 32, "tags": {"a": "1"}, "uri": "x"}) + "\n"
    )
    sets = as_sets([f"model.name={tiny_model}", f"train.output_dir={tmp_path / 'out'}"])
    args = {
        "run": ["run", "-q", "-o", "sinkhorn", *sets],
        "eval": ["eval", str(tiny_model), "--task", "align"],
        "compare": ["compare", "sinkhorn", "--tasks", "align", *sets],
        "sync-tracking": ["sync-tracking", str(backlog)],
    }[command]
    for uri in _unreachable_uris():
        result = CliRunner().invoke(app, [*args, "--tracking-uri", uri])
        assert result.exit_code == 1, result.output
        assert_no_secret(result.output, f"by {command} {uri}")
        assert redact_uri(uri) in "".join(result.output.split())
        assert "unreachable" in result.output


def test_other_store_errors_do_not_show_the_password(monkeypatch, secret_env):
    """A database URI (its driver may be missing: any failure of the probe) and a URI given
    through the environment."""
    with pytest.raises(TrackingError) as exc:
        tracking.check_tracking(f"postgresql://user:DbPassw0rd@127.0.0.1:{closed_port()}/db")
    assert_no_secret(str(exc.value))
    assert "postgresql://user:***@127.0.0.1" in str(exc.value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:S3cretPW@127.0.0.1:{closed_port()}")
    with pytest.raises(TrackingError) as exc:
        tracking.check_tracking(None)
    assert_no_secret(str(exc.value))


# ----------------------------------------------------------- everything a run writes or logs
def test_a_run_writes_and_logs_no_secret(tiny_model, tmp_path, secret_env, monkeypatch):
    """A whole run with a secret in its store URI (a sqlite store ignores the query) and
    credentials in the environment: stdout is the run id; no config.yaml, checkpoint, param,
    tag or artifact holds a secret; the saved URI is the redacted one."""
    from mlflow.tracking import MlflowClient

    db = Path(migrated_sqlite_uri(tmp_path / "m.db")[len("sqlite:///") :])
    uri = f"sqlite:///{db}?token=T0kenSecret"
    out = tmp_path / "out"
    overrides = [
        f"model.name={tiny_model}",
        "data.limit=12",
        "data.languages=[de]",
        "train.batch_size=6",
        "train.grad_accum=1",
        "train.checkpoint_every=1",
        "train.keep_optimizer_state=true",  # keep the checkpoints: their config.yaml too
        f"train.output_dir={out}",
        "tracking.run_name=see https://h/?sig=AwsSig0123",
    ]
    result = CliRunner().invoke(
        app, ["run", "-q", "-o", "sinkhorn", *as_sets(overrides), "--tracking-uri", uri]
    )
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip()
    assert len(run_id) == 32 and result.stdout == run_id + "\n"
    assert_no_secret(result.output, "in the command output")

    written = [
        p
        for p in out.rglob("*")
        if p.is_file() and p.suffix in {".yaml", ".json", ".jsonl", ".txt"}
    ]
    configs = [p for p in written if p.name == "config.yaml"]
    assert len(configs) >= 3  # the run's, and one per checkpoint
    for path in written:
        assert_no_secret(path.read_text(encoding="utf-8"), f"in {path}")
    assert f"uri: sqlite:///{db}?token={MASK}" in (out / run_id / "config.yaml").read_text()

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.data.params["tracking.uri"] == f"sqlite:///{db}?token={MASK}"
    assert_no_secret(json.dumps(run.data.params), "in the params")
    assert_no_secret(json.dumps(run.data.tags), "in the tags")
    dl = Path(client.download_artifacts(run_id, "", str(tmp_path / "dl")))
    texts = [p for p in dl.rglob("*") if p.is_file() and p.suffix in {".yaml", ".json", ".txt"}]
    assert any(p.name == "config.yaml" for p in texts)
    for path in texts:
        assert_no_secret(path.read_text(encoding="utf-8"), f"in artifact {path.name}")

    # resuming from the saved config: the redacted URI is refused with what to do ...
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, ["run", "-q", "--resume", str(out / run_id)])
    assert result.exit_code == 1 and "--tracking-uri" in result.output, result.output
    assert_no_secret(result.output)
    # ... and completed by MLFLOW_TRACKING_URI (the run is finished: nothing left to train)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert tracking.resolve_tracking_uri(f"sqlite:///{db}?token={MASK}") == uri


def test_a_kept_backlog_holds_the_redacted_uri_and_replays_with_the_real_one(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    db = Path(migrated_sqlite_uri(tmp_path / "m.db")[len("sqlite:///") :])
    uri = f"sqlite:///{db}?token=T0kenSecret"
    tracker = Tracker(uri, "unit", retry_interval=0.0)
    run_id = tracker.start(run_name="unit")
    tracker.set_backlog_dir(tmp_path / "run")

    class Down:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise OSError("[Errno 111] Connection refused to " + uri)

            return fail

    real, tracker.client = tracker.client, Down()
    with pytest.warns(tracking.TrackingWarning) as caught:
        tracker.log_params({"where": uri})
        tracker.end("FINISHED")
    for w in caught:
        assert_no_secret(str(w.message), "in a warning")
    backlog = (tmp_path / "run" / BACKLOG_FILE).read_text()
    assert_no_secret(backlog, "in the backlog")
    assert f"?token={MASK}" in backlog
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(TrackingError, match="--tracking-uri"):
        tracking.replay_backlog(tmp_path / "run")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert tracking.replay_backlog(tmp_path / "run") == 2
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["where"] == f"sqlite:///{db}?token={MASK}"
    del real


def test_a_run_on_a_server_with_basic_auth_in_its_uri(tiny_model, tmp_path, secret_env):
    """`xalign run -q` against an MLflow server (127.0.0.1, which ignores the credentials):
    stdout is the run id alone; MLflow's "View run ... at: URL" goes to stderr, redacted."""
    from mlflow.tracking import MlflowClient
    from test_mlflow_server import _free_port, _start_server, _stop_server

    server = _start_server(tmp_path, _free_port())
    try:
        uri = server.url.replace("http://", "http://alice:S3cretPW@")
        sets = as_sets(
            [
                f"model.name={tiny_model}",
                "data.limit=12",
                "data.languages=[de]",
                "train.batch_size=6",
                f"train.output_dir={tmp_path / 'out'}",
            ]
        )
        result = CliRunner().invoke(
            app, ["run", "-q", "-o", "sinkhorn", *sets, "--tracking-uri", uri]
        )
        assert result.exit_code == 0, result.output
        run_id = result.stdout.strip()
        assert result.stdout == run_id + "\n" and len(run_id) == 32, result.stdout
        assert_no_secret(result.output, "in the command output")
        assert "View run" not in result.stdout
        if "View run" in result.stderr:
            assert "http://alice:***@127.0.0.1" in result.stderr
        run = MlflowClient(server.url).get_run(run_id)
        assert run.data.params["tracking.uri"] == redact_uri(uri)
        text = (tmp_path / "out" / run_id / "config.yaml").read_text()
        assert f"uri: {redact_uri(uri)}" in text and "S3cretPW" not in text
    finally:
        _stop_server(server)


def test_library_log_lines_are_redacted(secret_env, caplog):
    import logging

    from xalign.redact import redact_log_records

    redact_log_records()
    redact_log_records()  # once only
    logger = logging.getLogger("urllib3.connectionpool")
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        logger.warning("Retrying %s after %s", "http://alice:S3cretPW@h/?token=T0kenSecret", 1)
        logger.warning("env %s", ENV_SECRETS["HF_TOKEN"])
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "http://alice:***@h/?token=*** after 1" in text and "env ***" in text
    assert_no_secret(text)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://bob:p@ss:w/rd@127.0.0.1:9/", "http://bob:***@127.0.0.1:9/"),
        ("http://bob:a/b@h/x?token=T0ken#f", "http://bob:***@h/x?token=***#f"),
        ("https://:p@ss@h", "https://:***@h"),
        ("s3://k:/@@b/key", "s3://k:***@b/key"),
    ],
)
def test_a_password_typed_with_unencoded_at_colon_slash_is_masked_whole(uri, expected):
    """Userinfo runs to the LAST ``@`` (before ``?``/``#``): ``p@ss:w/rd`` is all password."""
    assert redact_uri(uri) == expected
    assert redact_text(uri) == expected
    assert redact_text(f"store {uri} is down") == f"store {expected} is down"
    assert is_redacted(expected) and not is_redacted(uri)


@pytest.mark.parametrize(
    ("text", "expected"),
    [  # a URI that went through Path(): "//" folded to "/"
        (
            "https:/u:CorpPw2@127.0.0.1:9/c.tsv: file not found",
            "https:/u:***@127.0.0.1:9/c.tsv: file not found",
        ),
        ("/work/https:/u:Pw@h/x.txt", "/work/https:/u:***@h/x.txt"),
        ("'s3:/key:Sec/ret@bucket/c.tsv'", "'s3:/key:***@bucket/c.tsv'"),
        ("ftp:/u:p@ss:w/rd@h/de.txt missing", "ftp:/u:***@h/de.txt missing"),
    ],
)
def test_a_uri_folded_by_a_path_is_redacted_in_text(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "paths",
    [
        ["--set", "data.corpus=https://u:CorpPw2@127.0.0.1:9/c.tsv"],
        ["--set", "data.corpus=s3://key:CorpPw2/x@bucket/c.tsv"],
        ["-o", "l2", "--set", "data.links=https://u:CorpPw2@127.0.0.1:9/{src}.txt"],
    ],
)
def test_data_file_errors_do_not_show_a_password_in_the_path(paths, tmp_path, monkeypatch):
    """data.corpus / data.links become paths (``//`` -> ``/``) before 'not found' is said."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["prepare", *paths, "--set", "data.languages=[de]"])
    assert result.exit_code != 0
    assert "not found" in result.output and ":***@" in result.output, result.output
    assert "CorpPw2" not in result.output
