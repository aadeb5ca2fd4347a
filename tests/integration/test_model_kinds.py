"""User model kinds (issue 14): a :class:`~bioperturb.modelspec.ModelSpec` registered by
decorator, entry point or import path is a ``model.kind`` like the builtin ones; rules and
references treat it as its family."""

from __future__ import annotations

import importlib

import pytest
import xarray as xr

from bioperturb.cli import main
from bioperturb.modelspec import MODELS, RateModel, model_spec
from bioperturb.schema import ConfigError
from bioperturb.training import Trainer
from tests.conftest import make_protocol, write_distribution
from tests.unit.test_registry import write_module

pytestmark = pytest.mark.usefixtures("clean_registries")

MODULE = """
    import dataclasses

    from bioperturb.config import RateConfig
    from bioperturb.modelspec import RateModel, register_model
    from bioperturb.schema import param

    @dataclasses.dataclass(frozen=True)
    class CopyConfig(RateConfig):
        kind: str = param("rate_copy", doc="network type")

    @register_model
    class RateCopy(RateModel):
        name = "rate_copy"
        config = CopyConfig
        doc = "the rate network under another name"

    class NotAModel:
        pass
"""


def comparable(ds: xr.Dataset) -> xr.Dataset:
    return ds.drop_vars("wall_time").drop_attrs()


def test_a_registered_model_kind_runs_like_the_network_it_reuses(tmp_path, monkeypatch):
    write_module(tmp_path, monkeypatch, "user_models", MODULE)
    importlib.import_module("user_models")
    assert MODELS.origin("rate_copy") == "registered in user_models"
    # miconi runs on rate networks only: the family, not the name, decides
    protocol = make_protocol(model__kind="rate_copy")
    assert type(protocol.model).__name__ == "CopyConfig"
    assert 'kind = "rate_copy"' in protocol.to_toml()
    ds = Trainer(protocol).run(progress=False)
    ref = Trainer(make_protocol()).run(progress=False)
    assert ds.attrs["status"] == "completed"
    xr.testing.assert_identical(comparable(ds), comparable(ref))
    make_protocol(model__kind="rate_copy", rule={"name": "miconi"})  # no error


def test_model_kinds_by_import_path_and_entry_point(tmp_path, monkeypatch, capsys):
    write_module(tmp_path, monkeypatch, "user_models", MODULE)
    write_distribution(
        tmp_path, "user-models", {"bioperturb.models": {"ep_rate": "user_models:RateCopy"}}
    )
    protocol = make_protocol(model__kind="user_models:RateCopy")
    assert model_spec(protocol.model.kind).name == "rate_copy"
    assert issubclass(model_spec("ep_rate"), RateModel)
    assert main(["list"]) == 0
    out = capsys.readouterr().out.split("model kinds:")[1]
    assert "ep_rate" in out and "[entry point user-models]" in out


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("izhikevich", "model.kind: unknown kind 'izhikevich'"),
        ("user_models:NotAModel", "is not a subclass of bioperturb.modelspec.ModelSpec"),
        ("user_models:Missing", "has no attribute 'Missing'"),
        ("no_such_module:Model", "module 'no_such_module' not found"),
    ],
)
def test_bad_model_kinds_are_one_line_errors(tmp_path, monkeypatch, kind, reason):
    write_module(tmp_path, monkeypatch, "user_models", MODULE)
    with pytest.raises(ConfigError, match=reason) as info:
        make_protocol(model__kind=kind)
    assert "\n" not in str(info.value)
