// A real browser (Debian's chromium, driven by playwright-core) doing what a web app does with
// S3: from a page on its own origin it fetch()es presigned URLs (PUT, GET: CORS applies, with a
// preflight for the PUT) and submits POST-policy <form>s with a file. Driven from pytest
// (tests/e2e/test_browser.py), which made the URLs and form fields and reads the stored
// objects back from the store itself.
// Input: argv[2] names a JSON file {userDataDir, cases: [{name, kind, page, ...}]}, where
// kind is "fetch" {method, url, bodyB64?} or "form" {url, fields: [[name, value]...],
// fileName, fileB64, mimeType}. One browser for all cases; each case starts on its page.
// Output: one JSON line per case: {name, ...outcome}.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));

// Never a browser of Playwright's own: the distribution's chromium, a fresh profile.
const context = await chromium.launchPersistentContext(plan.userDataDir, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

async function viaFetch(page, c) {
  // Inside the page: the browser applies CORS, sends the preflight and hides what the
  // store's CORS rule does not expose, exactly as for the app's own scripts.
  return page.evaluate(async ({ method, url, bodyB64 }) => {
    const init = { method };
    if (bodyB64 !== undefined) init.body = Uint8Array.from(atob(bodyB64), (ch) => ch.charCodeAt(0));
    try {
      const res = await fetch(url, init);
      const bytes = new Uint8Array(await res.arrayBuffer());
      let bin = "";
      for (let i = 0; i < bytes.length; i += 0x8000) {
        bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      }
      return { status: res.status, etag: res.headers.get("etag"), bodyB64: btoa(bin) };
    } catch (e) {
      // A CORS refusal: the script learns nothing but that it failed.
      return { error: `${e.name}: ${e.message}` };
    }
  }, c);
}

async function viaForm(page, c) {
  await page.evaluate(({ url, fields }) => {
    const form = document.createElement("form");
    form.method = "POST";
    form.action = url;
    form.enctype = "multipart/form-data";
    for (const [name, value] of fields) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      form.appendChild(input);
    }
    // S3 ignores fields after the file, so the file input comes last.
    const file = document.createElement("input");
    file.type = "file";
    file.name = "file";
    file.id = "file";
    form.appendChild(file);
    const submit = document.createElement("input");
    submit.type = "submit";
    submit.id = "submit";
    form.appendChild(submit);
    document.body.appendChild(form);
  }, c);
  await page.setInputFiles("#file", {
    name: c.fileName,
    mimeType: c.mimeType,
    buffer: Buffer.from(c.fileB64, "base64"),
  });
  const posted = page.waitForResponse((r) => r.request().method() === "POST", { timeout: 30000 });
  await page.click("#submit");
  const res = await posted;
  await page.waitForLoadState("load");
  let text = null;
  try {
    text = (await res.text()).slice(0, 4000);
  } catch {
    text = null; // a redirect has no body to read
  }
  return { status: res.status(), location: res.headers()["location"] ?? null,
    finalUrl: page.url(), text };
}

try {
  const page = await context.newPage();
  for (const c of plan.cases) {
    let out;
    try {
      await page.goto(c.page, { waitUntil: "load" });
      out = c.kind === "form" ? await viaForm(page, c) : await viaFetch(page, c);
    } catch (e) {
      out = { error: `driver: ${e.name}: ${String(e.message).slice(0, 500)}` };
    }
    console.log(JSON.stringify({ name: c.name, ...out }));
  }
} finally {
  await context.close();
}
