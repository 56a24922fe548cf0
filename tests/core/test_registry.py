"""The plugin registries: kinds found without importing them, picked by params, unknown kinds refused."""

import subprocess
import sys

import pytest

from vidcil.config import Params
from vidcil.core.distill import DISTILLERS
from vidcil.core.memory.frames import FRAME_POLICIES
from vidcil.core.memory.selection import SELECTIONS
from vidcil.core.models.heads import HEADS
from vidcil.core.registry import PluginConfig, Registry


def test_every_family_lists_its_modules_as_kinds():
    assert {"lwf", "pod", "tsd"} <= set(DISTILLERS.kinds())
    assert {"confidence", "herding", "random"} <= set(SELECTIONS.kinds())
    assert {"adaptive", "keyframes", "uniform"} <= set(FRAME_POLICIES.kinds())
    assert "average" in HEADS.kinds()


def test_every_kind_builds_from_its_defaults():
    for registry, runtime in ((DISTILLERS, {}), (SELECTIONS, {}), (FRAME_POLICIES, {"encoded_size": len}),
                              (HEADS, {"in_features": 8, "num_classes": 3, "dropout": 0.0})):
        for kind in registry.kinds():
            assert callable(registry.build({"kind": kind}, **runtime)), (registry.family, kind)


def test_params_pick_plugins_by_kind_and_type_their_options(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("distil: {kind: lwf, temperature: 3.0, lam: 0.5}\nmemory: {selection: {kind: herding}, "
                 "frames: {kind: uniform, count: 4}}\n")
    p = Params.load(f)
    assert (p.distil.kind, p.distil.temperature, p.distil.lam) == ("lwf", 3.0, 0.5)
    assert p.memory.selection.kind == "herding" and p.memory.frames.count == 4
    again = Params.model_validate(p.model_dump(mode="json"), context={"plugins": True})  # round trip
    assert (again.distil, again.memory) == (p.distil, p.memory)


@pytest.mark.parametrize("text, message", [
    ("distil: {kind: fitnets}", "unknown distiller kind .fitnets.; known: .*lwf, pod, tsd"),
    ("memory: {frames: {kind: every_other}}", "unknown frame policy kind .every_other.; known: adaptive, fit, keyframes"),
    ("distil: {kind: tsd, alpah: 0.3}", "distiller 'tsd': alpah: Extra inputs are not permitted"),
    ("distil: {kind: lwf, temperature: 0}", "distiller 'lwf': temperature: Input should be greater than 0"),
    ("model: {num_segments: 1}", "input diff needs at least 2 frames per clip .num_segments is 1.; raise "
                                 "model.num_segments or set model.input: rgb"),
    ("model: {input: flow}", "input: Input should be 'rgb' or 'diff'"),
])
def test_a_bad_choice_fails_at_load_naming_the_fix(tmp_path, text, message):
    f = tmp_path / "params.yaml"
    f.write_text(text + "\n")
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Params.load(f)


def test_a_missing_params_file_is_an_error_not_the_defaults(tmp_path):
    with pytest.raises(FileNotFoundError, match="params file .*parms.yaml does not exist.*pass --params PATH"):
        Params.load(tmp_path / "parms.yaml")


def test_wrong_settings_are_listed_one_line_each(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("train: {epochs: -1, lr: abc}\ntrian: {epochs: 2}\n")
    with pytest.raises(ValueError) as e:
        Params.load(f)
    assert str(e.value).splitlines() == [
        f"{f}: 3 setting(s) to fix:",
        "  train.epochs: Input should be greater than or equal to 1 (given: -1)",
        "  train.lr: Input should be a valid number, unable to parse string as a number (given: 'abc')",
        "  trian: Extra inputs are not permitted (given: {'epochs': 2})",
    ]


def test_null_distil_means_cross_entropy_only(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("distil: null\n")
    assert Params.load(f).distil is None


def test_reading_params_without_plugins_imports_neither_torch_nor_mlflow():
    code = ("import sys; from vidcil.config import Params; p = Params.load('params.yaml', plugins=False); "
            "import vidcil.pipeline.spec, vidcil.pipeline.pod; "
            "print(p.distil.kind, 'torch' in sys.modules, 'mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["tsd", "False", "False"]


def test_a_kind_is_registered_once():
    family = Registry("thing", "vidcil.core.models.heads")

    class Config(PluginConfig):
        kind: str = "x"

    family.register(Config)(lambda: 1)
    with pytest.raises(ValueError, match="registered twice"):
        family.register(Config)(lambda: 2)


def test_every_further_method_is_a_params_yaml_a_user_can_write(tmp_path):
    """A benchmark row is the pipeline with its params: each method's params load from a params.yaml."""
    import yaml

    from vidcil.experiments.methods import EXTENSIONS

    for method in EXTENSIONS:
        params = method.params(Params())
        f = tmp_path / f"{method.name}.yaml"
        f.write_text(yaml.safe_dump(params.model_dump(mode="json")))
        assert Params.load(f).model_dump() == params.model_dump(), method.name
