// The new-project form's state, its validation (mirroring shared/spec.py) and the spec it makes.
import { stringify } from "yaml";
import { dataSourceSpec, validateDataSource } from "./dataSources";

export type DatasetKind = "hf" | "kaggle" | "url" | "upload" | "s3" | "db";
export type Task = "text-classification" | "image-classification" | "causal-lm" | "chat" | "custom";
/** Tasks that take a training method (full, LoRA, QLoRA) and get a pre-flight check. */
export const LLM_TASKS: Task[] = ["causal-lm", "chat"];

export interface SpecForm {
  name: string;
  modelId: string;
  modelRevision: string;
  datasetKind: DatasetKind;
  datasetId: string;
  datasetRevision: string;
  datasetUrl: string;
  uploadUri: string;
  s3Uri: string;
  s3Endpoint: string;
  s3Region: string;
  dbUri: string;
  dbMode: "query" | "table";
  dbQuery: string;
  dbTable: string;
  task: Task;
  method: "auto" | "full" | "lora" | "qlora";
  loraR: string;
  maxLength: string;
  entrypoint: string;
  script: string;
  packages: string;
  framework: "pytorch" | "tensorflow";
  provider: "local" | "ssh" | "idc";
  nodes: number;
  accelerator: "cpu" | "cuda" | "gaudi" | "xpu";
  instanceType: string;
  hosts: string;
  hostIdentity: string;
  maxHourlyUsd: string;
  autostopMinutes: number;
  epochs: string;
  learningRate: string;
  batchSize: string;
  maxSteps: string;
  checkpointEvery: string;
  deploy: boolean;
  secrets: string[];
}

export const DEFAULT_FORM: SpecForm = {
  name: "my-first-model",
  modelId: "sentence-transformers/all-MiniLM-L6-v2",
  modelRevision: "main",
  datasetKind: "hf",
  datasetId: "stanfordnlp/imdb",
  datasetRevision: "main",
  datasetUrl: "",
  uploadUri: "",
  s3Uri: "",
  s3Endpoint: "",
  s3Region: "",
  dbUri: "",
  dbMode: "query",
  dbQuery: "",
  dbTable: "",
  task: "text-classification",
  method: "auto",
  loraR: "",
  maxLength: "",
  entrypoint: "train.py",
  script: "",
  packages: "",
  framework: "pytorch",
  provider: "local",
  nodes: 1,
  accelerator: "cpu",
  instanceType: "vm-spr-sml",
  hosts: "",
  hostIdentity: "",
  maxHourlyUsd: "",
  autostopMinutes: 30,
  epochs: "1",
  learningRate: "5e-5",
  batchSize: "16",
  maxSteps: "200",
  checkpointEvery: "50",
  deploy: true,
  secrets: [],
};

export type Errors = Partial<Record<keyof SpecForm, string>>;

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const REPO = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)?$/;
const REV = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$/;
const KAGGLE = /^[A-Za-z0-9_-]+\/[A-Za-z0-9_.-]+$/;
const PACKAGE = /^[A-Za-z0-9][A-Za-z0-9._\-[\],]*\s*([<>=!~]=?.*)?$/;
const HOST = /^(?:([a-z_][a-z0-9_-]{0,31})@)?([A-Za-z0-9.\-:[\]]+?)(?::(\d{1,5}))?$/;

const packagesOf = (text: string): string[] =>
  text
    .split(/[\n,]+/)
    .map((s) => s.trim())
    .filter(Boolean);

function positiveNumber(text: string, integer: boolean): boolean {
  const n = Number(text);
  return text.trim() !== "" && Number.isFinite(n) && n > 0 && (!integer || Number.isInteger(n));
}

