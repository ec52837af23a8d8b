// Uploads with the AWS SDK for JavaScript v3 at its default settings, as a user's app would.
// Input (env): S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, BUCKET, SIZES
// (comma-separated byte counts), NODE_EXTRA_CA_CERTS for a test CA over https.
// For each size it writes random bytes with PutObject (stream body -> aws-chunked with a
// CRC32 trailer) and with lib-storage's Upload (multipart for large bodies), then prints one
// JSON line per object: {key, size, sha256, etag, checksum} so the caller can compare bytes
// read back from the store directly.
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { S3Client, PutObjectCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";

const { S3_ENDPOINT_URL, BUCKET, SIZES } = process.env;
const client = new S3Client({
  endpoint: S3_ENDPOINT_URL,
  region: process.env.AWS_REGION || "us-east-1",
  forcePathStyle: true,
  maxAttempts: 1,
});

function streamOf(buf, piece = 65536) {
  // A flowing stream, so the SDK cannot hash it up front: it must frame it (aws-chunked).
  let offset = 0;
  return new Readable({
    read() {
      if (offset >= buf.length) return this.push(null);
      this.push(buf.subarray(offset, offset + piece));
      offset += piece;
    },
  });
}

const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");

for (const size of SIZES.split(",").map(Number)) {
  const data = randomBytes(size);
  const putKey = `js/put-${size}-${Date.now()}`;
  const put = await client.send(
    new PutObjectCommand({ Bucket: BUCKET, Key: putKey, Body: streamOf(data), ContentLength: size }),
  );
  console.log(JSON.stringify({ kind: "put", key: putKey, size, sha256: sha256(data),
    etag: put.ETag, checksum: put.ChecksumCRC32 ?? null }));

  const upKey = `js/upload-${size}-${Date.now()}`;
  const upload = new Upload({
    client,
    params: { Bucket: BUCKET, Key: upKey, Body: streamOf(data) },
    partSize: 5 * 1024 * 1024,
    queueSize: 2,
  });
  const done = await upload.done();
  const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: upKey }));
  console.log(JSON.stringify({ kind: "upload", key: upKey, size, sha256: sha256(data),
    etag: done.ETag ?? head.ETag, checksum: done.ChecksumCRC32 ?? null,
    headLength: head.ContentLength }));
}
