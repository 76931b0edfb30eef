//! Properties over inputs nobody wrote by hand (proptest, a fixed number of cases per run, so
//! that a run takes the same time every time): request heads as an attacker writes them,
//! `htu` normalization (RFC 3986 §6.2.2–6.2.3), single-byte changes to valid tokens and
//! proofs, JWK Sets, nonces, and the challenge writer (RFC 9110 §11.6.1).
//!
//! Memory is measured with a per-thread counting allocator (`allocation-counter`): the guard
//! runs on a current-thread runtime inside the measurement, so every byte it allocates for a
//! request is counted, and nothing another test does is.

use std::net::{Ipv4Addr, SocketAddr};

use http::HeaderValue;
use jsonwebtoken::{Algorithm, Header};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};
use tower_oauth_guard::limits::{
    MAX_CLIENT_CERT_CHAIN_HEADER_LEN, MAX_CLIENT_CERT_HEADER_LEN, MAX_DPOP_PROOF_LEN,
    MAX_FORWARDED_HEADER_LEN, MAX_HOST_HEADER_LEN, MAX_JWKS_LEN, MAX_PREFIX_HEADER_LEN,
    MAX_TOKEN_LEN,
};
use tower_oauth_guard::{
    BaseUrl, Challenge, ChallengeParams, ClientCertHeader, Dpop, DpopNonces, ErrorCode,
    ExpectedRequest, ForwardedHeaders, Issuer, KeySet, Mtls, NonceCheck, NonceSecret, OAuthGuard,
    Policy, Presence, ProofPolicy, PublicUri, RemoteAddr, Scheme, normalize_htu, verify_proof,
};

use crate::support::*;

const AUD: &str = "https://api.example";
const ISSUER: &str = "https://issuer.example";
const CASES: u32 = 256;
/// Cases of the request-head property.
const REQUEST_CASES: u32 = 4096;

/// What one request may make the guard allocate, whatever its head holds: twice every input
/// bound the guard reads a header up to, plus room for the fixed-size work (the key lookup,
/// the signature check, the challenge). A parser that copied or decoded an oversized header
/// before checking its length would exceed it: the oversized headers below are larger.
const REQUEST_ALLOCATION_BOUND: u64 = 2
    * (MAX_TOKEN_LEN
        + MAX_DPOP_PROOF_LEN
        + MAX_CLIENT_CERT_HEADER_LEN
        + MAX_CLIENT_CERT_CHAIN_HEADER_LEN
        + MAX_FORWARDED_HEADER_LEN
        + MAX_HOST_HEADER_LEN
        + MAX_PREFIX_HEADER_LEN) as u64
    + 64 * 1024;

/// The header bounds, which hostile values are also built just under.
const NEAR_BOUNDS: [usize; 6] = [
    MAX_TOKEN_LEN,
    MAX_DPOP_PROOF_LEN,
    MAX_CLIENT_CERT_HEADER_LEN,
    MAX_CLIENT_CERT_CHAIN_HEADER_LEN,
    MAX_FORWARDED_HEADER_LEN,
    MAX_HOST_HEADER_LEN,
];

/// How long an oversized header is: past every bound above.
const OVERSIZED: usize = 2 * REQUEST_ALLOCATION_BOUND as usize;

/// The headers each step reads, with the guard (by its origin setting, see `fixture`) and the
/// token (by its binding) that make the guard reach that step: a request's `Forwarded` is
/// only read to check the proof of a DPoP-bound token, its `Client-Cert` only for a
/// certificate-bound one. The first family brings its own `Authorization`, hostile too.
const FAMILIES: [Family; 6] = [
    (&["authorization", "dpop"], 0, None, &[]),
    (&["client-cert"], 0, Some(2), &[]),
    // A well-formed leaf, so that the chain is read too.
    (
        &["client-cert-chain"],
        0,
        Some(2),
        &[("client-cert", ":AAAA:")],
    ),
    (&["forwarded"], 1, Some(1), &[]),
    (
        &[
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-forwarded-prefix",
        ],
        2,
        Some(1),
        &[],
    ),
    (&["host"], 3, Some(1), &[]),
];

