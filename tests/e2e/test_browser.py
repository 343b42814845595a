"""The web system end to end: a real ``medseg serve`` driven through a real headless Chromium (Playwright).

Sign-in, upload through the page, the job's progress until done, the slice viewer (keys, slider, autoplay,
opacity, legend), downloads opened with nibabel / pydicom, a refused upload, a 2D image, a metaphase's
statuses, sorting and click-to-select, sign-out and another user's view. Fixtures (server, browser, inputs) are
in ``conftest.py``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from medseg.palette import class_rgb

try:
    from playwright.sync_api import Page, expect
except ImportError:  # conftest's chromium_executable fails (or skips) every test with a clear message
    Page = expect = None

JOB_TIMEOUT_MS = 60_000
MODEL_3D, MODEL_2D = "phantom_ct", "chromo2d"


# ---------------------------------------------------------------------------------------------- helpers


def sign_in(page: Page, user: str, password: str) -> None:
    page.goto("/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-button")
    expect(page.locator("#main-view")).to_be_visible()
    expect(page.locator("#whoami")).to_have_text(user)


def study_ids(page: Page) -> list[str]:
    return page.locator("#studies .study").evaluate_all("items => items.map((li) => li.dataset.id)")


def upload(page: Page, *files: Path, model: str) -> str:
    """Upload through the form; returns the new study's id once its job is done (``.open`` enabled)."""
    before = set(study_ids(page))
    page.set_input_files("#upload-file", [str(f) for f in files])
    page.select_option("#model-select", model)
    page.click("#upload-button")
    expect(page.locator("#studies .study")).to_have_count(len(before) + 1)
    (new,) = set(study_ids(page)) - before
    item = study(page, new)
    expect(item.locator(".status")).to_have_text("done 100%", timeout=JOB_TIMEOUT_MS)
    expect(item.locator(".open")).to_be_enabled()
    expect(page.locator("#upload-error")).to_be_hidden()
    return new


def study(page: Page, study_id: str):
    return page.locator(f'#studies .study[data-id="{study_id}"]')


def open_viewer(page: Page, study_id: str, n: int) -> None:
    if page.locator("#autoplay").get_attribute("aria-pressed") == "true":
        page.click("#autoplay")
    study(page, study_id).locator(".open").click()
    expect(page.locator("#viewer")).to_be_visible()
    expect(page.locator("#slice-index")).to_have_text(f"1 / {n}")
    # the result's arrays (or, for an older result, its slice images) are in: what is drawn next comes from them
    expect(page.locator("#viewer")).not_to_have_attribute("data-volume", "loading", timeout=20_000)


