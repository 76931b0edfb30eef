// DPoP from a browser: headless Chromium runs a single-page app (page/) that calls
// examples/resource_server (--dpop required --dpop-nonce) with proofs made by the dpop package,
// after obtaining its token from the test's authorization server (as.mjs). The page, the
// authorization server and the API are three origins on 127.0.0.1, so every call is CORS, and
// the nonce retry works only if the API exposes DPoP-Nonce. Plain HTTP is enough: Chromium
// counts http://127.0.0.1 as potentially trustworthy, so the page is a secure context and has
// WebCrypto (the page shows isSecureContext, checked below). This script starts all three
// origins, drives Chromium through playwright-core, and checks what the page shows.
//
// Usage: node interop.mjs PATH/TO/resource_server   (interop/browser/run runs it)
// Exits non-zero unless every check holds; stops everything it started, on failure too.

import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startAuthorizationServer } from './as.mjs';

const CHROMIUM = '/usr/bin/chromium';
// The machine's network is closed: without these, Chromium waits on background connections.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const AUDIENCE = 'https://api.browser-interop.example';
// The one client the authorization server knows; its subject differs from its id on purpose.
const CLIENT = {
  id: 'browser-spa',
  secret: 'spa-secret',
  subject: 'spa-7f3a',
  scope: 'read write',
};
const REQUESTED_SCOPE = 'read';
const SERVER_START_TIMEOUT_MS = 30_000;
const BROWSER_LAUNCH_TIMEOUT_MS = 60_000;
// From opening the page to its final state; the page makes seven requests on loopback.
const PAGE_TIMEOUT_MS = 30_000;
// Everything, as a last resort against a hang that no other timeout catches.
const RUN_TIMEOUT_MS = 180_000;

const here = fileURLToPath(new URL('.', import.meta.url));
// The page server's whole content: path -> [file, type].
const PAGE_FILES = {
  '/': [join(here, 'page/index.html'), 'text/html; charset=utf-8'],
  '/app.mjs': [join(here, 'page/app.mjs'), 'text/javascript'],
  '/vendor/dpop.mjs': [fileURLToPath(import.meta.resolve('dpop')), 'text/javascript'],
};

// Stopped in reverse order when the run ends, however it ends.
const cleanups = [];
let failures = 0;
let passes = 0;
// Shown when a check fails.
const diagnostics = { page: null, console: [], refused: [], apiLog: [] };

function check(ok, what, detail) {
  if (ok) {
    passes += 1;
    console.log(`PASS ${what}`);
  } else {
    failures += 1;
    const shown = typeof detail === 'string' ? detail : JSON.stringify(detail);
    console.log(`FAIL ${what}${detail === undefined ? '' : `: ${shown}`}`);
  }
  return ok;
}

async function cleanUp() {
  while (cleanups.length) {
    try {
      await cleanups.pop()();
    } catch (e) {
      console.error(`cleanup: ${e.message}`);
    }
  }
}

async function listen(server) {
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  cleanups.push(() => new Promise((resolve) => server.close(resolve).closeAllConnections()));
  return `http://127.0.0.1:${server.address().port}`;
}

// The page's origin: static files, nothing else.
function startPageServer() {
  return listen(
    createServer((request, response) => {
      const path = new URL(request.url, 'http://unused').pathname;
      // Browsers ask for one; an empty answer keeps a 404 out of the page's console.
      if (path === '/favicon.ico') return response.writeHead(204).end();
      const entry = request.method === 'GET' ? PAGE_FILES[path] : undefined;
      if (!entry) return response.writeHead(404).end();
      response.writeHead(200, { 'Content-Type': entry[1], 'Cache-Control': 'no-store' });
      createReadStream(entry[0]).pipe(response);
    }),
  );
}

