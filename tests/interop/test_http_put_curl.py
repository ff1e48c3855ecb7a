"""curl -T (HTTP PUT), a real client, against labsim's HTTP server with uploads on."""

from __future__ import annotations

import pytest

from tests.interop.test_http_curl import curl, labsim_http

pytestmark = pytest.mark.interop


def test_curl_put_uploads_into_the_upload_folder_only(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "000000000000.cfg").write_bytes(b"<APPLICATION/>")
    log = tmp_path / "0004f2abcdef-app.log"
    log.write_bytes(b"0000001.000|provisioning|downloaded 000000000000.cfg\n" * 50)
    with labsim_http("--root", str(root), "--uploads", "logs") as url:
        status, _, err = curl("-T", str(log), f"{url}/logs/0004f2abcdef-app.log")
        assert status == 201, err
        assert (root / "logs" / "0004f2abcdef-app.log").read_bytes() == log.read_bytes()
        status, _, err = curl("-T", str(log), f"{url}/logs/0004f2abcdef-app.log")
        assert status == 204, err
        status, body, _ = curl(f"{url}/logs/0004f2abcdef-app.log")
        assert (status, body) == (200, log.read_bytes())
        status, _, _ = curl("-T", str(log), f"{url}/000000000000.cfg")  # outside the upload folder
        assert status == 403
        assert (root / "000000000000.cfg").read_bytes() == b"<APPLICATION/>"
    with labsim_http("--root", str(root)) as url:  # uploads off
        status, _, _ = curl("-T", str(log), f"{url}/logs/other.log")
        assert status == 405
        assert not (root / "logs" / "other.log").exists()
