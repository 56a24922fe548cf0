import pytest
import torch
import torch.nn.functional as F

from vidcil.core.alignment import trajectory_shifts
from vidcil.core.distill import DISTILLERS
from vidcil.core.distill.tsd import TimeSpaceDistillation
from vidcil.core.features import l2_distance, pod_spatial_feature, spatial_feature, temporal_feature


def make_distiller(kind: str, **options):
    return DISTILLERS.build({"kind": kind, **options})


def test_feature_shapes_follow_the_decomposition():
    x = torch.randn(2, 5, 3, 4, 6)  # [N, T, C, H, W]
    assert temporal_feature(x).shape == (2, 5, 3, 4 + 6)  # keeps T, pooled over W and over H
    assert spatial_feature(x).shape == (2, 3, 4, 6)  # pooled over T
    assert torch.allclose(temporal_feature(x)[..., :4], x.mean(-1))
    assert torch.allclose(temporal_feature(x, "max")[..., 4:], x.amax(-2))
    assert torch.allclose(spatial_feature(x, "max"), x.amax(1))


def test_loss_is_zero_when_student_equals_teacher():
    f = {"layer4": torch.randn(3, 4, 8, 2, 2)}
    terms = TimeSpaceDistillation(alpha=0.3)(f, {k: v.clone() for k, v in f.items()})
    assert set(terms) == {"temporal", "spatial", "distil"}
    for v in terms.values():
        assert float(v) == pytest.approx(0.0, abs=1e-6)


def test_alpha_weighs_temporal_against_spatial():
    s, t = {"l": torch.randn(2, 4, 8, 3, 3)}, {"l": torch.randn(2, 4, 8, 3, 3)}
    terms = TimeSpaceDistillation(alpha=0.25, normalize=False)(s, t)
    expected = 0.25 * terms["temporal"] + 0.75 * terms["spatial"]
    assert float(terms["distil"]) == pytest.approx(float(expected))
    assert float(terms["temporal"]) > 0 and float(terms["spatial"]) > 0


def test_temporal_term_sees_frame_order_and_spatial_term_does_not():
    s = torch.randn(1, 4, 8, 3, 3)
    reversed_in_time = s.flip(1)
    terms = TimeSpaceDistillation(alpha=0.5)({"l": s}, {"l": reversed_in_time})
    assert float(terms["spatial"]) == pytest.approx(0.0, abs=1e-6)
    assert float(terms["temporal"]) > 0.1


def test_gradient_flows_to_the_student_only():
    student = torch.randn(2, 4, 8, 3, 3, requires_grad=True)
    teacher = torch.randn(2, 4, 8, 3, 3, requires_grad=True)
    TimeSpaceDistillation()({"l": student}, {"l": teacher})["distil"].backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_mismatched_channels_name_the_fix():
    with pytest.raises(ValueError, match="same channels"):
        l2_distance(torch.randn(2, 8), torch.randn(2, 16))


def test_every_registered_distiller_is_zero_on_identical_outputs_and_positive_otherwise():
    feats = {"layer4": torch.randn(3, 4, 8, 2, 2), "encoder": torch.randn(3, 16)}
    logits = torch.randn(3, 5)
    other = {"layer4": torch.randn(3, 4, 8, 2, 2), "encoder": torch.randn(3, 16)}
    for method in DISTILLERS.kinds():
        d = make_distiller(method)
        same = d(feats, {k: v.clone() for k, v in feats.items()}, logits, logits.clone())
        assert float(same["distil"]) == pytest.approx(0.0, abs=1e-5), method
        differs = d(other, feats, torch.randn(3, 5), logits)
        assert float(differs["distil"]) > 0.01, method
        assert set(d.parts) <= set(differs), method  # what a loss weighting weighs is among the terms


def test_lwf_compares_only_the_teachers_classes():
    teacher_logits = torch.randn(4, 3)
    student_logits = torch.cat([teacher_logits, 10 * torch.randn(4, 2)], dim=1)  # new classes: anything
    terms = make_distiller("lwf", temperature=2.0)({}, {}, student_logits, teacher_logits)
    assert float(terms["logits"]) == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        make_distiller("lwf", temperature=0.0)


def test_podnet_style_folds_time_into_channels_so_it_sees_frame_order_unlike_tsd_spatial():
    s = torch.rand(2, 4, 8, 3, 3)
    assert pod_spatial_feature(s).shape == (2, 4 * 8 * (3 + 3))
    terms = make_distiller("pod")({"l": s}, {"l": s.flip(1)})
    assert float(terms["pod_spatial"]) > 0.01


def test_aligned_tsd_uses_the_teachers_trajectory_for_both():
    from tests.core.test_alignment import blob_clip

    teacher = blob_clip([4, 6, 8, 10, 12], [8] * 5, background=0.05, seed=1)
    student = blob_clip([8] * 5, [8] * 5, background=0.05, seed=1)  # a static object at the mean position
    aligned = make_distiller("tsd", alpha=0.0, align=True)({"l": student}, {"l": teacher})["spatial"]
    shifts = trajectory_shifts(teacher)  # not the student's own (~0 for a static object)
    expected = l2_distance(spatial_feature(student, shifts=shifts), spatial_feature(teacher, shifts=shifts))
    assert float(aligned) == pytest.approx(float(expected), rel=1e-5)


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="unknown distiller kind 'fitnets'; known: .*tsd"):
        make_distiller("fitnets")


def test_class_balanced_weights_make_every_present_class_weigh_the_same():
    from vidcil.core.losses import balanced_class_weights

    w = balanced_class_weights([0, 0, 0, 0, 0, 0, 1, 1, 2, -1], 4)  # 6 new clips, 2 + 1 memory clips, 1 unlabelled
    assert torch.allclose(w, torch.tensor([9 / 18, 9 / 6, 9 / 3, 1.0]))  # class 3 has no clip: 1
    counts = torch.tensor([6.0, 2.0, 1.0])
    assert torch.allclose(w[:3] * counts, torch.full((3,), 3.0))  # each class's clips sum to the same weight
    assert torch.equal(balanced_class_weights([0, 1, 2, 0, 1, 2], 3), torch.ones(3))  # balanced: plain CE


def test_class_balanced_ce_is_the_class_weighted_mean_with_or_without_unlabelled_clips():
    from vidcil.core.losses import masked_cross_entropy

    logits, labels = torch.randn(5, 3), torch.tensor([0, 0, 0, 1, 2])
    w = torch.tensor([1 / 3, 1.0, 1.0])
    per = F.cross_entropy(logits, labels, reduction="none")
    expected = (per * w[labels]).sum() / w[labels].sum()
    assert torch.allclose(masked_cross_entropy(logits, labels, w), expected)
    # the majority class's mean loss and each minority clip weigh alike
    assert torch.allclose(expected, (per[:3].mean() + per[3] + per[4]) / 3)
    with_unlabelled = masked_cross_entropy(torch.cat([logits, torch.randn(2, 3)]), torch.cat([labels, torch.tensor([-1, -1])]), w)
    assert torch.allclose(with_unlabelled, expected)