// Starts the example server and resolves to its base URL once it prints `listening on URL`.
function startApi(bin, args, log) {
  const child = spawn(bin, args, { env: { ...process.env, NO_COLOR: '1' } });
  const stop = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  // Even if this process dies without running the cleanups.
  process.on('exit', stop);
  cleanups.push(
    () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(stop, 5_000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  );
  child.stdout.on('data', (chunk) => log.push(chunk.toString()));
  child.stderr.on('data', (chunk) => log.push(chunk.toString()));
  return new Promise((resolve, reject) => {
    const settle = (settler, value) => {
      clearTimeout(timer);
      child.stdout.off('data', take);
      settler(value);
    };
    const late = new Error(`resource_server did not start in ${SERVER_START_TIMEOUT_MS} ms`);
    const timer = setTimeout(() => settle(reject, late), SERVER_START_TIMEOUT_MS);
    const take = () => {
      const match = /^listening on (http:\/\/\S+)$/m.exec(log.join(''));
      if (match) settle(resolve, match[1]);
    };
    child.stdout.on('data', take);
    child.once('error', (e) => settle(reject, e));
    child.once('exit', (code, signal) =>
      settle(reject, new Error(`resource_server exited (${code ?? signal})`)),
    );
  });
}

async function launchChromium() {
  const userDataDir = await mkdtemp(join(tmpdir(), 'interop-browser-'));
  cleanups.push(() => rm(userDataDir, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: BROWSER_LAUNCH_TIMEOUT_MS,
  });
  cleanups.push(() => context.close());
  return context;
}

async function main(serverBin) {
  const pageOrigin = await startPageServer();
  const as = await startAuthorizationServer({
    audience: AUDIENCE,
    clients: { [CLIENT.id]: CLIENT },
    allowOrigin: pageOrigin,
  });
  cleanups.push(as.close);
  diagnostics.refused = as.refused;
  // No --public-url: the default public URL is http://<listen address>, which is the origin
  // the page calls, so the htu of its proofs fits. Port 0: the server prints the one it got.
  const api = await startApi(
    serverBin,
    [
      ...['--listen', '127.0.0.1:0', '--issuer', as.issuer, '--audience', AUDIENCE],
      ...['--jwks', as.jwksUrl, '--dpop', 'required', '--dpop-nonce', '--realm', 'browser'],
    ],
    diagnostics.apiLog,
  );

  const context = await launchChromium();
  const page = context.pages()[0] ?? (await context.newPage());
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => diagnostics.console.push(`${m.type()}: ${m.text()}`));

  const query = new URLSearchParams({
    as: as.issuer,
    api,
    client_id: CLIENT.id,
    client_secret: CLIENT.secret,
    scope: REQUESTED_SCOPE,
  });
  await page.goto(`${pageOrigin}/?${query}`, { timeout: PAGE_TIMEOUT_MS });
  const status = page.locator('#status');
  await page.waitForSelector('#status:is([data-state="done"], [data-state="error"])', {
    timeout: PAGE_TIMEOUT_MS,
  });
  const browser = context.browser()?.version() ?? 'version unknown';

  // What the page shows.
  const state = await status.getAttribute('data-state');
  const statusText = await status.textContent();
  const report = JSON.parse((await page.locator('#report').textContent()) || '{}');
  diagnostics.page = { statusText, report };
  const identityText = await page.locator('#identity').textContent();
  const extractableText = await page.locator('#extractable').textContent();

  check(state === 'done', 'the page ran to its end', statusText);
  const origins = new Set([report.origin, new URL(as.issuer).origin, new URL(api).origin]);
  check(origins.size === 3, 'page, authorization server and API are three origins', [...origins]);
  check(report.secureContext === true, 'the page is a secure context on http://127.0.0.1');

  const key = report.key ?? {};
  check(
    extractableText === 'false' && key.privateExtractable === false,
    'the private key is not extractable',
    { extractableText, key },
  );
  check(
    key.privateExport === 'refused: InvalidAccessError',
    'WebCrypto refuses to export the private key',
    key.privateExport,
  );

  const wrong = report.tokenWrongMethod ?? {};
  check(
    wrong.status === 400 &&
      wrong.body?.error === 'invalid_dpop_proof' &&
      as.refused.some((r) => r.error === 'invalid_dpop_proof' && /^htm "GET"/.test(r.description)),
    'the authorization server refuses a token request whose proof names GET',
    wrong,
  );
  const issued = as.issued.at(-1);
  check(
    report.token?.status === 200 &&
      report.token.body?.token_type === 'DPoP' &&
      as.issued.length === 1 &&
      issued.cnf.jkt === key.jkt,
    "a DPoP token bound to the page's key (cnf.jkt = the dpop package's thumbprint)",
    { token: report.token, issued },
  );

  const first = report.first ?? {};
  check(
    first.status === 401 &&
      /^DPoP /.test(first.challenge ?? '') &&
      /error="use_dpop_nonce"/.test(first.challenge),
    'the first call gets 401 use_dpop_nonce, WWW-Authenticate readable through CORS',
    first,
  );
  check(
    typeof first.nonce === 'string' && first.nonce.length > 0,
    'DPoP-Nonce is readable through CORS',
    first.nonce,
  );

  const retry = report.retry ?? {};
  check(retry.status === 200, 'the retry with the nonce succeeds', retry);
  let identity = null;
  try {
    identity = JSON.parse(identityText);
  } catch {
    // Checked below.
  }
  const expected = issued && {
    sub: issued.sub,
    client_id: issued.client_id,
    scope: issued.scope,
    binding: 'dpop',
  };
  check(
    issued?.sub === CLIENT.subject &&
      issued.client_id === CLIENT.id &&
      issued.scope === REQUESTED_SCOPE &&
      sameFields(identity, expected),
    'the page shows the identity the authorization server issued, bound by DPoP',
    { identityText, expected },
  );

  for (const [name, what] of [
    ['replay', 'the accepted proof, sent again, is refused'],
    ['otherUrl', 'a proof made for /api/admin, sent to /api/whoami, is refused'],
  ]) {
    const r = report[name] ?? {};
    check(r.status === 401 && /error="invalid_dpop_proof"/.test(r.challenge ?? ''), what, r);
  }
  check(pageErrors.length === 0, 'no uncaught errors in the page', pageErrors);
  return browser;
}

