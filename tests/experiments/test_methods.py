"""A benchmark row is the pipeline with that row's params: the default is params.yaml as it is, a
published rival is the method it names without the default's extras."""

from vidcil.config import Params
from vidcil.experiments.methods import EXTENSIONS, METHODS


def _method(name):
    return next(m for m in METHODS + EXTENSIONS if m.name == name)


def test_the_default_row_is_params_yaml_and_rivals_leave_its_extras_out():
    base = Params.model_validate({"train": {"balanced_finetune": {"steps": 30, "lr": 0.01}, "logit_replay": 0.3,
                                            "bias_correction": "wa", "lr": 0.004}}).typed()
    default = _method("tsd").params(base)
    assert default.model_dump() == base.model_dump()
    for name in ("finetune", "replay", "lwf", "podnet", "replay_cosine"):
        t = _method(name).params(base).train
        assert (t.balanced_finetune.steps, t.logit_replay, t.bias_correction) == (0, 0.0, "none"), name
        assert t.lr == 0.004  # what is not an extra stays the pipeline's
    der, balanced = _method("der").params(base).train, _method("tsd_balanced").params(base).train
    assert (der.logit_replay, der.balanced_finetune.steps) == (0.2, 0)
    assert (balanced.balanced_finetune.steps, balanced.logit_replay) == (50, 0.0)
    assert _method("der").params(base).distil is None and _method("tsd_der").params(base).distil.kind == "tsd"


def test_a_row_sets_one_key_of_a_section_and_a_plugin_of_another_kind_replaces_the_base():
    from vidcil.experiments.methods import R50
    base = Params.model_validate({"train": {"convergence": {"patience": 5, "validation_fraction": 0.2}},
                                  "model": {"head": {"kind": "nextvlad", "expansion": 2, "groups": 8,
                                                     "clusters": 16, "hidden": 256}}}).typed()
    c = _method("tsd_val_new").params(base).train.convergence
    assert (c.score_memory, c.patience, c.validation_fraction) == (False, 5, 0.2)  # the rest stays the base's
    head = _method("r50_tsd").params(base).model.head
    assert head.model_dump() == Params.model_validate({"model": R50}).typed().model_dump()["model"]["head"]


def test_a_row_of_the_same_frames_policy_keeps_the_bases_other_settings():
    from vidcil.experiments.methods import ABLATIONS
    base = Params.model_validate({"memory": {"frames": {"kind": "fit", "threshold": 0.03, "frames": 6}}}).typed()
    rows = {m.name: m.params(base).memory.frames for m in ABLATIONS + METHODS + EXTENSIONS}
    assert (rows["mem_fit_f2"].frames, rows["mem_fit_f2"].threshold) == (2, 0.03)  # only the frames per video change
    assert (rows["tsd_plain"].threshold, rows["tsd_plain"].frames) == (0.06, 6)
    assert rows["mem_uniform8"].kind == "uniform" and not hasattr(rows["mem_uniform8"], "threshold")
    assert rows["replay"] == rows["tsd"]  # every memory method holds the product's memory unless its name says
    plain = _method("tsd_plain").params(Params().typed()).train
    assert plain.balanced_finetune.steps == 0
