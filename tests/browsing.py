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


ASK_TIMING = "() => document.querySelector('#ask-timing')?.innerText || ''"


def detect_first_example(page: Any) -> str:
    """Run Detect on its first example; returns the annotated image's src."""
    pick_example(page, "detect-examples")
    page.locator("#detect-image img").first.wait_for()
    page.locator("#detect-run").click()
    page.locator("#detect-info").get_by_text("inference").wait_for()
    return page.locator("#detect-output img").first.get_attribute("src")


def refilter_to_zero_confidence(page: Any) -> None:
    """Type confidence 0 after a Detect run and check the same run came back, re-filtered."""
    import re

    from playwright.sync_api import expect

    line = page.locator("#detect-info").inner_text()
    conf = page.locator("#detect-conf input[type='number']")
    conf.fill("0")
    conf.press("Enter")
    # Every box of the kept run comes back (tiny weights score low), without a new model run.
    expect(page.locator("#detect-table")).to_contain_text(re.compile(r"[a-z]+\s+0\.\d+\s+\d+(\.\d)?\s"))
    inference = [p for p in line.split(" · ") if p.startswith("inference")]
    assert inference and inference[0] in page.locator("#detect-info").inner_text(), "the same run, re-filtered"


def ask_for_a_long_answer(page: Any) -> None:
    """On the Ask tab: the first example, a chat model, 1,024 tokens (seconds for tiny greedy
    models), a question sent; returns once the answer is streaming."""
    pick_example(page, "ask-examples")
    page.locator("#ask-image img").first.wait_for()
    page.locator("#ask-model input").click()
    page.get_by_role("option", name="Qwen2.5-VL 3B Instruct").click()
    page.get_by_text("Generation and structured output").click()
    tokens = page.locator("#ask-max-tokens input[type='number']")
    tokens.fill("1024")
    tokens.press("Tab")
    page.locator("#ask-question textarea").fill("Describe everything you see.")
    page.locator("#ask-send").click()
    page.wait_for_function(f"() => ({ASK_TIMING})().includes('streaming')")


def segment_click(page: Any, fx: float, fy: float, points: int) -> dict[str, float]:
    """Click the Segment canvas at (fx, fy) of its size and wait until it shows ``points`` points;
    returns the canvas box."""
    canvas = page.locator("#segment-canvas img")
    canvas.wait_for()
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
    page.locator("#segment-summary").get_by_text(f"{points} point(s)").wait_for()
    return box
