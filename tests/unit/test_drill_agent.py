"""A standby drill runs on the standby's agent: the agent this process acts as (the
scheduler's --agent), not merely this host's name."""

from __future__ import annotations

import pytest

from drctl import config
from drctl.actions.context import Context
from drctl.actions.drill import DrillOptions, resolve_target
from drctl.errors import UsageError

DOC = {
    "controller": {"site": "s"},
    "repository": {"r": {"url": "/tmp/r", "password": "env:P"}},
    "node": {
        "primary": {"aet": "P", "storage": "/p", "index": "sqlite:/p/index", "start": "true",
                    "stop": "true", "agent": "pacs1"},
        "standby": {"aet": "S", "storage": "/s", "index": "sqlite:/s/index", "role": "standby",
                    "agent": "pacs-dr", "start": "true", "stop": "true"},
    },
}


def test_scheduler_agent_may_drill_its_standby_on_a_host_of_another_name():
    ctx = Context(settings=config.from_mapping(DOC), catalog=None, agent="pacs-dr")
    assert resolve_target(ctx, DrillOptions(standby="standby"), "primary") == "standby"


def test_another_agent_is_refused_with_the_reason():
    ctx = Context(settings=config.from_mapping(DOC), catalog=None, agent="pacs1")
    with pytest.raises(UsageError, match="belongs to agent pacs-dr"):
        resolve_target(ctx, DrillOptions(standby="standby"), "primary")
