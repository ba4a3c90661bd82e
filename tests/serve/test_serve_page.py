"""The upload page in a real headless browser (Playwright driving Debian's chromium): pick an image, see the verdict.

Needs ``pip install playwright`` (the Python package only; no ``playwright install``) and ``apt-get install -y
chromium``; skipped with the reason when either is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.serve.helpers import LiveServer, encode, noise_image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Debian's chromium, or skip."""
    if CHROMIUM.is_file():
        return str(CHROMIUM)
    found = shutil.which("chromium")
    if found:
        return found
    pytest.skip(f"no browser: {CHROMIUM} is missing (apt-get install -y chromium)")


def test_the_page_uploads_an_image_and_shows_the_verdict_boxes_and_overlay(server: LiveServer, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    executable = chromium_path()
    image = tmp_path / "portrait.png"
    image.write_bytes(encode(noise_image(11, (160, 120))))
    expected = httpx.post(
        f"{server.url}/v1/detect", files=[("files", ("portrait.png", image.read_bytes(), "image/png"))], timeout=30
    ).json()["results"][0]
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, timeout=60_000)
        except Exception as error:  # a browser that cannot start here (missing libraries, no /dev/shm …)
            pytest.skip(f"chromium at {executable} does not start: {error}")
        try:
            page = browser.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(server.url + "/")
            page.wait_for_function("document.getElementById('model-info').textContent.includes('resnet8_fast')")
            page.check("#explain")
            page.set_input_files("#file-input", str(image))
            verdict = page.wait_for_selector(".card .verdict", timeout=30_000)
            assert verdict.text_content() == expected["label"].upper()
            assert verdict.get_attribute("data-label") == expected["label"]
            probability = page.text_content(".card .probability")
            assert f"{100 * expected['fake_prob']:.1f}%" in probability
            assert page.text_content(".card h2") == "portrait.png"
            size = page.eval_on_selector(".card canvas", "canvas => [canvas.width, canvas.height]")
            assert size == [160, 120]
            page.wait_for_function("document.querySelector('.card img.overlay')?.naturalWidth >= 256")
            assert "Scored 1 of 1" in page.text_content("#status")
            assert page_errors == []
        finally:
            browser.close()
