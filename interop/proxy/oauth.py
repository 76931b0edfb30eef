#!/usr/bin/env python3
"""The authorization server and the DPoP client for interop/proxy/run, from libraries this crate
did not write: jwskate makes the issuer key, its JWK Set and the access tokens, and
requests-oauth2client's DPoPKey makes the DPoP proofs (RFC 9449 §4.2). Keys live in DIR.

  oauth.py issuer DIR                         -> DIR/issuer.jwk, DIR/jwks.json
  oauth.py dpop-key DIR                       -> DIR/dpop.jwk; prints its RFC 7638 thumbprint
  oauth.py token DIR ISS AUD SUB [CNF_JSON]   -> prints an ES256 access token (RFC 9068)
  oauth.py proof DIR HTM HTU TOKEN            -> prints a proof: fresh jti, iat now, ath of TOKEN
"""

import json
import os
import secrets
import sys
import time

import jwskate
from binapy import BinaPy
from requests_oauth2client import DPoPKey


def load(path):
    with open(path) as f:
        return jwskate.Jwk(json.load(f))


def save(path, jwk):
    with open(path, "w") as f:
        json.dump(jwk.to_dict(), f)


def main(command, directory, *args):
    issuer_path = os.path.join(directory, "issuer.jwk")
    dpop_path = os.path.join(directory, "dpop.jwk")
    if command == "issuer" and not args:
        key = jwskate.Jwk.generate(alg="ES256", kid="proxy-interop")
        save(issuer_path, key)
        with open(os.path.join(directory, "jwks.json"), "w") as f:
            json.dump({"keys": [key.public_jwk().with_usage_parameters().to_dict()]}, f)
    elif command == "dpop-key" and not args:
        key = DPoPKey.generate(alg="ES256")
        save(dpop_path, key.private_key)
        print(key.dpop_jkt)
    elif command == "token" and len(args) in (3, 4):
        iss, aud, sub = args[:3]
        now = int(time.time())
        claims = {"iss": iss, "aud": aud, "sub": sub, "client_id": "proxy-interop",
                  "scope": "read", "iat": now, "exp": now + 300, "jti": secrets.token_hex(8)}
        if len(args) == 4:
            claims["cnf"] = json.loads(args[3])
        print(jwskate.Jwt.sign(claims, key=load(issuer_path), alg="ES256", typ="at+jwt"))
    elif command == "proof" and len(args) == 3:
        htm, htu, token = args
        ath = BinaPy(token).to("sha256").to("b64u").decode()
        print(DPoPKey(load(dpop_path), alg="ES256").proof(htm=htm, htu=htu, ath=ath))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
