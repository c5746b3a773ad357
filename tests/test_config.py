import re

import pytest

from sublim_toy.config import Config
from sublim_toy.errors import UserError


def test_defaults_are_the_papers_setup():
    config = Config()
    assert (config.aux, config.hidden, config.init) == (3, (256, 256), "normal")
    assert (config.teacher_epochs, config.student_epochs) == (5, 5)
    assert (config.learning_rate, config.batch_size, config.noise_images) == (3e-4, 1024, 60_000)
    assert config.n_outputs == 13
    assert config.noise_steps == 58  # 60 000 // 1024, partial batch dropped


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"aux": 0}, "aux=0"),
        ({"aux": 1}, "aux=1 with imitation_loss='kl'"),
        ({"seeds": 0}, "seeds=0"),
        ({"seeds": "8"}, "seeds='8'"),
        ({"teacher_epochs": -1}, "teacher_epochs=-1"),
        ({"student_epochs": 1.5}, "student_epochs=1.5"),
        ({"init": "xavier"}, "init='xavier': choose one of normal, lecun, he, torch"),
        ({"imitation_loss": "l1"}, "imitation_loss='l1'"),
        ({"learning_rate": 0.0}, "learning_rate=0.0"),
        ({"hidden": ()}, "hidden=()"),
        ({"noise_images": 10}, "batch_size=1024 with noise_images=10: a student epoch needs"),
        ({"learning_rate": float("inf")}, "learning_rate=inf: must be a finite positive number"),
        ({"temperature": float("nan")}, "temperature=nan: must be a finite positive number"),
        ({"init_scale": float("inf")}, "init_scale=inf"),
        ({"init_angle": float("nan")}, "init_angle=nan"),
        ({"seed": 2**32}, "seed=4294967296: must be an integer in [0, 4294967295]"),
        ({"seed": -1}, "seed=-1"),
        ({"student_optimizer": "rmsprop"}, "student_optimizer='rmsprop': choose one of adam, sgd"),
        ({"student_learning_rate": 0.0}, "student_learning_rate=0.0"),
        ({"momentum": 0.9}, "momentum=0.9 with student_optimizer='adam': momentum is SGD's"),
        ({"momentum": 1.0, "student_optimizer": "sgd"}, "momentum=1.0: must be a number in [0, 1)"),
        ({"weight_decay": -1e-4}, "weight_decay=-0.0001"),
        ({"weight_decay_mode": "l2"}, "weight_decay_mode='l2'"),
        ({"student_batch_size": 0}, "student_batch_size=0"),
        (
            {"student_batch_size": 4096, "noise_images": 2048},
            "(student_batch_size <= noise_images)",
        ),
        ({"project_out": "teacher"}, "project_out='teacher'"),
        ({"project_out": "random", "freeze": "head"}, "project_out='random' with freeze='head'"),
        ({"log_every": -1}, "log_every=-1"),
        ({"noise_pool": -1}, "noise_pool=-1: must be an integer >= 0"),
        ({"noise_pool": 1000}, "noise_pool=1000 with batch_size=1024: a pool needs at least"),
        ({"perturb": "body"}, "perturb='body': choose one of none, head, hidden, all"),
        ({"perturb": "all", "perturb_std": -0.1}, "perturb_std=-0.1: must be a finite number"),
        ({"perturb_std": 0.1}, "perturb_std=0.1 with perturb='none': noise needs layers"),
    ],
)
def test_bad_values_are_refused_with_a_message_naming_them(changes, message):
    with pytest.raises(UserError, match=re.escape(message)):
        Config(**changes)


def test_the_noise_pool_counts_whole_batches_and_at_most_the_run():
    assert Config().pool_batches == Config().noise_steps == 58  # 0: one epoch's batches
    assert Config(noise_pool=1024).pool_batches == 1
    assert Config(noise_pool=240_000).pool_batches == 234  # partial batch dropped
    assert Config(noise_pool=10**9).pool_batches == 5 * 58  # fresh noise: one batch per step
    assert Config(noise_pool=10**9, student_epochs=2).pool_batches == 2 * 58
    assert Config(noise_pool=2048, student_epochs=0).pool_batches == 1


def test_one_aux_logit_is_allowed_with_squared_error():
    assert Config(aux=1, imitation_loss="mse").aux == 1


def test_replace_validates_again():
    with pytest.raises(UserError):
        Config().replace(batch_size=0)


def test_one_parser_turns_command_line_text_into_every_field():
    from sublim_toy.config import FIELDS, parse_value

    assert parse_value("hidden", "64x64") == (64, 64)
    assert parse_value("learning_rate", "1e-3") == 1e-3
    assert parse_value("init_angle", "30") == 30.0
    assert parse_value("seeds", "8") == 8
    assert parse_value("init", "he") == "he"
    assert parse_value("student_learning_rate", "0.1") == 0.1  # default None: "as learning_rate"
    assert parse_value("student_batch_size", "64") == 64
    assert parse_value("student_batch_size", "None") is None
    for field in FIELDS:  # every field's default survives a round trip through its text
        default = getattr(Config(), field)
        text = "x".join(map(str, default)) if isinstance(default, tuple) else str(default)
        assert parse_value(field, text) == default
    with pytest.raises(UserError, match="unknown config field 'width'"):
        parse_value("width", "3")


def test_config_errors_know_their_fields():
    from sublim_toy.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        Config(batch_size=4096, noise_images=2048)
    assert caught.value.fields == ("batch_size", "noise_images")
    assert caught.value.values == {"batch_size": 4096, "noise_images": 2048}
