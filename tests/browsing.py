"""Small helpers for the real-browser tests: open a tab (also from the phone's "More tabs" menu),
read the marks Gradio puts on components."""

from __future__ import annotations

from typing import Any


def open_tab(page: Any, name: str) -> None:
    """Open the tab called ``name``, through the overflow menu when the screen is too narrow."""
    page.get_by_role("tab").first.wait_for()
    tab = page.get_by_role("tab", name=name, exact=True)
    if tab.count() and tab.first.is_visible():
        tab.first.click()
        return
    page.get_by_label("More tabs").click()
    page.locator(".overflow-dropdown button", has_text=name).first.click()


def error_badges(page: Any) -> list[str]:
    """The ids of components showing Gradio's red "Error" badge (a failed event on its outputs)."""
    return page.evaluate(
        """() => [...document.querySelectorAll("[data-testid='status-tracker'] span.error")]
            .filter(e => e.offsetParent !== null)
            .map(e => e.closest('[id]')?.id || '?')"""
    )


def validation_message(page: Any, elem_id: str) -> str:
    """Wait for the validation message on the input ``elem_id`` and return it."""
    box = page.locator(f"#{elem_id} div.validation-error").first
    box.wait_for()
    return box.inner_text().strip()


def pick_example(page: Any, examples_id: str, index: int = 0) -> None:
    """Click an example (image galleries and labelled examples alike)."""
    page.locator(f"#{examples_id} .gallery-item, #{examples_id} button").nth(index).click()
