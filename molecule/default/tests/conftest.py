"""Shared fixtures for the testinfra checks; on a failure, print vllm.service's journal."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def host_vars(host) -> dict:
    """The inventory variables the converge used, so checks compare against the same values."""
    return host.ansible.get_variables()


class Http:
    """HTTP requests made from inside the test host (its own loopback), with urllib."""

    SCRIPT = (
        "import json,sys,urllib.request,urllib.error\n"
        "url,key,body=sys.argv[1],sys.argv[2],sys.argv[3]\n"
        "req=urllib.request.Request(url,data=body.encode() if body else None)\n"
        "req.add_header('Content-Type','application/json')\n"
        "key and req.add_header('Authorization','Bearer '+key)\n"
        "try:\n"
        "  r=urllib.request.urlopen(req,timeout=60); print(json.dumps([r.status,r.read().decode()]))\n"
        "except urllib.error.HTTPError as e:\n"
        "  print(json.dumps([e.code,e.read().decode()]))\n"
    )

    def __init__(self, host, base_url: str):
        self.host = host
        self.base_url = base_url

    def __call__(self, path: str, key: str = "", body: dict | None = None) -> tuple[int, str]:
        # The key travels as an argument of this test-only client, never of the server.
        out = self.host.check_output(
            "python3 -c %s %s %s %s",
            self.SCRIPT,
            self.base_url + path,
            key,
            json.dumps(body) if body is not None else "",
        )
        status, text = json.loads(out)
        return status, text


@pytest.fixture(scope="module")
def http(host, host_vars) -> Http:
    address = host_vars.get("vllm_host", "127.0.0.1")
    address = "127.0.0.1" if address in ("0.0.0.0", "::") else address
    return Http(host, f"http://{address}:{host_vars.get('vllm_port', 8000)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "host" in item.funcargs:
        journal = item.funcargs["host"].run("journalctl -u vllm.service -n 60 --no-pager -o cat").stdout
        report.sections.append(("vllm.service journal (last 60 lines)", journal))