/** Field → message for every problem in the form (empty when valid). */
export function validate(f: SpecForm): Errors {
  const e: Errors = {};
  if (!NAME.test(f.name)) e.name = "Lowercase letters, digits and dashes (start with a letter or digit), at most 63.";
  if (!REPO.test(f.modelId.trim())) e.modelId = "A HuggingFace model id like owner/name.";
  if (f.modelRevision && !REV.test(f.modelRevision)) e.modelRevision = "A branch, tag or commit.";
  const needsData = f.task !== "custom";
  if (f.datasetKind === "hf") {
    if ((needsData || f.datasetId) && !REPO.test(f.datasetId.trim())) e.datasetId = "A HuggingFace dataset id like owner/name.";
    if (f.datasetRevision && !REV.test(f.datasetRevision)) e.datasetRevision = "A branch, tag or commit.";
  } else if (f.datasetKind === "kaggle") {
    if ((needsData || f.datasetId) && !KAGGLE.test(f.datasetId.trim())) e.datasetId = "A Kaggle dataset like owner/slug.";
    if (f.datasetRevision && !/^\d+$/.test(f.datasetRevision)) e.datasetRevision = "A Kaggle version is a number (or leave empty).";
  } else if (f.datasetKind === "url") {
    if ((needsData || f.datasetUrl) && !/^https:\/\/[^/\s]+\S*$/.test(f.datasetUrl.trim())) e.datasetUrl = "An https:// URL.";
  } else if (f.datasetKind === "s3" || f.datasetKind === "db") {
    validateDataSource(f, needsData, e);
  } else if (needsData && !f.uploadUri) {
    e.uploadUri = "Choose a file and wait for the upload to finish.";
  }
  if (f.task === "custom") {
    if (!f.entrypoint.trim() || f.entrypoint.startsWith("/") || f.entrypoint.split("/").includes(".."))
      e.entrypoint = "A relative file name, like train.py.";
    if (!f.script.trim()) e.script = "Paste the training script (it runs under torchrun).";
  }
  const bad = packagesOf(f.packages).find((p) => !PACKAGE.test(p) || /[;|&$`]/.test(p));
  if (bad) e.packages = `Not a package requirement: ${bad}`;
  if (!Number.isInteger(f.nodes) || f.nodes < 1 || f.nodes > 64) e.nodes = "Between 1 and 64 nodes.";
  if (f.provider === "ssh") {
    const hosts = f.hosts.split("\n").map((s) => s.trim()).filter(Boolean);
    if (hosts.length < f.nodes) e.hosts = `SSH needs ${f.nodes} host(s), one per line: user@address:port.`;
    else if (hosts.some((h) => !HOST.test(h))) e.hosts = "One host per line: user@address:port.";
  }
  if (f.provider === "idc" && !f.instanceType.trim()) e.instanceType = "Pick an instance type, e.g. vm-spr-sml.";
  if (f.maxHourlyUsd && !positiveNumber(f.maxHourlyUsd, false)) e.maxHourlyUsd = "A positive amount in USD, or empty for no limit.";
  if (!Number.isInteger(f.autostopMinutes) || f.autostopMinutes < 1) e.autostopMinutes = "At least 1 minute.";
  if (!positiveNumber(f.epochs, false)) e.epochs = "A positive number.";
  if (!positiveNumber(f.learningRate, false)) e.learningRate = "A positive number, e.g. 5e-5.";
  if (!positiveNumber(f.batchSize, true)) e.batchSize = "A positive whole number.";
  if (f.maxSteps && !positiveNumber(f.maxSteps, true)) e.maxSteps = "A positive whole number, or empty.";
  if (!positiveNumber(f.checkpointEvery, true)) e.checkpointEvery = "A positive whole number of steps.";
  if (f.framework === "tensorflow") {
    if (f.accelerator !== "cpu" && f.accelerator !== "cuda")
      e.framework = "TensorFlow runs on CPU or an NVIDIA GPU (CUDA): choose one of those accelerators.";
    else if (f.nodes !== 1) e.framework = "TensorFlow runs on one node (one process uses all its GPUs).";
    else if (LLM_TASKS.includes(f.task))
      e.framework = "This task has no Keras template: use text or image classification, or a custom script.";
  }
  if (LLM_TASKS.includes(f.task)) {
    if (f.method === "qlora" && f.accelerator !== "cuda")
      e.method = "QLoRA needs an NVIDIA GPU (accelerator CUDA): choose LoRA, or the CUDA accelerator.";
    if (f.loraR && f.method !== "full" && !positiveNumber(f.loraR, true)) e.loraR = "A positive whole number, e.g. 16.";
    if (f.maxLength && !positiveNumber(f.maxLength, true)) e.maxLength = "A positive whole number of tokens.";
  }
  return e;
}

function withRev(base: string, rev: string): string {
  return rev.trim() ? `${base}@${rev.trim()}` : base;
}

/** The dataset URI of the form, or null when none is given (custom task). */
export function datasetUri(f: SpecForm): string | null {
  switch (f.datasetKind) {
    case "hf":
      return f.datasetId.trim() ? withRev(`hf://datasets/${f.datasetId.trim()}`, f.datasetRevision) : null;
    case "kaggle":
      return f.datasetId.trim() ? withRev(`kaggle://${f.datasetId.trim()}`, f.datasetRevision) : null;
    case "url":
      return f.datasetUrl.trim() || null;
    case "upload":
      return f.uploadUri || null;
    case "s3":
    case "db": {
      const d = dataSourceSpec(f);
      return typeof d === "string" ? d : (d?.uri ?? null);
    }
  }
}

/** The project spec (docs/design.md §4) the form describes. */
export function toSpec(f: SpecForm): Record<string, unknown> {
  const args: Record<string, number> = {
    epochs: Number(f.epochs),
    learning_rate: Number(f.learningRate),
    batch_size: Number(f.batchSize),
  };
  if (f.maxSteps) args.max_steps = Number(f.maxSteps);
  const train: Record<string, unknown> = { args, checkpoint_every: Number(f.checkpointEvery) };
  if (LLM_TASKS.includes(f.task)) {
    if (f.method !== "auto") train.method = f.method;
    if (f.loraR && f.method !== "full") args.lora_r = Number(f.loraR);
    if (f.maxLength) args.max_length = Number(f.maxLength);
  }
  if (f.task === "custom") {
    train.entrypoint = f.entrypoint.trim();
    train.script = f.script;
  }
  const resources: Record<string, unknown> = {
    provider: f.provider,
    nodes: f.nodes,
    accelerator: f.accelerator,
    autostop_minutes: f.autostopMinutes,
  };
  if (f.provider === "idc") resources.instance_type = f.instanceType.trim();
  if (f.maxHourlyUsd) resources.max_hourly_usd = Number(f.maxHourlyUsd);
  if (f.provider === "ssh") {
    resources.hosts = f.hosts
      .split("\n")
      .map((s) => s.trim())
      .filter(Boolean)
      .map((h) => {
        const m = HOST.exec(h);
        const host: Record<string, unknown> = { address: m?.[2] ?? h };
        if (m?.[1]) host.user = m[1];
        if (m?.[3]) host.port = Number(m[3]);
        if (f.hostIdentity) host.identity = f.hostIdentity;
        return host;
      });
  }
  const spec: Record<string, unknown> = {
    name: f.name,
    model: withRev(`hf://${f.modelId.trim()}`, f.modelRevision),
  };
  const dataset = f.datasetKind === "s3" || f.datasetKind === "db" ? dataSourceSpec(f) : datasetUri(f);
  if (dataset) spec.dataset = dataset;
  spec.task = f.task;
  spec.train = train;
  const packages = packagesOf(f.packages);
  if (packages.length || f.framework !== "pytorch")
    spec.environment = {
      python: "3.11",
      ...(f.framework !== "pytorch" ? { framework: f.framework } : {}),
      ...(packages.length ? { packages } : {}),
    };
  spec.resources = resources;
  spec.deploy = { enabled: f.deploy };
  if (f.secrets.length) spec.secrets = f.secrets;
  return spec;
}

export function toYaml(spec: Record<string, unknown>): string {
  return stringify(spec, { lineWidth: 100 });
}
