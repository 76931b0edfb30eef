//! What each path through the guard costs, as a ratio to **A**: one aws-lc-rs ES256
//! verification with the key parsed per call, measured in the same run.
//!
//! ```text
//! cargo bench --bench guard                 # criterion per path, then the ×A summary
//! cargo bench --bench guard -- --quick      # the same, faster and rougher
//! cargo bench --bench guard -- --profile-time 5 dpop_cached_token_fresh_proof   # for a profiler
//! ```
//!
//! All in process, without network: a static JWK Set and the in-memory replay store. The
//! paths, each on ES256 tokens and proofs:
//!
//! - `a_es256_verify`: A itself (`UnparsedPublicKey::verify`);
//! - `floor_es256_verify_parsed_key`: the same signature with a key parsed beforehand, the
//!   least one signature can cost;
//! - `floor_new_token_parsed_key`: the signature of a new token each time (made beforehand,
//!   like the other paths' inputs), with the key parsed beforehand: the floor of the paths
//!   that see new tokens, whose inputs are not already in the CPU's caches;
//! - `bearer_new_token`: a bearer access token (RFC 9068) the guard has not seen: one
//!   signature, the claims, the token cache's insert;
//! - `bearer_new_token_no_cache`: the same with `no_token_cache()`: no insert;
//! - `bearer_cached_token`: the same token every time (a hash and a lookup);
//! - `introspection_cached_token`: an opaque token (RFC 7662) the issuer's introspection
//!   endpoint (a local one, asked once) said is active: the same hash and lookup;
//! - `dpop_cached_token_fresh_proof`: a DPoP-bound token seen before and a new proof
//!   (RFC 9449 §4.3): one signature, plus the proof's JSON, `htu`, `ath`, the thumbprint
//!   binding and the replay store;
//! - `dpop_new_token_fresh_proof`: both new: two signatures;
//! - `axum_layer_cached_token` minus `axum_bare_router`: the guard's layer in an axum 0.8
//!   `Router`, driven in process, against the same router without it.
//!
//! Criterion reports times; after it, a summary of interleaved rounds prints each path's
//! ratio to A: in every round each path's batch is timed between two batches of A, on the
//! process's CPU time, and the median of the rounds' ratios counts.

use std::hint::black_box;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    ParsedPublicKey, UnparsedPublicKey,
};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{BatchSize, Criterion};
use http::request::Parts;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tower::ServiceExt as _;
use tower_oauth_guard::{
    BaseUrl, Dpop, Introspection, IntrospectionAuth, Issuer, KeySet, MemoryReplayStore, OAuthGuard,
    Policy, Presence, PublicUri, ath_for, jwk_thumbprint,
};

const ISSUER: &str = "https://issuer.bench.example";
const AUDIENCE: &str = "https://api.bench.example";
const HOST: &str = "api.bench.example";
const PATH: &str = "/api/whoami";
/// Room for every proof a run makes: a full store would fail requests closed.
const REPLAY_CAPACITY: u64 = 50_000_000;
/// Requests per path in one round of the summary.
const SUMMARY_BATCH: usize = 1_000;
/// Rounds of the summary; the median counts. `GUARD_BENCH_ROUNDS=<n>` sets another number,
/// for comparisons finer than one run's spread.
const SUMMARY_ROUNDS: usize = 7;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("JSON"))
}

/// A P-256 key pair and its public JWK.
struct Key {
    pair: EcdsaKeyPair,
    jwk: Value,
}

impl Key {
    fn es256() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("key pair");
        // SEC 1 uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Key { pair, jwk }
    }

    fn point(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64_json(header), b64_json(claims));
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("ES256 signature");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// The issuer's key, a client's key, and tokens and proofs made with them.
struct Fixture {
    issuer: Key,
    client: Key,
    jkt: String,
    counter: std::cell::Cell<u64>,
    /// A bearer token and a DPoP-bound one, reused by the "seen before" paths.
    bearer: String,
    bound: String,
}

impl Fixture {
    fn new() -> Self {
        let issuer = Key::es256();
        let client = Key::es256();
        let jkt = jwk_thumbprint(&client.jwk.to_string()).expect("thumbprint");
        let mut fixture = Fixture {
            issuer,
            client,
            jkt,
            counter: std::cell::Cell::new(0),
            bearer: String::new(),
            bound: String::new(),
        };
        fixture.bearer = fixture.token(false);
        fixture.bound = fixture.token(true);
        fixture
    }

    fn next(&self) -> u64 {
        let n = self.counter.get();
        self.counter.set(n + 1);
        n
    }

