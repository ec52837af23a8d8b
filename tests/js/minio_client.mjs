// The MinIO JavaScript client at its default settings, driven step by step from pytest
// (tests/e2e/test_clients_dropin.py), as a user's app would use it against S3_ENDPOINT_URL.
// Input: argv[2] names a JSON file {endpoint, accessKey, secretKey, steps: [{op, ...}]}.
// Output: one JSON line per step, in order: {op, ok: true, ...result} or
// {op, ok: false, code, message}. A failing step never stops the later ones, so
// the caller compares every outcome (direct to the store vs through s3shim).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as Minio from "minio";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const url = new URL(plan.endpoint);
// Only what a user must give: host, port, plain http and the keys (region, path style,
// signature and part sizes stay the client's own defaults).
const client = new Minio.Client({
  endPoint: url.hostname,
  port: Number(url.port),
  useSSL: false,
  accessKey: plan.accessKey,
  secretKey: plan.secretKey,
});

const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");

async function drain(stream) {
  const parts = [];
  for await (const piece of stream) parts.push(piece);
  return Buffer.concat(parts);
}

async function listed(stream) {
  const names = [];
  for await (const item of stream) names.push(item.name ?? `${item.prefix}`);
  return names;
}

const ops = {
  makeBucket: async (s) => (await client.makeBucket(s.bucket), {}),
  bucketExists: async (s) => ({ exists: await client.bucketExists(s.bucket) }),
  putObject: async (s) => {
    const data = readFileSync(s.file);
    const r = await client.putObject(s.bucket, s.key, data, data.length);
    return { etag: r.etag ?? null };
  },
  fPutObject: async (s) => {
    const r = await client.fPutObject(s.bucket, s.key, s.file, {});
    return { etag: r.etag ?? null };
  },
  fGetObject: async (s) => (await client.fGetObject(s.bucket, s.key, s.file), {}),
  getObject: async (s) => {
    const body = await drain(await client.getObject(s.bucket, s.key));
    return { size: body.length, sha256: sha256(body) };
  },
  statObject: async (s) => {
    const st = await client.statObject(s.bucket, s.key);
    return { size: st.size, etag: st.etag };
  },
  listObjects: async (s) => ({
    names: await listed(client.listObjects(s.bucket, s.prefix ?? "", s.recursive ?? false)),
  }),
  listObjectsV2: async (s) => ({
    names: await listed(client.listObjectsV2(s.bucket, s.prefix ?? "", s.recursive ?? false)),
  }),
  presignedGetObject: async (s) => {
    // The URL is fetched here, with Node's own fetch, as an app hands it to anyone.
    const signed = await client.presignedGetObject(s.bucket, s.key, s.expires ?? 600);
    const res = await fetch(signed);
    const body = Buffer.from(await res.arrayBuffer());
    return { fetchStatus: res.status, size: body.length, sha256: sha256(body),
      v4: signed.includes("X-Amz-Signature=") };
  },
  removeObject: async (s) => (await client.removeObject(s.bucket, s.key), {}),
  removeBucket: async (s) => (await client.removeBucket(s.bucket), {}),
};

for (const step of plan.steps) {
  const fn = ops[step.op];
  let out;
  try {
    if (!fn) throw new Error(`unknown op ${step.op}`);
    out = { op: step.op, ok: true, ...(await fn(step)) };
  } catch (e) {
    out = { op: step.op, ok: false, code: e.code ?? e.name ?? null,
      message: String(e.message ?? e).slice(0, 300) };
  }
  console.log(JSON.stringify(out));
}