/// Hostile header names, the guard (by index), the fixture token sent (by index) and fixed
/// headers sent beside them.
type Family = (
    &'static [&'static str],
    usize,
    Option<usize>,
    &'static [(&'static str, &'static str)],
);

/// One issuer with a static key, guards that read the public origin each way there is, valid
/// tokens of each binding, and a DPoP client.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    guards: Vec<OAuthGuard>,
    issuer: SigningKey,
    tokens: Vec<String>,
    client: DpopKey,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let issuer = SigningKey::generate("k1");
    let keys = KeySet::from_json(json!({ "keys": [issuer.jwk] }).to_string().as_bytes()).unwrap();
    let loopback = [Ipv4Addr::LOCALHOST.into()];
    let origins = [
        PublicUri::fixed(BaseUrl::parse(AUD).unwrap()),
        PublicUri::forwarded_by(loopback, ForwardedHeaders::Forwarded),
        PublicUri::forwarded_by(loopback, ForwardedHeaders::XForwardedWithPrefix),
        PublicUri::DangerousHostHeader,
    ];
    let guards = origins
        .into_iter()
        .map(|origin| {
            let builder = OAuthGuard::builder()
                .trust(Issuer::new(ISSUER).audience(AUD).jwks(keys.clone()))
                .dpop(Dpop::allowed(origin))
                .mtls(Mtls::allowed().trust_client_cert_header(ClientCertHeader::from_any_peer()));
            runtime.block_on(builder.build()).unwrap()
        })
        .collect();
    let client = DpopKey::generate();
    let pki = TestPki::generate();
    let tokens = [
        json!({}),
        json!({"cnf": {"jkt": client.jkt}}),
        json!({"cnf": {"x5t#S256": pki.client_a.x5t_s256()}}),
    ]
    .into_iter()
    .map(|cnf| sign_token(&issuer, cnf))
    .collect();
    Fixture {
        runtime,
        guards,
        issuer,
        tokens,
        client,
    }
}

/// An access token from the fixture's issuer, valid for an hour, with `extra` claims.
fn sign_token(issuer: &SigningKey, extra: Value) -> String {
    let now = now();
    let mut claims = json!({
        "iss": ISSUER, "sub": "alice", "aud": AUD, "client_id": "c1",
        "iat": now, "exp": now + 3600, "scope": "read",
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
        c.extend(e);
    }
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(issuer.kid.clone());
    header.typ = Some("at+jwt".into());
    issuer.sign(header, &claims)
}

/// Fragments of the syntaxes the guard parses, to be glued together.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"Bearer ".to_vec()),
        Just(b"DPoP ".to_vec()),
        Just(b"eyJ".to_vec()),
        Just(b".".to_vec()),
        Just(b",".to_vec()),
        Just(b";".to_vec()),
        Just(b"=".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\\".to_vec()),
        Just(b":".to_vec()),
        Just(b" ".to_vec()),
        Just(b"for=".to_vec()),
        Just(b"proto=https".to_vec()),
        Just(b"host=api.example".to_vec()),
        Just(b"[::1]".to_vec()),
        Just(b"%41".to_vec()),
        Just(b"%".to_vec()),
        Just(b"https://".to_vec()),
        Just(b"/".to_vec()),
        Just(b"MII".to_vec()),
        Just(b":".to_vec()),
        Just(b"AAAA".to_vec()),
        Just(b"a,".to_vec()),
        Just(b";k".to_vec()),
        Just(b":AA==:,".to_vec()),
        Just(b"(a ".to_vec()),
        Just(b"a ".to_vec()),
        Just(b"\"\" ".to_vec()),
        "[A-Za-z0-9_-]{1,40}".prop_map(String::into_bytes),
    ]
}

