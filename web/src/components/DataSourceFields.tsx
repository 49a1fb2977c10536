// The new-project form's fields for an S3 bucket or a database query as the dataset (issue 18).
import { Field, describedBy } from "./ui";
import type { SpecForm } from "../spec";

export function DataSourceFields({
  form,
  set,
  error,
}: {
  form: SpecForm;
  set: <K extends keyof SpecForm>(key: K, value: SpecForm[K]) => void;
  error: (key: keyof SpecForm) => string | undefined;
}) {
  const input = (key: "s3Uri" | "s3Endpoint" | "s3Region" | "dbUri" | "dbTable") => ({
    id: key,
    value: form[key],
    spellCheck: false,
    onChange: (e: { target: { value: string } }) => set(key, e.target.value),
    ...describedBy(key, error(key)),
  });
  if (form.datasetKind === "s3")
    return (
      <div data-testid="s3-source">
        <Field id="s3Uri" label="Bucket and prefix" error={error("s3Uri")} hint="e.g. s3://acme-ml/reviews/ — every object under the prefix">
          <input {...input("s3Uri")} />
        </Field>
        <div className="row">
          <Field id="s3Endpoint" label="Endpoint" error={error("s3Endpoint")} hint="optional: MinIO, Ceph, Intel Tiber AI Cloud… (empty: AWS)">
            <input {...input("s3Endpoint")} type="url" />
          </Field>
          <Field id="s3Region" label="Region" error={error("s3Region")} hint="optional, e.g. eu-west-1">
            <input {...input("s3Region")} />
          </Field>
        </div>
        <p className="muted small">
          Select your S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY secrets below (none: a public bucket).
        </p>
      </div>
    );
  return (
    <div data-testid="db-source">
      <Field id="dbUri" label="Database" error={error("dbUri")} hint="postgresql://user@host:5432/database or mysql://user@host/database">
        <input {...input("dbUri")} />
      </Field>
      <div className="segmented" role="radiogroup" aria-label="What to export">
        {(
          [
            ["query", "A query"],
            ["table", "A table"],
          ] as const
        ).map(([k, label]) => (
          <label key={k} className={form.dbMode === k ? "seg active" : "seg"}>
            <input type="radio" name="dbMode" value={k} checked={form.dbMode === k} onChange={() => set("dbMode", k)} />
            {label}
          </label>
        ))}
      </div>
      {form.dbMode === "query" ? (
        <Field id="dbQuery" label="Query" error={error("dbQuery")} hint="Runs read-only; the result becomes data.parquet. Add ORDER BY for a stable revision.">
          <textarea
            id="dbQuery"
            rows={4}
            spellCheck={false}
            value={form.dbQuery}
            onChange={(e) => set("dbQuery", e.target.value)}
            {...describedBy("dbQuery", error("dbQuery"))}
          />
        </Field>
      ) : (
        <Field id="dbTable" label="Table" error={error("dbTable")} hint="name or schema.name">
          <input {...input("dbTable")} />
        </Field>
      )}
      <p className="muted small">Select your DB_PASSWORD secret below (and DB_USER if the URI names no user).</p>
    </div>
  );
}
