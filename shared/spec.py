"""The project spec (docs/design.md §4): one strict pydantic model, shared by every service.

API bodies and YAML files are validated with :meth:`ProjectSpec.model_validate`; unknown
fields are refused with the field named. Sources are URIs parsed by :func:`parse_source`:
``hf://owner/name[@rev]``, ``hf://datasets/owner/name[@rev]``, ``kaggle://owner/slug[@version]``,
``kaggle://models/owner/slug/framework/variation[@version]``, ``https://…``, ``upload://<id>``.

Values that later reach a shell, ssh or Ansible are held to strict patterns here:
``environment.packages`` entries are plain PEP 508 requirements (a name, extras and version
specifiers; no URL, option, marker, direct reference or template syntax) and
``HostSpec.address`` is a hostname or an IP literal (:func:`is_host_address`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from shared.data_sources import DB_SCHEMES, SOURCE_SCHEMES, DatasetSpec, source_fields
from shared.train_args import check_train_args

__all__ = [
    "Choice",
    "DeploySpec",
    "EnvironmentSpec",
    "HostSpec",
    "ProjectSpec",
    "ResourcesSpec",
    "Source",
    "TrainSpec",
    "LLM_TASKS",
    "check_requirement",
    "default_method",
    "task_packages",
    "is_host_address",
    "parse_source",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_TEMPLATE_MARKS = ("{{", "{%", "{#", "}}", "%}", "#}")
_REV = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")

Task = Literal["text-classification", "image-classification", "causal-lm", "chat", "custom"]

#: Tasks that fine-tune a causal language model: they take ``train.method`` (full, lora,
#: qlora) and get a pre-flight check of their data before any node is provisioned.
LLM_TASKS = ("causal-lm", "chat")

#: ``train.method`` left out: ``full`` below this many parameters, ``lora`` from it on
#: (decided by the fetcher's pre-flight check from the model's config.json).
LORA_DEFAULT_FROM_PARAMS = 500_000_000

TrainMethod = Literal["full", "lora", "qlora"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(BaseModel):
    """A parsed artifact URI. ``revision`` is None when the URI names none."""

    model_config = ConfigDict(frozen=True)

    scheme: Literal["hf", "kaggle", "https", "upload", "s3", "postgresql", "mysql"]
    kind: Literal["model", "dataset"]
    id: str  # repo id, owner/slug, URL or upload id; s3/database: see shared.data_sources
    revision: str | None = None
    uri: str
    # s3 and database sources (shared.data_sources): endpoint/region, query/table
    endpoint: str | None = None
    region: str | None = None
    query: str | None = None
    table: str | None = None

    @property
    def pinned(self) -> bool:
        """True when the revision is an immutable id (a 40-hex commit or a Kaggle version)."""
        if self.revision is None:
            return False
        if self.scheme == "hf":
            return re.fullmatch(r"[0-9a-f]{40}", self.revision) is not None
        return self.scheme == "kaggle" and self.revision.isdigit()


SourceKind = Literal["model", "dataset"]


def parse_source(uri: str, *, kind: SourceKind, options: Any = None) -> Source:
    """Parse an artifact URI; raises ``ValueError`` with a readable message. ``options``:
    a :class:`~shared.data_sources.DatasetSpec` (endpoint, region, query, table)."""
    if not isinstance(uri, str) or "://" not in uri:
        raise ValueError(
            f"{uri!r} is not a source URI: use hf://, kaggle://, https://, upload://, s3://, "
            "postgresql:// or mysql://"
        )
    scheme, rest = uri.split("://", 1)
    if scheme in (*SOURCE_SCHEMES, "postgres"):
        if kind == "model" and scheme != "s3":
            raise ValueError(f"{uri!r}: a database is a dataset source, not a model")
        return Source(kind=kind, uri=uri, **source_fields(scheme, uri, options))
    if scheme == "https":
        if not rest or rest.startswith("/"):
            raise ValueError(f"{uri!r} has no host")
        return Source(scheme="https", kind=kind, id=uri, uri=uri)
    if scheme == "upload":
        if not re.fullmatch(r"[A-Za-z0-9-]{6,64}", rest):
            raise ValueError(f"{uri!r}: an upload id is letters, digits and dashes")
        return Source(scheme="upload", kind=kind, id=rest, uri=uri)
    if scheme not in ("hf", "kaggle"):
        raise ValueError(
            f"unsupported source scheme {scheme!r} "
            "(hf, kaggle, https, upload, s3, postgresql, mysql)"
        )
    path, _, revision = rest.partition("@")
    if revision == "" and "@" in rest:
        raise ValueError(f"{uri!r}: empty revision after '@'")
    if revision and not _REV.fullmatch(revision):
        raise ValueError(f"{uri!r}: invalid revision {revision!r}")
    if scheme == "hf":
        path, kind = _hub_path(uri, path, kind)
    else:
        path, kind = _kaggle_path(uri, path, kind, revision)
    return Source(scheme=scheme, kind=kind, id=path, revision=revision or None, uri=uri)  # type: ignore[arg-type]


def _hub_path(uri: str, path: str, kind: SourceKind) -> tuple[str, SourceKind]:
    """A HuggingFace URI's repo id and kind (``datasets/…`` is a dataset)."""
    if path.startswith("datasets/"):
        path, kind = path.removeprefix("datasets/"), "dataset"
    elif path.startswith("models/"):
        path = path.removeprefix("models/")
    if not _REPO.fullmatch(path):
        raise ValueError(f"{uri!r}: a HuggingFace id is 'owner/name'")
    return path, kind


