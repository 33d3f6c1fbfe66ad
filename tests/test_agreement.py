"""Agreement metrics on hand-built inputs with known answers (no models)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import supervision as sv

from model_loaders.tasks.agreement import (
    align_scale_shift,
    box_iou_matrix,
    depth_agreement,
    detection_f1,
    mask_iou,
    masks_iou,
    match_boxes,
    pairwise,
)


def dets(boxes: list[list[float]], names: list[str] | None = None) -> sv.Detections:
    d = sv.Detections(xyxy=np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    if names is not None:
        d.data["class_name"] = np.asarray(names)
    return d


BOXES = [[0, 0, 10, 10], [20, 20, 40, 40], [50, 0, 60, 30]]


def test_box_iou_matrix_known_values():
    iou = box_iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 10, 20, 20]]))
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


def test_identical_degenerate_boxes_still_agree():
    flat = [[5, 5, 5, 20], [0, 0, 0, 0]]  # zero width: IoU would be 0/0
    assert detection_f1(dets(flat), dets(flat)) == 1.0
    assert detection_f1(dets(flat), dets([[6, 5, 6, 20]])) == 0.0


def test_identical_detections_have_f1_one():
    assert detection_f1(dets(BOXES), dets(BOXES)) == 1.0
    assert detection_f1(dets(BOXES, ["cat", "dog", "book"]), dets(BOXES, ["cat", "dog", "book"])) == 1.0


def test_two_empty_results_are_not_perfect_agreement():
    import math

    assert math.isnan(detection_f1(dets([]), dets([])))
    assert detection_f1(dets([]), dets(BOXES)) == 0.0
    assert detection_f1(dets(BOXES), dets([])) == 0.0


def test_disjoint_detections_have_f1_zero():
    other = [[100, 100, 110, 110], [200, 200, 220, 220]]
    assert detection_f1(dets(BOXES), dets(other)) == 0.0


def test_f1_counts_unmatched_boxes_on_both_sides():
    # 2 of 3 boxes match; b has one extra box: F1 = 2*2 / (3 + 3)
    b = [BOXES[0], BOXES[1], [300, 300, 310, 310]]
    assert detection_f1(dets(BOXES), dets(b)) == pytest.approx(4 / 6)


def test_iou_threshold_is_inclusive_at_half_and_strict_below():
    a = dets([[0, 0, 10, 10]])
    exactly_half = dets([[0, 0, 10, 20]])  # IoU 100/200 = 0.5
    below = dets([[0, 0, 10, 21]])  # IoU 100/210 < 0.5
    assert detection_f1(a, exactly_half) == 1.0
    assert detection_f1(a, below) == 0.0


def test_matching_is_one_to_one_and_optimal():
    # Greedy in a's order pairs a0 with its best box b0 (IoU 0.9) and leaves a1 unmatched
    # (a1-b1 IoU 0.47); Hungarian pairs a0-b1 (0.59) and a1-b0 (0.89): two matches.
    a = dets([[0, 0, 10, 10], [0, 0, 10, 8]])
    b = dets([[0, 0, 10, 9], [0, 0, 10, 17]])
    pairs = match_boxes(a, b)
    assert len(pairs) == 2
    assert {p[0] for p in pairs} == {0, 1} and {p[1] for p in pairs} == {0, 1}
    # two copies of one box cannot both match a single box
    assert len(match_boxes(dets([[0, 0, 10, 10]] * 2), dets([[0, 0, 10, 10]]))) == 1


def test_class_aware_when_both_have_names_agnostic_otherwise():
    a = dets(BOXES, ["cat", "dog", "book"])
    renamed = dets(BOXES, ["Cat", "horse", "BOOK"])  # case-insensitive: 2 of 3 agree
    assert detection_f1(a, renamed) == pytest.approx(4 / 6)
    assert detection_f1(a, dets(BOXES)) == 1.0, "no names on one side: boxes alone decide"


def test_depth_maps_differing_by_scale_and_shift_correlate_at_one():
    rng = np.random.default_rng(0)
    ref = rng.uniform(1.0, 5.0, size=(32, 48)).astype(np.float32)
    pred = (ref - 0.7) / 3.0  # scale 1/3, shift -0.7/3
    agree = depth_agreement(pred, ref)
    assert agree.pearson == pytest.approx(1.0, abs=1e-6)
    assert agree.abs_rel == pytest.approx(0.0, abs=1e-5)
    assert agree.scale == pytest.approx(3.0, rel=1e-4)
    assert agree.shift == pytest.approx(0.7, abs=1e-4)


def test_depth_noise_lowers_correlation_and_raises_abs_rel():
    rng = np.random.default_rng(1)
    ref = rng.uniform(1.0, 5.0, size=(32, 32))
    noisy = ref + rng.normal(0, 1.0, size=ref.shape)
    agree = depth_agreement(noisy, ref)
    assert 0.5 < agree.pearson < 0.95
    assert agree.abs_rel > 0.05


def test_unrelated_depth_maps_barely_correlate():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(size=(64, 64)), rng.uniform(size=(64, 64))
    assert abs(depth_agreement(a, b).pearson) < 0.1


def test_metric_depth_is_inverted_before_comparing_with_disparity():
    rng = np.random.default_rng(3)
    metres = rng.uniform(1.0, 10.0, size=(16, 16))
    disparity = 2.0 / metres + 0.1  # nearer is larger
    agree = depth_agreement(metres, disparity, pred_kind="metric", ref_kind="relative_inverse")
    assert agree.pearson == pytest.approx(1.0, abs=1e-6)
    assert agree.scale > 0


def test_depth_of_another_size_is_resized_and_flat_maps_give_nan():
    ref = np.tile(np.linspace(1, 2, 40), (30, 1))
    small = np.tile(np.linspace(1, 2, 20), (15, 1))
    assert depth_agreement(small, ref).pearson > 0.99
    assert math.isnan(depth_agreement(np.ones((30, 40)), ref).pearson)


def test_align_scale_shift_exact():
    x = np.arange(10.0)
    assert align_scale_shift(x, 2 * x + 5) == pytest.approx((2.0, 5.0))


def test_mask_iou_known_values():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :5] = True
    b[:, 2:7] = True  # overlap 3 cols, union 7 cols
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, b) == pytest.approx(3 / 7)
    assert mask_iou(a, ~a) == 0.0
    assert mask_iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 1.0
    with pytest.raises(ValueError):
        mask_iou(a, np.zeros((5, 5), bool))


def test_masks_iou_pairs_masks_by_prompt():
    a = np.zeros((2, 8, 8), bool)
    a[0, :4] = True
    a[1, 4:] = True
    b = a.copy()
    b[1] = False  # second prompt: disagreement (IoU 0)
    assert masks_iou(a, a) == 1.0
    assert masks_iou(a, b) == pytest.approx(0.5)
    det = sv.Detections(xyxy=np.zeros((2, 4), np.float32), mask=a)
    assert masks_iou(det, det) == 1.0
    assert masks_iou(a, a[:1]) == pytest.approx(0.5), "a prompt answered by one model only counts 0"


def test_pairwise_matrix_is_symmetric_with_ones_on_the_diagonal():
    items = [dets(BOXES), dets(BOXES[:2]), dets([[500, 500, 510, 510]])]
    m = pairwise(items, detection_f1)
    np.testing.assert_allclose(np.diag(m), 1.0)
    np.testing.assert_allclose(m, m.T)
    assert m[0, 1] == pytest.approx(4 / 5) and m[0, 2] == 0.0
