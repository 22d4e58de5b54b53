"""`pymesh control status` with --kubernetes: the API server and each watched resource type
(synced or not, objects, last error), the kinds not served apart."""

from pymesh.control.status import format_status


def test_the_kubernetes_block():
    status = {"version": "3", "proxies": [], "kubernetes_api": "https://10.96.0.1:443", "kubernetes": [
        {"resource": "services", "namespace": "", "synced": True, "missing": False, "objects": 12, "lastError": ""},
        {"resource": "pods", "namespace": "shop", "synced": False, "missing": False, "objects": 0,
         "lastError": "ClientConnectorError: Cannot connect"},
        {"resource": "virtualservices", "synced": True, "missing": True, "objects": 0, "lastError": "404"},
    ]}
    lines = format_status(status).splitlines()
    start = lines.index("KUBERNETES (API server https://10.96.0.1:443):")
    assert lines[start + 1:start + 3] == [
        "  services: synced, 12 objects",
        "  pods in shop: NOT SYNCED, 0 objects; last error: ClientConnectorError: Cannot connect",
    ]
    assert "KUBERNETES: not served (CRD not installed?): virtualservices" in lines


def test_hostile_text_is_escaped():
    status = {"version": "1", "proxies": [], "kubernetes_api": "https://x\x1b[2J", "kubernetes": [
        {"resource": "services", "synced": True, "objects": 1, "lastError": "boom\x1b]0;title\x07"}]}
    text = format_status(status)
    assert "\x1b" not in text and "\x07" not in text