    /// A new access token (RFC 9068 §2.2), bound to the client key (`cnf.jkt`) or not.
    fn token(&self, bound: bool) -> String {
        let now = now();
        let mut claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "client_id": "bench",
            "iat": now, "exp": now + 3600, "scope": "read", "jti": format!("t{}", self.next()),
        });
        if bound {
            claims["cnf"] = json!({ "jkt": self.jkt });
        }
        self.issuer.sign(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}),
            &claims,
        )
    }

    /// A new proof (RFC 9449 §4.2) for `GET PATH` with `token`.
    fn proof(&self, token: &str) -> String {
        self.client.sign(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.client.jwk}),
            &json!({
                "jti": format!("p{}", self.next()),
                "htm": "GET",
                "htu": format!("http://{HOST}{PATH}"),
                "iat": now(),
                "ath": ath_for(token),
            }),
        )
    }

    fn key_set(&self) -> KeySet {
        let mut jwk = self.issuer.jwk.clone();
        jwk["kid"] = json!("k1");
        KeySet::from_json(json!({ "keys": [jwk] }).to_string().as_bytes()).expect("issuer key")
    }

    async fn guard(&self, dpop: bool) -> OAuthGuard {
        let builder = OAuthGuard::builder()
            .trust(Issuer::new(ISSUER).audience(AUDIENCE).jwks(self.key_set()));
        let builder = if dpop {
            builder.dpop(
                Dpop::allowed(PublicUri::fixed(
                    BaseUrl::parse(&format!("http://{HOST}")).expect("base URL"),
                ))
                .replay_store(MemoryReplayStore::with_limits(
                    REPLAY_CAPACITY,
                    REPLAY_CAPACITY,
                )),
            )
        } else {
            builder
        };
        builder.build().await.expect("guard")
    }

    /// A bearer guard that verifies every token (`no_token_cache`).
    async fn guard_without_cache(&self) -> OAuthGuard {
        OAuthGuard::builder()
            .trust(Issuer::new(ISSUER).audience(AUDIENCE).jwks(self.key_set()))
            .no_token_cache()
            .build()
            .await
            .expect("guard")
    }

    fn request(&self, token: &str, proof: Option<String>) -> http::Request<Body> {
        let scheme = if proof.is_some() { "DPoP" } else { "Bearer" };
        let mut request = http::Request::builder()
            .method("GET")
            .uri(PATH)
            .header("host", HOST)
            .header("authorization", format!("{scheme} {token}"));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.body(Body::empty()).expect("request")
    }

    fn head(&self, token: &str, proof: Option<String>) -> Parts {
        self.request(token, proof).into_parts().0
    }
}

/// The opaque token of `introspection_cached_token`.
const OPAQUE_TOKEN: &str = "2YotnFZFEjr1zCsicMWpAA";

/// A guard trusting an issuer whose opaque tokens its introspection endpoint vouches for: a
/// local endpoint on its own thread, answering every token active (RFC 7662 §2.2).
async fn introspecting_guard() -> OAuthGuard {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/introspect",
        listener.local_addr().expect("address")
    );
    listener.set_nonblocking(true).expect("non-blocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let answer = json!({
                "active": true, "iss": ISSUER, "aud": AUDIENCE, "sub": "bench",
                "client_id": "bench", "scope": "read", "exp": now() + 3600,
            });
            let app = Router::new().route(
                "/introspect",
                axum::routing::post(move || std::future::ready(axum::Json(answer))),
            );
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    let auth = IntrospectionAuth::client_secret_basic("bench", "secret");
    OAuthGuard::builder()
        .trust(
            Issuer::new(ISSUER).audience(AUDIENCE).introspection(
                Introspection::new(auth)
                    .endpoint(url)
                    // As long as the verified-token cache keeps anything: asked once a run.
                    .max_cache_ttl(std::time::Duration::from_secs(300)),
            ),
        )
        .build()
        .await
        .expect("guard")
}

/// What one iteration of a path needs, made before the clock starts (signing is the
/// client's work, not the guard's).
enum Input {
    None,
    /// A JWS's signing input and its decoded signature.
    Jws(Vec<u8>, Vec<u8>),
    Head(Parts),
    Request(http::Request<Body>),
}

/// The paths, each a way to make an input and a way to run it.
struct Paths {
    fixture: Fixture,
    rt: Runtime,
    message: Vec<u8>,
    signature: Vec<u8>,
    parsed: ParsedPublicKey,
    bearer: OAuthGuard,
    uncached: OAuthGuard,
    dpop: OAuthGuard,
    introspecting: OAuthGuard,
    policy: Policy,
    protected: Router,
    bare: Router,
}

const PATHS: &[&str] = &[
    "a_es256_verify",
    "floor_es256_verify_parsed_key",
    "floor_new_token_parsed_key",
    "bearer_new_token",
    "bearer_new_token_no_cache",
    "bearer_cached_token",
    "introspection_cached_token",
    "dpop_cached_token_fresh_proof",
    "dpop_new_token_fresh_proof",
    "axum_bare_router",
    "axum_layer_cached_token",
];

