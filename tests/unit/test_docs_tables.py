"""Every parameter of every registered rule, task and model is documented, and the
documentation tables can be generated (``schema.describe``) for all of them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from bioperturb.config import MODEL_KINDS, OutputConfig, TrainingConfig
from bioperturb.rules import RULES
from bioperturb.schema import describe
from bioperturb.tasks import TASKS

DOCS = Path(__file__).resolve().parents[2] / "docs"

#: where each model kind's [model] table is documented
MODEL_DOCS = {"rate": "network.md", "lif": "network-spiking.md", "mlp": "network-mlp.md"}

PARAMS = (
    [pytest.param(cls.Params, id=f"rule-{name}") for name, cls in sorted(RULES.items())]
    + [pytest.param(cls.Params, id=f"task-{name}") for name, cls in sorted(TASKS.items())]
    + [pytest.param(cls, id=f"model-{kind}") for kind, cls in sorted(MODEL_KINDS.items())]
    + [pytest.param(TrainingConfig, id="training"), pytest.param(OutputConfig, id="output")]
)


@pytest.mark.parametrize("cls", PARAMS)
def test_describe_gives_a_row_per_field(cls):
    rows = describe(cls)
    assert [row[0] for row in rows] == [f.name for f in dataclasses.fields(cls)]
    for _name, default, unit, doc in rows:
        assert default and unit and doc


def documented(path: Path) -> set[str]:
    """Names in the first column of the Markdown tables of ``path`` (``a``, `a`, a, b)."""
    names: set[str] = set()
    for line in path.read_text().splitlines():
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cell = line.split("|")[1]
        quoted = re.findall(r"`([^`]*)`", cell)
        for part in quoted or cell.split(","):
            names.add(part.strip())
    return names


def cases():
    for kind, registry in (("rules", RULES), ("tasks", TASKS)):
        for name, cls in sorted(registry.items()):
            if dataclasses.fields(cls.Params):  # a rule without parameters needs no table
                yield pytest.param(cls.Params, DOCS / kind / f"{name}.md", id=f"{kind}-{name}")
    for kind, cls in sorted(MODEL_KINDS.items()):
        yield pytest.param(cls, DOCS / MODEL_DOCS[kind], id=f"model-{kind}")


@pytest.mark.parametrize(("cls", "doc"), list(cases()))
def test_every_parameter_is_in_its_docs_table(cls, doc):
    assert doc.is_file(), f"{doc} documents {cls.__name__}"
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in documented(doc)]
    assert not missing, f"{doc.relative_to(DOCS.parent)} has no table row for {missing}"
