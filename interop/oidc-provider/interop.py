#!/usr/bin/env python3
"""Interop with a real authorization server: oidc-provider issues the tokens, requests-oauth2client
gets them and makes every DPoP proof, examples/resource_server checks them.

Usage: interop.py PATH/TO/resource_server   (interop/oidc-provider/run runs it)

It starts provider.mjs (node, with node_modules installed by `npm ci` beside it) and the example
server, configured only with the provider's issuer (`--discover`) and introspection endpoint,
then checks, printing one PASS or FAIL line each:
  discovery  the example server starts from the provider's metadata and keys, and refuses to
             start for an issuer that the metadata does not name;
  jwt        a client_credentials JWT access token (RFC 9068) for resource=API (RFC 8707) is
             admitted as a bearer token, with the provider's client_id and scope;
  dpop       a DPoP-bound JWT (cnf.jkt, RFC 9449) is admitted with the client's proofs and
             refused as a bearer token;
  opaque     an opaque token, and a DPoP-bound one, are admitted through the provider's
             introspection endpoint (RFC 7662), which the JWTs never needed;
  revoked    the opaque token, revoked at the provider (RFC 7009), is refused once the guard's
             cache bound (--introspection-cache-ttl) has passed;
  rotation   after the provider replaces its signing key, a fresh server admits a token signed
             with the new key (one JWK Set refresh on the unknown kid) and refuses one that
             names the withdrawn key.
It exits non-zero unless every check passes.
"""

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time

import requests
from requests_oauth2client import BearerToken, DPoPToken, OAuth2Client

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402
from common import challenge, check, failures, finish, stop_on_sigterm  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
AUDIENCE = "https://api.interop.example"
SCOPE = "read"
HTTP_TIMEOUT_S = 10
# The guard reuses an active introspection answer this long (the example's default is 60 s).
INTROSPECTION_CACHE_TTL_S = 1
# How long past that bound a revoked token may still be admitted before the check fails.
REVOCATION_SLACK_S = 5
POLL_S = 0.1


def session():
    return common.recording_session(timeout=HTTP_TIMEOUT_S)


def get(url, **kwargs):
    return requests.get(url, timeout=HTTP_TIMEOUT_S, **kwargs)


