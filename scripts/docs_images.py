"""Remake the pictures in docs/images from a trained 2D chromosome run (e.g. scripts/demo.sh's demo/runs/demo_unet):

    python scripts/docs_images.py RUN --data PAIRS.h5 [--out docs/images]

* ``demo_overlays.png``: the evaluation's overlay figure (three test images with small, medium and large
  overlap: image | ground truth | prediction | errors), as ``medseg evaluate RUN`` writes it into
  RUN/evaluation/figures/overlays.png (evaluated first if it is not there).
* ``viewer.png``: the web viewer, through a real ``medseg serve`` and headless Chromium (Playwright, as
  tests/e2e): two held-out test images of PAIRS.h5 uploaded with their reference labels, the second opened
  by a click on its row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "docs-images-password"


def medseg(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medseg", *args], check=True, **kw)


def overlays(run: Path, data: Path | None, out: Path) -> None:
    figure = run / "evaluation" / "figures" / "overlays.png"
    if not figure.is_file():
        medseg("evaluate", str(run), *(["--data", str(data)] if data else []))
    shutil.copyfile(figure, out / "demo_overlays.png")


def test_pairs_to_png(run: Path, data: Path, folder: Path) -> list[tuple[Path, Path]]:
    """Two of the run's held-out test pairs (overlap at the 75th and 50th percentile) as image + class-index
    mask PNGs."""
    import json

    from medseg.data.pommier import read_pommier_h5

    images, labels, _ = read_pommier_h5(data, stray_labels="nearest")
    splits = json.loads((run / "data.json").read_text())["splits_file"]
    test = np.asarray(json.loads(Path(splits).read_text())["test"])
    overlap = (labels[test] == 3).reshape(len(test), -1).sum(axis=1)
    order = test[np.argsort(overlap, kind="stable")]
    indices = [int(order[int(0.75 * len(order))]), int(order[len(order) // 2])]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in indices:
        image, label = folder / f"pair_{i:05d}.png", folder / f"pair_{i:05d}_label.png"
        Image.fromarray(np.asarray(images[i], np.uint8)).save(image)
        Image.fromarray(np.asarray(labels[i], np.uint8)).save(label)
        out.append((image, label))
    return out


def viewer(run: Path, data: Path, out: Path, chromium: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory(prefix="medseg-docs-") as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, MEDSEG_HOME=str(tmp / "home"), NO_COLOR="1")
        medseg("users", "add", "reader", "--password-stdin", input=PASSWORD + "\n", text=True, env=env)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "medseg", "serve", "--model", str(run), "--port", str(port), "--device", "cpu"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(300):
                try:
                    if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            uploads = test_pairs_to_png(run, data, tmp / "pairs")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
                )
                page = browser.new_page(base_url=url, viewport={"width": 1280, "height": 900})
                page.goto("/login")
                page.fill("#username", "reader")
                page.fill("#password", PASSWORD)
                page.click("#login-button")
                expect(page.locator("#main-view")).to_be_visible()
                for k, (image, label) in enumerate(uploads, start=1):
                    page.set_input_files("#upload-file", str(image))
                    page.set_input_files("#reference-file", str(label))
                    page.click("#upload-button")
                    expect(page.locator("#studies .study")).to_have_count(k)
                    expect(page.locator("#studies .study .status").first).to_have_text("done 100%", timeout=60_000)
                page.locator("#studies .study").first.locator(".name").click()  # a click on the row opens it
                expect(page.locator("#viewer")).to_be_visible()
                for img in ("#img-original", "#img-overlay", "#img-reference"):
                    page.wait_for_function(f"document.querySelector('{img}').naturalWidth > 0")
                page.locator("#viewer-title").click()
                page.wait_for_timeout(800)  # the smooth scroll to the viewer
                page.screenshot(path=str(out / "viewer.png"), full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(15)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="trained 2D chromosome run directory")
    p.add_argument("--data", type=Path, required=True, help="the run's Pommier-layout HDF5 (test pairs are shown)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="folder [docs/images]")
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium", help="browser executable")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    overlays(args.run, args.data, args.out)
    viewer(args.run, args.data, args.out, args.chromium)
    print(f"wrote {args.out / 'demo_overlays.png'} and {args.out / 'viewer.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
