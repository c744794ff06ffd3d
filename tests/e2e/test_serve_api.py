"""``dataferry serve`` over HTTP, under a real uvicorn server, on the quickstart's state: every
endpoint, the colours of stale and failing cells, pause and resume with and without the token and
the CSRF field, and values from the stores (``<script>``) shown as text."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from dataferry import ops
from dataferry.config import Config, load
from dataferry.jobs.common import StoreCache, now_utc
from dataferry.jobs.runs import ErrorInfo, RunRecord, iter_runs, new_run_id, write_run
from dataferry.jobs.status import collect_status
from dataferry.quickstart import SALT_FILE, personal_data
from serve_site import Reply, call, quickstart_state, serving
from servers import free_port

DB = "email-alert-api"
STAGING = f"{DB}-staging"
INTEGRATION = f"{DB}-integration"
TOKEN = "s3cret-serve-token"
XSS = "<script>alert('x')</script>"


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart's directory after its chain ran (made once for the module)."""
    directory = tmp_path_factory.mktemp("serve") / "ferry"
    quickstart_state(directory)
    return directory


@pytest.fixture
def cfg(chain: Path, tmp_path: Path) -> Config:
    """A copy of the quickstart's state for one test (tests write holds and runs into it)."""
    copy = tmp_path / "ferry"
    shutil.copytree(chain, copy)
    return load(copy / "dataferry.toml")


@pytest.fixture
def site(cfg: Config) -> Iterator[str]:
    """The status page of ``cfg``."""
    with serving(cfg) as url:
        yield url


def test_every_read_endpoint_serves_the_library_data(cfg: Config, site: str) -> None:
    status = call(f"{site}/api/status").json()
    expected = collect_status(cfg).to_json()
    assert [e["name"] for e in status["environments"]] == [e["name"] for e in expected["environments"]]
    for got, want in zip(status["environments"], expected["environments"], strict=True):
        assert [d["newest_artifact"] for d in got["databases"]] == [
            d["newest_artifact"] | {"age_seconds": g["newest_artifact"]["age_seconds"]}
            if d["newest_artifact"]
            else None
            for d, g in zip(want["databases"], got["databases"], strict=True)
        ]
    only = call(f"{site}/api/status?env=staging").json()
    assert [e["name"] for e in only["environments"]] == ["staging"]

    matrix = call(f"{site}/api/matrix").json()
    assert matrix["environments"] == ["production", "staging", "integration"]
    cells = {c["environment"]: c for c in matrix["cells"]}
    assert {env: c["state"] for env, c in cells.items()} == dict.fromkeys(cells, "fresh")
    assert cells["staging"]["sanitised"] is True and cells["production"]["sanitised"] is False
    assert cells["staging"]["limit_seconds"] == 26 * 3600  # the job's max_age

    job = call(f"{site}/api/jobs/{STAGING}").json()
    history = [r.model_dump(mode="json") for r in iter_runs(StoreCache(cfg).for_job(STAGING), STAGING)]
    assert job["runs"] == history  # the same data as 'history --json'
    assert job["status"]["name"] == STAGING and job["status"]["last_run"]["status"] == "succeeded"
    assert len(call(f"{site}/api/jobs/{STAGING}?limit=1").json()["runs"]) == 1
    bad = call(f"{site}/api/jobs/{STAGING}?limit=many")
    assert bad.status == 400 and "limit must be a whole number" in bad.json()["error"]

    database = call(f"{site}/api/databases/{DB}").json()
    listed = {e["environment"]: [a["id"] for a in e["artifacts"]] for e in database["environments"]}
    assert listed["staging"] == [m.id for m in ops.list_artifacts(cfg, DB, "staging")]  # as 'list --json'
    assert [c["job"] for c in database["chain"]] == [f"{DB}-production", STAGING, INTEGRATION]
    made = {e["environment"]: e["provenance"] for e in database["environments"]}["staging"][
        listed["staging"][0]
    ]
    assert made["published_by"].startswith(f"{STAGING} run ")  # the chain, from the run records
    assert made["restored_from"] == listed["production"][0]
    assert made["verified_by"][0].startswith(f"restore by {INTEGRATION} run ")

    assert call(f"{site}/api/holds").json() == []
    metrics = call(f"{site}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert (
        f'dataferry_data_timestamp_seconds{{database="{DB}",environment="staging",kind="live"}}'
        in metrics.body
    )
    assert f'dataferry_job_state{{job_name="{STAGING}"}} 2.0' in metrics.body
    assert call(f"{site}/healthz").body == "ok\n"
    for page in ("/", f"/jobs/{STAGING}", f"/databases/{DB}", "/holds", "/static/style.css"):
        reply = call(site + page)
        assert reply.status == 200, page
    assert "script-src" not in call(site + "/").headers["content-security-policy"]  # default-src 'none'
    assert "<svg" in call(f"{site}/jobs/{STAGING}").body  # the charts, drawn on the server