def wait_until(condition, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def image_loaded(page: Page, selector: str) -> int:
    """The canvas's width once a slice is drawn on it (0 while the result loads)."""
    return page.locator(selector).evaluate("(canvas) => canvas.width")


def canvas_pixels(page: Page, selector: str) -> list[int]:
    """The canvas's RGBA values, as drawn."""
    return page.locator(selector).evaluate(
        "(c) => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
    )


def expect_slice(page: Page, k: int, n: int) -> None:
    """Index text "k+1 / n", slider at k+1, and slice k (0-based) drawn on the three canvases."""
    expect(page.locator("#slice-index")).to_have_text(f"{k + 1} / {n}")
    expect(page.locator("#slice-slider")).to_have_value(str(k + 1))
    expect(page.locator("#img-original")).to_have_attribute("data-slice", str(k))
    # the prediction: its label layer, or a multilabel result's structures, each on a layer of its own
    for selector in ("#img-original", "#img-overlay-base", "#overlay-stack canvas.layer:not([hidden]) >> nth=0"):
        wait_until(lambda s=selector: image_loaded(page, s) > 0, what=f"{selector} of slice {k} to be drawn")


def download(page: Page, selector: str, folder: Path) -> Path:
    with page.expect_download() as info:
        page.click(selector)
    d = info.value
    assert d.failure() is None, d.failure()
    path = folder / d.suggested_filename
    d.save_as(path)
    return path


def model_classes(page: Page, model_id: str) -> list[str]:
    models = page.request.get("/api/models").json()
    (model,) = [m for m in models if m["id"] == model_id]
    return [c["name"] for c in model["classes"] if c["value"] != 0]


# ---------------------------------------------------------------------------------------------- alice's page


@pytest.fixture(scope="module")
def alice(chromium_browser, live_server):
    """One page signed in as alice for the module; ``page.errors`` collects uncaught script errors."""
    context = chromium_browser.new_context(
        base_url=live_server.url, accept_downloads=True, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    sign_in(page, "alice", live_server.password)
    yield page
    context.close()


@pytest.fixture(scope="module")
def nifti_study(alice, inputs) -> str:
    """The phantom NIfTI volume uploaded through the page and segmented with the 3D model."""
    return upload(alice, inputs["nifti"], model=MODEL_3D)


@pytest.fixture
def viewer(alice, nifti_study, inputs) -> Page:
    """alice's page with the NIfTI study open at its first slice."""
    open_viewer(alice, nifti_study, inputs["n_slices"])
    return alice


# ---------------------------------------------------------------------------------------------- tests


def test_sign_in_refuses_a_wrong_password_then_shows_the_main_view(new_page, live_server):
    page = new_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))  # signed out: the page sends us to sign in
    page.fill("#username", "alice")
    page.fill("#password", "not the password")
    page.click("#login-button")
    expect(page.locator("#login-error")).to_be_visible()
    expect(page.locator("#login-error")).to_contain_text("wrong user name or password")
    expect(page.locator("#main-view")).to_be_hidden()

    page.fill("#password", live_server.password)
    page.click("#login-button")
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("#main-view")).to_be_visible()
    expect(page.locator("#login-view")).to_be_hidden()
    expect(page.locator("#whoami")).to_have_text("alice")
    # a model trained on phantom data is flagged on the page, and every model is offered
    expect(page.locator("#demo-banner")).to_be_visible()
    expect(page.locator("#demo-banner")).to_contain_text(MODEL_3D)
    expect(page.locator("#model-select option")).to_have_count(3)


def test_upload_runs_the_job_and_the_viewer_opens_at_the_first_slice(alice, nifti_study, inputs):
    n = inputs["n_slices"]
    item = study(alice, nifti_study)
    expect(item.locator(".name")).to_have_text(inputs["nifti"].name)
    expect(item.locator(".meta")).to_contain_text("12×64×64 volume")
    expect(item.locator(".meta")).to_contain_text(MODEL_3D)
    expect(alice.locator("#studies-empty")).to_be_hidden()
    open_viewer(alice, nifti_study, n)
    expect(alice.locator("#viewer-title")).to_have_text(inputs["nifti"].name)
    expect(alice.locator("#slice-slider")).to_have_attribute("max", str(n))
    expect(alice.locator("#viewer-demo")).to_be_visible()
    expect(alice.locator("#img-reference")).to_be_hidden()  # no reference uploaded
    expect(alice.locator("#reference-panel")).to_be_hidden()
    expect_slice(alice, 0, n)
    assert image_loaded(alice, "#img-original") == inputs["shape"][2]  # the slice has the volume's width


