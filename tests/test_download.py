"""The download helper, against an HTTP server on loopback that honours Range requests."""
import hashlib
import http.server
import threading

import numpy as np
import pytest

from reference_models.data import DatasetError
from reference_models.data.download import DownloadError, download_dataset, download_file, main

PAYLOAD = np.random.RandomState(0).bytes(300_000)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /file; honours ``Range: bytes=N-`` unless told not to.

    Behaviour is set on the server object: ``cut_after`` (send only that many body bytes
    of the next response, then drop the connection), ``ignore_range``.
    """

    def do_GET(self):  # noqa: N802 (the http.server API)
        server = self.server
        server.requests.append(self.headers.get("Range"))
        if self.path != "/file":
            self.send_error(404)
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and not server.ignore_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None:
            self.wfile.write(body[: server.cut_after])
            server.cut_after = None
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.requests = []
    httpd.cut_after = None
    httpd.ignore_range = False
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/file"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_downloads_and_verifies_sha256(server, tmp_path):
    target = tmp_path / "sub" / "data.bin"
    path = download_file(server.url, target, sha256=PAYLOAD_SHA256, progress=False)
    assert path == target and target.read_bytes() == PAYLOAD
    assert not (tmp_path / "sub" / "data.bin.part").exists()
    assert server.requests == [None]
    # An existing, verified file is not fetched again.
    download_file(server.url, target, sha256=PAYLOAD_SHA256, progress=False)
    assert server.requests == [None]


def test_resumes_a_partial_download_with_range(server, tmp_path):
    target = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:123_456])
    download_file(server.url, target, sha256=PAYLOAD_SHA256, progress=False)
    assert server.requests == ["bytes=123456-"]
    assert target.read_bytes() == PAYLOAD


def test_interrupted_download_keeps_the_part_and_resumes(server, tmp_path):
    target = tmp_path / "data.bin"
    server.cut_after = 100_000
    with pytest.raises(DownloadError, match="run again to resume"):
        download_file(server.url, target, progress=False)
    partial = tmp_path / "data.bin.part"
    assert not target.exists()
    assert 0 < partial.stat().st_size <= 100_000
    kept = partial.stat().st_size
    download_file(server.url, target, expected_size=len(PAYLOAD), progress=False)
    assert server.requests[-1] == f"bytes={kept}-"
    assert target.read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    target = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="checksum mismatch for data.bin: sha256 "
                                            f"{PAYLOAD_SHA256}, expected 0000"):
        download_file(server.url, target, sha256="0" * 64, progress=False)
    assert not target.exists() and not (tmp_path / "data.bin.part").exists()


def test_corrupt_partial_file_fails_the_checksum(server, tmp_path):
    target = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(b"\x00" * 1000)  # wrong first bytes
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_file(server.url, target, sha256=PAYLOAD_SHA256, progress=False)
    download_file(server.url, target, sha256=PAYLOAD_SHA256, progress=False)
    assert target.read_bytes() == PAYLOAD


def test_server_without_range_support_restarts(server, tmp_path):
    server.ignore_range = True
    target = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:5000])
    download_file(server.url, target, sha256=PAYLOAD_SHA256, progress=False)
    assert target.read_bytes() == PAYLOAD


def test_complete_partial_file_is_finished_without_data(server, tmp_path):
    target = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    download_file(server.url, target, sha256=PAYLOAD_SHA256, progress=False)
    assert server.requests == [f"bytes={len(PAYLOAD)}-"]
    assert target.read_bytes() == PAYLOAD


def test_size_mismatch_and_http_errors(server, tmp_path):
    with pytest.raises(DownloadError, match=f"is {len(PAYLOAD)} bytes, expected 5"):
        download_file(server.url, tmp_path / "a.bin", expected_size=5, progress=False)
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(server.url.replace("/file", "/nothing"), tmp_path / "b.bin", progress=False)
    with pytest.raises(DownloadError, match="failed"):
        download_file("http://127.0.0.1:9/file", tmp_path / "c.bin", timeout=2, progress=False)


def test_download_dataset_names_manual_sources(tmp_path, capsys):
    with pytest.raises(DatasetError, match="isaac3d has no direct download: get "
                                           "Isaac3D_down128 from https://github.com/NVlabs"):
        download_dataset("isaac3d", tmp_path)
    with pytest.raises(DatasetError, match="'toyshapes' is not a published dataset"):
        download_dataset("toyshapes", tmp_path)
    assert main(["mpi3d", "--data-dir", str(tmp_path)]) == 1
    assert "rr-learning/disentanglement_dataset" in capsys.readouterr().err
