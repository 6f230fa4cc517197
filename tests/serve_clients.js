// serve_clients.js - the Node side of tests/test_serve_clients.py (which checks what it writes).
//
//   node serve_clients.js removebg NODE_MODULES URL PHOTO OUT.json
//       the npm client `remove.bg`, its endpoint constant replaced by URL (its source is read and
//       compiled with the one string changed: the installed package is not touched), through its
//       base64 and its file functions, and an error; OUT.json gets what it returned
//   node serve_clients.js editor NODE_MODULES URL PHOTO OUT_DIR
//       Debian's Chromium driven by playwright-core: the editor at URL opens PHOTO, drops the
//       class of the first chip, paints a keep and an erase stroke, downloads the PNG; OUT_DIR
//       gets editor-download.png, editor.png (a screenshot) and editor.json (the render request
//       of the download, the view's geometry, the mouse paths)
"use strict";
const fs = require("fs");
const path = require("path");
const Module = require("module");

const [mode, nodeModules, url, photo, out] = process.argv.slice(2);

async function removebg() {
  const file = path.join(nodeModules, "remove.bg", "dist", "index.js");
  const original = fs.readFileSync(file, "utf8");
  const endpoint = "https://api.remove.bg/v1.0/removebg";
  if (!original.includes(endpoint)) throw new Error(`${file} has no ${endpoint} to replace`);
  const m = new Module(file, module);
  m.filename = file;
  m.paths = Module._nodeModulePaths(path.dirname(file));
  m._compile(original.replace(endpoint, url + "/v1.0/removebg"), file);
  const rbg = m.exports;
  const result = {};
  const b64 = fs.readFileSync(photo).toString("base64");
  const r = await rbg.removeBackgroundFromImageBase64({ apiKey: "any", base64img: b64, size: "full" });
  result.base64 = { b64: r.base64img, type: r.detectedType, width: r.resultWidth, height: r.resultHeight };
  const f = await rbg.removeBackgroundFromImageFile({ apiKey: "any", path: photo, size: "full", crop: true });
  result.file = { b64: f.base64img, width: f.resultWidth, height: f.resultHeight };
  try {
    await rbg.removeBackgroundFromImageBase64({ apiKey: "any", base64img: b64, size: "enormous" });
    result.error = "no error";
  } catch (e) {
    result.error = e;
  }
  fs.writeFileSync(out, JSON.stringify(result));
}

async function editor() {
  const { chromium } = require(path.join(nodeModules, "playwright-core"));
  const profile = fs.mkdtempSync(path.join(out, "chromium-")); // a fresh profile: --user-data-dir
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    viewport: { width: 1000, height: 700 },
    acceptDownloads: true,
  });
  const errors = [];
  const renders = [];
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (msg) => { if (msg.type() === "error") errors.push(msg.text()); });
    page.on("request", (r) => { if (r.url().endsWith("/render")) renders.push(JSON.parse(r.postData() || "{}")); });
    const ready = () => page.waitForSelector('body[data-state="ready"]', { timeout: 60000 });
    await page.goto(url + "/");
    await page.setInputFiles("#file", photo);
    await ready();
    const session = await page.evaluate(() => ({ w: state.session.width, h: state.session.height }));
    // drop the class of the first chip (the largest share)
    const chip = page.locator("#classes button").first();
    const dropped = Number(await chip.getAttribute("data-class"));
    await chip.click();
    await page.waitForSelector(`#classes button[data-class="${dropped}"][aria-pressed="false"]`);
    await ready();
    // the view: the photo fitted and centred in it
    const box = await page.locator("#view").boundingBox();
    const k = Math.min(box.width / session.w, box.height / session.h);
    const ox = box.x + (box.width - session.w * k) / 2, oy = box.y + (box.height - session.h * k) / 2;
    const screen = (x, y) => [ox + x * k, oy + y * k];
    async function stroke(tool, radius, from, to) {
      await page.click(`#tool-${tool}`);
      await page.locator("#brush").fill(String(radius));
      const a = screen(...from), b = screen(...to);
      await page.mouse.move(a[0], a[1]);
      await page.mouse.down();
      await page.mouse.move(b[0], b[1], { steps: 12 });
      await page.mouse.up();
      await ready();
      return { from, to, radius };
    }
    const W = session.w, H = session.h;
    const keep = await stroke("keep", 10, [0.1 * W, 0.35 * H], [0.9 * W, 0.4 * H]);
    const erase = await stroke("erase", 7, [0.2 * W, 0.75 * H], [0.8 * W, 0.7 * H]);
    await page.screenshot({ path: path.join(out, "editor.png") });
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#dl-png")]);
    await download.saveAs(path.join(out, "editor-download.png"));
    await ready();
    fs.writeFileSync(path.join(out, "editor.json"), JSON.stringify({
      session, dropped, keep, erase, errors, download: renders[renders.length - 1], renders: renders.length,
      name: download.suggestedFilename(),
    }));
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

(mode === "removebg" ? removebg() : editor()).catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
