// The new-project form's S3 and database dataset sources (issue 18): their validation
// (mirroring shared/data_sources.py) and the spec's `dataset` mapping they make.
import type { Errors, SpecForm } from "./spec";

const S3 = /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/[^\s]*)?$/;
const ENDPOINT = /^https?:\/\/[A-Za-z0-9.\-[\]:]+\/?$/;
const REGION = /^[a-z0-9][a-z0-9-]{0,39}$/;
const DB =
  /^(postgresql|postgres|mysql):\/\/([A-Za-z0-9_][A-Za-z0-9_.$-]{0,62}@)?[A-Za-z0-9.\-[\]:]+\/[A-Za-z0-9_][A-Za-z0-9_$.-]{0,62}(\?sslmode=(disable|allow|prefer|require|verify-ca|verify-full))?$/;
const TABLE = /^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$/;

/** Adds the problems of an S3 or database dataset to ``e``. */
export function validateDataSource(f: SpecForm, needsData: boolean, e: Errors): void {
  if (f.datasetKind === "s3") {
    const uri = f.s3Uri.trim();
    if ((needsData || uri) && (!S3.test(uri) || uri.split("/").slice(3).some((p) => p === "." || p === "..")))
      e.s3Uri = "s3://bucket/prefix — a bucket of 3 to 63 lowercase letters, digits, dots and dashes.";
    if (f.s3Endpoint.trim() && !ENDPOINT.test(f.s3Endpoint.trim()))
      e.s3Endpoint = "A base URL like https://objectstore.example.com (no path, user or query).";
    if (f.s3Region.trim() && !REGION.test(f.s3Region.trim())) e.s3Region = "A region name like eu-west-1.";
  } else if (f.datasetKind === "db") {
    const uri = f.dbUri.trim();
    if (/^[a-z]+:\/\/[^/@]*:[^/@]*@/.test(uri))
      e.dbUri = "Never put the password in the URI: store it as the DB_PASSWORD secret and select it below.";
    else if ((needsData || uri) && !DB.test(uri))
      e.dbUri = "postgresql://user@host:5432/database or mysql://user@host/database.";
    if (uri && f.dbMode === "query" && !f.dbQuery.trim()) e.dbQuery = "One SELECT statement.";
    if (uri && f.dbMode === "table" && !TABLE.test(f.dbTable.trim()))
      e.dbTable = "A table name (letters, digits, _ and $), optionally schema.table.";
  }
}

/** The spec's `dataset` for an S3 or database source, or null when none is given. */
export function dataSourceSpec(f: SpecForm): string | Record<string, string> | null {
  if (f.datasetKind === "s3") {
    const uri = f.s3Uri.trim();
    if (!uri) return null;
    const endpoint = f.s3Endpoint.trim();
    const region = f.s3Region.trim();
    if (!endpoint && !region) return uri;
    return { uri, ...(endpoint ? { endpoint } : {}), ...(region ? { region } : {}) };
  }
  const uri = f.dbUri.trim();
  if (!uri) return null;
  return f.dbMode === "table" ? { uri, table: f.dbTable.trim() } : { uri, query: f.dbQuery.trim() };
}
