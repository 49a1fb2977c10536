"""Values from a spec or a node never become templates on the controller (issue 12, item 1).

The probe's answer and the cloud API's answers are checked against strict patterns, and
the inventory hands every value to Ansible as unsafe data: real ansible-core (through
ansible-runner, a local connection) runs playbooks that use Jinja payloads in commands,
templates and the interpreter, and no marker file appears.
"""

from __future__ import annotations

import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.provisioner.drivers.base import Node, RunContext
from services.provisioner.drivers.fake import FakeCloud, FakeDriver
from services.provisioner.drivers.idc import IdcDriver
from services.provisioner.drivers.nodevalues import (
    check_host,
    check_path,
    check_proxy,
    check_user,
    parse_probe_answer,
)
from services.provisioner.drivers.sshcmd import ansible_ssh_vars
from services.provisioner.envs.ansible import run_playbook
from services.provisioner.envs.inventory import build_inventory, dump_inventory
from services.provisioner.settings import ProvisionerSettings
from shared.errors import ProviderError
from shared.secrets import InMemoryVault
from shared.spec import ProjectSpec
from tests.unit.provisioner.harness import spec_dict


def _payload(marker: Path) -> str:
    return '{{lookup("pipe","touch ' + str(marker) + '")}}'


# -- the probe's answer ---------------------------------------------------------------------


def test_probe_answer_parses_after_a_banner() -> None:
    answer = parse_probe_answer(
        "Welcome to host!\nLast login: never\n3.11.7\n/usr/bin/python3\n/home/ml\n", node="ssh-0"
    )
    assert (answer.version, answer.python3, answer.home) == (
        "3.11.7",
        "/usr/bin/python3",
        "/home/ml",
    )


@pytest.mark.parametrize(
    "out",
    [
        '3.11.7\n{{lookup("pipe","id>/tmp/marker")}}\n/root\n',
        "3.11.7\n/usr/bin/python3\n{{ lookup('pipe', 'id') }}\n",
        '{%print(lookup("pipe","id"))%}\n/usr/bin/python3\n/root\n',
        "3.11.7\n/usr/bin/python3 -c import os\n/root\n",
        "3.11.7\n/usr/bin/$(id)\n/root\n",
        "3.11.7\nrelative/python3\n/root\n",
        "3.11.7\n/usr/../tmp/python3\n/root\n",
        "3.11.7\n/usr/bin/python3\n/home/`id`\n",
        "3.11.7\n/usr/bin/python3\n",
        "",
    ],
)
def test_hostile_probe_answers_are_refused(out: str) -> None:
    with pytest.raises(ProviderError, match="invalid probe answer") as caught:
        parse_probe_answer(out, node="ssh-0")
    assert caught.value.code == "invalid_probe_answer" and not caught.value.retryable


def test_value_checks() -> None:
    assert check_host("10.0.0.5", what="x") == "10.0.0.5"
    assert check_user("ubuntu", what="x") == "ubuntu"
    assert check_path("/home/u/.aidp-node/envs", what="x") == "/home/u/.aidp-node/envs"
    assert check_proxy("guest", "146.152.1.2", "22", what="proxy") == "guest@146.152.1.2:22"
    for bad in ("{{x}}", "-oProxyCommand=id", "a b"):
        with pytest.raises(ProviderError):
            check_host(bad, what="x")
        with pytest.raises(ProviderError):
            check_user(bad, what="x")
    with pytest.raises(ProviderError):
        check_proxy("guest", "h", "22;id", what="proxy")
    with pytest.raises(ProviderError):
        check_path("/a/{{b}}", what="x")


def _ssh_node(**kw: Any) -> Node:
    values: dict[str, Any] = {
        "name": "ssh-0",
        "index": 0,
        "provider": "ssh",
        "address": "10.0.0.5",
        "workdir": "/root/.aidp-node/runs/r",
        "env_root": "/root/.aidp-node/envs",
        "tools_dir": "/root/.aidp-node/bin",
        "ssh_user": "root",
    }
    values.update(kw)
    return Node(**values)


@pytest.mark.parametrize(
    "change",
    [
        {"address": "{{ lookup('pipe','id') }}"},
        {"ssh_user": "{{x}}"},
        {"extra": {"python3": '{{lookup("pipe","id")}}'}},
    ],
)
def test_ansible_ssh_vars_refuse_node_values_that_do_not_fit(change: dict[str, Any]) -> None:
    assert ansible_ssh_vars(_ssh_node())["ansible_python_interpreter"] == "/usr/bin/python3"
    with pytest.raises(ProviderError):
        ansible_ssh_vars(_ssh_node(**change))


@pytest.mark.parametrize(
    "status",
    [
        {"interfaces": [{"addresses": ["{{ lookup('pipe','id') }}"]}]},
        {"interfaces": [{"addresses": ["10.0.0.5"]}], "userName": "{{x}}"},
        {
            "interfaces": [{"addresses": ["10.0.0.5"]}],
            "sshProxy": {"proxyAddress": "-oProxyCommand=id", "proxyUser": "g", "proxyPort": 22},
        },
        {
            "interfaces": [{"addresses": ["10.0.0.5"]}],
            "sshProxy": {"proxyAddress": "1.2.3.4", "proxyUser": "{{x}}", "proxyPort": 22},
        },
    ],
)
def test_idc_api_answers_are_checked(tmp_path: Path, status: dict[str, Any]) -> None:
    settings = ProvisionerSettings(data_dir=tmp_path / "data", bus_url="memory://x")
    driver = IdcDriver(settings, secrets=InMemoryVault(), owner_id=None)
    ctx = RunContext(
        run_id=uuid.uuid4(),
        project_id=uuid.uuid4(),
        owner_id=None,
        spec=ProjectSpec.model_validate(spec_dict(provider="idc")),
        state_dir=tmp_path,
    )
    instance = {"metadata": {"resourceId": "r-1"}, "status": status}
    with pytest.raises(ProviderError, match="refused"):
        driver._node(ctx, 0, instance, "/tmp/key")