def b64url_json(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def jwt_parts(token):
    """The header and claims of a JWS compact serialization, unverified; None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        return b64url_json(parts[0]), b64url_json(parts[1])
    except ValueError:
        return None


class Process(common.Process):
    """A child process started in this directory (where provider.mjs is)."""

    def __init__(self, name, args, workdir, env=None, stdin=None):
        super().__init__(name, args, workdir, env=env, stdin=stdin, cwd=HERE)

    def ready(self, prefix):
        """The line that says the process is ready; stops it if that line never comes."""
        return super().ready(self.wait_for_line, prefix)


class Provider(Process):
    def __init__(self, workdir, clients):
        env = dict(os.environ, PROVIDER_CLIENTS=json.dumps(clients))
        super().__init__("provider", ["node", "provider.mjs", AUDIENCE], workdir, env=env,
                         stdin=subprocess.PIPE)
        self.issuer = self.ready("issuer ").split()[1]

    def rotate(self):
        """Makes the provider sign with a new key and withdraw the old one; returns the new kid."""
        seen = len(self.lines())
        self.process.stdin.write(b"rotate\n")
        self.process.stdin.flush()
        return self.wait_for_line("rotated ", after=seen).split()[1]

    def introspections(self, client_id):
        """The provider's introspection answers to `client_id` so far: True/False for active."""
        pattern = re.compile(
            rf"^introspection client={re.escape(client_id)} status=200 active=(\w+)$")
        return [m.group(1) == "true" for m in map(pattern.match, self.lines()) if m]


class Api(Process):
    """examples/resource_server, told only the provider's issuer and introspection endpoint."""

    def __init__(self, name, command, workdir, issuer, introspection, api_client):
        client_id, client_secret = api_client
        env = dict(os.environ, INTROSPECTION_CLIENT_SECRET=client_secret, NO_COLOR="1")
        super().__init__(name, [*command, "--listen", "127.0.0.1:0", "--issuer", issuer,
                                "--audience", AUDIENCE, "--discover", "--dpop", "allowed",
                                "--introspection-url", introspection, "--client-id", client_id,
                                "--introspection-cache-ttl", str(INTROSPECTION_CACHE_TTL_S)],
                         workdir, env=env)
        self.base = self.ready("listening on ").split()[-1]
        self.url = f"{self.base}/api/whoami"

    def jwks_refreshes(self):
        """Successful JWK Set fetches after the first, from the server's /metrics."""
        text = get(f"{self.base}/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("oauth_guard_jwks_refreshes_total{")
                   and 'result="ok"' in line)


def main():
    command = sys.argv[1:]
    if not command:
        sys.exit(__doc__)
    clients = {name: [f"interop-{name}", secrets.token_urlsafe(24)]
               for name in ("jwt", "opaque", "api")}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as workdir:
        processes = []
        try:
            provider = Provider(workdir, clients)
            processes.append(provider)
            run(provider, clients, command, workdir, processes)
        except Exception as e:  # a process that did not start, an unexpected answer
            check(False, f"the run went on to the end ({type(e).__name__}: {e})")
        finally:
            for p in reversed(processes):
                p.stop()
            if failures:
                for p in processes:
                    p.print_log()
    print(f"oidc-provider interop: {time.monotonic() - started:.1f} s")
    finish("oidc-provider interop")


def run(provider, clients, command, workdir, processes):
    issuer = provider.issuer

    # --- discovery ------------------------------------------------------------------------
    # The clients find the endpoints in the metadata too (testing=True: the issuer is http on
    # loopback, which the library otherwise refuses).
    def client(name):
        s, rec = session()
        c = OAuth2Client.from_discovery_endpoint(
            issuer=issuer, client_id=clients[name][0], client_secret=clients[name][1],
            session=s, testing=True)
        return c, rec

    jwt_client, jwt_rec = client("jwt")
    opaque_client, _ = client("opaque")
    metadata = get(f"{issuer}/.well-known/openid-configuration").json()
    published = {k["kid"] for k in get(metadata["jwks_uri"]).json()["keys"]}
    check(metadata.get("issuer") == issuer and len(published) == 1
          and "ES256" in metadata.get("dpop_signing_alg_values_supported", [])
          and all(metadata.get(e) for e in ("token_endpoint", "introspection_endpoint",
                                            "revocation_endpoint")),
          f"discovery: the provider's metadata names {issuer}, one signing key, DPoP, and "
          "its token, introspection and revocation endpoints")
    introspection = metadata["introspection_endpoint"]

    api = Api("api", command, workdir, issuer, introspection, clients["api"])
    processes.append(api)
    check(True, "discovery: the example server started with --discover (it read the provider's "
          "metadata and JWK Set)")

    wrong = Process("wrong-issuer", [*command, "--listen", "127.0.0.1:0", "--issuer",
                                     issuer + "/", "--audience", AUDIENCE, "--discover"],
                    workdir)
    processes.append(wrong)
    try:
        status = wrong.process.wait(common.STARTUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        status = None
    check(status not in (None, 0)
          and any("IssuerMismatch" in line or "issuer differs" in line for line in wrong.lines()),
          f"discovery: --issuer {issuer}/ (not the metadata's issuer) is refused at start "
          f"(exit status {status})")

    # --- a JWT access token (RFC 9068) for resource=API (RFC 8707) -------------------------
    token = jwt_client.client_credentials(scope=SCOPE, resource=AUDIENCE)
    parts = jwt_parts(token.access_token)
    header, claims = parts or ({}, {})
    check(parts is not None and header.get("typ") == "at+jwt" and header.get("kid") in published
          and claims.get("aud") == AUDIENCE and claims.get("iss") == issuer
          and "cnf" not in claims and token.token_type.lower() == "bearer",
          "jwt: the provider issued an at+jwt for the resource, signed with its published key")
    r = get(api.url, auth=token)
    body = r.json() if r.status_code == 200 else {}
    check(r.status_code == 200 and body.get("client_id") == clients["jwt"][0]
          and body.get("sub") == clients["jwt"][0] and body.get("scope") == SCOPE
          and body.get("binding") == "bearer",
          f"jwt: admitted as a bearer token ({r.status_code} {body or challenge(r)})")

    # --- a DPoP-bound JWT: the library makes the proofs, the provider binds (cnf.jkt) ------
    jwt_rec.exchanges.clear()
    bound = jwt_client.client_credentials(scope=SCOPE, resource=AUDIENCE, dpop=True)
    asked = [resp for _, resp in jwt_rec.exchanges]
    check(len(asked) == 2 and asked[0].status_code == 400
          and asked[0].json().get("error") == "use_dpop_nonce"
          and asked[0].headers.get("DPoP-Nonce")
          and asked[1].status_code == 200,
          "dpop: the provider asked for a DPoP nonce at its token endpoint, the library retried "
          f"with it ({[a.status_code for a in asked]})")
    _, claims = jwt_parts(bound.access_token) or ({}, {})
    check(isinstance(bound, DPoPToken) and bound.token_type == "DPoP"
          and claims.get("cnf", {}).get("jkt") == bound.dpop_key.dpop_jkt,
          "dpop: the provider issued a DPoP token whose cnf.jkt is the client's key thumbprint")
    r = get(api.url, auth=bound)
    body = r.json() if r.status_code == 200 else {}
    check(r.status_code == 200 and body.get("binding") == "dpop"
          and body.get("client_id") == clients["jwt"][0],
          f"dpop: admitted with the library's proof ({r.status_code} {body or challenge(r)})")
    r = get(api.url, headers={"Authorization": f"Bearer {bound.access_token}"})
    check(r.status_code == 401 and 'error="invalid_token"' in challenge(r),
          f"dpop: the same token as a bearer token is refused ({r.status_code} {challenge(r)})")
    check(provider.introspections(clients["api"][0]) == [],
          "jwt, dpop: the JWTs were validated locally (no introspection request)")

    # --- an opaque token, validated by introspection (RFC 7662) -----------------------------
    opaque = opaque_client.client_credentials(scope=SCOPE, resource=AUDIENCE)
    check(isinstance(opaque, BearerToken) and jwt_parts(opaque.access_token) is None
          and "." not in opaque.access_token,
          f"opaque: the provider issued an opaque token ({len(opaque.access_token)} characters, "
          "not a JWT)")
    r = get(api.url, auth=opaque)
    body = r.json() if r.status_code == 200 else {}
    asked = provider.introspections(clients["api"][0])
    check(r.status_code == 200 and body.get("client_id") == clients["opaque"][0]
          and body.get("scope") == SCOPE and body.get("binding") == "bearer" and asked == [True],
          f"opaque: admitted after one introspection at the provider ({r.status_code} "
          f"{body or challenge(r)}; provider answers to the API: {asked})")

    opaque_bound = opaque_client.client_credentials(scope=SCOPE, resource=AUDIENCE, dpop=True)
    r = get(api.url, auth=opaque_bound)
    body = r.json() if r.status_code == 200 else {}
    check(isinstance(opaque_bound, DPoPToken) and jwt_parts(opaque_bound.access_token) is None
          and r.status_code == 200 and body.get("binding") == "dpop",
          f"opaque: a DPoP-bound opaque token (cnf.jkt in the introspection answer) is admitted "
          f"with the library's proof ({r.status_code} {body or challenge(r)})")
    r = get(api.url, headers={"Authorization": f"Bearer {opaque_bound.access_token}"})
    check(r.status_code == 401 and 'error="invalid_token"' in challenge(r),
          f"opaque: the same token as a bearer token is refused ({r.status_code} {challenge(r)})")

    # --- revocation (RFC 7009) at the provider ---------------------------------------------
    r = get(api.url, auth=opaque)  # (re)fills the guard's cache with an active answer
    check(r.status_code == 200, f"revoked: the opaque token is admitted before ({r.status_code})")
    revoked_at = time.monotonic()
    check(opaque_client.revoke_access_token(opaque) is True
          and opaque_client.introspect_token(opaque).get("active") is False,
          "revoked: the provider revoked the token (its introspection now says inactive)")
    deadline = revoked_at + INTROSPECTION_CACHE_TTL_S + REVOCATION_SLACK_S
    admitted = 0
    while True:
        r = get(api.url, auth=opaque)
        if r.status_code != 200 or time.monotonic() >= deadline:
            break
        admitted += 1
        time.sleep(POLL_S)
    after = time.monotonic() - revoked_at
    check(r.status_code == 401 and 'error="invalid_token"' in challenge(r),
          f"revoked: refused within the cache bound {INTROSPECTION_CACHE_TTL_S} s + "
          f"{REVOCATION_SLACK_S} s of the revocation ({r.status_code} {challenge(r)} after "
          f"{after:.1f} s; admitted {admitted} times from the cache before)")
    check(provider.introspections(clients["api"][0])[-1:] == [False],
          "revoked: the provider told the guard so (its last answer to the API: inactive)")

    # --- key rotation ----------------------------------------------------------------------
    # A server started now has made no refresh yet, so its refresh on an unknown kid is not held
    # back by the cooldown (30 s) of an earlier one.
    seen = jwt_client.client_credentials(scope=SCOPE, resource=AUDIENCE)
    unseen = jwt_client.client_credentials(scope=SCOPE, resource=AUDIENCE)
    fresh = Api("api-rotation", command, workdir, issuer, introspection, clients["api"])
    processes.append(fresh)
    r = get(fresh.url, auth=seen)
    check(r.status_code == 200 and fresh.jwks_refreshes() == 0,
          f"rotation: a fresh server admits a token of the old key, with no refresh yet "
          f"({r.status_code})")
    old_kid = (jwt_parts(seen.access_token) or ({}, {}))[0].get("kid")
    new_kid = provider.rotate()
    published = {k["kid"] for k in get(metadata["jwks_uri"]).json()["keys"]}
    check(published == {new_kid} and new_kid != old_kid,
          f"rotation: the provider publishes only its new key ({old_kid} -> {new_kid})")
    rotated = jwt_client.client_credentials(scope=SCOPE, resource=AUDIENCE)
    kid = (jwt_parts(rotated.access_token) or ({}, {}))[0].get("kid")
    r = get(fresh.url, auth=rotated)
    refreshes = fresh.jwks_refreshes()
    check(kid == new_kid and r.status_code == 200 and refreshes == 1,
          f"rotation: a token signed with the new key ({kid}) is admitted after one JWK Set "
          f"refresh ({r.status_code} {challenge(r)}; refreshes {refreshes:g})")
    r = get(fresh.url, auth=unseen)
    check(r.status_code == 401 and 'error="invalid_token"' in challenge(r),
          f"rotation: a token naming the withdrawn key, never seen before, is refused "
          f"({r.status_code} {challenge(r)})")
    r = get(fresh.url, auth=seen)
    print(f"note rotation: the token of the withdrawn key admitted before the rotation now gets "
          f"{r.status_code} (the guard's verified-token cache)", flush=True)


if __name__ == "__main__":
    stop_on_sigterm()
    main()
