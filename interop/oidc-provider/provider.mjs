// A real authorization server for the interop test: oidc-provider, configured for one protected
// API (examples/resource_server) and its machine clients. interop.py starts it and drives it.
//
// Usage: PROVIDER_CLIENTS=CLIENTS_JSON node provider.mjs API_AUDIENCE
//   API_AUDIENCE   the API's resource indicator (RFC 8707), which is also the audience of its
//                  tokens (RFC 9068 §3);
//   CLIENTS_JSON   {"jwt": [id, secret], "opaque": [id, secret], "api": [id, secret]} (in the
//                  environment, so that no secret shows in the process list).
//
// It listens on a free port of 127.0.0.1 and, when ready, prints `issuer URL` on stdout. Lines
// on stdin are commands: `rotate` makes a new signing key, withdraws the old one from the JWK
// Set and prints `rotated KID`. Each introspection and revocation request is logged on stdout
// (`introspection client=ID status=200 active=true`). It exits when stdin closes, so it never
// outlives its driver.
//
// Tokens: client_credentials with `resource=API_AUDIENCE`, from the `jwt` client as JWT access
// tokens (RFC 9068) and from the `opaque` client as opaque ones: the format is the provider's
// choice for that client, the resource and so the audience are the same. A token request with
// a DPoP proof (RFC 9449) gets a token bound to its key (`cnf.jkt`); the provider asks for a
// DPoP nonce (§8) so that the client's nonce retry is exercised at the token endpoint too. The
// `api` client may introspect (RFC 7662) tokens issued for the API; a client may revoke (RFC
// 7009) its own tokens.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';

import Provider, { errors } from 'oidc-provider';

const [audience] = process.argv.slice(2);
const clientsJson = process.env.PROVIDER_CLIENTS;
if (!audience || !clientsJson) {
  console.error('usage: PROVIDER_CLIENTS=CLIENTS_JSON node provider.mjs API_AUDIENCE');
  process.exit(2);
}
const clients = JSON.parse(clientsJson);
const SCOPES = 'read write';
const ACCESS_TOKEN_TTL_S = 300;

function machineClient([clientId, clientSecret]) {
  return {
    client_id: clientId,
    client_secret: clientSecret,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: SCOPES,
  };
}

// The API authenticates only to introspect: it has no grant of its own.
function apiClient([clientId, clientSecret]) {
  return {
    client_id: clientId,
    client_secret: clientSecret,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
  };
}

let generation = 0;
function signingKey() {
  generation += 1;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `interop-${generation}-${randomBytes(4).toString('hex')}`;
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

function configuration(key) {
  return {
    clients: [machineClient(clients.jwt), machineClient(clients.opaque), apiClient(clients.api)],
    jwks: { keys: [key] },
    // No browser ever comes here; a random cookie key all the same, rather than none.
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: SCOPES.split(' '),
    ttl: { ClientCredentials: ACCESS_TOKEN_TTL_S },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => false,
        getResourceServerInfo(ctx, resourceIndicator, client) {
          if (resourceIndicator !== audience) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: SCOPES,
            audience,
            accessTokenFormat: client.clientId === clients.opaque[0] ? 'opaque' : 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
      dPoP: {
        enabled: true,
        nonceSecret: randomBytes(32),
        requireNonce: () => true,
      },
      introspection: {
        enabled: true,
        // The API asks about tokens for itself; a client about its own.
        allowedPolicy: (ctx, client, token) => (client.clientId === clients.api[0]
          ? token.aud === audience
          : token.clientId === client.clientId),
      },
      revocation: {
        enabled: true,
        allowedPolicy: (ctx, client, token) => token.clientId === client.clientId,
      },
    },
  };
}

// The HTTP server outlives the provider instances: a rotation builds a new instance with the
// new key set under the same issuer and port, and requests go to the newest. Tokens stay valid
// across it: oidc-provider's in-memory adapter is one store per process.
let handle;
const server = createServer((req, res) => handle(req, res));
await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
const issuer = `http://127.0.0.1:${server.address().port}`;

function start(key) {
  const provider = new Provider(issuer, configuration(key));
  provider.on('server_error', (ctx, error) => console.error('server_error', error));
  // One line per introspection and revocation, so that the driver sees who asked what.
  provider.use(async (ctx, next) => {
    await next();
    const route = ctx.oidc?.route;
    if (route === 'introspection' || route === 'revocation') {
      const active = route === 'introspection' ? ` active=${ctx.body?.active}` : '';
      const client = ctx.oidc.client?.clientId ?? '-';
      console.log(`${route} client=${client} status=${ctx.status}${active}`);
    }
  });
  handle = provider.callback();
  return key.kid;
}

start(signingKey());
console.log(`issuer ${issuer}`);

const commands = createInterface({ input: process.stdin });
commands.on('line', (line) => {
  if (line.trim() === 'rotate') {
    console.log(`rotated ${start(signingKey())}`);
  } else {
    console.error(`unknown command: ${line}`);
  }
});
commands.on('close', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
