import pytest
import torch

from vidcil.distill.losses import TimeSpaceDistillation, l2_distance, spatial_feature, temporal_feature


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
