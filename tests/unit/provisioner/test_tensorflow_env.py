"""environment.framework: tensorflow (issue 18 item 1): what the spec accepts, what the
lock resolves (tensorflow-cpu on cpu nodes, tensorflow[and-cuda] on cuda nodes, no torch)
and how a run is launched; PyTorch specs keep their lock keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.provisioner.envs.lock import EnvRequest, env_request
from services.provisioner.settings import ProvisionerSettings
from services.trainer.training.plan import launch_env, plan_launch, script_of
from shared.spec import ProjectSpec


def spec(**overrides: Any) -> ProjectSpec:
    body: dict[str, Any] = {
        "name": "tf",
        "model": "hf://owner/model@main",
        "dataset": "hf://datasets/owner/data@main",
        "task": "text-classification",
        "environment": {"framework": "tensorflow", "packages": ["pandas"]},
    }
    for key, value in overrides.items():
        body[key] = {**body[key], **value} if isinstance(value, dict) and key in body else value
    return ProjectSpec.model_validate(body)


@pytest.fixture
def settings(tmp_path: Path) -> ProvisionerSettings:
    return ProvisionerSettings(
        data_dir=tmp_path, bus_url="memory://tf-env", torch_find_links=[], index_url=None
    )


def test_framework_defaults_to_pytorch_and_is_checked() -> None:
    plain = ProjectSpec.model_validate({"name": "p", "model": "hf://o/m", "dataset": "hf://o/d"})
    assert plain.environment.framework == "pytorch"
    with pytest.raises(ValidationError, match="framework"):
        spec(environment={"framework": "jax"})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"resources": {"accelerator": "gaudi"}}, "cpu or cuda, not gaudi"),
        ({"resources": {"nodes": 2}}, "one node"),
        ({"task": "causal-lm"}, "no Keras template"),
    ],
)
def test_tensorflow_refuses_what_it_cannot_run(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(**overrides)


def test_cpu_lock_pins_tensorflow_cpu_and_no_torch(settings: ProvisionerSettings) -> None:
    req = env_request(
        spec(environment={"packages": ["pandas", "tensorflow==2.0", "keras"]}), settings
    )
    assert req.torch is None and req.framework == "tensorflow"
    assert req.tensorflow == f"tensorflow-cpu=={settings.tensorflow_version}"
    lines = req.requirements().splitlines()
    assert lines[0] == "tensorflow-cpu==2.21.0"
    assert "pandas" in lines and not any(line.startswith("torch") for line in lines)
    assert "tensorflow==2.0" not in lines  # the framework's own pin wins
    assert "keras" in lines  # a keras entry is the spec's own choice
    assert req.extra_index_urls == ()  # no torch index


def test_cuda_lock_pins_tensorflow_with_cuda_libraries(settings: ProvisionerSettings) -> None:
    req = env_request(spec(resources={"accelerator": "cuda"}), settings)
    assert req.tensorflow == "tensorflow[and-cuda]==2.21.0"
    assert req.requirements().startswith("tensorflow[and-cuda]==2.21.0\n")


def test_pytorch_keys_are_unchanged_and_frameworks_differ(settings: ProvisionerSettings) -> None:
    torch_spec = spec(environment={"framework": "pytorch"})
    torch_req = env_request(torch_spec, settings)
    legacy = EnvRequest(
        python=torch_req.python,
        accelerator=torch_req.accelerator,
        torch=torch_req.torch,
        packages=torch_req.packages,
        find_links=torch_req.find_links,
        index_url=torch_req.index_url,
        extra_index_urls=torch_req.extra_index_urls,
    )
    assert torch_req.key() == legacy.key()  # locks resolved before the field existed stay
    assert torch_req.requirements().startswith("torch==")
    assert env_request(spec(), settings).key() != torch_req.key()
    assert env_request(spec(), settings).key() == env_request(spec(), settings).key()


def test_tensorflow_runs_start_one_process_directly_with_the_keras_template() -> None:
    custom = spec(task="custom", train={"entrypoint": "train.py"})
    for s, script in ((spec(), "src/keras_text_classification.py"), (custom, "src/user/train.py")):
        assert script_of(s) == script
        env = launch_env(workspace="/ws", spec=s, accelerator="cpu", run_id="r")
        assert env["KERAS_BACKEND"] == "tensorflow"
        plan = plan_launch(
            python="/env/bin/python",
            workspace="/ws",
            spec=s,
            nnodes=1,
            node_rank=0,
            nproc=1,
            rdzv=None,
            run_id="r",
            env=env,
        )
        assert plan.argv == ["/env/bin/python", "-u", f"/ws/{script}"]
        assert plan.env["RANK"] == "0" and plan.env["WORLD_SIZE"] == "1"
    image = spec(task="image-classification")
    assert script_of(image) == "src/keras_image_classification.py"
    # a PyTorch custom script still goes through torchrun
    torch_custom = spec(
        task="custom", train={"entrypoint": "t.py"}, environment={"framework": "pytorch"}
    )
    plan = plan_launch(
        python="p", workspace="/ws", spec=torch_custom, nnodes=1, node_rank=0, nproc=1,
        rdzv=None, run_id="r", env={},
    )  # fmt: skip
    assert "torch.distributed.run" in plan.argv


def test_keras_templates_are_staged_beside_the_others() -> None:
    from services.trainer.staging import TASKS_DIR

    names = {p.name for p in TASKS_DIR.glob("*.py")}
    assert {"keras_text_classification.py", "keras_image_classification.py"} <= names
    assert {"_keras_common.py"} <= names
    # the Keras templates never import torch (a TensorFlow env has none)
    for name in (
        "keras_text_classification.py",
        "keras_image_classification.py",
        "_keras_common.py",
    ):
        text = (TASKS_DIR / name).read_text()
        assert "import torch" not in text and "from _common" not in text