def _kaggle_path(uri: str, path: str, kind: SourceKind, revision: str) -> tuple[str, SourceKind]:
    """A Kaggle URI's id and kind (``models/owner/slug/framework/variation`` is a model)."""
    if path.startswith("models/"):
        kind = "model"
        if len(path.split("/")) != 5:
            raise ValueError(f"{uri!r}: a Kaggle model is models/owner/slug/framework/variation")
    elif path.startswith("datasets/"):
        path = path.removeprefix("datasets/")
    if kind == "dataset" and not re.fullmatch(r"[A-Za-z0-9_-]+/[A-Za-z0-9_.-]+", path):
        raise ValueError(f"{uri!r}: a Kaggle dataset is 'owner/slug'")
    if revision and not revision.isdigit():
        raise ValueError(f"{uri!r}: a Kaggle version is a number")
    return path, kind


def is_host_address(value: str) -> bool:
    """True for an IPv4/IPv6 literal (no zone id) or an RFC 1123 hostname: dot-separated
    labels of letters, digits and inner dashes, at most 253 characters, not all-numeric."""
    if not isinstance(value, str) or not value or "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    if len(value) > 253:
        return False
    labels = value.removesuffix(".").split(".")
    return all(_HOST_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def check_requirement(text: str) -> Requirement:
    """Parse one ``environment.packages`` entry; raises ``ValueError`` naming what is refused.

    Only ``name[extras] <specifiers>`` passes: options (``-…``), URLs, paths, direct
    references (``name @ url``), environment markers and template syntax are refused.
    """
    raw = text.strip() if isinstance(text, str) else ""
    if not raw or len(raw) > 200:
        raise ValueError(f"invalid package requirement {text!r}: 1 to 200 characters")
    if raw.startswith("-"):
        raise ValueError(f"invalid package requirement {text!r}: options are not allowed")
    if any(mark in raw for mark in _TEMPLATE_MARKS):
        raise ValueError(f"invalid package requirement {text!r}: template syntax is not allowed")
    if any(not (c.isprintable() and c.isascii()) for c in raw):
        raise ValueError(f"invalid package requirement {text!r}: control or non-ASCII characters")
    try:
        req = Requirement(raw)
    except InvalidRequirement as exc:
        raise ValueError(
            f"invalid package requirement {text!r}: not a name with version specifiers ({exc})"
        ) from None
    if req.url is not None:
        raise ValueError(
            f"invalid package requirement {text!r}: direct references (name @ URL) are not allowed"
        )
    if req.marker is not None:
        raise ValueError(f"invalid package requirement {text!r}: markers are not allowed")
    return req


class TrainSpec(_Strict):
    entrypoint: str | None = Field(None, description="custom task only: script run by torchrun")
    script: str | None = Field(
        None,
        max_length=262_144,
        description="custom task: the entrypoint's source, inlined (the CLI reads the file)",
    )
    args: dict[str, Any] = Field(default_factory=dict, description="hyperparameters")
    method: TrainMethod | None = Field(
        None,
        description="chat and causal-lm: full fine-tuning, lora (peft adapters) or qlora (lora"
        " on a 4-bit base, CUDA only); left out: full under ~500M parameters, lora above",
    )
    checkpoint_every: Annotated[int, Field(ge=1, le=1_000_000)] = 50

    @field_validator("entrypoint")
    @classmethod
    def _safe_entrypoint(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in value.split("/")):
            raise ValueError("entrypoint must be a relative path inside the project")
        return value


class EnvironmentSpec(_Strict):
    python: str = Field("3.11", pattern=r"^3\.\d{1,2}$")
    framework: Literal["pytorch", "tensorflow"] = Field(
        "pytorch",
        description="pytorch: torch chosen by accelerator; tensorflow: tensorflow-cpu (cpu) or"
        " tensorflow[and-cuda] (cuda) with Keras 3, no torch",
    )
    packages: list[str] = Field(default_factory=list, max_length=200)

    @field_validator("packages")
    @classmethod
    def _valid_packages(cls, value: list[str]) -> list[str]:
        for package in value:
            check_requirement(package)
        return value


class HostSpec(_Strict):
    address: str = Field(min_length=1, max_length=253, description="hostname or IP literal")
    user: str = Field("root", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    port: int = Field(22, ge=1, le=65535)
    identity: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$",
        description="name of a stored secret holding the key",
    )

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        if not is_host_address(value):
            raise ValueError(f"{value!r} is not a hostname or an IP address")
        return value


Provider = Literal["local", "ssh", "idc"]
_INSTANCE_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Choice(BaseModel):
    """One place a run's nodes may come from: a provider and, for idc, an instance type."""

    model_config = ConfigDict(frozen=True)

    provider: Provider
    instance_type: str | None = None

    def label(self) -> str:
        return f"{self.provider} {self.instance_type}" if self.instance_type else self.provider


class ResourcesSpec(_Strict):
    """Where the nodes come from. ``instance_type`` (idc) may be a list in order of
    preference and ``fallback`` names providers tried after ``provider``: a choice without
    capacity (or over a quota) moves provisioning to the next one (:meth:`choices`)."""

    provider: Provider = "local"
    nodes: int = Field(1, ge=1, le=64)
    accelerator: Literal["cpu", "cuda", "gaudi", "xpu"] = "cpu"
    instance_type: str | list[str] | None = Field(
        None, description="idc: one instance type, or several in order of preference"
    )
    fallback: list[Provider] = Field(
        default_factory=list,
        max_length=2,
        description="providers tried, in order, when the first has no capacity",
    )
    hosts: list[HostSpec] = Field(default_factory=list)
    autostop_minutes: int = Field(30, ge=1, le=10_080)
    max_hourly_usd: float | None = Field(None, gt=0)
    retry_larger_on_oom: bool = Field(
        False,
        description="a training process that runs out of memory is retried once, from its"
        " last checkpoint, on the next choice (the next instance type or fallback provider:"
        " list them smaller first)",
    )

    @field_validator("instance_type")
    @classmethod
    def _valid_instance_types(cls, value: str | list[str] | None) -> str | list[str] | None:
        names = [value] if isinstance(value, str) else value or []
        if isinstance(value, list) and not 1 <= len(value) <= 8:
            raise ValueError("instance_type: a list of 1 to 8 instance types")
        for name in names:
            if not _INSTANCE_TYPE.fullmatch(name):
                raise ValueError(
                    f"instance_type {name!r}: letters, digits, '.', '_' and '-' (at most 64)"
                )
        if len(set(names)) != len(names):
            raise ValueError("instance_type: an instance type is listed twice")
        return value

    @model_validator(mode="after")
    def _fallback_needs(self) -> ResourcesSpec:
        chain = self.providers()
        if len(set(chain)) != len(chain):
            raise ValueError(
                "resources.fallback: each provider once, and not the first provider again"
            )
        if "ssh" in chain and len(self.hosts) < self.nodes:
            which = "provider ssh" if self.provider == "ssh" else "fallback ssh"
            raise ValueError(f"{which} needs {self.nodes} host(s) in resources.hosts")
        if "local" in self.fallback and self.nodes != 1:
            raise ValueError("fallback local runs one node (resources.nodes: 1)")
        if isinstance(self.instance_type, list) and "idc" not in chain:
            raise ValueError("instance_type: a list of instance types is for provider idc")
        if self.retry_larger_on_oom and len(self.choices()) < 2:
            raise ValueError(
                "retry_larger_on_oom needs a choice to move to: list several instance types"
                " or a fallback provider"
            )
        return self

    def providers(self) -> list[Provider]:
        """``provider`` then ``fallback``, in order."""
        return [self.provider, *self.fallback]

    def instance_types(self) -> list[str]:
        """The idc instance types in order of preference (empty: the platform's default)."""
        value = self.instance_type
        return [value] if isinstance(value, str) else list(value or [])

    def choices(self) -> list[Choice]:
        """Every place to try, in order: each instance type of idc, each other provider."""
        made: list[Choice] = []
        for provider in self.providers():
            types: list[str | None] = [*self.instance_types()] if provider == "idc" else []
            made += [Choice(provider=provider, instance_type=t) for t in types or [None]]
        return made

    def narrowed(self, choice: Choice) -> ResourcesSpec:
        """These resources as one ``choice`` sees them: its provider and instance type, no
        fallback (what a driver reads)."""
        return self.model_copy(
            update={
                "provider": choice.provider,
                "instance_type": choice.instance_type,
                "fallback": [],
            }
        )


class DeploySpec(_Strict):
    """``enabled``: serve the trained model when the run succeeds. The new deployment
    becomes the project's live endpoint once running and the project's other deployments
    are stopped then, unless ``keep_previous``. ``replicas``: server processes behind it
    (round-robin). ``idle_timeout_s``: scale to zero after that long without a request (the
    next request starts it again: a cold start); None never."""

    enabled: bool = False
    replicas: int = Field(1, ge=1, le=8)
    idle_timeout_s: int | None = Field(None, ge=1, le=30 * 86400)
    keep_previous: bool = False


#: Built-in tasks with a Keras 3 template (environment.framework: tensorflow).
KERAS_TASKS = ("text-classification", "image-classification")


def _check_tensorflow(spec: ProjectSpec) -> None:
    """What a TensorFlow environment supports: cpu or cuda, one node, Keras templates."""
    if spec.resources.accelerator not in ("cpu", "cuda"):
        raise ValueError(
            "environment.framework tensorflow runs on accelerator cpu or cuda, not"
            f" {spec.resources.accelerator}"
        )
    if spec.resources.nodes != 1:
        raise ValueError(
            "environment.framework tensorflow runs on one node (resources.nodes: 1); one"
            " process uses every GPU of the node"
        )
    if spec.task not in (*KERAS_TASKS, "custom"):
        raise ValueError(
            f"task {spec.task} has no Keras template: use {', '.join(KERAS_TASKS)} or custom"
            " with environment.framework tensorflow"
        )


def _check_method(spec: ProjectSpec) -> None:
    """``train.method`` is for the LLM tasks; qlora needs CUDA (bitsandbytes 4-bit)."""
    method = spec.train.method
    if method is None:
        return
    if spec.task not in LLM_TASKS and method != "full":
        raise ValueError(
            f"train.method {method} is for tasks {' and '.join(LLM_TASKS)}, not {spec.task}"
        )
    if method == "qlora" and spec.resources.accelerator != "cuda":
        raise ValueError(
            "train.method qlora needs CUDA (bitsandbytes 4-bit quantisation runs on NVIDIA GPUs"
            f" only) and resources.accelerator is {spec.resources.accelerator}: use method lora"
            " (same adapters, 16/32-bit base) or accelerator cuda"
        )


def _args_method(spec: ProjectSpec) -> str | None:
    """The method whose ``train.args`` keys apply: an LLM task without a method may get
    LoRA (large models), so its LoRA keys are allowed (``auto``)."""
    if spec.train.method is None and spec.task in LLM_TASKS:
        return "auto"
    return spec.train.method


def default_method(n_params: int | None) -> str:
    """``train.method`` for a spec that names none: lora from ~500M parameters on."""
    return "lora" if n_params is not None and n_params >= LORA_DEFAULT_FROM_PARAMS else "full"


def task_packages(spec: ProjectSpec) -> list[str]:
    """Packages the task's template needs in the run environment besides the spec's:
    TRL + peft for the LLM tasks (chat always uses TRL's SFTTrainer; causal-lm's LoRA uses
    peft), bitsandbytes for qlora; pyarrow for a database dataset (it arrives as Parquet)."""
    packages: list[str] = []
    dataset = spec.dataset_source()
    if dataset is not None and dataset.scheme in DB_SCHEMES:
        packages.append("pyarrow")
    if spec.task not in LLM_TASKS:
        return packages
    packages += ["trl>=0.20", "peft>=0.13"]
    if spec.train.method == "qlora":
        packages.append("bitsandbytes>=0.45")
    return packages


#: ``dataset``: a URI, or a mapping with the options of s3/database sources; the errors of
#: a mapping name its own fields (``dataset.mapping.query``), not the string branch's.
_Dataset = Annotated[
    Annotated[str, Tag("uri")] | Annotated[DatasetSpec, Tag("mapping")],
    Discriminator(lambda value: "uri" if isinstance(value, str) else "mapping"),
]


class ProjectSpec(_Strict):
    """A whole project spec. ``model_source()``/``dataset_source()`` give parsed URIs."""

    name: str
    model: str
    dataset: _Dataset | None = None  # a URI, or {uri, endpoint|region|query|table}
    task: Task = "text-classification"
    train: TrainSpec = Field(default_factory=TrainSpec)
    environment: EnvironmentSpec = Field(default_factory=EnvironmentSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    deploy: DeploySpec = Field(default_factory=DeploySpec)
    secrets: list[str] = Field(default_factory=list, max_length=50)
    # False: while a provider is unreachable, a floating ref (@main) resolved before is
    # fetched at its last resolution from the cache, with a CachedRevisionUsed warning.
    # True: such a fetch fails instead (reproducibility over availability).
    strict_revisions: bool = False

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("name: lowercase letters, digits and dashes, at most 63 characters")
        return value

    @field_validator("model")
    @classmethod
    def _valid_model(cls, value: str) -> str:
        parse_source(value, kind="model")
        return value

    @field_validator("dataset")
    @classmethod
    def _valid_dataset(cls, value: str | DatasetSpec | None) -> str | DatasetSpec | None:
        if isinstance(value, str):
            parse_source(value, kind="dataset")
        return value

    @field_validator("secrets")
    @classmethod
    def _valid_secret_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _SECRET_NAME.fullmatch(name):
                raise ValueError(f"invalid secret name {name!r}")
        return value

    @model_validator(mode="after")
    def _task_needs(self) -> ProjectSpec:
        if self.task == "custom" and not self.train.entrypoint:
            raise ValueError("task custom needs train.entrypoint")
        if self.task != "custom" and self.dataset is None:
            raise ValueError(f"task {self.task} needs a dataset")
        if self.environment.framework == "tensorflow":
            _check_tensorflow(self)
        _check_method(self)
        check_train_args(self.task, self.train.args, _args_method(self))
        return self

    def model_source(self) -> Source:
        return parse_source(self.model, kind="model")

    def narrowed(self, choice: Choice) -> ProjectSpec:
        """This spec as one provider/instance-type ``choice`` sees it (no fallback)."""
        return self.model_copy(update={"resources": self.resources.narrowed(choice)})

    def dataset_source(self) -> Source | None:
        if isinstance(self.dataset, DatasetSpec):
            return parse_source(self.dataset.uri, kind="dataset", options=self.dataset)
        return None if self.dataset is None else parse_source(self.dataset, kind="dataset")