def test_unknown_names_get_a_clear_404(site: str) -> None:
    reply = call(f"{site}/api/jobs/nope")
    assert reply.status == 404
    assert reply.json() == {
        "error": "no job 'nope' in the configuration",
        "hint": f"known jobs: {DB}-integration, {DB}-production, {STAGING}",
    }
    assert call(f"{site}/databases/nope").status == 404
    assert "no database &#39;nope&#39;" in call(f"{site}/databases/nope").body


def _record(
    cfg: Config, job: str, status: str, *, data_age: timedelta | None = None, error: str = ""
) -> None:
    now = now_utc()
    jc = cfg.job(job)
    record = RunRecord(
        job=job,
        run_id=new_run_id(now),
        environment=jc.environment,
        database=jc.database,
        status=status,  # type: ignore[arg-type]
        started_at=now - timedelta(seconds=30),
        finished_at=now,
        data_as_of=now - data_age if data_age else None,
        error=ErrorInfo(type="FerryError", message=error, exit_code=1, hint="hint: " + error)
        if error
        else None,
    )
    write_run(StoreCache(cfg).for_job(job), record)


def test_stale_and_failing_cells_stand_out(cfg: Config, site: str) -> None:
    _record(cfg, STAGING, "succeeded", data_age=timedelta(hours=30))  # over its max_age of 26h
    _record(cfg, INTEGRATION, "failed", error="the restore failed")
    cells = {c["environment"]: c for c in call(f"{site}/api/matrix").json()["cells"]}
    assert cells["staging"]["state"] == "stale"
    assert cells["integration"]["state"] == "failing"
    assert cells["production"]["state"] == "fresh"
    html = call(site + "/").body
    assert 'class="cell stale" data-env="staging"' in html
    assert 'class="cell failing" data-env="integration"' in html
    assert "the restore failed" in call(f"{site}/jobs/{INTEGRATION}").body


def _form(site: str, action: str, fields: dict[str, str], *, cookie: str | None) -> Reply:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if cookie is not None:
        headers["Cookie"] = f"dataferry_csrf={cookie}"
    return call(f"{site}/holds/{action}", method="POST", data=urlencode(fields).encode(), headers=headers)


def _api(site: str, action: str, body: dict[str, str], token: str | None) -> Reply:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return call(f"{site}/api/{action}", method="POST", data=json.dumps(body).encode(), headers=headers)


def test_without_the_token_variable_the_server_is_read_only(site: str) -> None:
    pause = {"scope": "job", "target": STAGING, "reason": "pen test", "by": "ann"}
    reply = _api(site, "pause", pause, TOKEN)
    assert reply.status == 403
    assert "read-only" in reply.json()["error"] and "DATAFERRY_SERVE_TOKEN" in reply.json()["error"]
    assert _form(site, "pause", {**pause, "csrf": "c", "token": TOKEN}, cookie="c").status == 403
    assert 'name="token"' not in call(f"{site}/holds").body  # no forms on a read-only page
    assert call(f"{site}/api/holds").json() == []


