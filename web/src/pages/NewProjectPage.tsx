// The guided new-project form: validated as you type, with the YAML equivalent alongside.
import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { api, items, uploadFile, type Project } from "../api";
import { ErrorBanner, Field, ProgressBar, describedBy } from "../components/ui";
import { formatBytes } from "../runState";
import { LlmOptions } from "../components/LlmOptions";
import { DataSourceFields } from "../components/DataSourceFields";
import { DEFAULT_FORM, LLM_TASKS, toSpec, toYaml, validate, type SpecForm } from "../spec";

const TASKS: [SpecForm["task"], string][] = [
  ["text-classification", "Text classification (sentiment, topics…)"],
  ["image-classification", "Image classification"],
  ["causal-lm", "Language model fine-tuning (causal LM)"],
  ["chat", "Chat model fine-tuning (conversations, SFT)"],
  ["custom", "Custom training script"],
];

export function NewProjectPage() {
  const [form, setForm] = useState<SpecForm>(DEFAULT_FORM);
  const [touched, setTouched] = useState<Set<keyof SpecForm>>(new Set());
  const [submitted, setSubmitted] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [secretNames, setSecretNames] = useState<string[]>([]);
  const [upload, setUpload] = useState<{ name: string; done: number; total: number; error?: string; abort?: () => void } | null>(null);
  const errorRef = useRef<HTMLDivElement>(null);

  useEffect(() => {
    api.get("/api/secrets").then(
      (body) => setSecretNames(items<string>(body)),
      () => setSecretNames([]),
    );
  }, []);

  const errors = useMemo(() => validate(form), [form]);
  const spec = useMemo(() => toSpec(form), [form]);
  const yamlText = useMemo(() => toYaml(spec), [spec]);
  const valid = Object.keys(errors).length === 0;
  const show = (k: keyof SpecForm) => (submitted || touched.has(k) ? errors[k] : undefined);

  function set<K extends keyof SpecForm>(key: K, value: SpecForm[K]) {
    setForm((f) => ({ ...f, [key]: value }));
    setTouched((t) => new Set(t).add(key));
  }

  const text = (key: keyof SpecForm, props: Record<string, unknown> = {}) => ({
    id: key,
    value: String(form[key] ?? ""),
    onChange: (e: { target: { value: string } }) => set(key, e.target.value as never),
    ...describedBy(key, show(key)),
    ...props,
  });

  function onFile(file: File | undefined) {
    upload?.abort?.();
    set("uploadUri", "");
    if (!file) return setUpload(null);
    const job = uploadFile(file, (done, total) => setUpload((u) => (u ? { ...u, done, total } : u)));
    setUpload({ name: file.name, done: 0, total: file.size, abort: job.abort });
    job.promise.then(
      (res) => {
        set("uploadUri", res.uri);
        setUpload((u) => (u ? { ...u, done: u.total, abort: undefined } : u));
      },
      (err: Error) => setUpload((u) => (u ? { ...u, error: err.message, abort: undefined } : u)),
    );
  }

  async function submit(e: FormEvent) {
    e.preventDefault();
    setSubmitted(true);
    setError(null);
    if (!valid) {
      const first = Object.keys(errors)[0];
      document.getElementById(first)?.focus();
      return;
    }
    setBusy(true);
    try {
      const project = await api.post<Project>("/api/projects", { name: form.name, spec });
      window.location.hash = `#/projects/${project.id}`;
    } catch (err) {
      setError(err);
      errorRef.current?.scrollIntoView({ behavior: "smooth", block: "center" });
    } finally {
      setBusy(false);
    }
  }

  function download() {
    const url = URL.createObjectURL(new Blob([yamlText], { type: "application/yaml" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = `${form.name || "project"}.yaml`;
    a.click();
    URL.revokeObjectURL(url);
  }

  return (
    <main className="page">
      <div className="page-head">
        <h1>New project</h1>
        <a className="btn btn-ghost" href="#/">
          Cancel
        </a>
      </div>
      <div className="new-project">
        <form onSubmit={submit} noValidate className="form" aria-label="New project">
          <div ref={errorRef}>
            <ErrorBanner error={error} />
          </div>
          <fieldset className="card">
            <legend>1. Name</legend>
            <Field id="name" label="Project name" error={show("name")} hint="Lowercase letters, digits and dashes.">
              <input {...text("name")} autoFocus />
            </Field>
          </fieldset>

          <fieldset className="card">
            <legend>2. Model</legend>
            <p className="muted">Any model on HuggingFace. Pin a commit for reproducible runs.</p>
            <div className="row">
              <Field id="modelId" label="HuggingFace model id" error={show("modelId")} hint="e.g. sentence-transformers/all-MiniLM-L6-v2">
                <input {...text("modelId")} spellCheck={false} />
              </Field>
              <Field id="modelRevision" label="Revision" error={show("modelRevision")} hint="branch, tag or commit">
                <input {...text("modelRevision")} spellCheck={false} />
              </Field>
            </div>
          </fieldset>

          <fieldset className="card">
            <legend>3. Dataset</legend>
            <div className="segmented" role="radiogroup" aria-label="Dataset source">
              {(
                [
                  ["hf", "HuggingFace"],
                  ["kaggle", "Kaggle"],
                  ["url", "URL"],
                  ["upload", "Upload a file"],
                  ["s3", "S3 storage"],
                  ["db", "Database"],
                ] as const
              ).map(([k, label]) => (
                <label key={k} className={form.datasetKind === k ? "seg active" : "seg"}>
                  <input type="radio" name="datasetKind" value={k} checked={form.datasetKind === k} onChange={() => set("datasetKind", k)} />
                  {label}
                </label>
              ))}
            </div>
            {(form.datasetKind === "hf" || form.datasetKind === "kaggle") && (
              <div className="row">
                <Field
                  id="datasetId"
                  label={form.datasetKind === "hf" ? "HuggingFace dataset id" : "Kaggle dataset (owner/slug)"}
                  error={show("datasetId")}
                  hint={form.datasetKind === "hf" ? "e.g. stanfordnlp/imdb" : "e.g. lakshmi25npathi/imdb-dataset-of-50k-movie-reviews"}
                >
                  <input {...text("datasetId")} spellCheck={false} />
                </Field>
                <Field id="datasetRevision" label={form.datasetKind === "hf" ? "Revision" : "Version"} error={show("datasetRevision")} hint="optional">
                  <input {...text("datasetRevision")} spellCheck={false} />
                </Field>
              </div>
            )}
            {form.datasetKind === "kaggle" && <p className="muted small">Kaggle needs your KAGGLE_API_TOKEN secret (see Secrets), selected below.</p>}
            {form.datasetKind === "url" && (
              <Field id="datasetUrl" label="Dataset URL" error={show("datasetUrl")} hint="https:// link to a csv, jsonl, parquet or archive">
                <input {...text("datasetUrl")} type="url" spellCheck={false} />
              </Field>
            )}
            {form.datasetKind === "upload" && (
              <Field id="uploadFile" label="Dataset file" error={show("uploadUri")} hint="csv, jsonl, parquet or zip — uploaded and encrypted at rest">
                <input id="uploadFile" type="file" onChange={(e) => onFile(e.target.files?.[0])} {...describedBy("uploadFile", show("uploadUri"))} />
              </Field>
            )}
            {(form.datasetKind === "s3" || form.datasetKind === "db") && <DataSourceFields form={form} set={set} error={show} />}
            {form.datasetKind === "upload" && upload && (
              <div className="upload" aria-live="polite">
                <div className="stage-row">
                  <span>{upload.name}</span>
                  <span>
                    {upload.error ? upload.error : form.uploadUri ? `uploaded · ${form.uploadUri}` : `${formatBytes(upload.done)} / ${formatBytes(upload.total)}`}
                  </span>
                </div>
                <ProgressBar value={upload.done} max={upload.total} label={`Upload of ${upload.name}`} />
              </div>
            )}
          </fieldset>

          <fieldset className="card">
            <legend>4. Task</legend>
            <Field id="task" label="What should the model learn?">
              <select id="task" value={form.task} onChange={(e) => set("task", e.target.value as SpecForm["task"])}>
                {TASKS.map(([v, label]) => (
                  <option key={v} value={v}>
                    {label}
                  </option>
                ))}
              </select>
            </Field>
            {LLM_TASKS.includes(form.task) && <LlmOptions form={form} set={set} error={show} />}
            {form.task === "custom" && (
              <>
                <Field id="entrypoint" label="Script file name" error={show("entrypoint")}>
                  <input {...text("entrypoint")} spellCheck={false} />
                </Field>
                <Field id="script" label={form.framework === "tensorflow" ? "Training script (Keras: pass aidp_progress.keras_callback() to fit)" : "Training script (runs under torchrun)"} error={show("script")}>
                  <textarea {...text("script")} rows={8} className="mono" spellCheck={false} />
                </Field>
              </>
            )}
            <Field id="framework" label="Framework" error={show("framework")} hint={form.framework === "tensorflow" ? "TensorFlow with Keras 3 (no PyTorch); the built-in tasks use their Keras templates." : "PyTorch, picked for your accelerator."}>
              <select id="framework" value={form.framework} onChange={(e) => set("framework", e.target.value as SpecForm["framework"])} {...describedBy("framework", show("framework"))}>
                <option value="pytorch">PyTorch</option>
                <option value="tensorflow">TensorFlow / Keras</option>
              </select>
            </Field>
            <Field id="packages" label="Extra Python packages" error={show("packages")} hint="One per line, e.g. scikit-learn or datasets>=2.19. The framework comes with the environment.">
              <textarea {...text("packages")} rows={2} className="mono" spellCheck={false} />
            </Field>
          </fieldset>

          <fieldset className="card">
            <legend>5. Compute</legend>
            <div className="row">
              <Field id="provider" label="Where to run" hint={form.provider === "local" ? "This machine — nothing to set up." : form.provider === "ssh" ? "Your own machines over SSH." : "Intel Tiber AI Cloud VMs."}>
                <select id="provider" value={form.provider} onChange={(e) => set("provider", e.target.value as SpecForm["provider"])} aria-describedby="provider-hint">
                  <option value="local">This machine (local)</option>
                  <option value="ssh">My SSH hosts</option>
                  <option value="idc">Intel Tiber AI Cloud</option>
                </select>
              </Field>
              <Field id="nodes" label="Nodes" error={show("nodes")}>
                <input id="nodes" type="number" min={1} max={64} value={form.nodes} onChange={(e) => set("nodes", Number(e.target.value))} {...describedBy("nodes", show("nodes"))} />
              </Field>
              <Field id="accelerator" label="Accelerator">
                <select id="accelerator" value={form.accelerator} onChange={(e) => set("accelerator", e.target.value as SpecForm["accelerator"])}>
                  <option value="cpu">CPU</option>
                  <option value="cuda">NVIDIA GPU (CUDA)</option>
                  <option value="gaudi">Intel Gaudi</option>
                  <option value="xpu">Intel GPU (XPU)</option>
                </select>
              </Field>
            </div>
            {form.provider === "idc" && (
              <Field id="instanceType" label="Instance type" error={show("instanceType")} hint="e.g. vm-spr-sml (small Sapphire Rapids VM)">
                <input {...text("instanceType")} spellCheck={false} />
              </Field>
            )}
            {form.provider === "ssh" && (
              <div className="row">
                <Field id="hosts" label="Hosts" error={show("hosts")} hint="One per line: user@address:port">
                  <textarea {...text("hosts")} rows={3} className="mono" spellCheck={false} />
                </Field>
                <Field id="hostIdentity" label="SSH key (secret)" hint="A secret holding the private key">
                  <select id="hostIdentity" value={form.hostIdentity} onChange={(e) => set("hostIdentity", e.target.value)}>
                    <option value="">(agent / none)</option>
                    {secretNames.map((n) => (
                      <option key={n}>{n}</option>
                    ))}
                  </select>
                </Field>
              </div>
            )}
            <div className="row">
              <Field id="maxHourlyUsd" label="Budget (USD per hour)" error={show("maxHourlyUsd")} hint="Optional cap on cloud spend">
                <input {...text("maxHourlyUsd")} inputMode="decimal" placeholder="no limit" />
              </Field>
              <Field id="autostopMinutes" label="Stop idle nodes after (minutes)" error={show("autostopMinutes")}>
                <input id="autostopMinutes" type="number" min={1} value={form.autostopMinutes} onChange={(e) => set("autostopMinutes", Number(e.target.value))} {...describedBy("autostopMinutes", show("autostopMinutes"))} />
              </Field>
            </div>
          </fieldset>

          <fieldset className="card">
            <legend>6. Hyperparameters</legend>
            <p className="muted">Good defaults for a first run; change them later and re-run.</p>
            <div className="row">
              <Field id="epochs" label="Epochs" error={show("epochs")}>
                <input {...text("epochs")} inputMode="decimal" />
              </Field>
              <Field id="learningRate" label="Learning rate" error={show("learningRate")}>
                <input {...text("learningRate")} inputMode="decimal" />
              </Field>
              <Field id="batchSize" label="Batch size" error={show("batchSize")}>
                <input {...text("batchSize")} inputMode="numeric" />
              </Field>
            </div>
            <div className="row">
              <Field id="maxSteps" label="Max steps" error={show("maxSteps")} hint="Empty: run all epochs">
                <input {...text("maxSteps")} inputMode="numeric" />
              </Field>
              <Field id="checkpointEvery" label="Checkpoint every (steps)" error={show("checkpointEvery")} hint="A retry resumes from the latest">
                <input {...text("checkpointEvery")} inputMode="numeric" />
              </Field>
            </div>
          </fieldset>

          <fieldset className="card">
            <legend>7. Secrets and deployment</legend>
            {secretNames.length === 0 ? (
              <p className="muted small">
                No secrets stored. Private models or Kaggle data need a token: add it on the <a href="#/secrets">Secrets</a> page.
              </p>
            ) : (
              <div className="checks" role="group" aria-label="Secrets this project may use">
                {secretNames.map((n) => (
                  <label key={n} className="check">
                    <input
                      type="checkbox"
                      checked={form.secrets.includes(n)}
                      onChange={(e) => set("secrets", e.target.checked ? [...form.secrets, n] : form.secrets.filter((s) => s !== n))}
                    />
                    {n}
                  </label>
                ))}
              </div>
            )}
            <label className="check switch">
              <input id="deploy" type="checkbox" checked={form.deploy} onChange={(e) => set("deploy", e.target.checked)} />
              Deploy the trained model behind an endpoint
            </label>
          </fieldset>

          <div className="form-actions">
            <button type="submit" className="btn btn-primary" disabled={busy}>
              {busy ? "Creating…" : "Create and start training"}
            </button>
            {!valid && submitted && (
              <span className="field-error" role="alert">
                Fix the {Object.keys(errors).length} highlighted field(s).
              </span>
            )}
          </div>
        </form>

        <aside className="card yaml" aria-labelledby="yaml-title">
          <div className="page-head">
            <h2 id="yaml-title">Spec (YAML)</h2>
            <button type="button" className="btn btn-small" onClick={download}>
              Download
            </button>
          </div>
          <p className="muted small">
            The same project from the command line: <code>aidp run {form.name || "project"}.yaml --follow</code>
          </p>
          <pre className="mono" data-testid="yaml-preview" aria-live="off">
            {yamlText}
          </pre>
          <p className={valid ? "ok small" : "field-error small"} role="status">
            {valid ? "✓ Valid spec" : `${Object.keys(errors).length} problem(s) to fix`}
          </p>
        </aside>
      </div>
    </main>
  );
}
