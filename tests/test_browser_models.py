"""The Models tab in a real browser (Playwright + Debian Chromium)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_models_tab_shows_every_model_with_licence_and_status(page, app_url, artifacts):
    page.goto(app_url)
    page.get_by_role("tab", name="Models").click()
    table = page.locator("#model-table")
    table.get_by_text("SAM 2.1 Hiera Tiny").first.wait_for()
    text = table.inner_text()
    for expected in ("Depth Anything V2 Base", "CC-BY-NC-4.0", "AGPL-3.0", "Qwen Research License", "needs its authors' code"):
        assert expected in text, expected
    status = page.locator("#model-status")
    assert "tiny" in status.inner_text()
    page.get_by_role("button", name="Refresh status").click()
    page.wait_for_timeout(500)
    assert "Memory budget" in status.inner_text()
    page.screenshot(path=str(artifacts / "models-tab.png"), full_page=False)
