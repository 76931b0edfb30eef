#!/usr/bin/env bash
# curl interop for certificate-bound access tokens (RFC 8705), with nothing from this crate on
# the client side: openssl makes the PKI and signs an RS256 access token whose cnf.x5t#S256 is
# the SHA-256 of client A's certificate, curl presents the certificates, and the
# resource_server example checks the binding.
#   client A + bound token -> 200 (binding "mtls"); client B or no certificate -> 401 invalid_token
# Usage: interop/mtls/curl.sh        (builds the example; needs openssl, curl, coreutils)
set -euo pipefail
cd "$(dirname "$0")/../.."

dir=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  if [ -n "${KEEP:-}" ]; then echo "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
fail() { echo "interop mtls curl: FAIL: $*" >&2; exit 1; }

b64url() { basenc --base64url -w0 | tr -d '='; }

# Built first, so the token minted below cannot expire during a long build; with the test
# profile and all features, it reuses what `cargo test --all-features` (scripts/test) built.
cargo build --quiet --profile test --all-features --example resource_server

# --- PKI: a CA, the server (127.0.0.1), clients A and B ----------------------------------
ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ec_key "$dir/ca.key"
openssl req -x509 -new -key "$dir/ca.key" -out "$dir/ca.pem" -days 1 -subj "/CN=interop CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
issue() { # name, extensions
  ec_key "$dir/$1.key"
  openssl req -new -key "$dir/$1.key" -out "$dir/$1.csr" -subj "/CN=$1"
  printf '%s\n' "basicConstraints=CA:FALSE" "$2" >"$dir/$1.ext"
  openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 1 -out "$dir/$1.pem" -extfile "$dir/$1.ext" 2>/dev/null
}
issue server "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
issue client-a "extendedKeyUsage=clientAuth"
issue client-b "extendedKeyUsage=clientAuth"

# --- the issuer: an RSA key, its JWK Set, and one token bound to client A ------------------
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/issuer.key" 2>/dev/null
n=$(openssl rsa -in "$dir/issuer.key" -noout -modulus | cut -d= -f2 | basenc --base16 -d | b64url)
e=$(openssl rsa -in "$dir/issuer.key" -noout -text | sed -n 's/^publicExponent: \([0-9]*\) .*/\1/p')
[ "$e" = 65537 ] || fail "unexpected RSA exponent $e"
printf '{"keys":[{"kty":"RSA","kid":"interop-1","use":"sig","alg":"RS256","n":"%s","e":"AQAB"}]}\n' \
  "$n" >"$dir/jwks.json"

issuer=https://issuer.interop.example
audience=https://api.interop.example
# RFC 8705 §3.1: base64url(SHA-256(DER of the certificate)), computed by openssl alone.
x5t=$(openssl x509 -in "$dir/client-a.pem" -outform DER | openssl dgst -sha256 -binary | b64url)
now=$(date +%s)
header=$(printf '{"alg":"RS256","typ":"at+jwt","kid":"interop-1"}' | b64url)
claims=$(printf '{"iss":"%s","aud":"%s","sub":"curl","client_id":"curl-a","scope":"read","iat":%d,"exp":%d,"jti":"%s","cnf":{"x5t#S256":"%s"}}' \
  "$issuer" "$audience" "$now" "$((now + 300))" "$(openssl rand -hex 8)" "$x5t" | b64url)
signature=$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -sign "$dir/issuer.key" | b64url)
token="$header.$claims.$signature"

# --- the server -------------------------------------------------------------------------
"${CARGO_TARGET_DIR:-target}/debug/examples/resource_server" --listen 127.0.0.1:0 \
  --issuer "$issuer" --audience "$audience" --jwks "$dir/jwks.json" \
  --tls-cert "$dir/server.pem" --tls-key "$dir/server.key" --client-ca "$dir/ca.pem" \
  >"$dir/server.log" 2>&1 &
server_pid=$!
url=
for _ in $(seq 100); do
  url=$(sed -n 's/^listening on \(https:[^ ]*\)$/\1/p' "$dir/server.log")
  if [ -n "$url" ]; then break; fi
  kill -0 "$server_pid" 2>/dev/null || fail "server exited: $(cat "$dir/server.log")"
  sleep 0.1
done
[ -n "$url" ] || fail "server did not start: $(cat "$dir/server.log")"

# --- curl ---------------------------------------------------------------------------------
request() { # label, curl options...
  local label=$1
  shift
  curl -sS --cacert "$dir/ca.pem" -H "Authorization: Bearer $token" -D "$dir/$label.headers" \
    -o "$dir/$label.body" -w '%{http_code}' "$@" "$url/api/whoami"
}
expect_ok() { # label, curl options...
  local label=$1 status
  status=$(request "$@")
  [ "$status" = 200 ] || fail "$label: status $status, $(cat "$dir/$label.headers")"
  grep -q '"binding":"mtls"' "$dir/$label.body" || fail "$label: body $(cat "$dir/$label.body")"
  echo "ok   $label: 200, binding mtls"
}
expect_invalid_token() { # label, curl options...
  local label=$1 status
  status=$(request "$@")
  [ "$status" = 401 ] || fail "$label: status $status, expected 401"
  grep -qi '^www-authenticate: Bearer.*error="invalid_token"' "$dir/$label.headers" ||
    fail "$label: no invalid_token challenge in $(cat "$dir/$label.headers")"
  echo "ok   $label: 401 invalid_token"
}

expect_ok "client-a-http1.1" --http1.1 --cert "$dir/client-a.pem" --key "$dir/client-a.key"
expect_ok "client-a-http2" --http2 --cert "$dir/client-a.pem" --key "$dir/client-a.key"
head -1 "$dir/client-a-http2.headers" | grep -q '^HTTP/2 ' || fail "curl --http2 did not get HTTP/2 by ALPN"
expect_invalid_token "client-b" --cert "$dir/client-b.pem" --key "$dir/client-b.key"
expect_invalid_token "no-certificate"
echo "interop mtls curl: 4 passed, 0 failed"
