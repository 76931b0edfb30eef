// The test's authorization server: it serves its JWK Set and a token endpoint that issues
// DPoP-bound access tokens (RFC 9449 §5) through client_credentials (client_secret_post), after
// verifying the request's DPoP proof as RFC 9449 §4.3 says. The token is an RFC 9068 JWT
// (typ at+jwt, ES256) whose cnf.jkt is the RFC 7638 thumbprint of the proof's key.
//
// A real single-page app would use the authorization code grant with PKCE; client_credentials
// keeps this server small, and the DPoP part of the token request is the same. Browsers call
// it from the page's origin, so it answers CORS, preflights included.

import { randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import {
  EmbeddedJWK,
  SignJWT,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  jwtVerify,
} from 'jose';

// Asymmetric algorithms only: RFC 9449 §4.3 check 5 (`none` and MACs are never proofs).
const PROOF_ALGORITHMS = ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA', 'Ed25519'];
// How old a proof's iat may be, in seconds (RFC 9449 §4.3 check 11, §11.1).
const PROOF_MAX_AGE_S = 60;
// Clock skew allowed around iat, in seconds.
const PROOF_SKEW_S = 5;
const TOKEN_LIFETIME_S = 300;
// A token request is a short form; anything longer is refused unread.
const MAX_BODY_BYTES = 8 * 1024;

class OAuthError extends Error {
  constructor(status, error, description) {
    super(description);
    this.status = status;
    this.error = error;
  }
}

const invalidProof = (description) => new OAuthError(400, 'invalid_dpop_proof', description);

/**
 * Starts the server on 127.0.0.1 (a free port). `clients` maps a client_id to
 * `{ secret, subject, scope }`; `allowOrigin` is the one browser origin it answers.
 * Resolves to `{ issuer, jwksUrl, tokenEndpoint, issued, refused, close() }`: `issued` holds the
 * claims of every token issued, `refused` every refused request ({ error, description }).
 */
export async function startAuthorizationServer({ audience, clients, allowOrigin }) {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const kid = randomUUID();
  const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }] };
  const issued = [];
  const refused = [];
  // jti -> the time after which its proof is too old to be accepted anyway.
  const seenJtis = new Map();
  let issuer;
  let tokenEndpoint;

  async function verifyProof(request) {
    // RFC 9449 §4.3 check 1: exactly one DPoP header.
    const headers = request.headersDistinct.dpop ?? [];
    if (headers.length !== 1) throw invalidProof(`${headers.length} DPoP headers`);
    let verified;
    try {
      // Checks 2 to 7: a well-formed JWS, typ dpop+jwt, an asymmetric alg, a signature made
      // with the public key in its jwk header (EmbeddedJWK refuses a private key there), and
      // the claims present; iat within the window (check 11).
      verified = await jwtVerify(headers[0], EmbeddedJWK, {
        typ: 'dpop+jwt',
        algorithms: PROOF_ALGORITHMS,
        requiredClaims: ['jti', 'htm', 'htu', 'iat'],
        maxTokenAge: PROOF_MAX_AGE_S,
        clockTolerance: PROOF_SKEW_S,
      });
    } catch (e) {
      throw invalidProof(`${e.code ?? e.name}: ${e.message}`);
    }
    const { payload, protectedHeader } = verified;
    // Check 8: the method of this request.
    if (payload.htm !== 'POST') throw invalidProof(`htm ${JSON.stringify(payload.htm)}, not POST`);
    // Check 9: this request's URI, without query and fragment (URL normalizes case and ports).
    let htu;
    try {
      htu = new URL(payload.htu);
    } catch {
      throw invalidProof(`htu ${JSON.stringify(payload.htu)} is not a URL`);
    }
    if (htu.origin + htu.pathname !== tokenEndpoint) {
      throw invalidProof(`htu ${payload.htu}, not ${tokenEndpoint}`);
    }
    if (typeof payload.jti !== 'string' || payload.jti.length === 0) {
      throw invalidProof('jti is not a string');
    }
    // §11.1: a proof is used once. Entries leave the map once their proof is too old anyway.
    const now = Date.now() / 1000;
    for (const [jti, until] of seenJtis) if (until < now) seenJtis.delete(jti);
    if (seenJtis.has(payload.jti)) throw invalidProof(`jti ${payload.jti} was used before`);
    seenJtis.set(payload.jti, payload.iat + PROOF_MAX_AGE_S + PROOF_SKEW_S);
    return calculateJwkThumbprint(protectedHeader.jwk, 'sha256');
  }

  function authenticateClient(form) {
    const client = clients[form.get('client_id') ?? ''];
    const given = Buffer.from(form.get('client_secret') ?? '');
    const secret = Buffer.from(client?.secret ?? '');
    if (!client || given.length !== secret.length || !timingSafeEqual(given, secret)) {
      throw new OAuthError(401, 'invalid_client', 'unknown client or wrong secret');
    }
    return client;
  }

  async function token(request) {
    const type = (request.headers['content-type'] ?? '').split(';')[0].trim();
    if (type !== 'application/x-www-form-urlencoded') {
      throw new OAuthError(400, 'invalid_request', `content type ${JSON.stringify(type)}`);
    }
    const form = new URLSearchParams(await readBody(request));
    if (form.get('grant_type') !== 'client_credentials') {
      throw new OAuthError(400, 'unsupported_grant_type', 'only client_credentials');
    }
    const client = authenticateClient(form);
    const allowed = client.scope.split(' ');
    const requested = form.get('scope')?.split(' ').filter(Boolean) ?? allowed;
    if (requested.some((s) => !allowed.includes(s))) {
      throw new OAuthError(400, 'invalid_scope', `allowed: ${client.scope}`);
    }
    const jkt = await verifyProof(request);
    const claims = {
      client_id: form.get('client_id'),
      scope: requested.join(' '),
      cnf: { jkt },
    };
    const jti = randomUUID();
    const accessToken = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
      .setIssuer(issuer)
      .setAudience(audience)
      .setSubject(client.subject)
      .setIssuedAt()
      .setExpirationTime(`${TOKEN_LIFETIME_S}s`)
      .setJti(jti)
      .sign(privateKey);
    issued.push({ ...claims, iss: issuer, aud: audience, sub: client.subject, jti });
    return {
      access_token: accessToken,
      token_type: 'DPoP',
      expires_in: TOKEN_LIFETIME_S,
      scope: claims.scope,
    };
  }

  const server = createServer(async (request, response) => {
    const path = new URL(request.url, 'http://unused').pathname;
    if (request.headers.origin === allowOrigin) {
      response.setHeader('Access-Control-Allow-Origin', allowOrigin);
    }
    response.setHeader('Vary', 'Origin');
    try {
      if (path === '/jwks' && request.method === 'GET') {
        send(response, 200, jwks, 'application/jwk-set+json');
      } else if (path === '/token' && request.method === 'OPTIONS') {
        // The preflight: DPoP is not a CORS-safelisted header, so the browser asks first.
        response.setHeader('Access-Control-Allow-Methods', 'POST');
        response.setHeader('Access-Control-Allow-Headers', 'DPoP, Content-Type');
        response.setHeader('Access-Control-Max-Age', '600');
        response.writeHead(204).end();
      } else if (path === '/token' && request.method === 'POST') {
        response.setHeader('Cache-Control', 'no-store');
        send(response, 200, await token(request));
      } else {
        send(response, 404, { error: 'not_found' });
      }
    } catch (e) {
      if (!(e instanceof OAuthError)) {
        console.error('authorization server:', e);
        e = new OAuthError(500, 'server_error', e.message);
      }
      refused.push({ error: e.error, description: e.message });
      send(response, e.status, { error: e.error, error_description: e.message });
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  issuer = `http://127.0.0.1:${server.address().port}`;
  tokenEndpoint = `${issuer}/token`;
  return {
    issuer,
    jwksUrl: `${issuer}/jwks`,
    tokenEndpoint,
    issued,
    refused,
    close: () => new Promise((resolve) => server.close(resolve).closeAllConnections()),
  };
}

function send(response, status, body, type = 'application/json') {
  response.writeHead(status, { 'Content-Type': type }).end(JSON.stringify(body));
}

async function readBody(request) {
  let body = '';
  for await (const chunk of request) {
    body += chunk;
    if (body.length > MAX_BODY_BYTES) {
      throw new OAuthError(413, 'invalid_request', 'request body too long');
    }
  }
  return body;
}
