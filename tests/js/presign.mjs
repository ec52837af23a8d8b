// Presigned URLs from the JavaScript presigners at their defaults, as an app's server makes
// them for a browser: the AWS SDK v3's getSignedUrl (PutObject, UploadPart after a
// CreateMultipartUpload, GetObject) and the MinIO client's presignedPutObject /
// presignedGetObject. Driven from pytest (tests/e2e/test_clients_presigners.py), which uses
// the URLs (Chromium's fetch(), curl) and reads the stored objects back from the store.
// Input: argv[2] names a JSON file {requests: [{id, presigner, endpoint, accessKey,
// secretKey, op, bucket, key, ...}]}; presigner "aws-sdk" has op "put" (optional
// checksumCRC32: a value the app passes, signed into the query), "put-header-crc32"
// {checksumCRC32} (the checksum kept as a signed header the user of the URL must send),
// "get", "parts" {parts: N} (CreateMultipartUpload, then one URL per part) and "complete"
// {uploadId, etags}; presigner "minio" has op "put" and "get".
// Output: one JSON line per request: {id, url} | {id, uploadId, urls} | {id, ok, etag} or
// {id, ok: false, code, message}. A failing request never stops the later ones.
import { readFileSync } from "node:fs";
import {
  S3Client,
  PutObjectCommand,
  GetObjectCommand,
  UploadPartCommand,
  CreateMultipartUploadCommand,
  CompleteMultipartUploadCommand,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import * as Minio from "minio";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const EXPIRES = 600;

const clients = new Map();
function client(r) {
  const id = `${r.presigner} ${r.endpoint} ${r.accessKey}`;
  if (!clients.has(id)) {
    if (r.presigner === "aws-sdk") {
      // Only what a user must give: endpoint, region, path style for an IP endpoint, keys.
      clients.set(id, new S3Client({
        endpoint: r.endpoint,
        region: "us-east-1",
        forcePathStyle: true,
        maxAttempts: 1,
        credentials: { accessKeyId: r.accessKey, secretAccessKey: r.secretKey },
      }));
    } else {
      const url = new URL(r.endpoint);
      clients.set(id, new Minio.Client({
        endPoint: url.hostname,
        port: Number(url.port),
        useSSL: false,
        accessKey: r.accessKey,
        secretKey: r.secretKey,
      }));
    }
  }
  return clients.get(id);
}

const sdk = {
  put: async (c, r) => {
    const params = { Bucket: r.bucket, Key: r.key };
    if (r.checksumCRC32) params.ChecksumCRC32 = r.checksumCRC32;
    return { url: await getSignedUrl(c, new PutObjectCommand(params), { expiresIn: EXPIRES }) };
  },
  "put-header-crc32": async (c, r) => ({
    url: await getSignedUrl(
      c,
      new PutObjectCommand({ Bucket: r.bucket, Key: r.key, ChecksumCRC32: r.checksumCRC32 }),
      { expiresIn: EXPIRES, unhoistableHeaders: new Set(["x-amz-checksum-crc32"]) },
    ),
  }),
  get: async (c, r) => ({
    url: await getSignedUrl(c, new GetObjectCommand({ Bucket: r.bucket, Key: r.key }),
      { expiresIn: EXPIRES }),
  }),
  parts: async (c, r) => {
    const up = await c.send(new CreateMultipartUploadCommand({ Bucket: r.bucket, Key: r.key }));
    const urls = [];
    for (let n = 1; n <= r.parts; n++) {
      const cmd = new UploadPartCommand({
        Bucket: r.bucket, Key: r.key, UploadId: up.UploadId, PartNumber: n,
      });
      urls.push(await getSignedUrl(c, cmd, { expiresIn: EXPIRES }));
    }
    return { uploadId: up.UploadId, urls };
  },
  complete: async (c, r) => {
    const done = await c.send(new CompleteMultipartUploadCommand({
      Bucket: r.bucket,
      Key: r.key,
      UploadId: r.uploadId,
      MultipartUpload: { Parts: r.etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
    }));
    return { ok: true, etag: done.ETag ?? null };
  },
};

const minio = {
  put: async (c, r) => ({ url: await c.presignedPutObject(r.bucket, r.key, EXPIRES) }),
  get: async (c, r) => ({ url: await c.presignedGetObject(r.bucket, r.key, EXPIRES) }),
};

for (const r of plan.requests) {
  let out;
  try {
    const fn = (r.presigner === "aws-sdk" ? sdk : minio)[r.op];
    if (!fn) throw new Error(`unknown ${r.presigner} op ${r.op}`);
    out = { id: r.id, ...(await fn(client(r), r)) };
  } catch (e) {
    out = { id: r.id, ok: false, code: e.Code ?? e.code ?? e.name ?? null,
      message: String(e.message ?? e).slice(0, 300) };
  }
  console.log(JSON.stringify(out));
}