/// A header value: short noise over every byte a value may hold, glued syntax, or a
/// fragment repeated past every bound.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff];
    prop_oneof![
        4 => proptest::collection::vec(byte, 0..200),
        4 => proptest::collection::vec(piece(), 0..16).prop_map(|p| p.concat()),
        2 => (piece(), piece(), piece()).prop_map(|(open, body, close)| {
            [open, body.repeat(OVERSIZED / body.len() + 1), close].concat()
        }),
        // Lists of as many members as one of the bounds holds (RFC 9110 `#rule`, RFC 8941).
        2 => (piece(), proptest::sample::select(NEAR_BOUNDS.to_vec())).prop_map(|(member, bound)| {
            let item = [member, b", ".to_vec()].concat();
            item.repeat(bound / item.len())
        }),
        // Inner lists (RFC 8941 §3.1.1) of as many members as one of the bounds holds.
        1 => (piece(), proptest::sample::select(NEAR_BOUNDS.to_vec())).prop_map(|(member, bound)| {
            let item = [member, b" ".to_vec()].concat();
            [b"(".to_vec(), item.repeat(bound / item.len() - 1)].concat()
        }),
        // Just under one of the bounds: as much as the guard takes, built as syntax.
        2 => (piece(), piece(), piece(), proptest::sample::select(NEAR_BOUNDS.to_vec()))
            .prop_map(|(open, body, close, bound)| {
                let room = bound.saturating_sub(open.len() + close.len());
                let body = body.repeat(room / body.len());
                [open, body, close].concat()
            }),
    ]
}