// Whether two JSON objects have the same keys with the same (primitive) values.
function sameFields(a, b) {
  if (!a || !b || typeof a !== 'object' || typeof b !== 'object') return false;
  const keys = Object.keys(a).sort();
  return keys.join() === Object.keys(b).sort().join() && keys.every((k) => a[k] === b[k]);
}

function diagnose() {
  const { page, console: lines, refused, apiLog } = diagnostics;
  if (page) {
    console.log(`--- the page: ${page.statusText}\n${JSON.stringify(page.report, null, 2)}`);
  }
  console.log(`--- the page's console:\n${lines.join('\n')}`);
  console.log(`--- refused by the authorization server: ${JSON.stringify(refused)}`);
  const logEnd = apiLog.join('').split('\n').slice(-40).join('\n');
  console.log(`--- resource_server's log (end):\n${logEnd}`);
}

const serverBin = process.argv[2];
if (!serverBin) {
  console.error('usage: node interop.mjs PATH/TO/resource_server');
  process.exit(2);
}
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
  process.on(signal, () => cleanUp().finally(() => process.exit(code)));
}
const watchdog = setTimeout(() => {
  console.log(`FAIL the run did not end within ${RUN_TIMEOUT_MS} ms`);
  diagnose();
  cleanUp().finally(() => process.exit(1));
}, RUN_TIMEOUT_MS);
let browser = 'Chromium';
try {
  browser = `Chromium ${await main(serverBin)}`;
} catch (e) {
  check(false, 'the run', e.stack ?? String(e));
} finally {
  await cleanUp();
  clearTimeout(watchdog);
}
if (failures) diagnose();
console.log(`interop browser (${browser}): ${passes} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