impl Paths {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let fixture = Fixture::new();
        let (message, signature) = fixture.bearer.rsplit_once('.').expect("JWS");
        let signature = URL_SAFE_NO_PAD.decode(signature).expect("signature");
        let parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, fixture.issuer.point())
            .expect("issuer key");
        let bearer = rt.block_on(fixture.guard(false));
        let uncached = rt.block_on(fixture.guard_without_cache());
        let dpop = rt.block_on(fixture.guard(true));
        let introspecting = rt.block_on(introspecting_guard());
        async fn whoami() -> &'static str {
            "ok"
        }
        let bare = Router::new().route(PATH, get(whoami));
        let protected = Router::new().route(PATH, get(whoami)).layer(bearer.layer());
        Paths {
            message: message.as_bytes().to_vec(),
            signature,
            parsed,
            fixture,
            rt,
            bearer,
            uncached,
            dpop,
            introspecting,
            policy: Policy::default(),
            protected,
            bare,
        }
    }

    fn input(&self, path: &str) -> Input {
        let f = &self.fixture;
        match path {
            "bearer_new_token" | "bearer_new_token_no_cache" => {
                Input::Head(f.head(&f.token(false), None))
            }
            "floor_new_token_parsed_key" => {
                let token = f.token(false);
                let (message, signature) = token.rsplit_once('.').expect("JWS");
                let signature = URL_SAFE_NO_PAD.decode(signature).expect("signature");
                Input::Jws(message.as_bytes().to_vec(), signature)
            }
            "bearer_cached_token" => Input::Head(f.head(&f.bearer, None)),
            "introspection_cached_token" => Input::Head(f.head(OPAQUE_TOKEN, None)),
            "dpop_cached_token_fresh_proof" => {
                Input::Head(f.head(&f.bound, Some(f.proof(&f.bound))))
            }
            "dpop_new_token_fresh_proof" => {
                let token = f.token(true);
                let proof = f.proof(&token);
                Input::Head(f.head(&token, Some(proof)))
            }
            "axum_bare_router" | "axum_layer_cached_token" => {
                Input::Request(f.request(&f.bearer, None))
            }
            _ => Input::None,
        }
    }

    /// Runs one iteration; panics if the guard refused, so that nothing is measured on a
    /// failing path.
    fn run(&self, path: &str, input: Input) {
        match (path, input) {
            ("a_es256_verify", _) => {
                UnparsedPublicKey::new(
                    &ECDSA_P256_SHA256_FIXED,
                    black_box(self.fixture.issuer.point()),
                )
                .verify(black_box(&self.message), black_box(&self.signature))
                .expect("A verifies");
            }
            ("floor_es256_verify_parsed_key", _) => {
                self.parsed
                    .verify_sig(black_box(&self.message), black_box(&self.signature))
                    .expect("floor verifies");
            }
            (_, Input::Jws(message, signature)) => {
                self.parsed
                    .verify_sig(black_box(&message), black_box(&signature))
                    .expect("floor verifies");
            }
            (path, Input::Head(mut parts)) => {
                let guard = if path.starts_with("dpop") {
                    &self.dpop
                } else if path.starts_with("introspection") {
                    &self.introspecting
                } else if path.ends_with("no_cache") {
                    &self.uncached
                } else {
                    &self.bearer
                };
                let admitted =
                    self.rt
                        .block_on(guard.check(&mut parts, &self.policy, Presence::Required));
                assert!(admitted.is_ok(), "{path}: refused: {:?}", admitted.err());
                black_box(admitted.ok());
            }
            (path, Input::Request(request)) => {
                let router = if path == "axum_bare_router" {
                    &self.bare
                } else {
                    &self.protected
                };
                let response = self
                    .rt
                    .block_on(router.clone().oneshot(request))
                    .expect("infallible");
                assert_eq!(response.status(), http::StatusCode::OK, "{path}");
                black_box(response);
            }
            (path, Input::None) => panic!("{path}: no input"),
        }
    }
}