def test_pause_and_resume_need_the_token_and_the_forms_the_csrf_field(
    cfg: Config, site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAFERRY_SERVE_TOKEN", TOKEN)
    pause = {"scope": "environment", "target": "staging", "reason": "pen test", "by": "ann", "until": "3d"}
    assert _api(site, "pause", pause, None).status == 401
    assert _api(site, "pause", pause, "wrong").status == 401
    assert call(f"{site}/api/holds").json() == []

    done = _api(site, "pause", pause, TOKEN)
    assert done.status == 200, done.body
    holds = call(f"{site}/api/holds").json()
    assert [(h["scope"], h["target"], h["reason"], h["created_by"]) for h in holds] == [
        ("environment", "staging", "pen test", "ann (dataferry serve)")
    ]
    assert holds[0]["until"] is not None
    assert collect_status(cfg).environments[2].holds  # the CLI's 'status' sees it: the same store objects
    bad = _api(site, "pause", {**pause, "until": "yesterday"}, TOKEN)
    assert bad.status == 400 and "until" in bad.json()["error"]
    assert _api(site, "pause", {**pause, "reason": " "}, TOKEN).status == 400
    assert _api(site, "pause", {**pause, "reason": "x" * 501}, TOKEN).status == 400
    assert _api(site, "pause", {**pause, "reason": "x" * 20000}, TOKEN).status == 413

    # The form: with the token but without a matching CSRF cookie it is refused before anything else.
    form = {"scope": "environment", "target": "staging", "token": TOKEN, "csrf": "abc"}
    assert _form(site, "resume", form, cookie=None).status == 403
    assert _form(site, "resume", form, cookie="other").status == 403
    assert _form(site, "resume", {**form, "token": "wrong"}, cookie="abc").status == 401
    assert len(call(f"{site}/api/holds").json()) == 1
    reply = _form(site, "resume", form, cookie="abc")
    assert reply.status == 303 and reply.headers["location"] == "/holds"
    assert (
        "dataferry_done=" in reply.headers["set-cookie"]
        and "resumed environment staging" in reply.headers["set-cookie"]
    )
    assert call(f"{site}/api/holds").json() == []
    assert _api(site, "resume", {"scope": "environment", "target": "nowhere"}, TOKEN).status == 400


def test_values_from_the_stores_are_shown_as_text(
    cfg: Config, site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAFERRY_SERVE_TOKEN", TOKEN)
    pause = {"scope": "job", "target": STAGING, "reason": XSS, "by": XSS}
    assert _api(site, "pause", pause, TOKEN).status == 200
    _record(cfg, INTEGRATION, "failed", error=XSS)
    escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
    for page in ("/", "/holds", f"/jobs/{STAGING}", f"/jobs/{INTEGRATION}"):
        body = call(site + page).body
        assert "<script>" not in body, page
        assert escaped in body, page
    # A job name in the address comes back in the error page's message: as text too.
    reply = call(site + "/jobs/" + quote("<script>alert('x')", safe=""))
    assert reply.status == 404 and "<script>" not in reply.body
    assert "no job &#34;&lt;script&gt;alert(&#39;x&#39;)&#34;" in reply.body
    assert call(f"{site}/api/holds").json()[0]["reason"] == XSS  # JSON keeps the value as it is


def test_the_command_serves_and_refuses_a_bad_bind(cfg: Config) -> None:
    exe = str(Path(sys.executable).with_name("dataferry"))
    assert cfg.path is not None
    bad = subprocess.run(
        [exe, "--config", str(cfg.path), "serve", "--bind", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "is not HOST:PORT" in bad.stderr and "Traceback" not in bad.stderr
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAFERRY_")}
    proc = subprocess.Popen(
        [exe, "--config", str(cfg.path), "serve", "--bind", f"127.0.0.1:{port}"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = call(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "dataferry serve did not start"
                time.sleep(0.2)
        assert reply.body == "ok\n"
        assert call(f"http://127.0.0.1:{port}/api/matrix").json()["databases"] == [DB]
        # Bound to localhost, it answers only to localhost's names (no DNS rebinding).
        assert call(f"http://127.0.0.1:{port}/healthz", headers={"Host": f"localhost:{port}"}).status == 200
        assert call(f"http://127.0.0.1:{port}/", headers={"Host": "attacker.example"}).status == 400
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()


def test_allow_host_adds_the_proxys_name_to_localhosts(cfg: Config) -> None:
    """``--allow-host status.example.org`` (the runbook's reverse proxy) lets the proxy's name in and
    keeps localhost's names, so the runbook's curl on the server itself still works."""
    exe = str(Path(sys.executable).with_name("dataferry"))
    assert cfg.path is not None
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAFERRY_")}
    argv = [exe, "--config", str(cfg.path), "serve", "--bind", f"127.0.0.1:{port}"]
    proc = subprocess.Popen([*argv, "--allow-host", "status.example.org"], env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                call(url)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "dataferry serve did not start"
                time.sleep(0.2)
        assert call(url, headers={"Host": "status.example.org"}).status == 200
        assert call(url, headers={"Host": f"localhost:{port}"}).status == 200
        assert call(url, headers={"Host": "attacker.example"}).status == 400
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_no_personal_data_or_secret_in_any_response(
    cfg: Config, site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page and endpoint, read after the chain ran: none of production's addresses or phone
    numbers, not the sanitisation salt, not the write token."""
    monkeypatch.setenv("DATAFERRY_SERVE_TOKEN", TOKEN)
    assert cfg.path is not None
    emails, phones = personal_data(cfg.path.parent / "databases" / "production" / f"{DB}.db")
    assert len(emails) > 100 and len(phones) > 100
    salt = (cfg.path.parent / SALT_FILE).read_text(encoding="utf-8").strip()
    pages = ["/", "/holds", f"/databases/{DB}", "/metrics", "/healthz", "/api/status", "/api/matrix"]
    pages += ["/api/holds", f"/api/databases/{DB}"]
    pages += [p for job in cfg.jobs for p in (f"/jobs/{job}", f"/api/jobs/{job}")]
    text = "\n".join(call(site + page).body for page in pages).lower()
    assert not [e for e in emails if e in text]
    assert not [p for p in phones if p in text]
    assert salt.lower() not in text and TOKEN.lower() not in text


def test_a_pause_of_everything_holds_every_cell(
    cfg: Config, site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAFERRY_SERVE_TOKEN", TOKEN)
    assert _api(site, "pause", {"scope": "all", "reason": "incident 123", "by": "ann"}, TOKEN).status == 200
    status = collect_status(cfg)  # what 'dataferry status' sees: the hold in every environment's store
    assert [h.reason for h in status.global_holds] == ["incident 123"]
    cells = call(f"{site}/api/matrix").json()["cells"]
    assert {c["state"] for c in cells} == {"held"}
    assert "everything: held by ann (dataferry serve)" in call(site + "/").body
    assert _api(site, "resume", {"scope": "all"}, TOKEN).json() == {"done": "resumed everything"}
    assert {c["state"] for c in call(f"{site}/api/matrix").json()["cells"]} == {"fresh"}
