"""deploy/nginx/chronicle.conf on Debian's nginx, with a throw-away self-signed certificate, in
front of a live `chronicle serve` that trusts only the proxy's address: the API over HTTPS and
HTTP/2, a WebSocket stream resumed through the proxy, uploads at and over the limit, cached hashed
assets, and the rate limiter seeing each client's own address (neither the proxy's nor a forged one)."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
from pathlib import Path
from string import Template

import httpx
import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import assert_problem
from tests.e2e.server import Server
from tests.ops.system_binaries import eventually, free_port, system_binary

pytestmark = pytest.mark.e2e

CONF = Path(__file__).parents[2] / "deploy" / "nginx" / "chronicle.conf"
MiB = 1024 * 1024
UPLOAD_MAX_MB = 1
WRONG = {"email": "x@example.org", "password": "whatever!"}


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    made = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    return cert, key


class Nginx:
    """nginx run as a plain binary: its own prefix, configuration, pid and logs, in the foreground."""

    def __init__(self, prefix: Path, upstream_port: int, cert: Path, key: Path) -> None:
        self.prefix = prefix
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        site = Template(CONF.read_text()).safe_substitute(
            CHRONICLE_UPSTREAM=f"127.0.0.1:{upstream_port}",
            LISTEN_PORT=self.port,
            SERVER_NAME="127.0.0.1",
            TLS_CERTIFICATE=cert,
            TLS_CERTIFICATE_KEY=key,
            BODY_MAX_MB=UPLOAD_MAX_MB + 1,
            CACHE_DIR=prefix / "cache",
        )
        assert not re.findall(r"\$\{\w+\}", site), "a placeholder the test does not fill"
        (prefix / "chronicle.conf").write_text(site)
        self.error_log = prefix / "error.log"
        temp = "".join(f"    {kind}_temp_path {prefix / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (prefix / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"daemon off;\npid {prefix / 'nginx.pid'};\nerror_log {self.error_log} info;\nevents {{}}\n"
            + f"http {{\n    access_log {prefix / 'access.log'};\n{temp}    include {prefix / 'chronicle.conf'};\n}}\n"
        )
        self.nginx = system_binary("nginx", "nginx")

    def start(self) -> Nginx:
        command = [self.nginx, "-p", str(self.prefix), "-e", str(self.error_log), "-c", str(self.prefix / "nginx.conf")]
        tested = subprocess.run([*command, "-t"], capture_output=True, text=True)
        assert tested.returncode == 0, tested.stderr
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        eventually(self._answers, 20, f"nginx answering on {self.url} (see {self.error_log})")
        return self

    def _answers(self) -> bool:
        assert self.process.poll() is None, self.error_log.read_text()[-2000:]
        try:
            return self.client().get("/health").status_code == 200
        except httpx.TransportError:
            return False

    def tls(self) -> ssl.SSLContext:
        """Verifies the proxy's certificate (the throw-away one is its own authority)."""
        return ssl.create_default_context(cafile=self.prefix / "cert.pem")

    def client(self, token: str | None = None, source: str | None = None) -> httpx.Client:
        """`source`: the loopback address the client connects from (its "real" address)."""
        transport = httpx.HTTPTransport(verify=self.tls(), local_address=source)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, transport=transport, headers=headers, timeout=30)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """A server trusting X-Forwarded-For only from 127.0.0.1 (nginx), with a 1 MiB upload limit."""
    root = tmp_path_factory.mktemp("nginx")
    server = Server(
        root / "data",
        log_dir=root,
        env={"CHRONICLE_TRUSTED_PROXIES": "127.0.0.1", "CHRONICLE_UPLOAD_MAX_MB": str(UPLOAD_MAX_MB), "CHRONICLE_RATE_LIMIT_LOGIN": "3"},
    ).start()
    self_signed(root)
    nginx = None
    try:
        nginx = Nginx(root, server.port, root / "cert.pem", root / "key.pem").start()
        yield server, nginx
    finally:
        if nginx is not None:
            nginx.stop()
        server.stop()


def signed_up(nginx: Nginx, email: str) -> tuple[httpx.Client, dict]:
    anon = nginx.client()
    user = anon.post("/api/auth/register", json={"email": email, "password": "correct horse", "display_name": "Ann"})
    assert user.status_code == 201, user.text
    login = anon.post("/api/auth/login", json={"email": email, "password": "correct horse"})
    assert login.status_code == 200, login.text
    return nginx.client(login.json()["access_token"]), user.json()


