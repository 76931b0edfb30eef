//! Every input bound of `tower_oauth_guard::limits` (the README's resource-limits table), each
//! tested at the bound, where the input must be taken, and one past it, where it must be
//! refused for its size and nothing else.

use std::net::{Ipv4Addr, SocketAddr};

use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use tower_oauth_guard::limits::{
    MAX_CHAIN_CERTS, MAX_CLIENT_CERT_CHAIN_HEADER_LEN, MAX_CLIENT_CERT_HEADER_LEN,
    MAX_CLIENT_CERT_PARAMETERS, MAX_DPOP_PROOF_LEN, MAX_FORWARDED_HEADER_LEN, MAX_HOST_HEADER_LEN,
    MAX_HTU_LEN, MAX_JTI_LEN, MAX_JWKS_LEN, MAX_KEYS, MAX_METADATA_LEN, MAX_PREFIX_HEADER_LEN,
    MAX_REALM_LEN, MAX_RSA_MODULUS_BITS, MAX_TOKEN_LEN, MIN_RSA_MODULUS_BITS,
};
use tower_oauth_guard::{
    BaseUrl, BuildError, ClientCertHeader, CredentialsError, Dpop, DpopError, ForwardedHeaders,
    HtuError, Issuer, KeySet, KeysError, MemoryReplayStore, Mtls, MtlsError, OAuthGuard,
    OAuthGuardBuilder, Policy, Presence, ProofError, Protocol, PublicUri, Rejection, RemoteAddr,
};

use crate::support::*;

const AUD: &str = "https://api.example";
const ISSUER: &str = "https://issuer.example";

/// A string of exactly `len` bytes from `make(n, m)`, searching the two paddings (base64url
/// grows by one or two characters per byte, so two paddings reach every length).
#[track_caller]
fn exactly(len: usize, make: impl Fn(usize, usize) -> String) -> String {
    for n in 0..len {
        for m in 0..3 {
            let s = make(n, m);
            if s.len() == len {
                return s;
            }
        }
        if make(n, 0).len() > len {
            break;
        }
    }
    panic!("no padding reaches {len} bytes");
}

struct Fixture {
    issuer: SigningKey,
    keys: KeySet,
}

impl Fixture {
    fn new() -> Self {
        let issuer = SigningKey::generate("k1");
        let keys = key_set(std::slice::from_ref(&issuer.jwk));
        Fixture { issuer, keys }
    }

    fn builder(&self) -> OAuthGuardBuilder {
        OAuthGuard::builder().trust(Issuer::new(ISSUER).audience(AUD).jwks(self.keys.clone()))
    }

    /// A token with `extra` claims and `cty` padding in its header.
    fn token(&self, extra: Value, header_pad: usize) -> String {
        sign(&self.issuer, extra, header_pad)
    }
}

fn key_set(jwks: &[jsonwebtoken::jwk::Jwk]) -> KeySet {
    KeySet::from_json(json!({ "keys": jwks }).to_string().as_bytes()).unwrap()
}

fn sign(key: &SigningKey, extra: Value, header_pad: usize) -> String {
    let now = now();
    let mut claims =
        json!({"iss": ISSUER, "aud": AUD, "sub": "alice", "iat": now, "exp": now + 600});
    if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
        c.extend(e);
    }
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    header.cty = Some("x".repeat(header_pad));
    key.sign(header, &claims)
}

/// At its bound (`admitted`) an input must be taken; past it, refused, as `refused` says.
#[track_caller]
fn assert_at_bound(
    at: impl std::fmt::Debug,
    admitted: bool,
    result: &Result<(), Rejection>,
    refused: impl Fn(&Rejection) -> bool,
) {
    match result {
        Ok(()) => assert!(admitted, "{at:?}: taken past its bound"),
        Err(r) => assert!(!admitted && refused(r), "{at:?}: {r:?}"),
    }
}

/// The guard's answer to `request`: `Ok` or the rejection.
async fn check(guard: &OAuthGuard, request: http::request::Builder) -> Result<(), Rejection> {
    let request = request.extension(RemoteAddr(SocketAddr::from((Ipv4Addr::LOCALHOST, 4000))));
    let (mut parts, ()) = request.body(()).unwrap().into_parts();
    guard
        .check(&mut parts, &Policy::default(), Presence::Required)
        .await
        .map(|_| ())
        .map_err(|refusal| refusal.rejection)
}

