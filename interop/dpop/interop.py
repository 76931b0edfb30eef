#!/usr/bin/env python3
"""DPoP interop: requests-oauth2client's DPoPKey/DPoPToken against the running example server.

Usage: interop.py SERVER_COMMAND...   (interop/dpop/run PATH/TO/resource_server runs it)

The script plays the authorization server (it generates an issuer key, writes jwks.json and
mints access tokens bound with cnf.jkt to the client's key), starts the example server with
`--dpop required --dpop-nonce`, and lets requests-oauth2client make every proof, including the
retry after `use_dpop_nonce`. It exits non-zero unless every check below holds.
"""

import json
import os
import secrets
import sys
import tempfile
import time

import jwskate
import requests
from requests_oauth2client import DPoPKey, DPoPToken, InvalidUseDPoPNonceResponse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import (  # noqa: E402
    Process, challenge, check, failures, finish, recording_session, stop_on_sigterm)

ISSUER = "https://issuer.interop.example"
AUDIENCE = "https://api.interop.example"
ALGS = ["ES256", "ES384", "PS256", "RS256", "EdDSA"]


class Server(Process):
    """examples/resource_server demanding DPoP proofs with server nonces."""

    def __init__(self, command, workdir, name, jwks_path, *extra):
        super().__init__(name, [*command, "--listen", "127.0.0.1:0", "--issuer", ISSUER,
                                "--audience", AUDIENCE, "--jwks", jwks_path, "--realm", "interop",
                                "--dpop", "required", "--dpop-nonce", *extra], workdir)
        self.base = self.ready(self.wait_for_line, "listening on ").split()[-1]


def main():
    command = sys.argv[1:]
    if not command:
        sys.exit(__doc__)
    issuer_key = jwskate.Jwk.generate(alg="ES256", kid="interop-issuer")

    def mint(jkt):
        now = int(time.time())
        claims = {
            "iss": ISSUER, "sub": "interop-user", "aud": AUDIENCE, "client_id": "interop",
            "iat": now, "exp": now + 300, "jti": secrets.token_hex(8), "scope": "read",
            "cnf": {"jkt": jkt},
        }
        return str(jwskate.Jwt.sign(claims, key=issuer_key, alg="ES256", typ="at+jwt"))

    with tempfile.TemporaryDirectory() as workdir:
        jwks_path = os.path.join(workdir, "jwks.json")
        with open(jwks_path, "w") as f:
            json.dump({"keys": [issuer_key.public_jwk().to_dict()]}, f)
        secret = secrets.token_hex(32)
        servers = []
        try:
            a = Server(command, workdir, "a", jwks_path, "--dpop-nonce-secret", secret)
            servers.append(a)
            b = Server(command, workdir, "b", jwks_path, "--dpop-nonce-secret", secret)
            servers.append(b)
            c = Server(command, workdir, "c", jwks_path)  # its own random secret
            servers.append(c)
            run(a, b, c, mint)
        finally:
            for s in servers:
                s.stop()
            if failures:
                for s in servers:
                    s.print_log()
    finish("DPoP interop")


def run(a, b, c, mint):
    url = f"{a.base}/api/whoami"
    for alg in ALGS:
        key = DPoPKey.generate(alg=alg)
        token = DPoPToken(mint(key.dpop_jkt), _dpop_key=key)
        s, rec = recording_session()

        # First call: the library sends a proof without nonce, gets use_dpop_nonce, retries.
        r = s.get(url, auth=token)
        check(r.status_code == 200 and r.json().get("binding") == "dpop",
              f"{alg}: GET with DPoPToken succeeds after the nonce retry ({r.status_code})")
        first = rec.exchanges[0][1] if rec.exchanges else None
        check(len(rec.exchanges) == 2 and first is not None and first.status_code == 401
              and 'error="use_dpop_nonce"' in challenge(first)
              and first.headers.get("DPoP-Nonce"),
              f"{alg}: first answer was 401 use_dpop_nonce with a DPoP-Nonce")
        # (A requests.Response is falsy when not ok, hence `is not None`.)
        check(first is not None and bool(first.headers.get("DPoP-Nonce"))
              and key.rs_nonce == first.headers.get("DPoP-Nonce"),
              f"{alg}: the library took the server's nonce")

        # Second call: the library already holds the nonce, one exchange.
        rec.exchanges.clear()
        r = s.post(url, auth=token)
        check(r.status_code == 200 and len(rec.exchanges) == 1,
              f"{alg}: POST with the held nonce succeeds at once")

        # Replay the proof of that successful request, byte for byte.
        sent = rec.exchanges[-1][0]
        replay = requests.post(url, headers={"Authorization": sent.headers["Authorization"],
                                             "DPoP": sent.headers["DPoP"]})
        check(replay.status_code == 401 and challenge(replay).startswith("DPoP ")
              and 'error="invalid_dpop_proof"' in challenge(replay),
              f"{alg}: the replayed proof is refused ({replay.status_code} {challenge(replay)})")

    key = DPoPKey.generate(alg="ES256")
    token = DPoPToken(mint(key.dpop_jkt), _dpop_key=key)
    s, rec = recording_session()
    check(s.get(url, auth=token).status_code == 200, "nonce obtained from server a")

    # Server b shares a's secret: a's nonce works there at once.
    rec.exchanges.clear()
    r = s.get(f"{b.base}/api/whoami", auth=token)
    check(r.status_code == 200 and len(rec.exchanges) == 1,
          "server b (same secret) accepts a's nonce without a retry")

    # Server c has another secret: it asks for its own nonce, the library retries.
    rec.exchanges.clear()
    r = s.get(f"{c.base}/api/whoami", auth=token)
    check(r.status_code == 200 and len(rec.exchanges) == 2
          and 'error="use_dpop_nonce"' in challenge(rec.exchanges[0][1]),
          "server c (other secret) refuses a's nonce, the library recovers")

    # Downgrade: the DPoP-bound token as a plain bearer token.
    r = requests.get(url, headers={"Authorization": f"Bearer {token.access_token}"})
    check(r.status_code == 401 and 'error="invalid_token"' in challenge(r),
          "the bound token presented as Bearer is refused")

    # A thief with the token but another key: the library's valid proofs do not help.
    thief = DPoPKey.generate(alg="ES256")
    stolen = DPoPToken(token.access_token, _dpop_key=thief)
    try:
        r = requests.get(url, auth=stolen)
    except InvalidUseDPoPNonceResponse as e:
        # After its nonce retry the library takes any further DPoP 401 for a nonce request
        # and raises; the server's answer is in the exception.
        r = e.response
    check(r.status_code == 401 and 'error="invalid_token"' in challenge(r),
          f"the token with another key's proof is refused ({challenge(r)})")


if __name__ == "__main__":
    stop_on_sigterm()
    main()
