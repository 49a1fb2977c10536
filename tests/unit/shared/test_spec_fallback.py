"""``resources.instance_type`` as a list and ``resources.fallback`` (issue 19 item 5):
what each choice needs is checked at submit, and the choices come out in order."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.spec import Choice, ProjectSpec


def _spec(**resources: Any) -> ProjectSpec:
    return ProjectSpec.model_validate(
        {
            "name": "demo",
            "model": "hf://org/model",
            "dataset": "hf://datasets/org/data",
            "resources": resources,
        }
    )


def test_choices_list_every_instance_type_then_each_fallback_provider() -> None:
    spec = _spec(
        provider="idc",
        instance_type=["vm-spr-lrg", "vm-spr-med"],
        fallback=["ssh", "local"],
        hosts=[{"address": "10.0.0.5"}],
    )
    assert spec.resources.choices() == [
        Choice(provider="idc", instance_type="vm-spr-lrg"),
        Choice(provider="idc", instance_type="vm-spr-med"),
        Choice(provider="ssh"),
        Choice(provider="local"),
    ]
    narrowed = spec.narrowed(Choice(provider="ssh")).resources
    assert (narrowed.provider, narrowed.instance_type, narrowed.fallback) == ("ssh", None, [])
    assert _spec(provider="idc", instance_type="vm-spr-sml").resources.choices() == [
        Choice(provider="idc", instance_type="vm-spr-sml")
    ]  # a single string stays valid
    assert _spec(provider="ssh", hosts=[{"address": "h1"}], fallback=["idc"]).resources.choices()[
        1
    ] == Choice(provider="idc")  # the platform's default type


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"provider": "idc", "fallback": ["ssh"]}, "fallback ssh needs 1 host(s)"),
        ({"provider": "idc", "fallback": ["idc"]}, "each provider once"),
        ({"provider": "local", "fallback": ["ssh", "ssh"]}, "each provider once"),
        ({"provider": "idc", "nodes": 2, "fallback": ["local"]}, "fallback local runs one node"),
        ({"provider": "idc", "instance_type": []}, "1 to 8 instance types"),
        ({"provider": "idc", "instance_type": ["a", "a"]}, "listed twice"),
        ({"provider": "idc", "instance_type": ["ok", "$(reboot)"]}, "instance_type '$(reboot)'"),
        ({"provider": "local", "instance_type": ["a", "b"]}, "is for provider idc"),
        ({"provider": "idc", "fallback": ["aws"]}, "fallback.0"),
        ({"provider": "idc", "retry_larger_on_oom": True}, "retry_larger_on_oom needs a choice"),
    ],
)
def test_what_each_choice_needs_is_checked_at_submit(
    resources: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _spec(**resources)
    assert message in str(caught.value)


def test_retry_larger_on_oom_with_a_next_choice_is_valid() -> None:
    spec = _spec(
        provider="idc", instance_type=["vm-spr-sml", "vm-spr-lrg"], retry_larger_on_oom=True
    )
    assert spec.resources.retry_larger_on_oom