#[tokio::test]
async fn an_access_token_of_max_token_len_is_read_and_one_byte_more_is_not() {
    let fx = Fixture::new();
    let guard = fx.builder().build().await.unwrap();
    for (len, admitted) in [(MAX_TOKEN_LEN, true), (MAX_TOKEN_LEN + 1, false)] {
        let token = exactly(len, |n, m| fx.token(json!({"pad": "p".repeat(n)}), m));
        let request = http::Request::get("/r").header("authorization", format!("Bearer {token}"));
        let result = check(&guard, request).await;
        assert_at_bound(len, admitted, &result, |r| {
            matches!(r, Rejection::Credentials(CredentialsError::TokenTooLarge))
        });
    }
}

/// DPoP allowed at `AUD`, with a bound token and its client.
struct DpopFixture {
    fx: Fixture,
    client: DpopKey,
    token: String,
}

impl DpopFixture {
    fn new() -> Self {
        let fx = Fixture::new();
        let client = DpopKey::generate();
        let token = fx.token(json!({"cnf": {"jkt": client.jkt}}), 0);
        DpopFixture { fx, client, token }
    }

    async fn guard(&self, public: PublicUri) -> OAuthGuard {
        let store = MemoryReplayStore::default();
        self.fx
            .builder()
            .dpop(Dpop::allowed(public).replay_store(store))
            .build()
            .await
            .unwrap()
    }

    fn request(&self, path: &str, proof: &str) -> http::request::Builder {
        http::Request::get(path)
            .header("authorization", format!("DPoP {}", self.token))
            .header("dpop", proof)
    }

    /// A proof for `htu` and `jti`, padded by a `pad` claim and `cty` in its header.
    fn proof_padded(&self, htu: &str, jti: &str, pad: usize, header_pad: usize) -> String {
        let mut claims = self.client.claims("GET", htu, Some(&self.token), None);
        claims["jti"] = json!(jti);
        if pad > 0 {
            claims["pad"] = json!("p".repeat(pad));
        }
        self.client.proof_with(claims, |h| {
            h.cty = (header_pad > 0).then(|| "c".repeat(header_pad))
        })
    }

    fn proof(&self, htu: &str, jti: &str, pad: usize) -> String {
        self.proof_padded(htu, jti, pad, 0)
    }
}

#[tokio::test]
async fn a_dpop_proof_of_max_dpop_proof_len_is_read_and_one_byte_more_is_not() {
    let d = DpopFixture::new();
    let guard = d
        .guard(PublicUri::fixed(BaseUrl::parse(AUD).unwrap()))
        .await;
    let htu = format!("{AUD}/r");
    for (len, admitted) in [(MAX_DPOP_PROOF_LEN, true), (MAX_DPOP_PROOF_LEN + 1, false)] {
        let jti = format!("{:016x}", rand_u64());
        let proof = exactly(len, |n, m| d.proof_padded(&htu, &jti, n, m));
        let result = check(&guard, d.request("/r", &proof)).await;
        assert_at_bound(len, admitted, &result, |r| {
            matches!(
                r,
                Rejection::Credentials(CredentialsError::MalformedDpopProof)
            )
        });
    }
}

