import { describe, expect, it } from "vitest";
import { DEFAULT_FORM, toSpec, validate, type SpecForm } from "./spec";

const s3 = (over: Partial<SpecForm>): SpecForm => ({ ...DEFAULT_FORM, datasetKind: "s3", ...over });
const db = (over: Partial<SpecForm>): SpecForm => ({ ...DEFAULT_FORM, datasetKind: "db", ...over });

describe("S3 and database datasets", () => {
  it("an S3 prefix is a plain URI, with an endpoint a mapping", () => {
    expect(validate(s3({ s3Uri: "s3://acme-ml/reviews/" }))).toEqual({});
    expect(toSpec(s3({ s3Uri: "s3://acme-ml/reviews/" })).dataset).toBe("s3://acme-ml/reviews/");
    const f = s3({ s3Uri: "s3://acme-ml/reviews/", s3Endpoint: "https://minio.example.com:9000", s3Region: "eu-west-1" });
    expect(validate(f)).toEqual({});
    expect(toSpec(f).dataset).toEqual({ uri: "s3://acme-ml/reviews/", endpoint: "https://minio.example.com:9000", region: "eu-west-1" });
  });

  it("refuses bad buckets, endpoints and regions", () => {
    expect(validate(s3({ s3Uri: "s3://Bad_Bucket/x" })).s3Uri).toBeTruthy();
    expect(validate(s3({ s3Uri: "s3://acme-ml/../x" })).s3Uri).toBeTruthy();
    expect(validate(s3({ s3Uri: "" })).s3Uri).toBeTruthy(); // the task needs data
    expect(validate(s3({ s3Uri: "s3://acme-ml", s3Endpoint: "https://u:p@x.example.com" })).s3Endpoint).toBeTruthy();
    expect(validate(s3({ s3Uri: "s3://acme-ml", s3Region: "EU WEST" })).s3Region).toBeTruthy();
  });

  it("a database query or table becomes a mapping", () => {
    const q = db({ dbUri: "postgresql://analyst@db.example.com:5432/sales", dbQuery: "SELECT text, label FROM reviews ORDER BY id" });
    expect(validate(q)).toEqual({});
    expect(toSpec(q).dataset).toEqual({ uri: "postgresql://analyst@db.example.com:5432/sales", query: "SELECT text, label FROM reviews ORDER BY id" });
    const t = db({ dbUri: "mysql://root@db.example.com/shop", dbMode: "table", dbTable: "shop.reviews" });
    expect(validate(t)).toEqual({});
    expect(toSpec(t).dataset).toEqual({ uri: "mysql://root@db.example.com/shop", table: "shop.reviews" });
  });

  it("refuses a password in the URI, a bad table and an empty query", () => {
    expect(validate(db({ dbUri: "postgresql://u:secret@db.example.com/sales", dbQuery: "SELECT 1" })).dbUri).toContain("DB_PASSWORD");
    expect(validate(db({ dbUri: "postgresql://db.example.com/sales", dbMode: "table", dbTable: "t; drop" })).dbTable).toBeTruthy();
    expect(validate(db({ dbUri: "postgresql://db.example.com/sales", dbQuery: "  " })).dbQuery).toBeTruthy();
    expect(validate(db({ dbUri: "ftp://db.example.com/sales", dbQuery: "SELECT 1" })).dbUri).toBeTruthy();
  });
});
