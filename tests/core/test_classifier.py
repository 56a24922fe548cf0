"""The classifier's rivals to distillation alone: a cosine-normalised classifier, weight aligning (WA)
and class-balanced fine-tuning of the classifier, as the learner applies them."""

import pytest
import torch

from vidcil.config import TrainParams
from vidcil.core.learner import correct_classifier, encodings
from vidcil.core.models.classifier import IncrementalCosine, IncrementalLinear, align_weights
from vidcil.core.models.tsm import VideoRecognizer
from tests.core.test_channel_matching import _ClipSet


def _options(bias_correction="none", steps=0, lr=0.05):
    return TrainParams(bias_correction=bias_correction, balanced_finetune={"steps": steps, "lr": lr})


@pytest.mark.parametrize("kind", [IncrementalLinear, IncrementalCosine])
def test_widening_keeps_the_old_classes_logits(kind):
    torch.manual_seed(0)
    classifier, x = kind(16, 3), torch.randn(5, 16)
    before = classifier(x).detach()
    classifier.widen(5)
    after = classifier(x).detach()
    assert after.shape == (5, 5) and torch.allclose(after[:, :3], before)
    with pytest.raises(ValueError, match="cannot shrink"):
        classifier.widen(2)


def test_a_cosine_classifier_ignores_the_scale_of_rows_and_features():
    torch.manual_seed(0)
    classifier, x = IncrementalCosine(8, 4), torch.randn(3, 8)
    before = classifier(x).detach()
    with torch.no_grad():
        classifier.weight[2] *= 50.0  # a class whose row grew (many clips)
    assert torch.allclose(classifier(x), before, atol=1e-5)
    assert torch.allclose(classifier(7.0 * x), before, atol=1e-5)
    assert float(classifier(x).abs().max()) <= float(classifier.sigma) + 1e-5


def test_weight_aligning_gives_the_new_rows_the_old_rows_mean_norm():
    classifier = IncrementalLinear(4, 2)
    with torch.no_grad():
        classifier.fc.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        classifier.fc.bias.zero_()
    classifier.widen(4)
    with torch.no_grad():
        classifier.fc.weight[2:] = torch.tensor([[0, 0, 3.0, 0], [0, 0, 0, 5.0]])
        classifier.fc.bias[2:] = torch.tensor([1.0, 2.0])
    factor = align_weights(classifier, 2)
    assert factor == pytest.approx(1 / 4)
    norms = classifier.row_norms()
    assert float(norms[2:].mean()) == pytest.approx(float(norms[:2].mean()))
    assert torch.allclose(classifier.fc.weight[:2], torch.eye(4)[:2])  # the old rows untouched
    assert torch.allclose(classifier.fc.bias[2:], torch.tensor([0.25, 0.5]))  # logits scaled, not shifted
    assert align_weights(classifier, 4) == 1.0  # no new class: nothing to align


def test_the_learner_corrects_only_the_classifier():
    """``train.balanced_finetune`` then ``train.bias_correction: wa``, after a batch with new classes:
    the backbone stays as trained; every class weighs the same in the fine-tuning loss."""
    torch.manual_seed(0)
    model = VideoRecognizer("resnet18", 3, num_segments=2)
    model.widen(4)
    labels = torch.tensor([0] + [1] + [2] * 7 + [3] * 7)  # two old classes kept by one exemplar each
    data = _ClipSet(torch.rand(len(labels), 2, 3, 32, 32), labels)
    backbone = {k: v.clone() for k, v in model.stages.state_dict().items()}
    x = encodings(model, data, device=torch.device("cpu"))
    weight = 1.0 / torch.bincount(labels).float()
    balanced = lambda: float(torch.nn.functional.cross_entropy(model.head.classifier(x), labels, weight=weight))
    before = balanced()

    done = correct_classifier(model, data, old_classes=2, train_options=_options("wa", steps=30), seed=0,
                              device=torch.device("cpu"))
    assert set(done) == {"balanced_steps", "wa_factor"} and done["balanced_steps"] == 30
    assert all(torch.equal(v, model.stages.state_dict()[k]) for k, v in backbone.items())
    norms = model.head.classifier.row_norms()
    assert float(norms[2:].mean()) == pytest.approx(float(norms[:2].mean()), rel=1e-5)
    model.head.classifier.scale_rows(slice(2, None), 1 / done["wa_factor"])  # undo WA: the fine-tuning alone
    assert balanced() < 0.8 * before


def test_no_correction_leaves_the_model_as_trained():
    torch.manual_seed(0)
    model = VideoRecognizer("resnet18", 4, num_segments=2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    data = _ClipSet(torch.rand(4, 2, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
    assert correct_classifier(model, data, old_classes=2, train_options=_options(), seed=0) == {}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_a_cosine_model_is_saved_and_rebuilt_with_its_classifier(tmp_path):
    from vidcil.io.mlflow_registry import load_checkpoint, model_config, save_checkpoint

    model = VideoRecognizer("resnet18", 3, num_segments=2, classifier="cosine").eval()
    save_checkpoint(model, model_config(model, list("abc"), 0.3, 8), tmp_path)
    rebuilt, config = load_checkpoint(tmp_path)
    assert config["classifier"] == "cosine" and isinstance(rebuilt.head.classifier, IncrementalCosine)
    x = torch.rand(1, 2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    with pytest.raises(ValueError, match="unknown model classifier 'svm'"):
        VideoRecognizer("resnet18", 3, num_segments=2, classifier="svm")
