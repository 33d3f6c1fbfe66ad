"""The app launched in-process: the API through gradio_client, and the launch surface."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

import app


def fetch(url: str, method: str = "GET", data: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def test_page_is_served_with_every_tab(app_url):
    status, body, _ = fetch(app_url + "/")
    assert status == 200 and b"Vision Playground" in body


def test_models_status_endpoint_through_gradio_client(client, ctx):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/status" in endpoints
    text = client.predict(api_name="/status")
    assert "Device:" in text and "`cpu`" in text and "`tiny`" in text
    assert "Memory budget" in text


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "../../../../etc/passwd",
        "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "//10.0.0.1/share",
        ".env",
        "app.py",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_file_route_refuses_paths_outside_assets(app_url, path):
    status, body, headers = fetch(f"{app_url}/gradio_api/file={path}")
    assert status in (403, 404), (status, body[:80])
    assert b"root:" not in body and b"import" not in body
    assert "location" not in {k.lower() for k in headers}, "no redirect to internal addresses"


def test_shipped_assets_are_served(app_url):
    status, body, _ = fetch(f"{app_url}/gradio_api/file={app.ASSETS / 'cat.jpg'}")
    assert status == 200 and body[:2] == b"\xff\xd8"


def test_direct_api_route_does_not_bypass_the_queue(app_url):
    status, _, _ = fetch(f"{app_url}/gradio_api/api/status", "POST", b'{"data": []}', {"Content-Type": "application/json"})
    assert status in (403, 404, 405), "api_open=False: /gradio_api/api/<name> must not run events"


def test_monitoring_is_not_exposed(app_url):
    for path in ("/monitoring", "/monitoring/summary", "/gradio_api/monitoring/summary"):
        status, body, _ = fetch(app_url + path)
        assert status in (401, 403, 404), (path, status)


def _multipart(filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = "----vpboundary7MA4YWxkTrZu0gW"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{filename}\"\r\n"
        "Content-Type: image/png\r\n\r\n"
    ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_upload_over_max_file_size_gets_413(app_url):
    from model_loaders.core.video import MAX_VIDEO_MB

    body, ctype = _multipart("big.mp4", os.urandom((MAX_VIDEO_MB + 1) * 2**20))
    status, _, _ = fetch(f"{app_url}/gradio_api/upload", "POST", body, {"Content-Type": ctype})
    assert status == 413


def test_huge_filename_gets_413_not_500(app_url):
    body, ctype = _multipart("5" * 9000, b"x")
    status, _, _ = fetch(f"{app_url}/gradio_api/upload", "POST", body, {"Content-Type": ctype})
    assert status == 413


def test_small_upload_is_accepted(app_url):
    body, ctype = _multipart("ok.png", b"\x89PNG....")
    status, _, _ = fetch(f"{app_url}/gradio_api/upload", "POST", body, {"Content-Type": ctype})
    assert status == 200


def test_foreign_origin_gets_no_cors_header(app_url):
    for origin in ("https://evil.example", "null"):
        _, _, headers = fetch(app_url + "/config", headers={"Origin": origin})
        assert "access-control-allow-origin" not in {k.lower() for k in headers}


def test_concurrent_sessions_are_all_served(app_url):
    """Eight sessions at once through the queue: every one gets its answer."""
    from gradio_client import Client

    def call() -> str:
        c = Client(app_url, verbose=False)
        try:
            return c.predict(api_name="/status")
        finally:
            c.close()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: call(), range(8)))
    assert all("Device:" in r for r in results)


def test_import_is_cheap_and_touches_no_model_library():
    code = (
        "import sys, app, tabs, model_loaders.core.registry, model_loaders.core.cache, model_loaders.core.context;"
        "heavy = [m for m in ('torch', 'transformers', 'ultralytics') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=app.ROOT, timeout=120)


def test_cli_options_and_env_equivalents(monkeypatch):
    args = app.parse_args(["--weights", "tiny", "--device", "cpu", "--preload", "a,b", "--mcp", "--port", "9000"])
    assert (args.weights, args.device, args.preload, args.mcp, args.port) == ("tiny", "cpu", "a,b", True, 9000)
    monkeypatch.setenv("VP_WEIGHTS", "random")
    monkeypatch.setenv("VP_MCP", "1")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    args = app.parse_args([])
    assert (args.weights, args.mcp, args.host) == ("random", True, "0.0.0.0")
    monkeypatch.delenv("VP_WEIGHTS")
    assert app.parse_args([]).weights == "hub", "real checkpoints are the default"
    with pytest.raises(SystemExit):
        app.parse_args(["--weights", "pickle"])
    monkeypatch.setenv("VP_FRONTEND_REPLICAS", "2")
    assert app.parse_args([]).frontend_replicas == 2
    with pytest.raises(SystemExit, match="needs --backend ray"):  # replicas each loading every model: refused
        app.main(["--weights", "tiny", "--frontend-replicas", "2"])


def test_launch_options_are_the_safe_ones():
    opts = app.launch_options()
    assert opts["share"] is False and opts["show_error"] is False and opts["enable_monitoring"] is False
    assert opts["max_file_size"] and opts["allowed_paths"] == [str(app.ASSETS)]


def test_preload_of_an_unavailable_model_is_logged_not_fatal(ctx, caplog):
    app.preload(ctx, "no-such-model, cogvlm-chat")
    assert "could not preload no-such-model" in caplog.text
    assert "could not preload cogvlm-chat" in caplog.text


def test_every_public_endpoint_names_its_parameters_and_outputs(app_url):
    info = json.loads(fetch(app_url + "/gradio_api/info")[1])
    for name, endpoint in info["named_endpoints"].items():
        params = [p["parameter_name"] for p in endpoint["parameters"]]
        labels = [r.get("label") or "" for r in endpoint["returns"]]
        assert "key" not in params, f"{name}: the model parameter is called 'model' everywhere"
        assert not any(label.startswith("value_") or not label for label in labels), (name, labels)


def test_health_answers_outside_the_queue(app_url):
    status, body, headers = fetch(app_url + "/health")
    assert status == 200 and headers.get("content-type", "").startswith("application/json")
    data = json.loads(body)
    assert data["status"] == "ok" and data["weights"] == "tiny" and data["queue"]["max"] == app.QUEUE_SIZE
    assert {"budget", "room_now", "models"} <= set(data["memory_mb"])


def test_every_documented_example_is_a_valid_call(client, app_url):
    """What the API page and MCP clients show as examples runs as it is (the image aside: ours)."""
    from gradio_client import handle_file

    info = json.loads(fetch(app_url + "/gradio_api/info")[1])
    for name, endpoint in info["named_endpoints"].items():
        args = []
        for param in endpoint["parameters"]:
            value = param.get("example_input")
            if isinstance(value, dict) and "path" in value:  # the example image or clip: send ours
                value = handle_file(str(app.ASSETS / ("coffee-pan.mp4" if param["component"] == "Video" else "cat.jpg")))
            args.append(value)
        client.predict(*args, api_name=name)  # raises on an error