#[tokio::test]
async fn a_jti_of_max_jti_len_characters_is_taken_and_one_more_is_not() {
    let d = DpopFixture::new();
    let guard = d
        .guard(PublicUri::fixed(BaseUrl::parse(AUD).unwrap()))
        .await;
    let htu = format!("{AUD}/r");
    let at_limit = format!("{:016x}{}", rand_u64(), "j".repeat(MAX_JTI_LEN - 16));
    let result = check(&guard, d.request("/r", &d.proof(&htu, &at_limit, 0))).await;
    assert!(result.is_ok(), "{result:?}");
    let past = format!("{at_limit}j");
    let result = check(&guard, d.request("/r", &d.proof(&htu, &past, 0))).await;
    assert!(
        matches!(
            result,
            Err(Rejection::Dpop(DpopError::Proof(ProofError::InvalidClaim(
                _
            ))))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_request_uri_of_max_htu_len_is_compared_and_one_byte_more_is_not() {
    let d = DpopFixture::new();
    let guard = d
        .guard(PublicUri::fixed(BaseUrl::parse(AUD).unwrap()))
        .await;
    let room = MAX_HTU_LEN - AUD.len() - 1;
    let at_limit = format!("/{}", "a".repeat(room));
    let htu = format!("{AUD}{at_limit}");
    assert_eq!(htu.len(), MAX_HTU_LEN);
    let proof = d.proof(&htu, &rand_u64().to_string(), 0);
    let result = check(&guard, d.request(&at_limit, &proof)).await;
    assert!(result.is_ok(), "{result:?}");
    let past = format!("{at_limit}a");
    let proof = d.proof(&format!("{AUD}{past}"), &rand_u64().to_string(), 0);
    let result = check(&guard, d.request(&past, &proof)).await;
    assert!(
        matches!(
            result,
            Err(Rejection::Dpop(DpopError::RequestUri(HtuError::TooLong)))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_host_header_of_max_host_header_len_is_read_and_one_byte_more_is_not() {
    let d = DpopFixture::new();
    let guard = d.guard(PublicUri::DangerousHostHeader).await;
    for (len, admitted) in [
        (MAX_HOST_HEADER_LEN, true),
        (MAX_HOST_HEADER_LEN + 1, false),
    ] {
        // Labels of at most 63 characters (RFC 1035 §2.3.4), dot-separated.
        let mut host = String::new();
        while host.len() < len {
            let label = "h".repeat((len - host.len()).min(62));
            host.push_str(&label);
            if host.len() < len - 1 {
                host.push('.');
            }
        }
        let host = &host[..len];
        assert_eq!(host.len(), len);
        let proof = d.proof(&format!("http://{host}/r"), &rand_u64().to_string(), 0);
        let result = check(&guard, d.request("/r", &proof).header("host", host)).await;
        assert_at_bound(len, admitted, &result, |r| {
            matches!(
                r,
                Rejection::Dpop(DpopError::RequestUri(HtuError::HeaderTooLong))
            )
        });
    }
}

#[tokio::test]
async fn a_forwarded_header_of_max_forwarded_header_len_is_read_and_one_byte_more_is_not() {
    let d = DpopFixture::new();
    let loopback = [Ipv4Addr::LOCALHOST.into()];
    let guard = d
        .guard(PublicUri::forwarded_by(
            loopback,
            ForwardedHeaders::Forwarded,
        ))
        .await;
    let last = "proto=https;host=api.example";
    for (len, admitted) in [
        (MAX_FORWARDED_HEADER_LEN, true),
        (MAX_FORWARDED_HEADER_LEN + 1, false),
    ] {
        // Earlier hops' elements, then the trusted proxy's own.
        let filler = len - last.len() - ", ".len() - "for=".len();
        let value = format!("for={}, {last}", "f".repeat(filler));
        assert_eq!(value.len(), len);
        let proof = d.proof(&format!("{AUD}/r"), &rand_u64().to_string(), 0);
        let result = check(&guard, d.request("/r", &proof).header("forwarded", value)).await;
        assert_at_bound(len, admitted, &result, |r| {
            matches!(
                r,
                Rejection::Dpop(DpopError::RequestUri(HtuError::HeaderTooLong))
            )
        });
    }
}

#[tokio::test]
async fn an_x_forwarded_prefix_of_max_prefix_header_len_is_read_and_one_byte_more_is_not() {
    let d = DpopFixture::new();
    let loopback = [Ipv4Addr::LOCALHOST.into()];
    let guard = d
        .guard(PublicUri::forwarded_by(
            loopback,
            ForwardedHeaders::XForwardedWithPrefix,
        ))
        .await;
    for (len, admitted) in [
        (MAX_PREFIX_HEADER_LEN, true),
        (MAX_PREFIX_HEADER_LEN + 1, false),
    ] {
        let prefix = format!("/{}", "p".repeat(len - 1));
        let proof = d.proof(&format!("{AUD}{prefix}/r"), &rand_u64().to_string(), 0);
        let request = d
            .request("/r", &proof)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "api.example")
            .header("x-forwarded-prefix", &prefix);
        let result = check(&guard, request).await;
        assert_at_bound(len, admitted, &result, |r| {
            matches!(
                r,
                Rejection::Dpop(DpopError::RequestUri(HtuError::HeaderTooLong))
            )
        });
    }
}

/// A certificate-bound token for `cert` and a guard that reads `Client-Cert` from any peer.
async fn cert_guard(fx: &Fixture) -> OAuthGuard {
    fx.builder()
        .mtls(Mtls::allowed().trust_client_cert_header(ClientCertHeader::from_any_peer()))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_cert_of_max_client_cert_header_len_is_read_and_one_byte_more_is_not() {
    let fx = Fixture::new();
    let pki = TestPki::generate();
    let guard = cert_guard(&fx).await;
    let token = fx.token(json!({"cnf": {"x5t#S256": pki.client_a.x5t_s256()}}), 0);
    let leaf = pki.client_a.client_cert_header();
    for (len, admitted) in [
        (MAX_CLIENT_CERT_HEADER_LEN, true),
        (MAX_CLIENT_CERT_HEADER_LEN + 1, false),
    ] {
        // Parameters (ignored, RFC 8941 §3.1.2) fill the field to `len`.
        let value = format!("{leaf};p={}", "a".repeat(len - leaf.len() - ";p=".len()));
        let request = http::Request::get("/r")
            .header("authorization", format!("Bearer {token}"))
            .header("client-cert", value);
        let result = check(&guard, request).await;
        assert_at_bound(len, admitted, &result, |r| {
            matches!(r, Rejection::Mtls(MtlsError::MalformedClientCertHeader))
        });
    }
}

#[tokio::test]
async fn a_client_cert_chain_at_its_bounds_is_read_and_past_them_is_not() {
    let fx = Fixture::new();
    let pki = TestPki::generate();
    let guard = cert_guard(&fx).await;
    let token = fx.token(json!({"cnf": {"x5t#S256": pki.client_a.x5t_s256()}}), 0);
    let ca = pki.ca.client_cert_header();
    let send = |chain: String| {
        http::Request::get("/r")
            .header("authorization", format!("Bearer {token}"))
            .header("client-cert", pki.client_a.client_cert_header())
            .header("client-cert-chain", chain)
    };
    let refused = |r: &Result<(), Rejection>| {
        matches!(
            r,
            Err(Rejection::Mtls(MtlsError::MalformedClientCertHeader))
        )
    };
    // MAX_CHAIN_CERTS certificates, and one more.
    let chain = |n: usize| vec![ca.as_str(); n].join(", ");
    let result = check(&guard, send(chain(MAX_CHAIN_CERTS))).await;
    assert!(result.is_ok(), "{result:?}");
    let result = check(&guard, send(chain(MAX_CHAIN_CERTS + 1))).await;
    assert!(refused(&result), "{result:?}");
    // MAX_CLIENT_CERT_CHAIN_HEADER_LEN bytes, and one more.
    for (len, admitted) in [
        (MAX_CLIENT_CERT_CHAIN_HEADER_LEN, true),
        (MAX_CLIENT_CERT_CHAIN_HEADER_LEN + 1, false),
    ] {
        let value = format!("{ca};p={}", "a".repeat(len - ca.len() - ";p=".len()));
        let result = check(&guard, send(value)).await;
        assert_eq!(result.is_ok(), admitted, "{len}: {result:?}");
        if !admitted {
            assert!(refused(&result), "{result:?}");
        }
    }
}

#[tokio::test]
async fn a_jwk_set_of_max_jwks_len_is_parsed_and_one_byte_more_is_not() {
    let fx = Fixture::new();
    let document = json!({ "keys": [fx.issuer.jwk] }).to_string();
    for (len, parsed) in [(MAX_JWKS_LEN, true), (MAX_JWKS_LEN + 1, false)] {
        // Insignificant whitespace (RFC 8259 §2) fills the document to `len`.
        let padded = format!("{document}{}", " ".repeat(len - document.len()));
        let result = KeySet::from_json(padded.as_bytes());
        match parsed {
            true => assert_eq!(result.map(|k| k.len()).ok(), Some(1), "{len}"),
            false => assert!(matches!(result, Err(KeysError::TooLarge)), "{len}"),
        }
    }
}

#[tokio::test]
async fn the_first_max_keys_keys_of_a_set_are_used_and_the_next_is_not() {
    let keys: Vec<SigningKey> = (0..=MAX_KEYS)
        .map(|i| SigningKey::generate(&format!("k{i}")))
        .collect();
    let set = key_set(&keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>());
    assert_eq!(set.len(), MAX_KEYS);
    let guard = OAuthGuard::builder()
        .trust(Issuer::new(ISSUER).audience(AUD).jwks(set))
        .build()
        .await
        .unwrap();
    let bearer = |key: &SigningKey| {
        http::Request::get("/r").header(
            "authorization",
            format!("Bearer {}", sign(key, json!({}), 0)),
        )
    };
    let last_kept = check(&guard, bearer(&keys[MAX_KEYS - 1])).await;
    assert!(last_kept.is_ok(), "{last_kept:?}");
    let dropped = check(&guard, bearer(&keys[MAX_KEYS])).await;
    assert!(
        matches!(
            dropped,
            Err(Rejection::Token(tower_oauth_guard::TokenError::UnknownKey))
        ),
        "{dropped:?}"
    );
}

#[tokio::test]
async fn a_realm_of_max_realm_len_is_sent_and_one_byte_more_is_refused_at_build() {
    let fx = Fixture::new();
    let realm = "r".repeat(MAX_REALM_LEN);
    let guard = fx.builder().realm(&realm).build().await.unwrap();
    let (mut parts, ()) = http::Request::get("/r").body(()).unwrap().into_parts();
    let refusal = guard
        .check(&mut parts, &Policy::default(), Presence::Required)
        .await
        .unwrap_err();
    let response: http::Response<()> = guard.refusal_response(&refusal, Protocol::Http);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert_eq!(challenge, format!("Bearer realm=\"{realm}\""));
    let past = fx.builder().realm(format!("{realm}r")).build().await;
    assert!(matches!(past, Err(BuildError::InvalidRealm)), "{past:?}");
}

#[tokio::test]
async fn issuer_metadata_of_max_metadata_len_is_read_and_one_byte_more_is_not() {
    use axum::routing::get;
    let fx = Fixture::new();
    for (len, found) in [(MAX_METADATA_LEN, true), (MAX_METADATA_LEN + 1, false)] {
        let (listener, base) = bind().await;
        let document = json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string();
        // Insignificant whitespace fills the document to `len`.
        let padded = format!("{document}{}", " ".repeat(len - document.len()));
        let jwks = json!({ "keys": [fx.issuer.jwk] }).to_string();
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { padded }),
            )
            .route(
                "/.well-known/oauth-authorization-server",
                get(|| async { "{}" }),
            )
            .route("/jwks", get(move || async move { jwks }));
        serve_on(listener, app);
        let built = OAuthGuard::builder()
            .trust(Issuer::new(&base).audience(AUD).discover())
            .build()
            .await;
        match found {
            true => assert!(built.is_ok(), "{len}: {built:?}"),
            false => assert!(
                matches!(built, Err(BuildError::Discovery(..))),
                "{len}: {built:?}"
            ),
        }
    }
}

/// An RSA public JWK whose modulus has exactly `bits` bits (its value does not matter: the key
/// is judged by its size before anything else).
fn rsa_jwk(bits: usize) -> Value {
    use base64::Engine as _;
    let mut n = vec![0xffu8; bits.div_ceil(8)];
    n[0] = 0xff >> (n.len() * 8 - bits);
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n);
    json!({"kty": "RSA", "kid": format!("rsa-{bits}"), "alg": "RS256", "n": n, "e": "AQAB"})
}

#[test]
fn rsa_keys_between_the_modulus_bounds_are_kept_and_those_outside_are_not() {
    for (bits, kept) in [
        (MIN_RSA_MODULUS_BITS - 1, false),
        (MIN_RSA_MODULUS_BITS, true),
        (MAX_RSA_MODULUS_BITS, true),
        (MAX_RSA_MODULUS_BITS + 1, false),
    ] {
        let set = KeySet::from_json(json!({ "keys": [rsa_jwk(bits)] }).to_string().as_bytes());
        match kept {
            true => assert_eq!(set.map(|k| k.len()).ok(), Some(1), "{bits} bits"),
            false => assert!(matches!(set, Err(KeysError::NoUsableKey)), "{bits} bits"),
        }
    }
}

#[tokio::test]
async fn claims_nested_to_json_recursion_limit_are_read_and_one_level_more_is_not() {
    let fx = Fixture::new();
    let guard = fx.builder().no_token_cache().build().await.unwrap();
    // serde_json's recursion limit: 127 levels of arrays and objects, the claims object
    // itself included.
    let nested = |levels: usize| {
        let mut value = json!([]);
        for _ in 2..levels {
            value = Value::Array(vec![value]);
        }
        value
    };
    for (levels, admitted) in [(JSON_DEPTH, true), (JSON_DEPTH + 1, false)] {
        let token = fx.token(json!({ "deep": nested(levels) }), 0);
        let request = http::Request::get("/r").header("authorization", format!("Bearer {token}"));
        let result = check(&guard, request).await;
        assert_at_bound(levels, admitted, &result, |r| {
            matches!(
                r,
                Rejection::Token(tower_oauth_guard::TokenError::Malformed)
            )
        });
    }
}

/// The deepest nesting serde_json's default recursion limit lets through, under which every
/// JSON document the guard reads is parsed.
const JSON_DEPTH: usize = 127;

#[tokio::test]
async fn a_client_cert_with_max_client_cert_parameters_is_read_and_one_more_is_not() {
    let fx = Fixture::new();
    let pki = TestPki::generate();
    let guard = cert_guard(&fx).await;
    let token = fx.token(json!({"cnf": {"x5t#S256": pki.client_a.x5t_s256()}}), 0);
    let leaf = pki.client_a.client_cert_header();
    for (count, admitted) in [
        (MAX_CLIENT_CERT_PARAMETERS, true),
        (MAX_CLIENT_CERT_PARAMETERS + 1, false),
    ] {
        let params: String = (0..count).map(|i| format!(";p{i}=1")).collect();
        let request = http::Request::get("/r")
            .header("authorization", format!("Bearer {token}"))
            .header("client-cert", format!("{leaf}{params}"));
        let result = check(&guard, request).await;
        assert_at_bound(count, admitted, &result, |r| {
            matches!(r, Rejection::Mtls(MtlsError::MalformedClientCertHeader))
        });
    }
}

/// Net heap bytes per live proof of a `MemoryReplayStore` holding `n` proofs from `clients`
/// client keys, and the peak while they went in (a table's growth holds two tables at once).
fn replay_store_bytes(n: u64, clients: u64) -> (f64, f64) {
    use tower_oauth_guard::{ReplayCheck, ReplayKey, ReplayStore, ReplayWindow};
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = MemoryReplayStore::with_limits(n, n);
    let window = ReplayWindow {
        now: 1_700_000_000,
        until: 1_700_000_071,
    };
    let jkts: Vec<String> = (0..clients).map(|c| format!("client-{c}")).collect();
    let info = allocation_counter::measure(|| {
        for i in 0..n {
            let key = ReplayKey::new(&jkts[(i % clients) as usize], &i.to_string());
            let check = rt.block_on(store.check_and_insert(&key, window));
            assert_eq!(check.unwrap(), ReplayCheck::Fresh);
        }
    });
    assert_eq!(store.len(), n);
    drop(store);
    (
        info.bytes_current as f64 / n as f64,
        info.bytes_max as f64 / n as f64,
    )
}

#[test]
fn the_in_process_replay_store_holds_a_live_proof_in_at_most_160_bytes() {
    // A million live proofs from 200 clients, then the worst case for the per-client
    // counts: every proof from a key of its own.
    for (n, clients) in [(1_000_000, 200), (250_000, 250_000)] {
        let (live, peak) = replay_store_bytes(n, clients);
        eprintln!("{n} proofs, {clients} clients: {live:.0} B per live proof, peak {peak:.0} B");
        assert!(
            live <= 160.0,
            "{n} proofs, {clients} clients: {live:.0} B per live proof"
        );
        assert!(
            peak <= 240.0,
            "{n} proofs, {clients} clients: peak {peak:.0} B per proof"
        );
    }
}