fn criterion_benches(c: &mut Criterion, paths: &Paths) {
    for path in PATHS {
        c.bench_function(path, |b| {
            b.iter_batched(
                || paths.input(path),
                |input| paths.run(path, input),
                BatchSize::SmallInput,
            )
        });
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds of this process's CPU time: the time other processes hold the CPU is not counted.
fn cpu_seconds() -> f64 {
    cpu_time::ProcessTime::now().as_duration().as_secs_f64()
}

/// Mean CPU seconds per run of `path` over a batch of inputs made beforehand.
fn time_batch(paths: &Paths, path: &str) -> f64 {
    let batch: Vec<Input> = (0..SUMMARY_BATCH).map(|_| paths.input(path)).collect();
    let start = cpu_seconds();
    for input in batch {
        paths.run(path, input);
    }
    (cpu_seconds() - start) / SUMMARY_BATCH as f64
}

/// Interleaved rounds: in each, A is timed before the first path and after every path, and a
/// path's ratio is its time over the mean of the two A batches around it, so that a change of
/// the machine's pace between batches cancels out. The median ratio over the rounds counts.
fn ratio_summary(paths: &Paths) {
    let rounds = std::env::var("GUARD_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SUMMARY_ROUNDS);
    // `GUARD_BENCH_PATHS=<path>,<path>`: only those (A is always timed).
    let only = std::env::var("GUARD_BENCH_PATHS").ok();
    let timed = |path: &str| {
        path == PATHS[0]
            || only
                .as_deref()
                .is_none_or(|o| o.split(',').any(|p| p == path))
    };
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); PATHS.len()];
    let mut a_times = Vec::new();
    for path in PATHS {
        for _ in 0..50 {
            paths.run(path, paths.input(path));
        }
    }
    for _ in 0..rounds {
        let mut before = time_batch(paths, PATHS[0]);
        for (i, path) in PATHS.iter().enumerate().skip(1) {
            if !timed(path) {
                ratios[i].push(f64::NAN);
                continue;
            }
            let t = time_batch(paths, path);
            let after = time_batch(paths, PATHS[0]);
            ratios[i].push(t / ((before + after) / 2.0));
            a_times.push(after);
            before = after;
        }
        ratios[0].push(1.0);
    }
    let medians: Vec<f64> = ratios.into_iter().map(median).collect();
    println!();
    println!("Each path as a ratio to A, one aws-lc-rs ES256 verify with the key parsed per call");
    println!(
        "(median of {rounds} interleaved rounds of {SUMMARY_BATCH}, process CPU time; A took {:.1} µs)",
        median(a_times) * 1e6
    );
    for (path, ratio) in PATHS.iter().zip(&medians) {
        if timed(path) {
            println!("  {path:<34} {ratio:>6.3}");
        }
    }
    let at = |name: &str| {
        PATHS
            .iter()
            .position(|p| *p == name)
            .map_or(0.0, |i| medians[i])
    };
    let layer = at("axum_layer_cached_token") - at("axum_bare_router");
    if layer.is_finite() {
        println!(
            "  {:<34} {:>+6.3}",
            "axum layer over the bare router", layer
        );
    }
}

/// `GUARD_BENCH_PROFILE=<path>[:<n>]`: runs only `n` iterations of one path (default 500),
/// inputs made first and the path warmed up (caches full) with as many runs, for a profile of
/// the guard alone in its steady state:
/// `valgrind --tool=callgrind --toggle-collect='*guard::profiled*' <bench binary>`. Prints
/// the CPU time per iteration of the profiled runs.
fn profile(paths: &Paths, spec: &str) {
    let (path, n) = spec.split_once(':').unwrap_or((spec, "500"));
    let n: usize = n.parse().expect("GUARD_BENCH_PROFILE=<path>:<count>");
    for _ in 0..2 {
        let warm_up = (0..n).map(|_| paths.input(path));
        warm_up.for_each(|input| paths.run(path, input));
    }
    let inputs: Vec<Input> = (0..n).map(|_| paths.input(path)).collect();
    let uptime = || std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    eprintln!("profiled runs from uptime {}", uptime().trim());
    let start = cpu_seconds();
    profiled(paths, path, inputs);
    let per_run = (cpu_seconds() - start) / n as f64;
    eprintln!("profiled runs until uptime {}", uptime().trim());
    eprintln!("{path}: {:.2} µs per run (CPU time)", per_run * 1e6);
}

#[inline(never)]
fn profiled(paths: &Paths, path: &str, inputs: Vec<Input>) {
    for input in inputs {
        paths.run(path, input);
    }
}

fn main() {
    let paths = Paths::new();
    if std::env::var("GUARD_BENCH_SIZES").is_ok() {
        let mut parts = paths.fixture.head(&paths.fixture.bearer, None);
        let fut = paths
            .bearer
            .check(&mut parts, &paths.policy, Presence::Required);
        eprintln!("check future: {} bytes", std::mem::size_of_val(&fut));
        return;
    }
    if let Ok(spec) = std::env::var("GUARD_BENCH_PROFILE") {
        return profile(&paths, &spec);
    }
    // Every path must pass before anything is timed.
    for path in PATHS {
        paths.run(path, paths.input(path));
    }
    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion, &paths);
    criterion.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` does not, and only smoke-tests.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--profile-time") {
        ratio_summary(&paths);
    }
}
