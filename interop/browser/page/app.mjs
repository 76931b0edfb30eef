// The single-page app. WebCrypto makes a P-256 key whose private half cannot leave the browser;
// the dpop package (panva) makes every proof with it. The app obtains a DPoP-bound token from the
// test's authorization server, then calls GET /api/whoami on the API, retrying once when the
// API asks for a nonce (RFC 9449 §8). Both servers are other origins, so every call is CORS.
// The page only shows what happened; interop.mjs judges it.
//
// Query string: as (the authorization server), api (the API), client_id, client_secret, scope.

import { calculateThumbprint, generateProof } from 'dpop';

const config = Object.fromEntries(new URLSearchParams(location.search));
const whoamiUrl = `${config.api}/api/whoami`;
const report = {};
// The latest DPoP-Nonce the API sent.
let nonce;

const element = (id) => document.getElementById(id);

function show(state, text) {
  element('report').textContent = JSON.stringify(report, null, 2);
  element('status').textContent = text;
  element('status').dataset.state = state;
}

// What a script on this origin can see of a response: the headers CORS exposes, no others.
async function seen(response) {
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return {
    status: response.status,
    challenge: response.headers.get('WWW-Authenticate'),
    nonce: response.headers.get('DPoP-Nonce'),
    body,
  };
}

async function requestToken(keys, htm) {
  const tokenUrl = `${config.as}/token`;
  const response = await fetch(tokenUrl, {
    method: 'POST',
    headers: { DPoP: await generateProof(keys, tokenUrl, htm) },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: config.client_id,
      client_secret: config.client_secret,
      scope: config.scope,
    }),
  });
  return seen(response);
}

// GET /api/whoami with the token and a proof: a fresh one for `htu` carrying the latest nonce,
// unless `proof` is given.
async function callWhoami(keys, accessToken, { htu = whoamiUrl, proof } = {}) {
  proof ??= await generateProof(keys, htu, 'GET', nonce, accessToken);
  const response = await fetch(whoamiUrl, {
    headers: { Authorization: `DPoP ${accessToken}`, DPoP: proof },
  });
  const result = await seen(response);
  nonce = result.nonce ?? nonce;
  return { result, proof };
}

async function main() {
  report.origin = location.origin;
  report.secureContext = window.isSecureContext;
  element('origin').textContent = `${location.origin} (${window.isSecureContext})`;

  const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, [
    'sign',
    'verify',
  ]);
  report.key = {
    privateExtractable: keys.privateKey.extractable,
    jkt: await calculateThumbprint(keys.publicKey),
  };
  try {
    await crypto.subtle.exportKey('jwk', keys.privateKey);
    report.key.privateExport = 'allowed';
  } catch (e) {
    report.key.privateExport = `refused: ${e.name}`;
  }
  element('extractable').textContent = String(keys.privateKey.extractable);

  // A proof made for GET, on a POST: the authorization server must refuse it (§4.3 check 8).
  report.tokenWrongMethod = await requestToken(keys, 'GET');
  const token = await requestToken(keys, 'POST');
  const accessToken = token.body.access_token;
  report.token = { ...token, body: { ...token.body, access_token: accessToken && '(hidden)' } };
  if (token.status !== 200 || typeof accessToken !== 'string') {
    return show('error', `no token: ${token.status}`);
  }

  // No nonce yet: the API answers use_dpop_nonce with one in DPoP-Nonce, which this script
  // can read only because the API's CORS exposes it.
  const first = await callWhoami(keys, accessToken);
  report.first = first.result;
  const asked = /error="use_dpop_nonce"/.test(first.result.challenge ?? '');
  if (!(first.result.status === 401 && asked && first.result.nonce)) {
    return show('error', `no nonce to retry with: ${first.result.status}`);
  }
  const retry = await callWhoami(keys, accessToken);
  report.retry = retry.result;
  if (retry.result.status !== 200) {
    return show('error', `the retry with the nonce: ${retry.result.status}`);
  }
  element('identity').textContent = JSON.stringify(retry.result.body, null, 2);

  // The accepted request again, proof and all: a proof is used once (§11.1).
  report.replay = (await callWhoami(keys, accessToken, { proof: retry.proof })).result;
  // A fresh proof with the nonce, but made for another URL of the API (§4.3 check 9).
  const adminUrl = `${config.api}/api/admin`;
  report.otherUrl = (await callWhoami(keys, accessToken, { htu: adminUrl })).result;

  show('done', `signed in as ${retry.result.body.sub} after the nonce retry`);
}

main().catch((e) => {
  report.error = `${e.name}: ${e.message}`;
  show('error', report.error);
});
