// The new-project form's LLM options (issue 15): training method and LoRA settings, shown
// for the chat and causal-lm tasks.
import { Field } from "./ui";
import type { SpecForm } from "../spec";

const METHODS: [SpecForm["method"], string][] = [
  ["auto", "Automatic (full under ~500M parameters, LoRA above)"],
  ["full", "Full fine-tuning"],
  ["lora", "LoRA adapters"],
  ["qlora", "QLoRA (LoRA on a 4-bit base, NVIDIA GPU only)"],
];

export function LlmOptions({
  form,
  set,
  error,
}: {
  form: SpecForm;
  set: <K extends keyof SpecForm>(key: K, value: SpecForm[K]) => void;
  error: (key: keyof SpecForm) => string | undefined;
}) {
  const lora = form.method !== "full";
  return (
    <div className="row" data-testid="llm-options">
      <Field
        id="method"
        label="Training method"
        error={error("method")}
        hint={form.task === "chat" ? "Rows {\"messages\": [{role, content}, …]} rendered with the model's chat template." : undefined}
      >
        <select id="method" value={form.method} onChange={(e) => set("method", e.target.value as SpecForm["method"])}>
          {METHODS.map(([v, label]) => (
            <option key={v} value={v}>
              {label}
            </option>
          ))}
        </select>
      </Field>
      {lora && (
        <Field id="loraR" label="LoRA rank" error={error("loraR")} hint="Empty: 16">
          <input id="loraR" inputMode="numeric" value={form.loraR} onChange={(e) => set("loraR", e.target.value)} />
        </Field>
      )}
      <Field id="maxLength" label="Max length (tokens)" error={error("maxLength")} hint="Longer rows are truncated; the pre-flight check counts them.">
        <input id="maxLength" inputMode="numeric" value={form.maxLength} onChange={(e) => set("maxLength", e.target.value)} />
      </Field>
    </div>
  );
}
