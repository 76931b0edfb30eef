//! What one DPoP-bound request costs the guard, as a ratio to one raw ES256 signature
//! verification measured in the same run.
//!
//! ```text
//! cargo bench --bench dpop                 # criterion, then the ratio summary
//! cargo bench --bench dpop -- --quick      # the same, faster and rougher
//! ```
//!
//! Three measurements, all in process and without network (static JWK Set, in-memory replay
//! store): `raw_es256_verify` is `jsonwebtoken::crypto::verify` of one ES256 JWS with a ready
//! key; `guard_check/token_cache_on` and `/token_cache_off` run `OAuthGuard::check` on the head
//! of a `GET` carrying a DPoP-bound ES256 access token and a fresh ES256 proof (every proof is
//! new: a replayed one would be refused). With the cache on, the token's signature was checked
//! by an earlier request; off, every request verifies two signatures (token and proof).
//!
//! Criterion reports absolute times; after it, a summary measured by interleaved rounds prints
//! each guard time divided by the raw verification time, the number the README quotes.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{BatchSize, Criterion};
use http::request::Parts;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tower_oauth_guard::MemoryReplayStore;
use tower_oauth_guard::Policy;
use tower_oauth_guard::{BaseUrl, Dpop, KeySet, OAuthGuard, PublicUri};
use tower_oauth_guard::{ath_for, jwk_thumbprint};

const ISSUER: &str = "https://issuer.bench.example";
const AUDIENCE: &str = "https://api.bench.example";
const HOST: &str = "api.bench.example";
const PATH: &str = "/api/whoami";
/// Room for every proof a benchmark run makes: a full store would fail requests closed.
const REPLAY_CAPACITY: u64 = 50_000_000;
/// Requests per timed round of the ratio summary.
const SUMMARY_BATCH: usize = 2_000;
/// Interleaved rounds of the ratio summary; the median round counts.
const SUMMARY_ROUNDS: usize = 7;

fn install_provider() {
    #[cfg(feature = "aws-lc-rs")]
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

struct Key {
    encoding: EncodingKey,
    jwk: Jwk,
}

impl Key {
    fn es256() -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("P-256 key");
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).expect("public JWK");
        Key { encoding, jwk }
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("JSON"));
        let input = format!("{}.{}", b64(header), b64(claims));
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, Algorithm::ES256)
                .expect("ES256 signature");
        format!("{input}.{signature}")
    }
}

/// An issuer key, a client key, and the access token bound to the client key.
struct Fixture {
    issuer: Key,
    client: Key,
    client_jwk: Value,
    token: String,
    counter: std::cell::Cell<u64>,
}

impl Fixture {
    fn new() -> Self {
        install_provider();
        let mut issuer = Key::es256();
        issuer.jwk.common.key_id = Some("k1".into());
        let mut client = Key::es256();
        client.jwk.common = Default::default();
        let jkt =
            jwk_thumbprint(&serde_json::to_string(&client.jwk).expect("JSON")).expect("thumbprint");
        let now = now();
        let token = issuer.sign(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}),
            &json!({
                "iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "client_id": "bench",
                "iat": now, "exp": now + 3600, "scope": "read", "cnf": {"jkt": jkt},
            }),
        );
        let client_jwk = serde_json::to_value(&client.jwk).expect("JWK JSON");
        Fixture {
            issuer,
            client,
            client_jwk,
            token,
            counter: std::cell::Cell::new(0),
        }
    }

    async fn guard(&self, token_cache: bool) -> OAuthGuard {
        let builder = OAuthGuard::builder()
            .trust(
                tower_oauth_guard::Issuer::new(ISSUER)
                    .audience(AUDIENCE)
                    .jwks(
                        KeySet::from_json(
                            serde_json::json!({"keys": [self.issuer.jwk]})
                                .to_string()
                                .as_bytes(),
                        )
                        .expect("issuer key"),
                    ),
            )
            .dpop(
                Dpop::required(PublicUri::fixed(
                    BaseUrl::parse(&format!("http://{HOST}")).expect("base URL"),
                ))
                .replay_store(MemoryReplayStore::new(REPLAY_CAPACITY)),
            );
        let builder = if token_cache {
            builder
        } else {
            builder.no_token_cache()
        };
        builder.build().await.expect("guard")
    }

    /// The head of a request with the bound token and a proof never used before.
    fn request(&self) -> Parts {
        let n = self.counter.get();
        self.counter.set(n + 1);
        let proof = self.client.sign(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.client_jwk}),
            &json!({
                "jti": format!("bench-{n}"),
                "htm": "GET",
                "htu": format!("http://{HOST}{PATH}"),
                "iat": now(),
                "ath": ath_for(&self.token),
            }),
        );
        let (parts, ()) = http::Request::builder()
            .method("GET")
            .uri(PATH)
            .header("host", HOST)
            .header("authorization", format!("DPoP {}", self.token))
            .header("dpop", proof)
            .body(())
            .expect("request")
            .into_parts();
        parts
    }
}