def test_the_api_over_https_and_http2(proxied):
    _, nginx = proxied
    ann, _ = signed_up(nginx, "ann@example.org")
    session = ann.post("/api/sessions", json={"title": "Over TLS", "assistant": False})
    assert session.status_code == 201, session.text
    posted = ann.post(f"/api/sessions/{session.json()['id']}/messages", json={"content": "through nginx"})
    assert posted.status_code == 201, posted.text
    page = ann.get(f"/api/sessions/{session.json()['id']}/messages", params={"after_position": posted.json()["position"]})
    assert [m["content"] for m in page.json()["items"]] == ["through nginx"]
    assert "max-age" in ann.get("/health").headers["strict-transport-security"]

    version = subprocess.run(
        [
            "curl",
            "--http2",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            "--cacert",
            str(nginx.prefix / "cert.pem"),
            f"{nginx.url}/health",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert version.returncode == 0 and version.stdout == "2", version.stdout + version.stderr


def test_a_websocket_stream_through_the_proxy_resumes_after_its_last_position(proxied):
    _, nginx = proxied
    ann, _ = signed_up(nginx, "streamer@example.org")
    sid = ann.post("/api/sessions", json={"title": "Live", "assistant": False}).json()["id"]
    start = ann.get("/health").json()["head"]
    first = [ann.post(f"/api/sessions/{sid}/messages", json={"content": f"first {n}"}).json() for n in range(2)]
    url = f"wss://127.0.0.1:{nginx.port}/api/sessions/{sid}/stream?token={ann.headers['authorization'][7:]}"

    # open_timeout: a stream is accepted once the session's members are projected up to the head,
    # which on a loaded CI host (two test workers and a browser) took longer than the default 10 s.
    with connect(f"{url}&after={start}", ssl=nginx.tls(), open_timeout=30) as ws:
        replayed = [json.loads(ws.recv(timeout=10)) for _ in first]
        assert [f["position"] for f in replayed] == [m["position"] for m in first]
        live = ann.post(f"/api/sessions/{sid}/messages", json={"content": "live"}).json()
        assert json.loads(ws.recv(timeout=10))["data"]["content"] == "live"
    missed = [ann.post(f"/api/sessions/{sid}/messages", json={"content": f"missed {n}"}).json() for n in range(3)]
    with connect(f"{url}&after={live['position']}", ssl=nginx.tls(), open_timeout=30) as ws:
        resumed = [json.loads(ws.recv(timeout=10)) for _ in missed]
        assert [f["position"] for f in resumed] == [m["position"] for m in missed]
        assert [f["data"]["content"] for f in resumed] == ["missed 0", "missed 1", "missed 2"]
        with pytest.raises(TimeoutError):  # nothing twice, nothing else
            ws.recv(timeout=0.5)


def test_an_upload_at_the_limit_passes_and_one_over_it_is_refused(proxied):
    server, nginx = proxied
    ann, _ = signed_up(nginx, "uploader@example.org")

    def upload(size: int) -> httpx.Response:
        return ann.post("/api/documents", files={"file": ("notes.txt", b"a" * size, "text/plain")})

    def refused_by_chronicle() -> int:
        metrics = httpx.get(f"{server.url}/metrics").text
        found = re.search(r'chronicle_http_requests_total\{method="POST",path="/api/documents",status="413"\} (\S+)', metrics)
        return int(float(found.group(1))) if found else 0

    at_limit = upload(UPLOAD_MAX_MB * MiB)
    assert at_limit.status_code == 201, at_limit.text
    assert at_limit.json()["size"] == UPLOAD_MAX_MB * MiB
    assert_problem(upload(UPLOAD_MAX_MB * MiB + 1), 413)  # within nginx's bound: Chronicle refuses it
    assert refused_by_chronicle() == 1
    over = upload((UPLOAD_MAX_MB + 1) * MiB + 1)
    body = assert_problem(over, 413)
    assert over.headers["server"].startswith("nginx") and f"{UPLOAD_MAX_MB + 1} MiB" in body["detail"]
    assert refused_by_chronicle() == 1  # nginx refused it: Chronicle never saw the request


def test_hashed_assets_are_cached_for_a_year(proxied):
    _, nginx = proxied
    anon = nginx.client()
    index = anon.get("/")
    assert index.status_code == 200 and index.headers["cache-control"] == "no-cache"
    asset = re.search(r'(/assets/[^"]+\.js)', index.text).group(1)
    first, second = anon.get(asset), anon.get(asset)
    assert first.status_code == second.status_code == 200 and first.content == second.content
    assert "max-age=31536000" in second.headers["cache-control"] and "immutable" in second.headers["cache-control"]
    assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == ("MISS", "HIT")


def test_the_rate_limiter_sees_each_clients_own_address(proxied):
    """Two clients on different loopback addresses; nginx reaches Chronicle from 127.0.0.1 for
    both. The first exhausts the sign-in limit (3 a minute) while forging X-Forwarded-For; the
    second is still let in. Were X-Forwarded-For ignored, both would share the proxy's window;
    were the forged values believed, the first would never be limited."""
    _, nginx = proxied
    attacker, neighbour = nginx.client(source="127.0.0.2"), nginx.client(source="127.0.0.3")
    codes = [
        attacker.post(
            "/api/auth/login", json=WRONG, headers={"x-forwarded-for": f"198.51.100.{n}", "x-real-ip": f"198.51.100.{n}"}
        ).status_code
        for n in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]
    assert_problem(attacker.post("/api/auth/login", json=WRONG), 429)
    assert_problem(neighbour.post("/api/auth/login", json=WRONG), 401)