def test_paging_costs_no_request_and_the_window_is_applied_here(viewer, nifti_study, inputs):
    """The result's arrays come once when it opens; paging, playing and window/level then stay in the page."""
    page, n = viewer, inputs["n_slices"]
    requests = []
    listen = lambda r: requests.append(r.url) if "/api/results/" in r.url else None  # noqa: E731
    page.on("request", listen)
    for _ in range(n - 1):
        page.keyboard.press("ArrowRight")
    expect_slice(page, n - 1, n)
    page.keyboard.press("Home")
    page.locator("#slice-slider").fill(str(n // 2))
    expect_slice(page, n // 2 - 1, n)
    page.click("#autoplay")
    expect(page.locator("#slice-index")).not_to_have_text(f"{n // 2} / {n}", timeout=1500)
    page.click("#autoplay")
    before = canvas_pixels(page, "#img-original")
    page.locator("#window-width").fill("40")  # a narrow window: the same slice, other greys
    wait_until(lambda: canvas_pixels(page, "#img-original") != before, what="the new window to be drawn")
    page.click("#window-reset")
    wait_until(lambda: canvas_pixels(page, "#img-original") == before, what="the window to be reset")
    page.locator("#viewer-title").click()  # focus back on the page for the next test's keys
    assert requests == [], f"paging asked the server for {len(requests)} files: {requests[:5]}"

    # opening again: the manifest and the two arrays at most (the browser may serve them from its cache)
    open_viewer(page, nifti_study, n)
    expect_slice(page, 0, n)
    page.remove_listener("request", listen)
    assert len(requests) <= 3 and all("/volume/" in url for url in requests), requests


def test_keys_and_slider_step_through_the_slices(viewer, inputs):
    page, n = viewer, inputs["n_slices"]
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect_slice(page, 2, n)
    page.keyboard.press("ArrowLeft")
    expect_slice(page, 1, n)
    page.keyboard.press("ArrowUp")
    expect_slice(page, 2, n)
    page.keyboard.press("ArrowDown")
    expect_slice(page, 1, n)
    page.keyboard.press("End")
    expect_slice(page, n - 1, n)
    page.keyboard.press("ArrowRight")  # no wrap when stepping by hand
    expect_slice(page, n - 1, n)
    page.keyboard.press("Home")
    expect_slice(page, 0, n)
    page.keyboard.press("ArrowLeft")
    expect_slice(page, 0, n)

    page.locator("#slice-slider").fill("5")
    expect_slice(page, 4, n)

    # keys typed into a form field are not slice steps
    page.locator("#opacity").focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("End")
    expect(page.locator("#slice-index")).to_have_text(f"5 / {n}")
    page.locator("#model-select").focus()
    page.keyboard.press("Home")
    expect(page.locator("#slice-index")).to_have_text(f"5 / {n}")
    page.locator("#viewer-title").click()  # focus back on the page
    page.keyboard.press("ArrowRight")
    expect_slice(page, 5, n)
    page.locator("#opacity").fill("60")  # End in the focused range moved it


def test_autoplay_advances_wraps_and_stops(viewer, inputs):
    page, n = viewer, inputs["n_slices"]
    play, index = page.locator("#autoplay"), page.locator("#slice-index")
    expect(play).to_have_attribute("aria-pressed", "false")
    play.click()
    expect(play).to_have_attribute("aria-pressed", "true")
    expect(index).not_to_have_text(f"1 / {n}", timeout=1000)  # 250 ms a slice
    play.click()
    expect(play).to_have_attribute("aria-pressed", "false")
    stopped = index.text_content()
    page.wait_for_timeout(600)
    assert index.text_content() == stopped, "autoplay went on after it was stopped"

    page.keyboard.press("End")
    expect(index).to_have_text(f"{n} / {n}")
    play.click()
    expect(index).to_have_text(re.compile(rf"^[1-3] / {n}$"), timeout=1500)  # wrapped to the start
    play.click()
    expect(play).to_have_attribute("aria-pressed", "false")


def test_opacity_and_legend(viewer, inputs, artifacts_dir):
    page, n = viewer, inputs["n_slices"]
    overlay = page.locator("#img-overlay")
    expect(page.locator("#opacity")).to_have_value("60")
    expect(overlay).to_have_css("opacity", "0.6")
    page.locator("#opacity").fill("20")
    expect(overlay).to_have_css("opacity", "0.2")
    page.locator("#opacity").fill("100")
    expect(overlay).to_have_css("opacity", "1")
    page.locator("#opacity").fill("60")
    expect(overlay).to_have_css("opacity", "0.6")

    names = model_classes(page, MODEL_3D)
    assert names == ["ctv"]
    items = page.locator("#legend li")
    expect(items).to_have_text(names)
    swatch = items.first.locator(".swatch")
    assert swatch.evaluate("(el) => getComputedStyle(el).backgroundColor") not in ("", "rgba(0, 0, 0, 0)")

    # the viewer, as the CI keeps it (test artifact); keys act once the focus leaves the range input
    page.keyboard.press("End")
    expect(page.locator("#slice-index")).to_have_text(f"1 / {n}")
    page.locator("#viewer-title").click()
    page.keyboard.press("End")
    expect_slice(page, n - 1, n)
    shot = artifacts_dir / "viewer.png"
    shot.unlink(missing_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000, f"{shot} is only {shot.stat().st_size} bytes"
    with Image.open(shot) as img:
        assert img.format == "PNG" and img.width == 1280 and img.height >= 800
        grey = np.asarray(img.convert("L"))
    assert grey.std() > 20, "the screenshot is (almost) one colour"


def test_download_label_nifti_matches_the_input(viewer, inputs, tmp_path):
    page = viewer
    expect(page.locator("#download-label")).to_have_text("Label (NIfTI)")
    expect(page.locator("#download-dicom-seg")).to_be_hidden()  # only for a DICOM input
    path = download(page, "#download-label", tmp_path)
    assert path.name.endswith(".nii.gz"), path.name
    label, source = nib.load(path), nib.load(inputs["nifti"])
    assert label.shape == source.shape
    np.testing.assert_allclose(label.affine, source.affine, atol=1e-4)
    values = np.unique(np.asarray(label.dataobj))
    assert set(values.tolist()) <= {0, 1} and 1 in values  # the tiny model marks (nearly) everything

    summary = download(page, "#download-summary", tmp_path)
    assert summary.suffix == ".json" and '"ctv"' in summary.read_text()


def test_dicom_zip_upload_offers_a_dicom_seg(alice, inputs, tmp_path):
    n = inputs["n_slices"]
    study_id = upload(alice, inputs["dicom_zip"], model=MODEL_3D)
    expect(study(alice, study_id).locator(".meta")).to_contain_text("dicom")
    open_viewer(alice, study_id, n)
    expect_slice(alice, 0, n)
    seg_link = alice.locator("#download-dicom-seg")
    expect(seg_link).to_be_visible()
    path = download(alice, "#download-dicom-seg", tmp_path)
    seg = pydicom.dcmread(path)
    assert seg.Modality == "SEG"
    assert int(seg.NumberOfFrames) >= 1
    source = pydicom.dcmread(min(inputs["dicom_dir"].iterdir()), stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.SegmentSequence[0].SegmentLabel == "ctv"
    expect(alice.locator("#download-label")).to_have_text("Label (NIfTI)")


def test_a_bad_upload_names_the_file_and_adds_no_study(alice, nifti_study, inputs):
    before = study_ids(alice)
    alice.set_input_files("#upload-file", str(inputs["bad"]))
    alice.select_option("#model-select", MODEL_3D)
    alice.click("#upload-button")
    error = alice.locator("#upload-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("scan.nii.gz")
    expect(alice.locator("#upload-button")).to_be_enabled()
    assert study_ids(alice) == before
    assert len(alice.request.get("/api/studies").json()) == len(before)


@pytest.fixture(scope="module")
def png_study(alice, inputs) -> str:
    """The 40×48 PNG uploaded through the page and segmented with the 2D model."""
    return upload(alice, inputs["png"], model=MODEL_2D)


SLICE_CONTROLS = ("#autoplay", "#slice-slider", "#slice-index")


def test_a_2d_image_is_a_one_slice_study(alice, png_study, inputs):
    expect(study(alice, png_study).locator(".meta")).to_contain_text("48 × 40 px image")  # width × height
    open_viewer(alice, png_study, 1)
    expect_slice(alice, 0, 1)
    # one image: nothing to play or step through, so no Play button, no slider and no "1 / 1"
    for selector in SLICE_CONTROLS:
        expect(alice.locator(selector)).to_be_hidden()
    expect(alice.locator("#opacity")).to_be_visible()
    assert image_loaded(alice, "#img-original") == 48
    alice.keyboard.press("ArrowRight")
    expect(alice.locator("#slice-index")).to_have_text("1 / 1")
    expect(alice.locator("#download-label")).to_have_text("Label (PNG, class indices)")
    expect(alice.locator("#legend li")).to_have_text(model_classes(alice, MODEL_2D))
    # the legend's colours are the one palette's (medseg.palette), as in every figure: α red, β green, overlap blue
    swatches = alice.locator("#legend .swatch").evaluate_all(
        "els => els.map((el) => getComputedStyle(el).backgroundColor)"
    )
    assert swatches == ["rgb({}, {}, {})".format(*class_rgb(k)) for k in range(1, len(swatches) + 1)]
    assert swatches[:3] == ["rgb(230, 40, 40)", "rgb(40, 200, 40)", "rgb(40, 90, 255)"]


def test_a_study_row_opens_on_a_click_or_enter(alice, nifti_study, png_study, inputs):
    page, n = alice, inputs["n_slices"]
    open_viewer(page, png_study, 1)
    # a click anywhere on the row (here its name and its status), not only on "Open"
    study(page, nifti_study).locator(".name").click()
    expect(page.locator("#viewer-title")).to_have_text(inputs["nifti"].name)
    expect(page.locator("#slice-index")).to_have_text(f"1 / {n}")
    for selector in SLICE_CONTROLS:  # a volume has them back
        expect(page.locator(selector)).to_be_visible()
    study(page, png_study).locator(".status").click()
    expect(page.locator("#viewer-title")).to_have_text(inputs["png"].name)
    for selector in SLICE_CONTROLS:
        expect(page.locator(selector)).to_be_hidden()

    # keyboard: the row is focusable and Enter opens it
    row = study(page, nifti_study)
    expect(row).to_have_attribute("tabindex", "0")
    row.focus()
    expect(row).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#viewer-title")).to_have_text(inputs["nifti"].name)
    expect_slice(page, 0, n)

    # and the "Open" button still opens
    study(page, png_study).locator(".open").click()
    expect(page.locator("#viewer-title")).to_have_text(inputs["png"].name)


# A made-up metaphase of three objects on the 48 × 40 image: the server's one whole-image instance stands in
# for the job, and the table and the instance layer the page fetches are replaced by these (the server side of
# statuses is tested in tests/server/test_metaphase_instances.py).
MADE_UP = [
    {
        "id": 1,
        "bbox": {"top": 4, "left": 4, "height": 8, "width": 20},
        "area": 160,
        "separated_by": "whole",
        "overlaps_with": [],
        "status": "single",
        "estimated_count": 1,
        "colour": "#e62828",
    },
    {
        "id": 2,
        "bbox": {"top": 20, "left": 6, "height": 16, "width": 30},
        "area": 480,
        "separated_by": "whole",
        "overlaps_with": [],
        "status": "clump",
        "estimated_count": 3,
        "colour": "#28c828",
    },
    {
        "id": 3,
        "bbox": {"top": 2, "left": 40, "height": 4, "width": 6},
        "area": 24,
        "separated_by": "whole",
        "overlaps_with": [],
        "status": "doubtful",
        "estimated_count": 0,
        "colour": "#285aff",
    },
]


def _made_up_layer() -> bytes:
    import io

    layer = np.zeros((40, 48, 4), np.uint8)
    for r in MADE_UP:
        b = r["bbox"]
        layer[b["top"] : b["top"] + b["height"], b["left"] : b["left"] + b["width"]] = [
            *bytes.fromhex(r["colour"][1:]),
            255,
        ]
    out = io.BytesIO()
    Image.fromarray(layer).save(out, format="PNG")
    return out.getvalue()


def click_object(page: Page, record: dict) -> None:
    """A click at the centre of ``record``'s box on the prediction, wherever zoom, pan and scrolling put it (a
    mouse click at page coordinates outside the viewport does nothing, so the image is scrolled into view)."""
    page.locator("#img-overlay").scroll_into_view_if_needed()
    box = page.locator("#img-overlay").bounding_box()
    b = record["bbox"]
    page.mouse.click(
        box["x"] + box["width"] * (b["left"] + b["width"] / 2) / 48,
        box["y"] + box["height"] * (b["top"] + b["height"] / 2) / 40,
    )


def select_object(page: Page, record: dict) -> str:
    """Click ``record`` until its row is pinned (on a busy CPU the page may still be building the layer's hit map
    at the first click); the pinned row's id."""
    pinned = page.locator("#instances-table tr.pinned td:first-child")

    def clicked() -> bool:
        if pinned.count() and pinned.inner_text() == str(record["id"]):
            return True
        click_object(page, record)
        time.sleep(0.3)
        return bool(pinned.count()) and pinned.inner_text() == str(record["id"])

    try:
        wait_until(clicked, timeout=20.0, what=f"object {record['id']} selected by a click")
    except AssertionError as exc:  # where the click went, to tell a missed target from a missing handler
        where = page.evaluate("() => [window.scrollX, window.scrollY, innerWidth, innerHeight]")
        raise AssertionError(
            f"{exc}; overlay box {page.locator('#img-overlay').bounding_box()}, scroll and viewport {where}"
        ) from None
    return pinned.inner_text()


def test_metaphase_statuses_sort_and_click_to_select(alice, inputs, tmp_path):
    import csv
    import io
    import json
    import zipfile

    page = alice

    def table(route):
        data = route.fetch().json()
        route.fulfill(json={**data, "instances": MADE_UP})

    page.route("**/api/results/*/instances", table)
    page.route(
        "**/slices/0/instances.png", lambda route: route.fulfill(body=_made_up_layer(), content_type="image/png")
    )
    try:
        sid = upload(page, inputs["png"], model="metaphase")
        expect(study(page, sid).locator(".meta")).to_contain_text("≈ 1 chromosomes · 0 doubtful")
        open_viewer(page, sid, 1)
        expect(page.locator("#instances-title")).to_contain_text("≈ 1 single · 0 clumps (≈ 0) · 0 doubtful")
        expect(page.locator("#instances-warning")).to_contain_text("far from the 46")
        rows = page.locator("#instances-table tbody tr")
        expect(rows.locator("td.instance-status")).to_have_text(
            ["single", "probable clump (≈ 3)", "doubtful: debris / nucleus?"]
        )
        expect(page.locator("#instance-numbers span")).to_have_text(["1", "2", "3"])
        page.click('#instances-table th[data-sort="area"]')  # largest first, then the other way
        ids = page.locator("#instances-table tbody td:first-child")
        expect(ids).to_have_text(["2", "1", "3"])
        page.click('#instances-table th[data-sort="area"]')
        expect(ids).to_have_text(["3", "1", "2"])
        wait_until(lambda: image_loaded(page, "#img-overlay") == 48, what="the instance layer")
        assert select_object(page, MADE_UP[1]) == "2"
        page.click("#zoom-in")  # 1.5 × about the centre: object 1 moves, a click on it still finds it
        assert select_object(page, MADE_UP[0]) == "1"
        page.click("#show-numbers")
        expect(page.locator("#instance-numbers")).to_be_hidden()
        expect(page.locator(".downloads a >> nth=0")).to_have_text("Chromosomes (zip)")
        expect(page.locator("#download-karyogram")).to_be_hidden()  # this server has no karyotyping model
        with zipfile.ZipFile(download(page, "#download-instances", tmp_path)) as zf:
            rows_csv = list(csv.DictReader(io.StringIO(zf.read("cells/chromosomes.csv").decode())))
            real = json.loads(zf.read("cells/instances.json"))["instances"]
        assert (
            [(int(r["id"]), r["status"], int(r["area_px"])) for r in rows_csv]
            == [(r["id"], r["status"], r["area"]) for r in real]
            == [(1, "single", 40 * 48)]
        )
    finally:
        page.unroute("**/api/results/*/instances")
        page.unroute("**/slices/0/instances.png")
        page.click("#zoom-fit")


def test_sign_out_and_another_user_sees_none_of_it(new_page, live_server, nifti_study):
    page = new_page()
    sign_in(page, "alice", live_server.password)
    expect(study(page, nifti_study)).to_be_visible()
    page.click("#logout")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator("#login-view")).to_be_visible()
    assert page.request.get("/api/studies").status == 401  # the session is over, not just the page
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))

    sign_in(page, "bob", live_server.password)
    expect(page.locator("#studies-empty")).to_be_visible()
    expect(page.locator("#studies .study")).to_have_count(0)
    assert page.request.get("/api/studies").json() == []
    assert page.request.get(f"/api/studies/{nifti_study}").status == 404


def test_the_page_raised_no_script_errors(alice):
    assert alice.errors == []