/// The raw baseline: one ES256 JWS (the access token) verified with a ready key.
struct RawVerify {
    message: String,
    signature: String,
    key: DecodingKey,
}

impl RawVerify {
    fn new(fixture: &Fixture) -> Self {
        let (message, signature) = fixture.token.rsplit_once('.').expect("JWS");
        RawVerify {
            message: message.to_owned(),
            signature: signature.to_owned(),
            key: DecodingKey::from_jwk(&fixture.issuer.jwk).expect("decoding key"),
        }
    }

    fn run(&self) -> bool {
        jsonwebtoken::crypto::verify(
            black_box(&self.signature),
            black_box(self.message.as_bytes()),
            &self.key,
            Algorithm::ES256,
        )
        .expect("verify")
    }
}

fn check(rt: &Runtime, guard: &OAuthGuard, policy: &Policy, mut parts: Parts) {
    let admitted =
        rt.block_on(guard.check(&mut parts, policy, tower_oauth_guard::Presence::Required));
    assert!(admitted.is_ok(), "the benchmark request was refused");
    black_box(admitted.ok());
}

fn criterion_benches(c: &mut Criterion, rt: &Runtime, fixture: &Fixture) {
    let raw = RawVerify::new(fixture);
    assert!(raw.run());
    let policy = Policy::default();
    c.bench_function("raw_es256_verify", |b| b.iter(|| raw.run()));
    let mut group = c.benchmark_group("guard_check");
    for (name, cache) in [("token_cache_on", true), ("token_cache_off", false)] {
        let guard = rt.block_on(fixture.guard(cache));
        group.bench_function(name, |b| {
            b.iter_batched(
                || fixture.request(),
                |parts| check(rt, &guard, &policy, parts),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Mean time per call of `f` over a pre-built batch.
fn time_batch<T>(batch: Vec<T>, mut f: impl FnMut(T)) -> Duration {
    let n = batch.len() as u32;
    let start = Instant::now();
    for item in batch {
        f(item);
    }
    start.elapsed() / n
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Interleaved rounds, so that a slow moment of the machine hits all three alike.
fn ratio_summary(rt: &Runtime, fixture: &Fixture) {
    let raw = RawVerify::new(fixture);
    let policy = Policy::default();
    let cached = rt.block_on(fixture.guard(true));
    let uncached = rt.block_on(fixture.guard(false));
    // Warm the token cache and the allocator.
    for _ in 0..100 {
        check(rt, &cached, &policy, fixture.request());
        check(rt, &uncached, &policy, fixture.request());
        raw.run();
    }
    let (mut t_raw, mut t_cached, mut t_uncached) = (vec![], vec![], vec![]);
    for _ in 0..SUMMARY_ROUNDS {
        t_raw.push(time_batch(vec![(); SUMMARY_BATCH], |()| {
            black_box(raw.run());
        }));
        let batch = (0..SUMMARY_BATCH).map(|_| fixture.request()).collect();
        t_cached.push(time_batch(batch, |p| check(rt, &cached, &policy, p)));
        let batch = (0..SUMMARY_BATCH).map(|_| fixture.request()).collect();
        t_uncached.push(time_batch(batch, |p| check(rt, &uncached, &policy, p)));
    }
    let (raw, on, off) = (median(t_raw), median(t_cached), median(t_uncached));
    let ratio = |t: Duration| t.as_secs_f64() / raw.as_secs_f64();
    println!();
    println!(
        "DPoP-bound request through OAuthGuard::check, as a ratio to one raw ES256 verification"
    );
    println!("(median of {SUMMARY_ROUNDS} interleaved rounds of {SUMMARY_BATCH} requests)");
    println!("  raw ES256 verify            {raw:>10.2?}   1.00");
    println!(
        "  guard, token cache on       {on:>10.2?}   {:.2}",
        ratio(on)
    );
    println!(
        "  guard, token cache off      {off:>10.2?}   {:.2}",
        ratio(off)
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fixture = Fixture::new();
    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion, &rt, &fixture);
    criterion.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` does not, and only smoke-tests.
    if std::env::args().any(|a| a == "--bench") {
        ratio_summary(&rt, &fixture);
    }
}
