from pathlib import Path

import pytest
import yaml
from suite_files import write_suite

from sparsebench.config import ConfigError, expand_params, load_suite

ROOT = Path(__file__).resolve().parents[1]


GRID = {
    "family": "sparse_training",
    "methods": [
        {
            "name": "static-random",
            "params": {"density": [0.1, 0.05], "allocation": ["uniform", "erk"]},
        }
    ],
    "datasets": [{"name": "digits"}],
    "models": [{"name": "mlp"}],
    "budget": {"steps": 10},
    "seeds": [0, 1],
}


def test_grid_expands_to_the_product_of_its_axes(tmp_path, root):
    suite = load_suite(write_suite(tmp_path, root, GRID), tmp_path)
    assert len(suite.runs) == 2 * 2 * 2
    assert len({r.run_id() for r in suite.runs}) == 8


def test_expand_params_treats_lists_as_axes():
    assert expand_params({"a": [1, 2], "b": 3}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda g: g.update(famly="x"), r"grid.yaml: \(top level\): unknown key\(s\) 'famly'"),
        (lambda g: g.update(family="pruningg"), r"family: 'pruningg' is not valid; valid choices"),
        (
            lambda g: g["methods"][0].update(name="rigll"),
            r"methods\[0\].name: unknown sparse_training 'rigll'; valid choices: .*static-random",
        ),
        (
            lambda g: g["methods"][0]["params"].update(allocation="er"),
            r"methods\[0\].params: .*'er' is not one of 'uniform', 'erk'",
        ),
        (
            lambda g: g["budget"].update(optimizer="lion"),
            r"budget.optimizer: 'lion' is not valid; valid choices: adam, sgd",
        ),
        (lambda g: g["budget"].update(steps=0), r"budget.steps: 0 is less than the minimum"),
        (
            lambda g: g["datasets"][0].update(name="cifar"),
            r"datasets\[0\].name: unknown dataset 'cifar'; valid choices: digits, mnist1d",
        ),
    ],
)
def test_invalid_grid_is_refused_with_file_field_and_choices(tmp_path, root, change, message):
    grid = yaml.safe_load(yaml.safe_dump(GRID))
    change(grid)
    with pytest.raises(ConfigError, match=message):
        load_suite(write_suite(tmp_path, root, grid), tmp_path)


@pytest.mark.parametrize("method", ["scaffold", "scallion", "scafcom"])
def test_scaffold_family_refuses_a_budget_with_adam_or_momentum(tmp_path, root, method):
    grid = {
        "family": "federated",
        "methods": [{"name": "fedavg"}, {"name": method}],
        "datasets": [{"name": "digits"}],
        "models": [{"name": "mlp"}],
        "budget": {"rounds": 2, "optimizer": "sgd", "momentum": 0.9},
        "seeds": [0],
    }
    message = rf"methods\[1\]: {method} needs budget.momentum = 0.0 .*got 0.9"
    with pytest.raises(ConfigError, match=message):
        load_suite(write_suite(tmp_path, root, grid), tmp_path)
    grid["budget"]["momentum"] = 0.0
    assert len(load_suite(write_suite(tmp_path / "ok", root, grid), tmp_path / "ok").runs) == 2


def test_unknown_hardware_profile_names_the_valid_ones(tmp_path, root):
    path = write_suite(tmp_path, root, GRID, {"hardware": "tpu"})
    with pytest.raises(ConfigError, match="suite.yaml: hardware: .*'tpu'.*valid choices: cpu"):
        load_suite(path, tmp_path)


def test_a_model_paired_with_a_dataset_it_cannot_read_is_refused_at_load(tmp_path, root):
    grid = {**GRID, "models": [{"name": "gpt"}], "datasets": [{"name": "mnist1d"}]}
    message = (
        r"grid.yaml: models\[0\].name: model 'gpt' cannot read dataset 'mnist1d' "
        r"\(datasets\[0\]\), which gives signal .*; gpt accepts lm; valid datasets: shakespeare$"
    )
    with pytest.raises(ConfigError, match=message):
        load_suite(write_suite(tmp_path, root, grid), tmp_path)


def test_gpt_accepts_the_dataset_its_predict_param_fits(tmp_path, root):
    grid = {**GRID, "models": [{"name": "gpt", "params": {"predict": ["sequence", "last"]}}]}
    grid["datasets"] = [{"name": "shakespeare-leaf"}]
    with pytest.raises(ConfigError) as caught:
        load_suite(write_suite(tmp_path, root, grid), tmp_path)
    assert caught.value.problems == [
        f"{tmp_path}/configs/experiments/grid.yaml: models[0].name: model "
        "'gpt[predict=sequence]' cannot read dataset 'shakespeare-leaf' (datasets[0]), which "
        "gives next-token (token windows with one target each, the token after the window); "
        "gpt[predict=sequence] accepts lm; valid datasets: shakespeare"
    ]


def test_every_problem_of_every_file_is_reported_at_once(tmp_path, root):
    grid = yaml.safe_load(yaml.safe_dump(GRID))
    grid["methods"][0]["params"].update(density=[0.0, 1.5], allocation="er")
    grid["methods"].append({"name": "rigll"})
    grid["budget"].update(steps=-1, lr=float("nan"))
    grid["famly"] = 1
    path = write_suite(tmp_path, root, grid, {"kernels": ["nope"]})
    suite = yaml.safe_load(path.read_text())
    suite["experiments"].append("configs/experiments/missing.yaml")
    path.write_text(yaml.safe_dump(suite))
    with pytest.raises(ConfigError) as caught:
        load_suite(path, tmp_path)
    fields = [problem.split(": ")[1] for problem in caught.value.problems]
    assert fields == [
        "(top level)",
        "budget.steps",
        "budget.lr",
        "methods[0].params",
        "methods[0].params",
        "methods[0].params",
        "methods[1].name",
        "file not found",
        "kernels[0]",
    ]
    assert str(caught.value).startswith("9 problems:\n  ")
    assert len(str(caught.value).splitlines()) == 10


def test_a_float_where_an_integer_is_needed_is_refused(tmp_path, root):
    grid = {**GRID, "budget": {"steps": 10.0}}
    with pytest.raises(ConfigError, match=r"budget.steps: 10.0 is not of type 'integer'"):
        load_suite(write_suite(tmp_path, root, grid), tmp_path)


def test_an_empty_param_axis_is_refused(tmp_path, root):
    grid = yaml.safe_load(yaml.safe_dump(GRID))
    grid["methods"][0]["params"]["density"] = []
    with pytest.raises(ConfigError, match=r"methods\[0\].params.density: an empty list"):
        load_suite(write_suite(tmp_path, root, grid), tmp_path)


@pytest.mark.parametrize("suite", sorted(p.name for p in (ROOT / "configs").glob("suite*.yaml")))
def test_shipped_suites_are_valid(root, suite):
    assert load_suite(root / "configs" / suite, root).runs
