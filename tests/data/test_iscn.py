"""A cell's karyotype (ISCN) from an M-FISH folder, and the classes its structural rearrangements name."""

from __future__ import annotations

from medseg.data.iscn import read_case_karyotype, rearranged_classes


def test_structural_rearrangements_name_their_classes_numerical_changes_none():
    assert rearranged_classes("46,XY") == frozenset() and rearranged_classes(None) == frozenset()
    assert rearranged_classes("45,XY,-18,+7") == frozenset()  # a lost or extra chromosome is whole
    assert rearranged_classes("46,XY,t(9;22)(q34;q11)") == {9, 22}  # the bands' parentheses are not classes
    assert rearranged_classes("45,XX,-11,t(X;4)") == {23, 4}
    assert rearranged_classes("47,XX,+r(9)") == {9} and rearranged_classes("45,XX,+der(5)") == {5}
    assert rearranged_classes("45,X,Ins(11;8),+Ins(14;9),t(5;16)") == {5, 8, 9, 11, 14, 16}
    assert rearranged_classes("46,XY,inv(Y),i(17q),idic(X)") == {24, 17, 23}
    assert rearranged_classes("47,XY,+?13,t(3;13)") == {3, 13}


def test_case_info_is_read_through_stray_bytes_and_trailing_form_text(tmp_path):
    folder = tmp_path / "V28__62"
    folder.mkdir()
    assert read_case_karyotype(folder) is None  # no Case Info file
    (folder / "Case Info").write_bytes(b"\x00\x0045,XY,-18,-22,t(7;8),t(15;18), +t(20;5)\x00\r\nPt Name:")
    assert read_case_karyotype(folder) == "45,XY,-18,-22,t(7;8),t(15;18),+t(20;5)"
    (folder / "Case Info").write_bytes(b"46,XX,t(4;9)YUTUYTUY")  # a form's words glued to the karyotype
    assert read_case_karyotype(folder) == "46,XX,t(4;9)"
    (folder / "Case Info").write_bytes(b"44,XY,-11, -22 8,10,13 on edge of image")
    assert read_case_karyotype(folder) == "44,XY,-11,-22"
    (folder / "Case Info").write_bytes(b"no karyotype here")
    assert read_case_karyotype(folder) is None
