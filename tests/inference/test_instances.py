"""Whole metaphases → chromosome instances (medseg.inference.instances): every rule of the separation on a drawn
scene with a pair model that labels by intensity (the scene is drawn so that intensity tells A, B and their overlap
apart), the crop placement against mfish-pairs', and the real M-FISH label maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.inference.instances import FALLBACKS, crop_origin, is_metaphase_model, separate_instances

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "mfish"
SHAPE = (120, 160)
BG, A, B, BOTH = 0.05, 0.4, 0.6, 0.95


class IntensityPairModel:
    """A 4-class pair model for the drawn scene: 1 where the grey is A's, 2 where B's, 3 where both, else 0. It gets
    exactly what a trained pair model gets (the 94 x 93 crop, through predict_arrays)."""

    meta = {"preprocessing": {"size": None}, "task": {"class_names": ["background", "a", "b", "overlap"]}}

    def __init__(self, constant: int | None = None, confidence: float = 1.0):
        self.constant = constant
        self.confidence = confidence  # the top class's probability at every pixel
        self.crops: list[tuple[int, int]] = []

    def predict_proba(self, images):
        labels = self.predict(images)
        proba = np.full((labels.shape[0], 4, *labels.shape[1:]), (1 - self.confidence) / 3, np.float32)
        np.put_along_axis(proba, labels[:, None].astype(np.int64), self.confidence, axis=1)
        return proba

    def predict(self, images):
        x = np.asarray(images)
        self.crops.append(x.shape[-2:])
        if self.constant is not None:
            return np.full(x.shape, self.constant, np.uint8)
        out = np.zeros(x.shape, np.uint8)
        out[np.abs(x - A) < 0.05] = 1
        out[np.abs(x - B) < 0.05] = 2
        out[np.abs(x - BOTH) < 0.05] = 3
        return out


def _rect(r0, r1, c0, c1):
    m = np.zeros(SHAPE, bool)
    m[r0:r1, c0:c1] = True
    return m


def scene():
    """An isolated bar; a cross (A horizontal 6 x 60, B vertical 50 x 6); a cluster of a bar crossed by two others
    (two overlaps); a 5-pixel speck. Returns the image, the semantic labels and the masks."""
    alone = _rect(5, 11, 5, 45)
    a, b = _rect(40, 46, 5, 65), _rect(20, 70, 30, 36)  # 360 and 300 px
    c1, c2, c3 = _rect(90, 96, 70, 150), _rect(80, 110, 90, 96), _rect(80, 110, 130, 136)
    speck = _rect(5, 6, 150, 155)
    image = np.full(SHAPE, BG, np.float32)
    for m in (alone, a, c1, c2, c3, speck):
        image[m] = A
    image[b] = B
    image[a & b] = BOTH
    semantic = np.zeros(SHAPE, np.uint8)
    semantic[alone | a | b | c1 | c2 | c3 | speck] = 1
    semantic[(a & b) | (c1 & c2) | (c1 & c3)] = 2
    return image, semantic, {"alone": alone, "a": a, "b": b, "cluster": c1 | c2 | c3}


def test_crossing_split_by_the_pair_model_each_whole_with_the_overlap():
    image, semantic, m = scene()
    model = IntensityPairModel()
    r = separate_instances(image, semantic, model)
    assert model.crops == [(94, 93)]  # one crossing of two, one crop of the pair size
    assert r.counts["components"] == 3 and r.counts["specks"] == 1
    assert (r.counts["whole"], r.counts["pair_model"], r.counts["several_overlaps"]) == (1, 1, 1)
    assert len(r.instances) == 4 and [i.id for i in r.instances] == [1, 2, 3, 4]
    masks = r.masks()
    split = [k for k, i in enumerate(r.instances) if i.how == "pair_model"]
    got = sorted((masks[k] for k in split), key=lambda x: x.sum())
    np.testing.assert_array_equal(got[0], m["b"] if m["b"].sum() < m["a"].sum() else m["a"])
    np.testing.assert_array_equal(got[1], m["a"] if m["b"].sum() < m["a"].sum() else m["b"])
    first, second = (r.instances[k] for k in split)
    assert first.overlaps_with == [second.id] and second.overlaps_with == [first.id]
    assert first.touches_overlap and second.touches_overlap
    np.testing.assert_array_equal(r.shared, m["a"] & m["b"])  # only the crossing is in two instances
    assert (r.label_map[m["a"] & m["b"]] == min(first.id, second.id)).all()
    cluster = next(i for i in r.instances if i.how == "several_overlaps")
    np.testing.assert_array_equal(cluster.full_mask(SHAPE), m["cluster"])  # kept whole
    alone = next(i for i in r.instances if i.how == "whole")
    assert alone.area == int(m["alone"].sum()) and not alone.touches_overlap and alone.bbox == (5, 5, 6, 40)
    assert r.label_map.dtype == np.int32 and set(np.unique(r.label_map)) == {0, 1, 2, 3, 4}


def test_fallbacks_are_counted_and_keep_the_component_whole():
    image, semantic, m = scene()
    r = separate_instances(image, semantic, None, crossings="whole")
    assert r.counts["no_pair_model"] == 1 and len(r.instances) == 3
    r = separate_instances(image, semantic, None)  # without a pair model: by the arms' directions
    # the cross and the cluster of three (two overlaps) both parted: 1 + 2 + 3 instances
    assert r.counts["geometry"] == 2 and r.counts["no_pair_model"] == 0 and len(r.instances) == 6
    r = separate_instances(image, semantic, None, split_several=False)
    assert r.counts["geometry"] == 1 and r.counts["several_overlaps"] == 1 and len(r.instances) == 4
    failing = IntensityPairModel(constant=1)  # sees one chromosome only
    r = separate_instances(image, semantic, failing, arms_after_pair_model=False)
    assert r.counts["pair_model_failed"] == 1 and r.counts["pair_model"] == 0
    failed = next(i for i in r.instances if i.how == "pair_model_failed")
    np.testing.assert_array_equal(failed.full_mask(SHAPE), m["a"] | m["b"])
    assert set(FALLBACKS) <= set(r.counts)
    # by default the arms part what the pair model could not, and the decline is counted
    r = separate_instances(image, semantic, failing)
    assert r.counts["pair_model_failed"] == 0 and r.counts["geometry"] == 1 and r.counts["pair_model_declined"] == 1
    parts = [i.full_mask(SHAPE) for i in r.instances if i.how == "geometry"]
    assert len(parts) == 2 and {int(p.sum()) for p in parts} == {int(m["a"].sum()), int(m["b"].sum())}


def test_an_unsure_pair_model_keeps_the_crossing_whole():
    image, semantic, m = scene()
    unsure = separate_instances(image, semantic, IntensityPairModel(confidence=0.6), arms_after_pair_model=False)
    assert unsure.counts["pair_model_unsure"] == 1 and unsure.counts["pair_model"] == 0
    kept = next(i for i in unsure.instances if i.how == "pair_model_unsure")
    np.testing.assert_array_equal(kept.full_mask(SHAPE), m["a"] | m["b"])
    sure = separate_instances(image, semantic, IntensityPairModel(confidence=0.6), min_pair_confidence=0.5)
    assert sure.counts["pair_model"] == 1 and sure.counts["pair_model_unsure"] == 0


class IsolatedPairModel(IntensityPairModel):
    """A pair model trained on pairs shown alone (``data.mfish_pair_isolate_px: 2``); keeps the crops it gets."""

    meta = {**IntensityPairModel.meta, "preprocessing": {"size": None, "pair_isolate_px": 2}}

    def __init__(self):
        super().__init__()
        self.images: list[np.ndarray] = []

    def predict(self, images):
        self.images.append(np.asarray(images).copy())
        return super().predict(images)


def test_a_pair_model_trained_on_pairs_shown_alone_gets_its_crossing_alone():
    image, semantic, m = scene()
    model = IsolatedPairModel()
    r = separate_instances(image, semantic, model, arms_after_pair_model=False)
    assert r.counts["pair_model"] == 1 and len(model.images) == 1
    crop = model.images[0].reshape(94, 93)
    pair = (m["a"] | m["b"])[:94, :93]  # the crossing's crop starts at the image's corner here
    assert (crop[pair] >= A - 1e-6).all()  # the crossing as it is
    assert m["alone"][:94, :93].any() and np.allclose(crop[m["alone"][:94, :93]], BG)  # the bar beside it gone
    assert np.allclose(crop[~pair], BG)
    parts = [i.full_mask(SHAPE) for i in r.instances if i.how == "pair_model"]
    assert {int(p.sum()) for p in parts} == {int(m["a"].sum()), int(m["b"].sum())}


def test_small_overlaps_count_as_chromosome():
    image, semantic, m = scene()
    semantic[m["a"] & m["b"]] = 1
    semantic[42:44, 32:34] = 2  # a 4-px "overlap": noise, not a crossing
    r = separate_instances(image, semantic, IntensityPairModel())
    assert r.counts["small_overlaps_ignored"] == 1 and r.counts["pair_model"] == 0 and r.counts["whole"] == 2


def test_crop_placed_as_mfish_pairs_places_it():
    from medseg.data.mfish_pairs import pairs_from_karyotype

    karyo = np.zeros((200, 220), np.uint8)
    karyo[100:108, 40:160] = 7  # 120 px long: the pair does not fit the crop's 93 columns → centred on the overlap
    karyo[60:150, 90:98] = 3
    karyo[100:108, 90:98] = 255
    pairs, _ = pairs_from_karyotype(np.full(karyo.shape, 20, np.uint8), karyo)
    comp = karyo > 0
    rows, cols = np.flatnonzero(comp.any(1)), np.flatnonzero(comp.any(0))
    assert crop_origin((rows[0], rows[-1] + 1, cols[0], cols[-1] + 1), (100, 108, 90, 98), karyo.shape) == pairs[0].box


def test_is_metaphase_model():
    assert is_metaphase_model({"task": {"class_names": ["background", "chromosome", "overlap"]}})
    assert not is_metaphase_model({"task": {"class_names": ["background", "a", "b", "overlap"]}})


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"the real M-FISH set is not here ({SHARED})")
def test_real_label_map_isolated_chromosomes_are_found_exactly():
    """On a real metaphase's own semantic labels (no model error), without a pair model: every true chromosome that
    touches no overlap and no other chromosome comes out as one instance of IoU 1; each crossing is one kept-whole
    cluster, which the evaluation counts as a merge."""
    from medseg.data.mfish import find_metaphases, read_metaphase, semantic_labels
    from medseg.data.mfish_pairs import pairs_from_karyotype
    from medseg.evaluation.instances import match_instances, true_instances

    for m in find_metaphases(SHARED):  # the first metaphase with a crossing of two: a crop around it
        dapi, karyo = read_metaphase(m)
        pairs, _ = pairs_from_karyotype(dapi, karyo)
        if pairs:
            break
    top, left = pairs[0].box
    sl = (slice(max(0, top - 60), top + 154), slice(max(0, left - 60), left + 153))
    dapi, karyo = dapi[sl], karyo[sl]
    r = separate_instances(dapi / 255.0, semantic_labels(karyo), None, crossings="whole")
    truth = true_instances(karyo)
    result = match_instances(r.masks(), truth)
    exact = sum(1 for _, _, iou in result["matches"] if iou == 1.0)
    single = [
        inst
        for inst in r.instances
        if inst.how == "whole" and sum(bool((inst.full_mask(karyo.shape) & t).any()) for t in truth) == 1
    ]
    assert len(single) >= 3 and exact == len(single)
    assert r.counts["no_pair_model"] + r.counts["several_overlaps"] >= 1  # the crossing, kept whole
    assert result["merge"] >= 1 and result["split"] == 0
    # by the arms' directions (the default without a pair model): every crossing of two is tried, none made worse
    g = separate_instances(dapi / 255.0, semantic_labels(karyo), None)
    assert g.counts["geometry"] + g.counts["arms_unclear"] == r.counts["no_pair_model"]
    assert match_instances(g.masks(), truth)["tp"] >= result["tp"]


def test_the_figure_marks_each_status_and_takes_the_headline_as_its_title(tmp_path, monkeypatch):
    """predict's figure: every object's number with its status's letter and colour (outline, number box), a legend
    naming the statuses present with their counts, the headline as the title."""
    from matplotlib.colors import to_rgb

    import medseg.inference.instances as instances
    from medseg.inference.instance_status import STATUS_COLOUR, instance_statuses
    from medseg.inference.instances import draw_instance_figure, instance_summary, write_instance_outputs

    image, semantic, _ = scene()
    r = separate_instances(image, semantic, IntensityPairModel())
    by_how = {i.how: i for i in r.instances}
    statuses = [
        {"status": "crossing_split", "estimated_count": 1}
        if i.how == "pair_model"
        else {"status": "clump", "estimated_count": 3}
        if i.how == "several_overlaps"
        else {"status": "single", "estimated_count": 1}
        for i in r.instances
    ]
    fig = draw_instance_figure(image, r, title="headline", statuses=statuses)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["single chromosome (1)", "s: crossing, split (2)", "c: probable clump (1, ≈ 3)"]  # no doubtful
    numbers = {t.get_text() for t in ax.texts}
    assert numbers == {
        str(by_how["whole"].id),
        str(by_how["several_overlaps"].id) + "c",
        *(f"{i.id}s" for i in r.instances if i.how == "pair_model"),
    }
    assert fig._suptitle.get_text() == "headline"
    fig.canvas.draw()
    picture = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    orange = np.array(to_rgb(STATUS_COLOUR["clump"])) * 255
    assert (np.abs(picture - orange).max(axis=-1) < 8).sum() > 100  # the clump's outline (and its legend patch)
    with pytest.raises(ValueError, match="2 statuses for 4 instances"):
        draw_instance_figure(image, r, statuses=statuses[:2])

    # the writer medseg predict and the server share hands the records' statuses and their headline to the figure
    seen = {}
    monkeypatch.setattr(instances, "instance_figure", lambda *a, **k: seen.update(k))
    summary = instance_summary(
        r,
        image="cell.tif",
        stem="cell",
        semantic_model=None,
        pair_model=None,
        extra=instance_statuses(r.instances, SHAPE, image),
    )
    (tmp_path / "out").mkdir()
    write_instance_outputs(tmp_path / "out", image, r, summary, stem="cell", source="cell.tif")
    assert seen["title"].startswith(f"cell.tif: {summary['statuses']['text']}\n4 objects, 1 crossings split")
    assert [s["status"] for s in seen["statuses"]] == [rec["status"] for rec in summary["instances"]]
    monkeypatch.undo()
    without = instance_summary(r, image="cell.tif", stem="cell", semantic_model=None, pair_model=None)
    assert "statuses" not in without  # no statuses: no headline
    (tmp_path / "plain").mkdir()
    write_instance_outputs(tmp_path / "plain", image, r, without, stem="cell", source="cell.tif")
    assert (tmp_path / "plain" / "cell_instances.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
