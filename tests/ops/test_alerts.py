"""deploy/prometheus/alerts.yml on a real Prometheus (Debian's) scraping a live `chronicle serve`
behind CHRONICLE_METRICS_TOKEN: the rules load and evaluate, a broken projector and a broken hash
chain raise their alerts, and the alerts resolve once the projector is retried and the chain is
whole again. The threshold rules are unit-tested with `promtool test rules`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backend import overwrite_state, stored_events
from tests.e2e.conftest import assert_problem
from tests.e2e.server import Server
from tests.ops.system_binaries import eventually, free_port, system_binary

pytestmark = pytest.mark.e2e

RULES = Path(__file__).parents[2] / "deploy" / "prometheus"
TOKEN = "metrics-token-for-the-test"


def test_the_rules_are_valid_and_their_thresholds_hold():
    promtool = system_binary("promtool", "prometheus")
    checked = subprocess.run([promtool, "check", "rules", str(RULES / "alerts.yml")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 13 rules found" in checked.stdout
    unit = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], capture_output=True, text=True, cwd=RULES)
    assert unit.returncode == 0, unit.stdout + unit.stderr


class Prometheus:
    """Prometheus scraping one Chronicle every second and evaluating the rules every second."""

    def __init__(self, workdir: Path, target_port: int, token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            json.dumps(
                {  # JSON is YAML
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES / "alerts.yml")],
                    "scrape_configs": [
                        {
                            "job_name": "chronicle",
                            "authorization": {"credentials": token},
                            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
                        }
                    ],
                }
            )
        )
        self.storage = workdir / "tsdb"
        self.log_path = workdir / "prometheus.log"

    def start(self) -> Prometheus:
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                system_binary("prometheus", "prometheus"),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        eventually(self._ready, 30, f"Prometheus ready (see {self.log_path})")
        return self

    def _ready(self) -> bool:
        assert self.process.poll() is None, f"prometheus exited: {self.log_path.read_text()[-2000:]}"
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def api(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def firing(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts(name) if a["state"] == "firing"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def test_alerts_fire_on_a_live_server_and_resolve_after_the_fix(tmp_path):
    server = Server(tmp_path / "data", env={"CHRONICLE_METRICS_TOKEN": TOKEN}, log_dir=tmp_path).start()
    prometheus = None
    try:
        assert_problem(httpx.get(f"{server.url}/metrics"), 401)
        assert_problem(httpx.get(f"{server.url}/metrics", headers={"authorization": "Bearer wrong"}), 401)
        scraped = httpx.get(f"{server.url}/metrics", headers={"authorization": f"Bearer {TOKEN}"})
        assert scraped.status_code == 200 and "chronicle_data_dir_free_bytes" in scraped.text

        admin = server.admin()
        ann, _ = server.client().signup("ann@example.org")
        sid = ann.post("/api/sessions", {"title": "Plans", "assistant": False}).json()["id"]
        before = ann.post(f"/api/sessions/{sid}/messages", {"content": "before"})
        assert before.status_code == 201

        prometheus = Prometheus(tmp_path, server.port, TOKEN).start()
        target = eventually(
            lambda: [t for t in prometheus.api("targets")["activeTargets"] if t["health"] == "up"], 20, "the scrape succeeds with the token"
        )
        assert target[0]["labels"]["job"] == "chronicle"

        def every_rule_evaluated() -> list[dict[str, Any]] | None:
            rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
            return rules if rules and all(r["health"] == "ok" for r in rules) else None

        rules = eventually(every_rule_evaluated, 20, "every rule evaluated without error")
        assert len(rules) == 13
        free = prometheus.api("query", query="chronicle_data_dir_free_bytes")["result"]
        assert float(free[0]["value"][1]) > 0
        assert prometheus.alerts("ChronicleProjectorFailed") == [] and prometheus.alerts("ChronicleChainBroken") == []

        # The messages projector cannot apply the next edit: the table of versions is gone.
        db = sqlite3.connect(server.data_dir / "read.sqlite3")
        db.execute("DROP TABLE message_versions")
        db.commit()
        db.close()
        assert ann.patch(f"/api/sessions/{sid}/messages/{before.json()['id']}", {"content": "after"}).status_code == 200
        firing = eventually(lambda: prometheus.firing("ChronicleProjectorFailed"), 30, "ChronicleProjectorFailed firing")
        print("firing alert as Prometheus reports it:\n" + json.dumps(firing, indent=2))
        assert [a["labels"]["projection"] for a in firing] == ["messages"]
        assert firing[0]["labels"]["severity"] == "critical" and firing[0]["labels"]["job"] == "chronicle"

        assert admin.post("/api/admin/projections/messages/retry").status_code == 202
        eventually(lambda: prometheus.alerts("ChronicleProjectorFailed") == [], 30, "ChronicleProjectorFailed resolved")
        assert [m["content"] for m in ann.get(f"/api/sessions/{sid}/messages").json()["items"]] == ["after"]

        # A stored event changed behind the log's back: the next verification finds it.
        original = stored_events(server.data_dir)[0].state
        overwrite_state(server.data_dir, 1, original + b"x")
        assert verification(admin)["state"] == "broken"
        firing = eventually(lambda: prometheus.firing("ChronicleChainBroken"), 30, "ChronicleChainBroken firing")
        assert firing[0]["labels"]["severity"] == "critical"

        overwrite_state(server.data_dir, 1, original)
        assert verification(admin)["state"] == "intact"
        eventually(lambda: prometheus.alerts("ChronicleChainBroken") == [], 30, "ChronicleChainBroken resolved")
        assert prometheus.alerts("ChronicleProjectorFailed") == []
    finally:
        if prometheus is not None:
            prometheus.stop()
        server.stop()


def verification(admin) -> dict[str, Any]:
    """Starts a chain verification through the API and waits for its outcome."""
    assert admin.post("/api/audit/verifications").status_code == 202
    return eventually(
        lambda: (v := admin.get("/api/audit/verifications/latest").json())["state"] != "running" and v, 30, "the verification finished"
    )
