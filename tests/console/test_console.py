"""The console in a real browser (headless Chromium) against a live server: sign-in, the
volume life cycle through the pages, files in and out, hostile names, and the API docs.

These run in the SQLite pass only (``store_independent``): the console is a client of the
HTTP API, and the API's behaviour on PostgreSQL is what the API tests prove; running a
browser twice would double the slowest tests of the suite for nothing new.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
import uuid as uuid_lib
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, expect

from tests.conftest import LiveServer
from tests.console.conftest import Watched

pytestmark = pytest.mark.store_independent

HOSTILE = "<img src=x onerror=alert(1)>"


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _state(watched: Watched) -> Locator:
    return watched.page.locator("#volume-facts .state")


def test_a_wrong_token_is_an_error_on_the_sign_in_form(watched: Watched) -> None:
    watched.open()
    watched.page.fill("#token", "vd_not-a-token-at-all")
    watched.page.click("#sign-in-form button[type=submit]")
    expect(watched.page.locator("#sign-in-form .error")).to_have_text(
        "Sign-in refused: Invalid token"
    )
    expect(watched.page.locator("#nav")).to_be_hidden()
    watched.shot("sign-in-refused")
    assert "vd_not-a-token-at-all" not in watched.page.url


def test_a_volume_through_its_whole_life(
    watched: Watched, console_server: LiveServer, tmp_path: Path
) -> None:
    page = watched.page
    watched.sign_in()
    # Create, and see it turn available.
    watched.fill_create_form("web-data", 16)
    page.select_option("#create-policy", "dynamic")
    page.fill("#create-tags", "prod, web")
    watched.shot("create")
    page.click("#create-form button[type=submit]")
    expect(_state(watched)).to_have_text("available")
    assert re.search(r"#/volume/[0-9a-f-]{36}$", page.url)
    uuid = page.url.rsplit("/", 1)[1]
    # Grow.
    page.fill("#grow-size", "32")
    page.click("#grow-form button[type=submit]")
    expect(page.locator("#grow-form .ok")).to_have_text("Grown to 32 MiB.")
    expect(page.locator("#volume-facts")).to_contain_text("32 MiB")
    # Files in: a small tar with a progress bar; and back out as a download.
    archive = _tar(tmp_path / "site.tar", {"index.html": b"<h1>hello</h1>\n", "a/b.txt": b"b\n"})
    page.set_input_files("#import-file", str(archive))
    page.click("#import-form button[type=submit]")
    expect(page.locator("#import-form .ok")).to_contain_text("Imported")
    expect(page.locator("#import-progress")).to_have_attribute("value", "100")
    with page.expect_download() as download_info:
        page.click("#export-form button[type=submit]")
    download = download_info.value
    assert download.suggested_filename == "web-data.tar"
    with tarfile.open(download.path()) as exported:
        member = exported.extractfile("./index.html") or exported.extractfile("index.html")
        assert member is not None and member.read() == b"<h1>hello</h1>\n"
    expect(page.locator("#events")).to_contain_text("import")
    watched.shot("volume-detail")
    # Attach to an instance: idle; start it from its page: mounted.
    with console_server.client() as api:
        made = api.post("/v1/instances", json={"name": "web", "image": "nginx:latest"}).json()
        assert made["data"]["instances"][0]["status"] == "success"
    page.fill("#attach-form input[name=instance]", "web")
    page.click("#attach-form button[type=submit]")
    expect(_state(watched)).to_have_text("idle")
    page.click("#attachments a")
    expect(page.locator("#instance-volumes")).to_contain_text("web-data at /data")
    page.click("#instance-actions button:text('Start')")
    expect(page.locator("h1 .state")).to_have_text("running")
    # The record-only runtime keeps no console output; a runtime that does shows it here.
    expect(page.locator("#instance-log-note")).to_have_text(
        re.compile(r"This runtime keeps no logs\.|No output yet\.|^$")
    )
    watched.shot("instance-detail")
    page.click("#instance-volumes a")
    expect(_state(watched)).to_have_text("mounted")
    # The list shows it, attached and mounted, without a reload.
    page.click("#nav a[data-page=volumes]")
    row = page.locator(f"#volume-rows tr[data-uuid='{uuid}']")
    expect(row.locator(".state")).to_have_text("mounted")
    expect(row).to_contain_text("web")
    with console_server.client() as api:
        api.put("/v1/instances/stop", json={"name": "web"})
    expect(row.locator(".state")).to_have_text("idle")
    watched.shot("volumes")
    # Detach, then delete with a confirmation; cancelling first keeps it.
    page.click(f"#volume-rows tr[data-uuid='{uuid}'] a")
    page.click("#detach-form button[type=submit]")
    expect(_state(watched)).to_have_text("available")
    page.click("#delete-form button[type=submit]")
    page.click("dialog.confirm button[value=cancel]")
    expect(_state(watched)).to_have_text("available")
    page.click("#delete-form button[type=submit]")
    page.click("dialog.confirm button[value=confirm]")
    expect(page.locator("#volume-rows")).to_be_attached()
    expect(page.locator(f"#volume-rows tr[data-uuid='{uuid}']")).to_have_count(0)
    assert watched.dialogs == []


def test_a_directory_chosen_in_the_browser_fills_a_volume(
    watched: Watched, console_server: LiveServer, tmp_path: Path
) -> None:
    """The page builds the tar itself (ustar, a PAX header for a long name)."""
    site = tmp_path / "site"
    (site / "css" / "deep").mkdir(parents=True)
    (site / "index.html").write_bytes(b"<p>home</p>\n")
    (site / "css" / "deep" / "a.css").write_bytes(b"p{}\n" * 300)
    long_name = "n" * 120 + ".txt"
    (site / "css" / long_name).write_bytes(b"long\n")
    page = watched.page
    watched.sign_in()
    watched.fill_create_form("from-dir", 16)
    page.click("#create-form button[type=submit]")
    expect(_state(watched)).to_have_text("available")
    uuid = page.url.rsplit("/", 1)[1]
    page.set_input_files("#import-dir", str(site))
    page.click("#import-form button[type=submit]")
    expect(page.locator("#import-form .ok")).to_contain_text("Imported")
    with console_server.client() as api:
        exported = api.get(f"/volumed/v1/volumes/{uuid}/export")
    assert exported.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(exported.content)) as archive:
        files = {
            m.name.removeprefix("./"): archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.isfile()
        }
    assert files["index.html"] == b"<p>home</p>\n"
    assert files["css/deep/a.css"] == b"p{}\n" * 300
    assert files[f"css/{long_name}"] == b"long\n"


def test_clone_template_and_the_delete_lock(watched: Watched) -> None:
    page = watched.page
    watched.sign_in()
    watched.fill_create_form("locked", 8)
    page.click("#create-form button[type=submit]")
    expect(_state(watched)).to_have_text("available")
    page.click("#lock-form button[type=submit]")
    expect(page.locator("#volume-facts")).to_contain_text("Delete lockon")
    page.click("#delete-form button[type=submit]")
    page.click("dialog.confirm button[value=confirm]")
    expect(page.locator("#delete-form .error")).to_contain_text("(error ")
    page.click("#lock-form button[type=submit]")
    expect(page.locator("#volume-facts")).to_contain_text("Delete lockoff")
    page.fill("#clone-form input[name=clone]", "locked-copy")
    page.click("#clone-form button[type=submit]")
    expect(page.locator("#clone-form .ok")).to_have_text("Cloning into locked-copy.")
    source = page.url
    # The source is busy until the copy is available; the list shows both settle.
    page.click("#nav a[data-page=volumes]")
    copy_row = page.locator("#volume-rows tr", has_text="locked-copy")
    expect(copy_row.locator(".state")).to_have_text("available")
    page.goto(source)
    expect(_state(watched)).to_have_text("available")
    page.click("#template-form button[type=submit]")
    expect(page.locator("#template-form .ok")).to_have_text("Now a template.")
    expect(_state(watched)).to_have_text("template")


def test_errors_show_in_words_next_to_their_cause(
    watched: Watched, console_server: LiveServer
) -> None:
    page = watched.page
    watched.sign_in()
    watched.fill_create_form("no spaces allowed", 8)
    page.click("#create-form button[type=submit]")
    expect(page.locator("#create-form .error")).to_contain_text("(error ")
    page.fill("#create-name", "small")
    page.click("#create-form button[type=submit]")
    expect(_state(watched)).to_have_text("available")
    page.fill("#grow-size", "4")
    page.click("#grow-form button[type=submit]")
    expect(page.locator("#grow-form .error")).to_contain_text("(error ")
    page.fill("#attach-form input[name=instance]", "nowhere")
    page.click("#attach-form button[type=submit]")
    expect(page.locator("#attach-form .error")).to_contain_text("nowhere")
    watched.shot("errors")


def test_html_in_a_tag_or_a_name_shows_as_text_and_does_not_run(
    watched: Watched, console_server: LiveServer
) -> None:
    """The API refuses HTML in volume names and tags, and its error quotes what it got:
    the console shows that quote as text. Instance images may hold any printable text."""
    with console_server.client() as api:
        made = api.post("/v1/instances", json={"name": "odd", "image": HOSTILE}).json()
        assert made["data"]["instances"][0]["status"] == "success"
    page = watched.page
    watched.sign_in()
    page.click("#nav a[data-page=create]")
    page.fill("#create-name", "tagged")
    page.fill("#create-tags", HOSTILE)
    page.click("#create-form button[type=submit]")
    expect(page.locator("#create-form .error")).to_contain_text(f"Invalid tag '{HOSTILE}'")
    page.fill("#create-tags", "")
    page.fill("#create-name", HOSTILE)
    page.click("#create-form button[type=submit]")
    expect(page.locator("#create-form .error")).to_contain_text(HOSTILE)
    page.click("#nav a[data-page=instances]")
    expect(page.locator("#instance-rows")).to_contain_text(HOSTILE)
    page.click("#instance-rows a:text('odd')")
    expect(page.locator("#instance-facts")).to_contain_text(HOSTILE)
    watched.shot("hostile-text")
    assert page.locator("img").count() == 0
    assert watched.dialogs == []


def _insert_volume_rows(server: LiveServer, prefix: str, n: int, tag: str) -> list[str]:
    """N ``available`` volume rows of the default user, straight into its database (rows
    only: the listing never reads an image, and N images would cost N mke2fs runs)."""
    owner = server.sql("SELECT id FROM users WHERE name = 'default'")[0][0]
    base_us = time.time_ns() // 1000
    uuids = [str(uuid_lib.uuid4()) for _ in range(n)]
    values = []
    for i, uuid in enumerate(uuids):
        values += [uuid, owner, f"{prefix}-{i:04d}", "available", 8, 1, base_us + i]
        values += ["dynamic", "rwo", 0, 8 - i % 8, "ext4", json.dumps([tag])]
    marks = ",".join(["(?,?,?,?,?,?,?,?,?,?,?,?,?)"] * n)
    server.sql(
        "INSERT INTO volumes (uuid, owner_id, name, state, size_mb, persistent, created_at_us,"
        " quota_policy, access_mode, delete_lock, free_mb, filesystem, tags) VALUES " + marks,
        tuple(values),
    )
    return uuids


def test_a_long_page_keeps_only_the_rows_in_view_in_the_document(
    watched: Watched, console_server: LiveServer
) -> None:
    # ~300 KiB of listing: also the answer the server gzips in a worker thread.
    uuids = _insert_volume_rows(console_server, "many", 900, "many")
    page = watched.page
    watched.sign_in()
    page.fill("#tag-filter", "many")
    page.press("#tag-filter", "Enter")
    expect(page.locator("#page-info")).to_have_text("900 on this page")
    # Newest first: the last row made is at the top.
    first = page.locator(f"#volume-rows tr[data-uuid='{uuids[-1]}']")
    expect(first).to_be_visible()
    drawn = page.locator("#volume-rows tr[data-uuid]").count()
    assert 20 <= drawn <= 120, drawn
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    last = page.locator(f"#volume-rows tr[data-uuid='{uuids[0]}']")
    expect(last).to_be_in_viewport()
    expect(first).to_have_count(0)
    assert page.locator("#volume-rows tr[data-uuid]").count() <= 120
    page.select_option("#state-filter", "mounted")
    expect(page.locator("#volume-rows tr[data-uuid]")).to_have_count(0)


def test_the_token_stays_out_of_urls_and_the_log(
    watched: Watched, console_server: LiveServer
) -> None:
    watched.sign_in()
    watched.page.click("#nav a[data-page=quotas]")
    expect(watched.page.locator("#quotas")).to_contain_text("Volumes")
    watched.shot("quotas")
    watched.page.click("#nav a[data-page=instances]")
    watched.page.fill("#instance-create input[name=name]", "from-console")
    watched.page.click("#instance-create button[type=submit]")
    expect(watched.page.locator("#instance-rows")).to_contain_text("from-console")
    watched.shot("instances")
    assert all(console_server.token not in url for url in watched.requests)
    assert console_server.token not in console_server.log()
    watched.page.click("#sign-out")
    expect(watched.page.locator("#sign-in")).to_be_visible()
    assert watched.page.evaluate("sessionStorage.length") == 0


def test_console_answers_carry_a_strict_policy(console_server: LiveServer) -> None:
    for path in ("/console/", "/console/app.js", "/docs", "/docs/swagger-ui-bundle.js"):
        answer = httpx.get(console_server.url + path)
        assert answer.status_code == 200, path
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "unsafe" not in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
    missing = httpx.get(console_server.url + "/console/nothing.js")
    assert missing.status_code == 404
    redirect = httpx.get(console_server.url + "/console")
    assert (redirect.status_code, redirect.headers["location"]) == (308, "/console/")


def test_docs_load_with_no_token_and_no_request_leaving_the_machine(watched: Watched) -> None:
    page = watched.page
    page.goto(f"{watched.server.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("volumed")
    expect(page.locator(".opblock").first).to_be_visible()
    watched.shot("docs")
    assert watched.requests
    outside = [u for u in watched.requests if not u.startswith(watched.server.url + "/")]
    assert outside == []
