"""The internal APIs' contracts (shared.contracts: cloud access, artifacts, deployments):
answers survive the wire, requests are strict and bounded, the typed calls send what the
callee declares, and an answer out of contract is a 502 naming the service."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from services.gateway import schemas
from services.gateway.routes import artifacts as artifacts_route
from shared.contracts import artifacts, cloud_access, deployments
from shared.contracts.answers import parse_answer, parse_answers
from shared.errors import InvalidInput, ProviderError
from shared.spec import ProjectSpec

PROJECT = uuid.uuid4()
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SPEC = {"name": "p", "model": "hf://a/b", "dataset": "hf://a/data"}


def _deployment(**changes: Any) -> dict[str, Any]:
    record = {
        "id": str(uuid.uuid4()),
        "project_id": str(PROJECT),
        "model_id": str(uuid.uuid4()),
        "model_version": 3,
        "run_id": str(uuid.uuid4()),
        "status": "running",
        "endpoint": "/api/deployments/x/predict",
        "node": "local",
        "replicas": 2,
        "replicas_up": 2,
        "idle_timeout_s": 600,
        "keep_previous": False,
        "live": True,
        "restarts": 0,
        "reason": None,
        "last_request_at": None,
        "created_at": NOW.isoformat(),
        "updated_at": NOW.isoformat(),
    }
    return {**record, **changes}


def _access_entry(**changes: Any) -> dict[str, Any]:
    entry = {
        "user_id": str(uuid.uuid4()),
        "email": "bob@example.com",
        "granted_by": str(uuid.uuid4()),
        "granted_at": NOW.isoformat(),
    }
    return {**entry, **changes}


def _access_policy(**changes: Any) -> dict[str, Any]:
    policy = {
        "setting": {"all": False, "user_ids": [str(uuid.uuid4())]},
        "users": [_access_entry(), _access_entry(email=None, granted_by=None)],
        "max_price_per_hour": 2.0,
        "max_price_per_user_hour": None,
    }
    return {**policy, **changes}


def _access_changes(**changes: Any) -> dict[str, Any]:
    change = {
        "at": NOW.isoformat(),
        "actor_id": str(uuid.uuid4()),
        "before": [],
        "after": [_access_entry()],
    }
    return {
        "changes": [
            {**change, **changes},
            {**change, "actor_id": None, "before": [_access_entry()]},
        ]
    }


ANSWERS: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (deployments.DeploymentRecord, _deployment()),
    (deployments.DeployAnswer, {**_deployment(status="starting"), "deployment_id": "d"}),
    (
        deployments.EndpointRecord,
        {
            "project_id": str(PROJECT),
            "deployment_id": "d",
            "previous_deployment_id": None,
            "deployment": _deployment(),
        },
    ),
    (
        deployments.ModelRecord,
        {
            "id": str(uuid.uuid4()),
            "project_id": str(PROJECT),
            "run_id": str(uuid.uuid4()),
            "version": 1,
            "task": "text-classification",
            "method": "lora",
            "digest": "m" * 64,
            "size_bytes": 10,
            "metrics": {"accuracy": 0.9},
            "lineage": {"model": "hf://a/b"},
            "created_at": NOW.isoformat(),
        },
    ),
    (
        artifacts.ArtifactRow,
        {
            "source": "hf://a/b",
            "kind": "model",
            "resolved_revision": "abc",
            "digest": "d" * 64,
            "size_bytes": 3,
            "cache_key": "k",
            "last_used_at": NOW.isoformat(),
            "pinned": True,
        },
    ),
    (
        artifacts.UploadAnswer,
        {"id": "u", "uri": "upload://u", "size_bytes": 3, "digest": "d", "filename": "a.csv"},
    ),
    (cloud_access.AccessPolicy, _access_policy()),
    (cloud_access.AccessPolicy, _access_policy(users=[], max_price_per_hour=None)),
    (cloud_access.AccessChanges, _access_changes()),
    (cloud_access.AccessChanges, {"changes": []}),
]


@pytest.mark.parametrize(("model", "body"), ANSWERS, ids=lambda v: getattr(v, "__name__", ""))
def test_answers_round_trip_through_json(model: type[BaseModel], body: dict[str, Any]) -> None:
    parsed = parse_answer(model, body, service="trainer")
    again = parse_answer(model, parsed.model_dump(mode="json"), service="trainer")
    assert again == parsed
    # a field the callee added before the caller knows it is ignored, not refused
    assert parse_answer(model, {**body, "added_later": 1}, service="trainer") == parsed


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (deployments.DeploymentRecord, _deployment(status="exploded")),
        (deployments.DeploymentRecord, _deployment(project_id="not-a-uuid")),
        (deployments.DeployAnswer, _deployment()),  # no deployment_id
        (deployments.ModelRecord, {"id": "m", "project_id": str(PROJECT)}),  # no version
        (artifacts.ArtifactRow, {"source": "hf://a/b", "kind": "model"}),  # no size
        (
            artifacts.UploadAnswer,
            {"id": "u", "uri": "/etc/passwd", "size_bytes": 1, "digest": "d", "filename": "a"},
        ),  # fmt: skip
        (artifacts.UploadAnswer, None),
        (cloud_access.AccessPolicy, {"users": [], "max_price_per_hour": 2.0}),  # no setting
        (cloud_access.AccessPolicy, _access_policy(setting={"all": "sometimes", "user_ids": []})),
        (cloud_access.AccessPolicy, _access_policy(users=[_access_entry(user_id="bob")])),
        (cloud_access.AccessPolicy, _access_policy(max_price_per_hour="cheap")),
        (cloud_access.AccessPolicy, [_access_entry()]),  # a list, not the policy
        (cloud_access.AccessChanges, {"changes": [{"at": NOW.isoformat()}]}),  # no lists
        (cloud_access.AccessChanges, _access_changes(at="yesterday")),
        (cloud_access.AccessChanges, {"items": []}),
    ],
)
def test_an_answer_out_of_contract_is_a_502_naming_the_service(
    model: type[BaseModel], body: Any
) -> None:
    with pytest.raises(ProviderError) as caught:
        parse_answer(model, body, service="trainer")
    assert caught.value.status == 502
    assert caught.value.message == "trainer service answered an unexpected body"


def test_a_list_answer_must_be_a_list_of_the_model() -> None:
    row = ANSWERS[4][1]
    assert [r.source for r in parse_answers(artifacts.ArtifactRow, [row], service="f")] == [
        "hf://a/b"
    ]
    for bad in ({"items": [row]}, [row, {"source": "x"}], None):
        with pytest.raises(ProviderError) as caught:
            parse_answers(artifacts.ArtifactRow, bad, service="fetcher")
        assert "fetcher service" in caught.value.message


def test_deployment_requests_are_strict_and_bounded() -> None:
    assert deployments.DeployRequest().model_dump() == {
        "replicas": 1,
        "idle_timeout_s": None,
        "keep_previous": False,
        "promote": True,
    }
    bads: list[tuple[type[BaseModel], dict[str, Any]]] = [
        (deployments.DeployRequest, {"replicas": deployments.MAX_REPLICAS + 1}),
        (deployments.DeployRequest, {"replicas": 0}),
        (deployments.DeployRequest, {"idle_timeout_s": 0}),  # 0 only means "never" in PATCH
        (deployments.DeployRequest, {"idle_timeout_s": deployments.MAX_IDLE_TIMEOUT_S + 1}),
        (deployments.DeployRequest, {"gpus": 1}),
        (deployments.ConfigureRequest, {"idle_timeout_s": -1}),
        (deployments.ConfigureRequest, {"extra": True}),
        (deployments.PromoteRequest, {"keep": True}),
    ]
    for model, bad in bads:
        with pytest.raises(ValidationError):
            model.model_validate(bad)
    assert deployments.ConfigureRequest(idle_timeout_s=0).idle_timeout_s == 0


def _shape(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema without its name and prose (what the wire sees)."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    schema.pop("description", None)
    for field in schema["properties"].values():
        field.pop("title", None)
        field.pop("description", None)
    return schema


@pytest.mark.parametrize(
    ("public", "internal"),
    [
        (schemas.DeployIn, deployments.DeployRequest),
        (schemas.DeploymentPatchIn, deployments.ConfigureRequest),
        (schemas.PromoteIn, deployments.PromoteRequest),
    ],
)
def test_the_gateways_public_bodies_take_what_the_trainer_takes(
    public: type[BaseModel], internal: type[BaseModel]
) -> None:
    # the public API keeps its schema names; the fields and limits are the contract's
    assert _shape(public) == _shape(internal)


@pytest.mark.parametrize(
    ("public", "internal"),
    [
        (schemas.DeploymentOut, deployments.DeploymentRecord),
        (schemas.EndpointOut, deployments.EndpointRecord),
        (schemas.DeployOut, deployments.DeployAnswer),
        (schemas.ModelOut, deployments.ModelRecord),
        (schemas.ArtifactOut, artifacts.ArtifactRow),
        (schemas.UploadOut, artifacts.UploadAnswer),
    ],
)
def test_every_public_field_comes_from_the_contract(
    public: type[BaseModel], internal: type[BaseModel]
) -> None:
    filled_by_the_gateway = {"project_name", "role"}
    missing = set(public.model_fields) - set(internal.model_fields) - filled_by_the_gateway
    assert missing == set()


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "a\x00b", "x" * 256])
def test_an_upload_name_that_is_not_a_plain_file_name_is_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        artifacts.check_upload_filename(name)


def test_an_upload_name_is_checked_alike_on_both_sides() -> None:
    assert artifacts.check_upload_filename("train set (v2).csv") == "train set (v2).csv"
    # the gateway's query parameter (its OpenAPI) states the contract's pattern and bound
    route = next(
        r for r in artifacts_route.router.routes if getattr(r, "path", "") == "/api/uploads"
    )
    param = next(p for p in route.dependant.query_params if p.name == "filename")  # type: ignore[attr-defined]
    stated = {type(m).__name__: m for m in param.field_info.metadata}
    assert stated["_PydanticGeneralMetadata"].pattern == artifacts.FILENAME_PATTERN
    assert stated["MaxLen"].max_length == artifacts.MAX_FILENAME_LENGTH


def test_the_cloud_access_check_takes_a_valid_spec_only() -> None:
    spec = ProjectSpec.model_validate(SPEC)
    body = cloud_access.SpecCheck(user_id=uuid.uuid4(), spec=spec).model_dump(mode="json")
    assert cloud_access.SpecCheck.model_validate(body).spec == spec
    for bad in (
        {**body, "extra": 1},
        {**body, "spec": {"name": "p"}},  # no model
        {**body, "user_id": "nobody"},
    ):
        with pytest.raises(ValidationError):
            cloud_access.SpecCheck.model_validate(bad)


class FakeCaller:
    """A client answering from a list, recording what it was asked."""

    name = "trainer"

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        self.calls.append((method, path, kwargs))
        return self.answers.pop(0)

    async def request(self, method: str, path: str, **kwargs: Any) -> None:
        self.calls.append((method, path, kwargs))


async def test_deployments_are_listed_in_chunks_the_trainer_accepts() -> None:
    ids = [uuid.uuid4() for _ in range(2 * deployments.MAX_LISTED_PROJECTS + 1)]
    trainer = FakeCaller([_deployment()], [], [_deployment(), _deployment()])
    found = await deployments.list_deployments(trainer, ids, user_id=uuid.uuid4())
    assert len(found) == 3
    asked = [[v for _, v in kwargs["params"]] for _, _, kwargs in trainer.calls]
    assert [len(a) for a in asked] == [200, 200, 1]
    assert [p for a in asked for p in a] == [str(i) for i in ids]


async def test_configure_sends_only_the_fields_set() -> None:
    trainer = FakeCaller(_deployment())
    request = deployments.ConfigureRequest.model_validate({"idle_timeout_s": 0})
    await deployments.change_deployment(
        trainer, "d", "configure", user_id=uuid.uuid4(), request=request
    )
    await_call = trainer.calls[0]
    assert await_call[:2] == ("PATCH", "/internal/deployments/d")
    assert await_call[2]["json"] == {"idle_timeout_s": 0}


async def test_promote_and_stop_post_to_their_action() -> None:
    trainer = FakeCaller(_deployment(), _deployment(status="stopped"))
    user = uuid.uuid4()
    request = deployments.PromoteRequest(keep_previous=True)
    await deployments.change_deployment(trainer, "d", "promote", user_id=user, request=request)
    stopped = await deployments.change_deployment(trainer, "d", "stop", user_id=user)
    assert [(m, p, k["json"]) for m, p, k in trainer.calls] == [
        ("POST", "/internal/deployments/d/promote", {"keep_previous": True}),
        ("POST", "/internal/deployments/d/stop", None),
    ]
    assert stopped.status == "stopped"


async def test_a_typed_call_refuses_an_answer_out_of_contract() -> None:
    trainer = FakeCaller({"project_id": str(PROJECT)})  # no id, no status
    with pytest.raises(ProviderError) as caught:
        await deployments.read_deployment(trainer, "d", user_id=uuid.uuid4())
    assert caught.value.status == 502 and "trainer" in caught.value.message


async def test_the_cloud_access_check_sends_the_contracts_body() -> None:
    provisioner = FakeCaller()
    user, spec = uuid.uuid4(), ProjectSpec.model_validate(SPEC)
    await cloud_access.check_spec(provisioner, user, spec)
    method, path, kwargs = provisioner.calls[0]
    assert (method, path) == ("POST", cloud_access.CHECK_PATH)
    assert cloud_access.SpecCheck.model_validate(kwargs["json"]).user_id == user


async def test_an_upload_with_a_bad_name_is_refused_before_the_body_is_sent() -> None:
    fetcher = FakeCaller()

    async def body() -> Any:
        yield b"never read"

    with pytest.raises(InvalidInput):
        await artifacts.upload(
            fetcher, user_id=uuid.uuid4(), filename="..", content=body(), headers={}
        )
    assert fetcher.calls == []


async def test_the_cloud_access_calls_send_and_read_the_contracts_bodies() -> None:
    policy, changes = _access_policy(), _access_changes()
    provisioner = FakeCaller(policy, policy, changes)
    provisioner.name = "provisioner"
    admin, bob = uuid.uuid4(), uuid.uuid4()
    update = cloud_access.AccessUpdate(
        users=[cloud_access.AccessUser(user_id=bob, email="bob@example.com")], actor_id=admin
    )

    shown = await cloud_access.read_policy(provisioner)
    replaced = await cloud_access.replace_users(provisioner, update)
    listed = await cloud_access.list_changes(provisioner)

    assert [(m, p) for m, p, _ in provisioner.calls] == [
        ("GET", cloud_access.ACCESS_PATH),
        ("PUT", cloud_access.ACCESS_PATH),
        ("GET", cloud_access.CHANGES_PATH),
    ]
    sent = provisioner.calls[1][2]["json"]
    assert sent == {
        "users": [{"user_id": str(bob), "email": "bob@example.com"}],
        "actor_id": str(admin),
    }
    assert cloud_access.AccessUpdate.model_validate(sent) == update
    assert shown == replaced
    assert [str(u.user_id) for u in shown.users] == [u["user_id"] for u in policy["users"]]
    assert shown.max_price_per_hour == 2.0 and shown.setting.all is False
    assert [c.actor_id for c in listed.changes][1] is None
    assert str(listed.changes[0].after[0].user_id) == changes["changes"][0]["after"][0]["user_id"]


@pytest.mark.parametrize("call", ["read_policy", "replace_users", "list_changes"])
async def test_a_cloud_access_answer_out_of_contract_is_a_502_naming_the_provisioner(
    call: str,
) -> None:
    provisioner = FakeCaller({"users": "everyone"})
    provisioner.name = "provisioner"
    args = (cloud_access.AccessUpdate(users=[]),) if call == "replace_users" else ()
    with pytest.raises(ProviderError) as caught:
        await getattr(cloud_access, call)(provisioner, *args)
    assert caught.value.status == 502
    assert caught.value.message == "provisioner service answered an unexpected body"


def test_the_admin_list_update_is_strict_and_bounded() -> None:
    user = {"user_id": str(uuid.uuid4()), "email": None}
    assert cloud_access.AccessUpdate.model_validate({"users": [user]}).actor_id is None
    for bad in (
        {"users": [user], "all": True},
        {"users": [{**user, "granted_by": None}]},
        {"users": [{**user, "email": "x" * 321}]},
        {"users": [{"user_id": "bob"}]},
        {"users": [user] * (cloud_access.MAX_ACCESS_USERS + 1)},
    ):
        with pytest.raises(ValidationError):
            cloud_access.AccessUpdate.model_validate(bad)
