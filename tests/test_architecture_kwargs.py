"""Architecture kwargs are validated by their pydantic model; a refusal names its key."""

import pytest
from pydantic import BaseModel

from medbench.models import (ArchitectureKwargsError, TimmKwargs, UnknownArchitectureError,
                             architecture_kwargs_model, build_architecture,
                             check_architecture_kwargs, register_architecture)


@register_architecture("test_kwargs_net", ranges={"width": (1, 64), "dropout": (0.0, 0.5)})
def _net(*, in_channels, num_classes, mean, std, width: int = 8, dropout: float = 0.0,
         pool: str = "avg"):
    return build_architecture("smallcnn", in_channels=in_channels, num_classes=num_classes,
                              mean=mean, std=std, width=width)


@pytest.mark.parametrize("name, kwargs, words", [
    ("test_kwargs_net", {"width": "8"}, ["kwargs.width", "must be an integer", "str '8'"]),
    ("test_kwargs_net", {"width": 4.0}, ["kwargs.width", "must be an integer"]),
    ("test_kwargs_net", {"dropout": "high"}, ["kwargs.dropout", "must be a number"]),
    ("test_kwargs_net", {"dropout": float("inf")}, ["kwargs.dropout", "finite"]),
    ("test_kwargs_net", {"pool": 3}, ["kwargs.pool", "must be a string"]),
    ("test_kwargs_net", {"width": 0},
     ["kwargs.width = 0", "outside the range [1, 64] of test_kwargs_net"]),
    ("test_kwargs_net", {"dropout": 0.7}, ["kwargs.dropout = 0.7", "[0.0, 0.5]"]),
    ("test_kwargs_net", {"widht": 8}, ["kwargs.widht", "not an argument", "did you mean width"]),
    ("test_kwargs_net", {"std": 0.2}, ["kwargs.std", "set by medbench", "remove it"]),
    ("timm/resnet18", {"drop_rate": "0.1"}, ["kwargs.drop_rate", "must be a number"]),
    ("timm/resnet18", {"depths": [2, 2, 99]}, ["kwargs.depths[2] = 99", "range [1, 48]"]),
    ("timm/resnet18", {"layers": [1] * 9}, ["kwargs.layers", "a list of 1 to 8 integers"]),
    ("timm/resnet18", {"embed_dimm": 64}, ["kwargs.embed_dimm", "did you mean embed_dim"]),
])
def test_a_bad_kwarg_is_refused_with_a_message_naming_the_key(name, kwargs, words):
    with pytest.raises(ArchitectureKwargsError) as exc:
        check_architecture_kwargs(name, kwargs)
    for w in words:
        assert w in str(exc.value), str(exc.value)


def test_building_refuses_before_calling_the_builder():
    with pytest.raises(ArchitectureKwargsError, match=r"kwargs\.width = 100000 is outside"):
        build_architecture("test_kwargs_net", in_channels=1, num_classes=2, width=100_000)


def test_every_problem_is_reported_in_the_order_of_the_keys():
    with pytest.raises(ArchitectureKwargsError) as exc:
        build_architecture("test_kwargs_net", in_channels=1, num_classes=2,
                           pool=1, evil=2, width=-1)
    message = str(exc.value)
    assert message.index(".pool") < message.index(".evil") < message.index(".width"), message


def test_kwargs_models_are_pydantic_models_that_forbid_extra_keys():
    model = architecture_kwargs_model("resnet8")
    assert issubclass(model, BaseModel) and model.model_config["extra"] == "forbid"
    width = model.model_json_schema()["properties"]["width"]
    assert width == {"default": 16, "maximum": 256, "minimum": 1, "title": "Width",
                     "type": "integer"}
    assert architecture_kwargs_model("timm/anything") is TimmKwargs
    with pytest.raises(UnknownArchitectureError, match="Did you mean resnet8"):
        architecture_kwargs_model("resnet88")


def test_good_kwargs_build_and_keep_their_values():
    model = build_architecture("test_kwargs_net", in_channels=1, num_classes=2,
                               width=4, dropout=0, pool="max")
    assert model.net[0].out_channels == 4
