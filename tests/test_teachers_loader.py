"""load_teacher: shipped file first, clear error (or training) when missing."""
from __future__ import annotations

import json

import pytest
import torch

from dreamlib import models
from dreamlib.teachers import RECIPES, load_teacher, teacher_card, teacher_path


def test_recipes_match_the_shipped_cards():
    # the fallback must rebuild what we ship, so the recipe has to agree with the card
    for name, recipe in RECIPES.items():
        card_path = teacher_path(name).with_suffix(".json")
        if not card_path.is_file():
            continue
        hp = json.loads(card_path.read_text())["hyperparameters"]
        for key, value in recipe.items():
            want = list(value) if isinstance(value, tuple) else value
            assert hp.get(key, "hflip" if key == "augment" else None) == want, (name, key)


def test_load_shipped_teacher_matches_file():
    path = teacher_path("hinet")
    if not path.is_file():
        pytest.skip("hinet teacher not shipped")
    net = load_teacher("hinet")
    ref = models.from_checkpoint(path)
    assert not net.training
    for (k, a), (_, b) in zip(net.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k
    assert net.dreamlib_card["model"] == "hinet"


def test_missing_teacher_error_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-teacher --model durn"):
        load_teacher("durn", directory=tmp_path, train_if_missing=False)
    with pytest.raises(FileNotFoundError, match="train-teacher"):
        teacher_card("durn", directory=tmp_path)


def test_wrong_name():
    with pytest.raises(ValueError, match="choose one of"):
        load_teacher("unet")


@pytest.mark.parametrize("name", ["hinet", "mprnet", "durn", "agan"])
def test_the_card_command_parses_back_to_the_same_recipe(name):
    """The CLI flags, the defaults and the card's command all come from TrainRecipe: the command a
    card records, parsed by the CLI, gives back exactly the recipe the card's config holds."""
    import dataclasses
    import shlex

    from dreamlib.cli import build_parser
    from dreamlib.train import TrainRecipe, equivalent_command

    card_path = teacher_path(name).with_suffix(".json")
    if not card_path.is_file():
        pytest.skip(f"{name} teacher not shipped")
    hp = json.loads(card_path.read_text())["hyperparameters"]
    cmd = equivalent_command(hp, "data_samples/teachers")
    args = build_parser().parse_args(shlex.split(cmd)[3:])
    recipe = TrainRecipe.from_args(args)
    assert list(recipe.kinds) == hp["kinds"] and recipe.steps == hp["steps"] and recipe.lr == hp["lr"]
    assert recipe.init == hp.get("init", "default") and recipe.procedural == hp.get("procedural", 0.0)
    assert recipe.identity_init == hp["identity_init"] and recipe.seed == hp["seed"]
    # every recipe field appears in the command, so a new hyper-parameter cannot be left out of cards
    words = cmd.split()
    for f in dataclasses.fields(TrainRecipe):
        if getattr(recipe, f.name) is not None:
            flag = TrainRecipe.flag(f.name)
            assert flag in words or flag.replace("--", "--no-", 1) in words, f.name
    # the shipped recipes are TrainRecipe fields too
    assert set(RECIPES[name]) <= {f.name for f in dataclasses.fields(TrainRecipe)}
