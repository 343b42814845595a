"""The published numbers (configs/tables/published/<paper>.yaml): every number at its cited line of the paper's
text, and a bad file is a ConfigError that names the file and the row."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from medseg.errors import ConfigError
from medseg.evaluation import paper_numbers as pn

REPO = Path(__file__).resolve().parents[2]
TOKEN = re.compile(r"\d+(?:\.\d+)?")
TRANSPOSED = {"Params": "params", "GPU": "time_ms", "CPU": "time_ms_cpu"}  # AMFL Table IV's row labels


def _paper_text(paper: str) -> list[str] | None:
    for base in (REPO, REPO.parent):  # shared/ inside the checkout or beside it
        path = base / pn.PAPERS[paper]["file"]
        if path.is_file():
            return path.read_text(encoding="utf-8").splitlines()
    return None


def _numbers(line: str) -> set[float]:
    return {float(t) for t in TOKEN.findall(line)}


@pytest.mark.skipif(any(_paper_text(p) is None for p in pn.PAPERS), reason="shared/papers not present")
def test_every_number_is_printed_at_the_cited_line():
    texts = {p: _paper_text(p) for p in pn.PAPERS}
    rows = pn.published_rows()
    assert len(rows) == len(pn.PAPER_ROWS)
    for row in rows:
        lines, line = texts[row["paper"]], row["line"]
        what = (row["source"], row["method"], line)
        values = {k: row[k] for k in pn.METRIC_KEYS if row[k] is not None}
        if row["paper"] == "ctv_thesis":  # Dice ratio printed as a fraction, ours in %
            assert set(values) == {"dice"}, what
            assert f"{row['dice'] / 100:.3f}" in TOKEN.findall(lines[line - 1]), what
        elif row["paper"] == "gi_tract":  # fractions printed, ours in %; epochs as counts
            counts = ("best_epoch", "epochs_run")
            expected = {round(v if k in counts else v / 100, 6) for k, v in values.items()}
            assert expected <= {round(v, 6) for v in _numbers(lines[line - 1])}, (what, values)
        elif isinstance(line, tuple):  # a transposed table (AMFL IV): the method's column of lines first..last
            first, last = line
            column = lines[first - 2].split("\t").index(row["method"])
            cells = [lines[n - 1].split("\t") for n in range(first, last + 1)]
            printed = {TRANSPOSED[c[0]]: float(c[column].rstrip("Mms")) for c in cells}
            assert {k: v / 1e6 if k == "params" else v for k, v in values.items()} == printed, what
        else:
            assert {float(v) for v in values.values()} <= _numbers(lines[line - 1]), (what, values)
    # Table 3.1 as a whole: every printed value on its line.
    t31 = pn.THESIS_TABLE_3_1
    thesis = texts["ctv_thesis"]
    assert thesis[t31["lines"][0] - 1].startswith("表 3.1")
    for r in t31["rows"]:
        assert set(r["values"].values()) <= _numbers(thesis[r["line"] - 1]), r["line"]


def test_loaded_rows_keep_the_api_types():
    assert isinstance(pn.PAPER_ROWS, tuple) and len(pn.PAPER_ROWS) == 117  # 109 chromosome + CTV, 8 GI tract
    assert pn.PAPER_ROWS is pn.load_published().rows  # read once per folder
    t31 = pn.THESIS_TABLE_3_1
    assert t31["lines"] == (364, 389) and t31["columns"] == ("lung", "heart", "clavicle", "mean")
    assert t31["study_columns"] == ("chromosome_alpha", "chromosome_beta", "overlap", "mean")
    assert t31["source"] == pn.CTV_THESIS_FILE and isinstance(t31["notes"], list)
    noisy = [r for r in t31["rows"] if r["fraction"]]
    assert all(isinstance(r["n_range"], tuple) for r in noisy) and len(noisy) == 18
    assert all(r["n_range"] is None for r in t31["rows"] if not r["fraction"])
    amfl4 = pn.rows_from("amfl", "IV")
    assert all(isinstance(r["params"], int) and isinstance(r["time_ms"], int) for r in amfl4)
    rows = pn.published_rows()
    rows[0]["overlap_iou"] = 0.0  # copies
    assert pn.PAPER_ROWS[0]["overlap_iou"] == 97.92 and "line" not in pn.PAPER_ROWS[0]


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "published"
    shutil.copytree(pn.load_published().directory, folder)
    return folder


def _corrupt(folder: Path, name: str, old: str, new: str) -> Path:
    path = folder / name
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def test_a_copy_named_by_the_environment_is_read(tmp_path, monkeypatch):
    folder = _copy(tmp_path)
    monkeypatch.setenv(pn.PUBLISHED_DIR_ENV, str(folder))
    assert pn.published_dir() == folder
    assert pn.load_published().directory == folder
    assert pn.PAPER_ROWS == pn.load_published(pn._DEFAULT_DIR).rows
    _corrupt(folder, "rse_unet.yaml", "overlap_iou: 97.92", "overlap_iou: 97.93")
    assert pn.load_published(folder).rows[0]["overlap_iou"] == 97.92  # read once per folder
    other = shutil.copytree(folder, tmp_path / "other")
    assert pn.load_published(other).rows[0]["overlap_iou"] == 97.93


@pytest.mark.parametrize(
    ("name", "old", "new", "match"),
    [
        # a value of the wrong type
        (
            "amfl.yaml",
            "values: {params: 350000,",
            "values: {params: 0.35M,",
            r"table 'IV', row 1 \('ENet'\): values.params: expected a non-negative integer or null, got '0.35M'",
        ),
        (
            "rse_unet.yaml",
            "overlap_iou: 95.52",
            "overlap_iou: ninety",
            r"table '4', row 1 \('U-Net \[13\]'\): values.overlap_iou: expected a non-negative number",
        ),
        # an unknown metric key
        (
            "rse_unet.yaml",
            "overlap_iou: 97.92",
            "overlap_IoU: 97.92",
            r"table '3', row 1 \('RSE-UNet\(3L\)'\): values: unknown metric key\(s\) overlap_IoU",
        ),
        # an unknown definition, a missing field, a table number that is not a string
        (
            "arms_net.yaml",
            "alpha_beta_definition: complete_chromosome\n      accuracy_definition: derived_accuracy\n"
            '      time_device: "GPU RTX 2080Ti"\n    rows:\n      - line: 226',
            "alpha_beta_definition: whole\n      accuracy_definition: derived_accuracy\n"
            '      time_device: "GPU RTX 2080Ti"\n    rows:\n      - line: 226',
            r"table '3': defaults: alpha_beta_definition: unknown 'whole'",
        ),
        (
            "ctv_thesis.yaml",
            "      - line: 282\n",
            "      - lines: 282\n",
            r"table '2.1', row 1 \('UNet'\): unknown field\(s\) lines",
        ),
        ("amfl.yaml", '- table: "II"', "- table: 2", r"tables\[0\]: table: expected a string"),
        # Table 3.1
        (
            "ctv_thesis.yaml",
            "n_range: [5, 13], method: qam_ocm, values: {lung: 0.938",
            "n_range: [13, 5], method: qam_ocm, values: {lung: 0.938",
            r"thesis_table_3_1, row 22 \(line 389\): n_range: expected \[low, high\]",
        ),
        (
            "ctv_thesis.yaml",
            "values: {lung: 0.770,",
            "values: {lungs: 0.770,",
            r"thesis_table_3_1, row 21 \(line 388\): values: expected the columns lung, heart, clavicle, mean",
        ),
        ("ctv_thesis.yaml", "paper: ctv_thesis", "paper: ctv", r"paper: expected 'ctv_thesis' \(the file name\)"),
    ],
)
def test_a_bad_file_names_the_file_and_the_row(tmp_path, monkeypatch, name, old, new, match):
    path = _corrupt(_copy(tmp_path), name, old, new)
    monkeypatch.setenv(pn.PUBLISHED_DIR_ENV, str(path.parent))
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ": " + match):
        pn.load_published()
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        pn.PAPER_ROWS  # noqa: B018 -- read on first use
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        pn.reference_rows("unet")


def test_unreadable_yaml_and_a_missing_file(tmp_path):
    folder = _copy(tmp_path)
    path = _corrupt(folder, "arms_net.yaml", "paper: arms_net\n", "paper: [arms_net\n")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ": cannot read"):
        pn.load_published(folder)
    (folder / "amfl.yaml").unlink()
    shutil.copy(pn.load_published().directory / "arms_net.yaml", path)
    with pytest.raises(ConfigError, match=re.escape(str(folder / "amfl.yaml")) + ": missing"):
        pn.load_published(folder)


def test_a_missing_folder_is_named(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv(pn.PUBLISHED_DIR_ENV, str(missing))
    with pytest.raises(
        ConfigError, match=f"published numbers folder not found: {re.escape(str(missing))}.*{pn.PUBLISHED_DIR_ENV}"
    ):
        pn.families()