# -- the inventory, rendered by real ansible-core -------------------------------------------


class _HostileDriver(FakeDriver):
    """A local node whose connection variables carry what a hostile node could answer."""

    def __init__(self, cloud: FakeCloud, interpreter: str) -> None:
        super().__init__(cloud)
        self.interpreter = interpreter

    def ansible_vars(self, node: Node) -> dict[str, Any]:
        return {"ansible_connection": "local", "ansible_python_interpreter": self.interpreter}


_PLAYBOOK = """\
- name: Use every host var
  hosts: all
  gather_facts: false
  tasks:
    - name: Run a command with the values
      ansible.builtin.command:
        argv: [echo, "{{ aidp_value }}", "{{ aidp_values | join(',') }}", "{{ aidp_value ~ '/x' }}"]
      register: echoed
    - name: Render a template with the values
      ansible.builtin.template:
        src: show.j2
        dest: "{{ aidp_out }}"
    - name: Keep a fact built from a value
      ansible.builtin.set_fact:
        derived: "{{ aidp_value | quote }}"
    - name: Write what the command saw
      ansible.builtin.copy:
        content: "{{ echoed.stdout }}\\n{{ derived }}\\n"
        dest: "{{ aidp_out }}.echo"
"""


def _ansible_dir(root: Path) -> Path:
    root.mkdir()
    (root / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = False\n")
    (root / "roles").mkdir()
    (root / "templates").mkdir()
    (root / "provision.yml").write_text(_PLAYBOOK)
    (root / "templates" / "show.j2").write_text(
        "value={{ aidp_value }}\n{% for v in aidp_values %}item={{ v }}\n{% endfor %}"
    )
    return root


async def _play(tmp_path: Path, interpreter: str, host_vars: dict[str, Any]) -> None:
    settings = ProvisionerSettings(
        data_dir=tmp_path / "data", bus_url="memory://x", ansible_dir=_ansible_dir(tmp_path / "a")
    )
    node = Node(
        name="local-0",
        index=0,
        provider="fake",
        address="localhost",
        workdir=str(tmp_path),
        env_root=str(tmp_path),
        tools_dir=str(tmp_path),
        connection="local",
    )

    async def progress(stage: str, message: str, pct: float | None) -> None:
        return None

    await run_playbook(
        nodes=[node],
        driver=_HostileDriver(FakeCloud(root=tmp_path / "cloud"), interpreter),
        host_vars=lambda _node: host_vars,
        private_dir=tmp_path / "private",
        settings=settings,
        progress=progress,
        cancel=threading.Event(),
    )


async def test_host_vars_reach_ansible_as_data(tmp_path: Path) -> None:
    marker = tmp_path / f"marker-{uuid.uuid4().hex}"
    payload = _payload(marker)
    out = tmp_path / "shown.txt"
    await _play(
        tmp_path,
        sys.executable,
        {"aidp_value": payload, "aidp_values": [payload, "{% raw %}x"], "aidp_out": str(out)},
    )
    assert not marker.exists()
    assert out.read_text() == f"value={payload}\nitem={payload}\nitem={{% raw %}}x\n"
    echoed = (tmp_path / "shown.txt.echo").read_text()
    assert payload in echoed and f"{payload}/x" in echoed


async def test_a_hostile_interpreter_is_not_rendered(tmp_path: Path) -> None:
    marker = tmp_path / f"marker-{uuid.uuid4().hex}"
    out = tmp_path / "shown.txt"
    with pytest.raises(ProviderError):  # the "interpreter" is used literally: no such file
        await _play(
            tmp_path, _payload(marker), {"aidp_value": "v", "aidp_values": [], "aidp_out": str(out)}
        )
    assert not marker.exists()


def test_inventory_tags_every_string_unsafe(tmp_path: Path) -> None:
    node = _ssh_node()
    driver = FakeDriver(FakeCloud(root=tmp_path))
    inventory = build_inventory(
        [node], driver, lambda n: {"aidp_port": 22, "aidp_flag": True, "aidp_list": ["a", "{{b}}"]}
    )
    text = dump_inventory(inventory)
    assert '!unsafe "local"' in text and '!unsafe "{{b}}"' in text
    assert "aidp_port: 22" in text and "aidp_flag: true" in text
    with pytest.raises(ProviderError, match="refused name"):
        build_inventory([node], driver, lambda n: {"{{x}}": "y"})

    # Plain YAML readers see the same values; Ansible's loader sees unsafe ones.
    class _Loader(yaml.SafeLoader):
        pass

    def _plain(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        assert isinstance(node, yaml.ScalarNode)
        return loader.construct_scalar(node)

    _Loader.add_constructor("!unsafe", _plain)
    loaded = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    assert loaded["all"]["hosts"]["ssh-0"]["aidp_list"] == ["a", "{{b}}"]