proptest! {
    // Each case is cheap and most aim wide of the bound they test: many of them.
    #![proptest_config(ProptestConfig::with_cases(REQUEST_CASES))]

    /// No request head makes the guard panic, admit a request it should not, or allocate more
    /// than its bound. Each case aims at one step: hostile values for the headers it reads,
    /// with the guard and the valid token that make the guard reach it.
    #[test]
    fn no_request_head_panics_or_allocates_past_its_bound(
        family in 0..FAMILIES.len(),
        headers in proptest::collection::vec((any::<prop::sample::Index>(), header_value()), 1..6),
        with_token in proptest::bool::weighted(0.9),
        with_proof in proptest::bool::weighted(0.9),
    ) {
        let fx = fixture_once();
        let live = allocation_counter::measure(|| drop(std::hint::black_box(vec![0u8; 4096])));
        prop_assert!(live.bytes_max >= 4096, "the counting allocator is not installed");
        let (names, guard, token, fixed) = FAMILIES[family];
        let with_token = with_token && token.is_some();
        let mut request = http::Request::get("/api/r")
            .extension(RemoteAddr(SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000))));
        if let Some(index) = token.filter(|_| with_token) {
            let scheme = if index == 1 { "DPoP" } else { "Bearer" };
            request = request.header("authorization", format!("{scheme} {}", fx.tokens[index]));
        }
        if with_proof {
            let proof = fx.client.proof("GET", &format!("{AUD}/api/r"), Some(&fx.tokens[1]), None);
            request = request.header("dpop", proof);
        }
        for (name, value) in fixed {
            request = request.header(*name, *value);
        }
        for (name, value) in &headers {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                request = request.header(*name.get(names), value);
            }
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        let guard = &fx.guards[guard];
        // The guard's log events go nowhere here: what a subscriber allocates for them is the
        // application's, and the test binary's capturing subscriber grows without bound.
        let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
        let info = allocation_counter::measure(|| {
            let result = fx.runtime.block_on(guard.check(&mut parts, &Policy::default(), Presence::Required));
            // Hostile headers never carry credentials of their own: only the fixture's
            // token, in the hostile company, may be admitted.
            assert!(result.is_err() || with_token, "admitted without a token");
        });
        prop_assert!(
            info.bytes_total <= REQUEST_ALLOCATION_BOUND,
            "{} bytes allocated > {REQUEST_ALLOCATION_BOUND}", info.bytes_total
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Any byte of a valid access token changed: refused (or, for the few changes that leave
    /// a token the guard cannot tell from the original, nothing new is admitted).
    #[test]
    fn a_token_with_any_byte_changed_is_refused(position in any::<prop::sample::Index>(), byte in 0x21u8..0x7f) {
        let fx = fixture_once();
        let token = &fx.tokens[0];
        let i = position.index(token.len());
        prop_assume!(token.as_bytes()[i] != byte);
        let mut changed = token.clone().into_bytes();
        changed[i] = byte;
        let changed = String::from_utf8(changed).unwrap();
        let request = http::Request::get("/api/r").header("authorization", format!("Bearer {changed}"));
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        let result = fx.runtime.block_on(fx.guards[0].check(&mut parts, &Policy::default(), Presence::Required));
        prop_assert!(result.is_err(), "byte {i} of the token changed to {:?} was admitted", char::from(byte));
    }

    /// Any byte of a valid DPoP proof changed: refused (RFC 9449 §4.3).
    #[test]
    fn a_proof_with_any_byte_changed_is_refused(position in any::<prop::sample::Index>(), byte in 0x21u8..0x7f) {
        let fx = fixture_once();
        let htu = format!("{AUD}/api/r");
        let proof = fx.client.proof("GET", &htu, Some(&fx.tokens[1]), None);
        let expected = ExpectedRequest { method: "GET", htu: &htu, access_token: Some(&fx.tokens[1]) };
        let verify = |p: &str| verify_proof(p, &expected, &ProofPolicy::default(), now(), |h| normalize_htu(h).ok());
        prop_assert!(verify(&proof).is_ok());
        let i = position.index(proof.len());
        prop_assume!(proof.as_bytes()[i] != byte);
        let mut changed = proof.into_bytes();
        changed[i] = byte;
        let changed = String::from_utf8(changed).unwrap();
        prop_assert!(verify(&changed).is_err(), "byte {i} changed to {:?} verified", char::from(byte));
    }

    /// No JWK Set document panics the parser or makes it allocate past its size bound; a set
    /// holding the issuer's key among noise still yields that key.
    #[test]
    fn no_jwk_set_panics_or_allocates_past_its_bound(
        noise in proptest::collection::vec(jwk_noise(), 0..6),
        empties in prop_oneof![Just(0usize), 0usize..80_000],
        array in prop_oneof![Just(0usize), 0usize..120_000],
        with_key in any::<bool>(),
    ) {
        let fx = fixture_once();
        let mut keys = Vec::new();
        if with_key {
            keys.push(serde_json::to_value(&fx.issuer.jwk).unwrap());
        }
        keys.extend(noise);
        // Many empty entries, and one entry with a long array: a document near its bound
        // that is mostly structure.
        keys.extend(std::iter::repeat_n(json!({}), empties));
        keys.push(json!({"kty": "EC", "z": vec![0; array]}));
        keys.push(json!({"kty": "EC", "x5c": vec![json!({"": 0}); array / 8]}));
        let document = json!({ "keys": keys }).to_string();
        prop_assume!(document.len() <= MAX_JWKS_LEN);
        let info = allocation_counter::measure(|| {
            let parsed = KeySet::from_json(document.as_bytes());
            if with_key {
                assert!(parsed.is_ok_and(|k| !k.is_empty()));
            }
        });
        prop_assert!(info.bytes_total <= 4 * MAX_JWKS_LEN as u64, "{} bytes allocated", info.bytes_total);
    }

    /// A forged token (any header and payload JSON, a signature that does not verify) costs
    /// the guard no more than a few times its own size: nothing the forger adds is built
    /// before the signature is checked.
    #[test]
    fn a_forged_token_allocates_little_before_its_signature_is_checked(
        header_extra in 0usize..700,
        payload_extra in 0usize..1_000,
        header_member in proptest::sample::select(vec!["z", "crit", "kid", "alg", "typ"]),
        payload_member in proptest::sample::select(vec!["x", "iss", "aud"]),
        signature in "[A-Za-z0-9_-]{86}",
    ) {
        use base64::Engine as _;
        let fx = fixture_once();
        // The bulk in any member, the ones read before the signature included, as objects
        // (the costliest JSON to build); a later valid member of the same name keeps the
        // token on its way to the signature check.
        let bulk = |n: usize| Value::Array(vec![json!({"": 0}); n]);
        let header = format!(
            r#"{{"{header_member}":{},"alg":"ES256","kid":"k1","typ":"at+jwt"}}"#,
            bulk(header_extra)
        );
        let payload = format!(r#"{{"{payload_member}":{},"iss":"{ISSUER}","aud":"{AUD}"}}"#, bulk(payload_extra));
        let b64s = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!("{}.{}.{signature}", b64s(&header), b64s(&payload));
        prop_assume!(token.len() <= MAX_TOKEN_LEN);
        let request = http::Request::get("/api/r").header("authorization", format!("Bearer {token}"));
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
        let info = allocation_counter::measure(|| {
            let result = fx.runtime.block_on(fx.guards[0].check(&mut parts, &Policy::default(), Presence::Required));
            assert!(result.is_err());
        });
        let bound = 3 * MAX_TOKEN_LEN as u64 + 16 * 1024;
        prop_assert!(info.bytes_total <= bound, "{} bytes allocated > {bound}", info.bytes_total);
    }

    /// A forged proof (a header with any members, a signature that does not verify) costs no
    /// more than a few times its own size before its signature is checked.
    #[test]
    fn a_forged_proof_allocates_little_before_its_signature_is_checked(
        header_extra in 0usize..400,
        jwk_extra in 0usize..400,
        header_member in proptest::sample::select(vec!["z", "crit", "typ"]),
        jwk_member in proptest::sample::select(vec!["z", "oth", "d", "x5c"]),
        signature in "[A-Za-z0-9_-]{86}",
    ) {
        use base64::Engine as _;
        let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let fx = fixture_once();
        let bulk = |n: usize| Value::Array(vec![json!({"": 0}); n]);
        let mut jwk = serde_json::to_value(&fx.client.key.jwk).unwrap();
        jwk[jwk_member] = bulk(jwk_extra);
        let mut header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        header[header_member] = bulk(header_extra);
        let htu = format!("{AUD}/r");
        let claims = json!({"jti": "j", "htm": "GET", "htu": htu, "iat": now()});
        let proof = format!("{}.{}.{signature}", b64(&header), b64(&claims));
        prop_assume!(proof.len() <= MAX_DPOP_PROOF_LEN);
        let expected = ExpectedRequest { method: "GET", htu: &htu, access_token: None };
        let info = allocation_counter::measure(|| {
            let result = verify_proof(&proof, &expected, &ProofPolicy::default(), now(), |h| normalize_htu(h).ok());
            assert!(result.is_err());
        });
        let bound = 3 * MAX_DPOP_PROOF_LEN as u64 + 16 * 1024;
        prop_assert!(info.bytes_total <= bound, "{} bytes allocated > {bound}", info.bytes_total);
    }

    /// Anyone can sign a proof with a key of their own: a proof whose signature verifies, with
    /// any header and claim members beside the ones checked, still costs no more than a few
    /// times its size (the key binding to the token comes after it).
    #[test]
    fn a_proof_signed_by_its_own_key_allocates_little(
        header_extra in 0usize..300,
        claims_extra in 0usize..300,
        member in proptest::sample::select(vec!["z", "crit", "jti", "iat", "nonce"]),
    ) {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let fx = fixture_once();
        let bulk = |n: usize| Value::Array(vec![json!({"": 0}); n]);
        let mut header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": fx.client.key.jwk});
        header["z"] = bulk(header_extra);
        let htu = format!("{AUD}/r");
        let mut claims = json!({"jti": "j", "htm": "GET", "htu": htu, "iat": now()});
        claims[member] = bulk(claims_extra);
        let input = format!("{}.{}", b64(&header.to_string()), b64(&claims.to_string()));
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &fx.client.key.encoding, Algorithm::ES256).unwrap();
        let proof = format!("{input}.{signature}");
        prop_assume!(proof.len() <= MAX_DPOP_PROOF_LEN);
        let expected = ExpectedRequest { method: "GET", htu: &htu, access_token: None };
        let info = allocation_counter::measure(|| {
            let _ = verify_proof(&proof, &expected, &ProofPolicy::default(), now(), |h| normalize_htu(h).ok());
        });
        let bound = 3 * MAX_DPOP_PROOF_LEN as u64 + 16 * 1024;
        prop_assert!(info.bytes_total <= bound, "{} bytes allocated > {bound}", info.bytes_total);
    }

    /// No string is taken for a nonce this server issued; nonces it issued are.
    #[test]
    fn no_forged_nonce_is_valid(forged in prop_oneof!["\\PC{0,300}", "[A-Za-z0-9_-]{0,4096}"], step in 0u64..1_000) {
        let nonces = DpopNonces::new(NonceSecret::from_bytes(&[9; 32]).unwrap());
        let now = 1_700_000_000 + step * 60;
        let mut check = None;
        let info = allocation_counter::measure(|| check = Some(nonces.check(&forged, now)));
        // The decoder's cost follows the nonce's length, itself bounded by the proof's.
        let bound = 2 * forged.len() as u64 + 1024;
        prop_assert!(info.bytes_total <= bound, "{} bytes allocated > {bound}", info.bytes_total);
        let forged_is_valid = matches!(check, Some(NonceCheck::Valid { .. }));
        prop_assert!(!forged_is_valid, "{:?} taken for a nonce", forged);
        let issued_is_valid = matches!(nonces.check(&nonces.issue(now), now), NonceCheck::Valid { .. });
        prop_assert!(issued_is_valid);
    }
}

/// JWK-shaped JSON: right and wrong types for the members the parser reads.
fn jwk_noise() -> impl Strategy<Value = Value> {
    let member = prop_oneof![
        Just(json!("EC")),
        Just(json!("RSA")),
        Just(json!("OKP")),
        Just(json!("oct")),
        Just(json!("P-256")),
        Just(json!("Ed25519")),
        Just(json!(null)),
        Just(json!(7)),
        Just(json!([])),
        Just(json!({})),
        "[A-Za-z0-9_-]{0,100}".prop_map(Value::from),
    ];
    proptest::collection::btree_map(
        prop_oneof![
            Just("kty"),
            Just("crv"),
            Just("x"),
            Just("y"),
            Just("n"),
            Just("e"),
            Just("kid"),
            Just("alg"),
            Just("use"),
            Just("key_ops"),
            Just("k"),
            Just("d")
        ],
        member,
        0..8,
    )
    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

/// The fixture, made once per test thread (proptest runs a test's cases on one thread).
fn fixture_once() -> &'static Fixture {
    thread_local! {
        static FIXTURE: &'static Fixture = Box::leak(Box::new(fixture()));
    }
    FIXTURE.with(|f| *f)
}

// ---- htu: RFC 3986 §6.2.2 and §6.2.3 -----------------------------------------------------

/// An http(s) URI from its parts, in normal form.
#[derive(Debug, Clone)]
struct Uri {
    https: bool,
    host: String,
    port: Option<u16>,
    segments: Vec<String>,
}

impl Uri {
    fn normal(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let default = if self.https { 443 } else { 80 };
        let port = match self.port {
            Some(p) if p != default => format!(":{p}"),
            _ => String::new(),
        };
        format!("{scheme}://{}{port}/{}", self.host, self.segments.join("/"))
    }

    /// The same URI spelled another way RFC 3986 calls equivalent: scheme and host case
    /// (§6.2.2.1), percent-encoded unreserved characters in either hex case (§6.2.2.2), an
    /// explicit default port (§6.2.3).
    fn respelled(&self, choices: &[bool]) -> String {
        let mut choice = choices.iter().copied().cycle();
        let mut flip = || choice.next().unwrap_or(false);
        let scheme = if self.https { "HTTPS" } else { "HtTp" };
        let scheme = if flip() {
            scheme.to_owned()
        } else {
            scheme.to_lowercase()
        };
        let host: String = self
            .host
            .chars()
            .map(|c| if flip() { c.to_ascii_uppercase() } else { c })
            .collect();
        let default = if self.https { 443 } else { 80 };
        let port = match self.port {
            Some(p) if p != default => format!(":{p}"),
            _ if flip() => format!(":{default}"),
            _ => String::new(),
        };
        let path: Vec<String> = self
            .segments
            .iter()
            .map(|s| {
                s.chars()
                    .map(|c| match (flip(), flip()) {
                        (true, upper) => {
                            let hex = format!("%{:02x}", c as u32);
                            if upper { hex.to_uppercase() } else { hex }
                        }
                        (false, _) => c.to_string(),
                    })
                    .collect()
            })
            .collect();
        format!("{scheme}://{host}{port}/{}", path.join("/"))
    }
}

fn uri() -> impl Strategy<Value = Uri> {
    (
        any::<bool>(),
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,2}",
        proptest::option::of(1u16..),
        proptest::collection::vec("[A-Za-z0-9._~-]{0,8}", 0..4),
    )
        .prop_map(|(https, host, port, segments)| Uri {
            https,
            host,
            port,
            segments,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Normalizing twice changes nothing, for any string.
    #[test]
    fn htu_normalization_is_idempotent(any_string in "\\PC{0,120}", a_uri in uri()) {
        for input in [any_string, a_uri.normal()] {
            if let Ok(once) = normalize_htu(&input) {
                prop_assert_eq!(normalize_htu(&once), Ok(once.clone()), "{}", input);
            }
        }
    }

    /// Spellings RFC 3986 calls equivalent compare equal.
    #[test]
    fn equivalent_uris_compare_equal(a_uri in uri(), choices in proptest::collection::vec(any::<bool>(), 1..64)) {
        let respelled = a_uri.respelled(&choices);
        prop_assert_eq!(normalize_htu(&respelled), normalize_htu(&a_uri.normal()), "{}", respelled);
        prop_assert_eq!(normalize_htu(&a_uri.normal()), Ok(a_uri.normal()));
    }

    /// URIs that differ in scheme, host, port or path never compare equal.
    #[test]
    fn uris_that_differ_never_compare_equal(a in uri(), b in uri(), part in 0usize..4) {
        let mut b2 = a.clone();
        match part {
            0 => b2.https = !a.https,
            1 => b2.host = b.host.clone(),
            2 => b2.port = b.port,
            _ => b2.segments = b.segments.clone(),
        }
        prop_assume!(a.normal() != b2.normal());
        prop_assert_ne!(normalize_htu(&a.normal()), normalize_htu(&b2.normal()));
    }
}

// ---- the challenge: RFC 9110 §11.6.1 auth-params that parse back ----------------------------

/// `challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`, `auth-param = token BWS "="
/// BWS ( token / quoted-string )` (RFC 9110 §11.2, §11.6.1), parsed here independently of the
/// crate: the scheme and the parameters, unescaped.
fn parse_challenge(value: &str) -> Result<(String, Vec<(String, String)>), TestCaseError> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let fail = |why: &str| TestCaseError::fail(format!("{why}: {value}"));
    let (scheme, mut rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.is_empty() || !scheme.chars().all(tchar) {
        return Err(fail("scheme"));
    }
    let mut params = Vec::new();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(|| fail("no ="))?;
        let name = &rest[..eq];
        if name.is_empty() || !name.chars().all(tchar) {
            return Err(fail("name"));
        }
        let mut chars = rest[eq + 1..].char_indices();
        let mut out = String::new();
        let end = match chars.next() {
            Some((_, '"')) => loop {
                match chars.next().ok_or_else(|| fail("unterminated"))? {
                    (i, '"') => break eq + 1 + i + 1,
                    (_, '\\') => out.push(chars.next().ok_or_else(|| fail("escape"))?.1),
                    (_, c) if c == '\t' || (' '..='~').contains(&c) => out.push(c),
                    _ => return Err(fail("qdtext")),
                }
            },
            // A token (RFC 9110 §5.6.2), up to the separator.
            Some(_) => {
                let value = &rest[eq + 1..];
                let len = value.find(',').unwrap_or(value.len());
                let token = &value[..len];
                if token.is_empty() || !token.chars().all(tchar) {
                    return Err(fail("token"));
                }
                out.push_str(token);
                eq + 1 + len
            }
            None => return Err(fail("no value")),
        };
        params.push((name.to_owned(), out));
        rest = &rest[end..];
        if let Some(next) = rest.strip_prefix(", ") {
            rest = next;
        } else if !rest.is_empty() {
            return Err(fail("separator"));
        }
    }
    Ok((scheme.to_owned(), params))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Whatever printable text goes into a challenge comes back out of its
    /// `WWW-Authenticate` values, one value per scheme, each parameter once.
    #[test]
    fn the_challenge_parses_back_to_what_was_put_in(
        realm in proptest::option::of("[ -~]{0,40}"),
        description in proptest::option::of("[ -~]{0,80}"),
        scope in proptest::option::of("[ -~]{0,40}"),
        acr_values in proptest::option::of("[ -~]{0,40}"),
        max_age in proptest::option::of(any::<u64>()),
        resource_metadata in proptest::option::of("[ -~]{0,60}"),
        algs in "[ -~]{0,30}",
        both in any::<bool>(),
    ) {
        let schemes = if both { vec![Scheme::Bearer, Scheme::Dpop] } else { vec![Scheme::Bearer] };
        let challenge = Challenge {
            status: http::StatusCode::UNAUTHORIZED,
            error: Some(ErrorCode::InvalidToken),
            description: description.clone(),
            scope: scope.clone(),
            acr_values: acr_values.clone(),
            max_age,
            schemes: schemes.clone(),
            dpop_nonce: None,
            retry_after: None,
        };
        let params = ChallengeParams {
            realm: realm.clone(),
            dpop_algs: algs.clone(),
            resource_metadata: resource_metadata.clone(),
        };
        let values = challenge.www_authenticate(&params);
        prop_assert_eq!(values.len(), schemes.len());
        for (value, scheme) in values.iter().zip(&schemes) {
            let (name, parsed) = parse_challenge(value.to_str().unwrap())?;
            prop_assert_eq!(name.as_str(), if *scheme == Scheme::Dpop { "DPoP" } else { "Bearer" });
            let get = |n: &str| parsed.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            prop_assert_eq!(get("realm"), realm.clone());
            prop_assert_eq!(get("error"), Some("invalid_token".to_owned()));
            prop_assert_eq!(get("error_description"), description.clone());
            prop_assert_eq!(get("scope"), scope.clone());
            prop_assert_eq!(get("acr_values"), acr_values.clone());
            prop_assert_eq!(get("max_age"), max_age.map(|m| m.to_string()));
            prop_assert_eq!(get("resource_metadata"), resource_metadata.clone());
            // The order of RFC 6750 §3, then RFC 9470 §3, RFC 9728 §5.1 and RFC 9449 §7.1.
            let order = ["realm", "error", "error_description", "scope", "acr_values", "max_age", "resource_metadata", "algs"];
            let names: Vec<&str> = parsed.iter().map(|(k, _)| k.as_str()).collect();
            let expected: Vec<&str> = order.iter().copied().filter(|n| names.contains(n)).collect();
            prop_assert_eq!(names, expected);
            let expected_algs = (*scheme == Scheme::Dpop && !algs.is_empty()).then(|| algs.clone());
            prop_assert_eq!(get("algs"), expected_algs);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Text a header cannot carry (controls, non-ASCII) never costs the client its challenge:
    /// it is left out, and the rest comes back.
    #[test]
    fn a_challenge_is_sent_whatever_its_text_holds(description in "\\PC{0,60}", scope in "\\PC{0,30}") {
        let challenge = Challenge {
            status: http::StatusCode::FORBIDDEN,
            error: Some(ErrorCode::InsufficientScope),
            description: Some(description.clone()),
            scope: Some(scope.clone()),
            acr_values: None,
            max_age: None,
            schemes: vec![Scheme::Bearer],
            dpop_nonce: None,
            retry_after: None,
        };
        let values = challenge.www_authenticate(&ChallengeParams::default());
        prop_assert_eq!(values.len(), 1);
        let (_, parsed) = parse_challenge(values[0].to_str().unwrap())?;
        let sendable = |s: &str| s.chars().filter(|c| (' '..='~').contains(c)).collect::<String>();
        let get = |n: &str| parsed.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        prop_assert_eq!(get("error_description"), Some(sendable(&description)));
        prop_assert_eq!(get("scope"), Some(sendable(&scope)));
    }
}
