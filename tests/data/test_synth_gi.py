"""Tests of the synthesized UW-Madison GI Tract set (medseg.data.synth_gi)."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli import app
from medseg.data import uwgi
from medseg.data.synth_gi import PUBLISHED_SIZES, write_synth_gi
from medseg.errors import DataValidationError

TINY = dict(n_cases=3, seed=7, slices=(12,), progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("gi") / "set"
    summary = write_synth_gi(out, **TINY)
    rles = uwgi.read_train_csv(out / "train.csv")
    index = uwgi.scan_index(out)
    return out, summary, rles, index


def test_reads_back_with_the_uwgi_reader(tiny):
    out, summary, rles, index = tiny
    uwgi.check_consistency(index, rles)
    assert len(index) == len(rles) == summary["n_images"]
    for rec in index:
        img = uwgi.read_scan(rec)
        assert img.dtype == np.uint16 and img.shape == rec.shape and img.max() > img.min()
        m = uwgi.masks_for(rec, rles)
        assert m.shape == (*rec.shape, 3)
        for c, cls in enumerate(uwgi.CLASSES):  # the RLE round-trips through the reader's own encoder
            assert uwgi.rle_encode(m[..., c]) == rles[rec.id][cls]
    # three rows per slice in CLASSES order
    lines = (out / "train.csv").read_text().splitlines()
    assert lines[0] == "id,class,segmentation"
    assert [ln.split(",")[1] for ln in lines[1:4]] == list(uwgi.CLASSES)
    assert len(lines) == 1 + 3 * summary["n_images"]


def test_file_names_have_published_sizes_and_spacings(tiny):
    out, _, _, index = tiny
    published = {(w, h, sp, sp) for w, h, sp in PUBLISHED_SIZES}
    for rec in index:
        info = uwgi.parse_scan_filename(rec.path)
        assert (info["width"], info["height"], info["pixel_w"], info["pixel_h"]) in published
        assert rec.path.name.endswith(("_1.50_1.50.png", "_1.63_1.63.png"))
        assert rec.path.parent.name == "scans" and rec.path.parent.parent.name == f"case{rec.case}_day{rec.day}"
    sizes = {(r.width, r.height) for r in index}
    assert len(sizes) == 3  # three cases, each a different published size


def test_empty_slices_overlap_and_days(tiny):
    _, summary, rles, index = tiny
    empty = [r for r in index if not any(rles[r.id].values())]
    assert empty and summary["n_images_without_masks"] == len(empty)
    assert summary["n_images_with_masks"] == len(index) - len(empty)
    by_scan = defaultdict(list)
    for r in index:
        by_scan[(r.case, r.day)].append(r)
    for recs in by_scan.values():  # organs only in the middle range: the first and last slices are empty
        assert not any(rles[recs[0].id].values()) and not any(rles[recs[-1].id].values())
    overlap = 0
    for r in index:
        m = uwgi.masks_for(r, rles).astype(bool)
        overlap += any((m[..., a] & m[..., b]).any() for a in range(3) for b in range(a + 1, 3))
    assert overlap > 0 and overlap == summary["n_images_with_overlap"]
    days = defaultdict(set)
    for case, day in by_scan:
        days[case].add(day)
    assert all(1 <= len(d) <= 5 for d in days.values()) and max(len(d) for d in days.values()) >= 2
    for cls in uwgi.CLASSES:  # every organ is present somewhere
        assert any(rles[r.id][cls] for r in index)


def test_organs_move_between_days(tiny):
    _, _, rles, index = tiny
    by_scan = defaultdict(list)
    for r in index:
        by_scan[(r.case, r.day)].append(r)
    case = next(c for c, _ in by_scan if sum(1 for k in by_scan if k[0] == c) >= 2)
    d0, d1 = sorted(d for c, d in by_scan if c == case)[:2]
    a = np.stack([uwgi.masks_for(r, rles) for r in by_scan[(case, d0)]])
    b = np.stack([uwgi.masks_for(r, rles) for r in by_scan[(case, d1)]])
    assert a.shape == b.shape
    for c in range(3):
        assert a[..., c].any() and b[..., c].any()
        assert (a[..., c] != b[..., c]).any()  # every organ moved
        inter = (a[..., c] & b[..., c]).sum()
        assert inter > 0.1 * min(a[..., c].sum(), b[..., c].sum())  # ... but only a little


def test_seed_reproducible(tmp_path, tiny):
    out, _, _, _ = tiny
    again = write_synth_gi(tmp_path / "again", **TINY)
    assert (tmp_path / "again" / "train.csv").read_bytes() == (out / "train.csv").read_bytes()
    png = sorted((out / "train").rglob("*.png"))[5]
    assert (tmp_path / "again" / png.relative_to(out)).read_bytes() == png.read_bytes()
    other = write_synth_gi(tmp_path / "other", **{**TINY, "seed": 8})
    assert (tmp_path / "other" / "train.csv").read_bytes() != (out / "train.csv").read_bytes()
    assert again["n_images"] > 0 and other["n_images"] > 0


def test_manifest_and_refusals(tmp_path, tiny):
    out, summary, _, _ = tiny
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["synthesized"] is True and "SYNTHESIZED" in manifest["note"]
    assert "not real anatomy" in manifest["note"]
    assert manifest["seed"] == 7 and manifest["n_cases"] == 3 and manifest["n_images"] == summary["n_images"]
    assert manifest["n_images_with_masks"] + manifest["n_images_without_masks"] == manifest["n_images"]
    with pytest.raises(DataValidationError, match="already holds"):
        write_synth_gi(out, **TINY)
    with pytest.raises(DataValidationError, match="n_cases"):
        write_synth_gi(tmp_path / "x", n_cases=0, progress=False)
    with pytest.raises(DataValidationError, match="slices"):
        write_synth_gi(tmp_path / "x", slices=(2,), progress=False)


def test_default_slice_counts_are_published(tmp_path):
    s = write_synth_gi(tmp_path / "one", n_cases=1, seed=3, progress=False)
    assert s["cases"][0]["slices"] in (144, 80)
    index = uwgi.scan_index(tmp_path / "one")
    assert {r.slice for r in index} == set(range(1, s["cases"][0]["slices"] + 1))


def test_cli_synth_gi(tmp_path, monkeypatch):
    import medseg.data.synth_gi as mod

    real = mod.write_synth_gi
    monkeypatch.setattr(mod, "write_synth_gi", lambda out, **kw: real(out, **kw, slices=(8,)))
    result = CliRunner().invoke(app, ["data", "synth-gi", str(tmp_path / "gi"), "--cases", "2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    # medseg prints to stderr, as does the (plain, no-TTY) progress bar: drop its lines
    lines = [ln for ln in result.output.splitlines() if ln.strip() and not ln.startswith("synthesizing GI")]
    assert len(lines) == 1 and "synthesized" in lines[0] and "not real anatomy" in lines[0]
    manifest = json.loads((tmp_path / "gi" / "manifest.json").read_text())
    assert manifest["synthesized"] is True and manifest["seed"] == 1 and manifest["n_cases"] == 2
    rles = uwgi.read_train_csv(tmp_path / "gi" / "train.csv")
    uwgi.check_consistency(uwgi.scan_index(tmp_path / "gi"), rles)
