//! The distributed DPoP replay store: several guard instances, each a real axum
//! server, sharing one real redis-server (from `TOG_REDIS_URL`, or started by the test).
#![cfg(all(feature = "redis", feature = "axum"))]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::*;
use axum::Router;
use axum::routing::get;
use serde_json::json;
use tower_oauth_guard::redis::{RedisReplayStore, RedisStoreError};
use tower_oauth_guard::{AccessToken, Dpop, PublicUri};
use tower_oauth_guard::{
    BaseUrl, MemoryReplayStore, ProofPolicy, ReplayCheck, ReplayKey, ReplayStore, ReplayWindow,
};

const AUD: &str = "https://api.example";
/// Every instance answers to the same public URL, so one proof's `htu` fits all of them.
const PUBLIC_URL: &str = "https://api.example";
const HTU: &str = "https://api.example/api/whoami";
/// For tests about sharing, not about outages: a loaded 2-core CI machine must not turn a
/// slow answer into a 503.
const RELAXED: Duration = Duration::from_secs(2);

/// A unique key namespace per test, so tests can share one Redis.
fn prefix() -> String {
    format!("tog:test:{}:", rand_u64())
}

struct Options {
    replay_timeout: Duration,
    policy: ProofPolicy,
    clock: Option<TestClock>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            replay_timeout: RELAXED,
            policy: ProofPolicy::default(),
            clock: None,
        }
    }
}

/// One API instance: its own guard and store, served on its own port.
async fn instance(issuer: &TestIssuer, store: impl ReplayStore, options: Options) -> String {
    let mut builder = issuer.guard(AUD).dpop(
        Dpop::required(PublicUri::fixed(BaseUrl::parse(PUBLIC_URL).unwrap()))
            .proof_policy(options.policy)
            .replay_store(store)
            .replay_timeout(options.replay_timeout),
    );
    if let Some(clock) = options.clock {
        builder = builder.clock(clock);
    }
    let guard = builder.build().await.unwrap();
    let app = Router::new()
        .route(
            "/api/whoami",
            get(|token: AccessToken| async move { token.subject().to_owned() }),
        )
        .layer(guard.layer());
    serve(app).await
}

async fn store(url: &str, prefix: &str) -> RedisReplayStore {
    RedisReplayStore::builder()
        .key_prefix(prefix)
        .timeout(RELAXED)
        .connect(url)
        .await
        .unwrap()
}

async fn call(base: &str, token: &str, proof: &str) -> Reply {
    send(
        "GET",
        &format!("{base}/api/whoami"),
        &[("authorization", &format!("DPoP {token}")), ("dpop", proof)],
    )
    .await
}

/// A DPoP-bound token for `key` and a fresh-proof maker.
fn bound_token(issuer: &TestIssuer, key: &DpopKey) -> String {
    issuer.token(AUD, json!({ "cnf": { "jkt": key.jkt } }))
}

fn fresh_proof(key: &DpopKey, token: &str) -> String {
    key.proof("GET", HTU, Some(token), None)
}

#[track_caller]
fn assert_accepted(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "alice");
}

#[track_caller]
fn assert_replay(reply: &Reply) {
    reply.assert_error(401, "DPoP", "invalid_dpop_proof");
    assert!(
        reply.www_authenticate()[0].contains("DPoP proof replayed"),
        "{:?}",
        reply.www_authenticate()
    );
}

/// 503 + Retry-After and no challenge: the proof could not be checked, which says nothing
/// about it.
#[track_caller]
fn assert_failed_closed(reply: &Reply) {
    reply.assert_undecided(503, "1");
}

/// A window in real time: the guard's clock reads now, the proof is remembered `secs` more.
fn window_for(secs: i64) -> ReplayWindow {
    let now = now();
    ReplayWindow {
        now,
        until: now + secs,
    }
}

async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

// --- one replay window across instances ----------------------------------------------------

#[tokio::test]
async fn proof_accepted_by_one_instance_is_a_replay_on_the_other() {
    let redis = TestRedis::get();
    let issuer = TestIssuer::start().await;
    let ns = prefix();
    let a = instance(&issuer, store(&redis.url(), &ns).await, Options::default()).await;
    let b = instance(&issuer, store(&redis.url(), &ns).await, Options::default()).await;
    let key = DpopKey::generate();
    let token = bound_token(&issuer, &key);

    let proof = fresh_proof(&key, &token);
    assert_accepted(&call(&a, &token, &proof).await);
    assert_replay(&call(&b, &token, &proof).await);
    assert_replay(&call(&a, &token, &proof).await);

    // And the other way round: B accepts a fresh proof, A refuses it.
    let proof = fresh_proof(&key, &token);
    assert_accepted(&call(&b, &token, &proof).await);
    assert_replay(&call(&a, &token, &proof).await);
}

/// The control: what the Redis store fixes. With a store per process, the replay on the
/// other instance goes through, which the test above would catch.
#[tokio::test]
async fn in_process_stores_let_a_replay_through_on_the_other_instance() {
    let issuer = TestIssuer::start().await;
    let a = instance(&issuer, MemoryReplayStore::default(), Options::default()).await;
    let b = instance(&issuer, MemoryReplayStore::default(), Options::default()).await;
    let key = DpopKey::generate();
    let token = bound_token(&issuer, &key);
    let proof = fresh_proof(&key, &token);
    assert_accepted(&call(&a, &token, &proof).await);
    assert_accepted(&call(&b, &token, &proof).await);
    assert_replay(&call(&a, &token, &proof).await);
}

/// Sends one proof `n` times at once, alternating between the instances; returns the replies.
async fn race(bases: &[String], token: &str, proof: &str, n: usize) -> Vec<Reply> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let base = bases[i % bases.len()].clone();
            let (token, proof) = (token.to_owned(), proof.to_owned());
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                call(&base, &token, &proof).await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    replies
}

#[track_caller]
fn assert_exactly_one_accepted(replies: &[Reply], round: usize) {
    let accepted = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(accepted, 1, "round {round}: {accepted} accepted");
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_replay(r);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_submissions_over_two_instances_accept_exactly_one() {
    let redis = TestRedis::get();
    let issuer = TestIssuer::start().await;
    let ns = prefix();
    let bases = vec![
        instance(&issuer, store(&redis.url(), &ns).await, Options::default()).await,
        instance(&issuer, store(&redis.url(), &ns).await, Options::default()).await,
    ];
    let key = DpopKey::generate();
    let token = bound_token(&issuer, &key);
    for round in 0..5 {
        let proof = fresh_proof(&key, &token);
        assert_exactly_one_accepted(&race(&bases, &token, &proof, 16).await, round);
    }
}

// --- the optional two-level store ----------------------------------------------------------

/// Local moka in front of Redis: a local "seen" is final, a local "new" still needs Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_level_store_keeps_the_guarantee() {
    let mut redis = RedisServer::start();
    let issuer = TestIssuer::start().await;
    let ns = prefix();
    let two_level = || async {
        RedisReplayStore::builder()
            .key_prefix(&ns)
            .timeout(RELAXED)
            .local_cache(10_000)
            .connect(&redis.url())
            .await
            .unwrap()
    };
    let store_a = two_level().await;
    let store_b = two_level().await;
    let a = instance(&issuer, store_a.clone(), Options::default()).await;
    let b = instance(&issuer, store_b.clone(), Options::default()).await;
    let bases = vec![a.clone(), b.clone()];
    let key = DpopKey::generate();
    let token = bound_token(&issuer, &key);
    for round in 0..5 {
        let proof = fresh_proof(&key, &token);
        assert_exactly_one_accepted(&race(&bases, &token, &proof, 16).await, round);
    }

    // A proof only A has seen; then Redis goes away.
    let seen_by_a = fresh_proof(&key, &token);
    assert_accepted(&call(&a, &token, &seen_by_a).await);
    redis.kill();
    // A knows it without Redis: a replay, not an outage.
    assert_replay(&call(&a, &token, &seen_by_a).await);
    // B has not seen it locally, and cannot ask Redis: refused, never accepted.
    assert_failed_closed(&call(&b, &token, &seen_by_a).await);
    // A fresh proof is new to A's local store, but only Redis may say "fresh": refused.
    assert_failed_closed(&call(&a, &token, &fresh_proof(&key, &token)).await);
    assert_eq!(store_a.unavailable_count(), 1);
    assert_eq!(store_b.unavailable_count(), 1);
}

// --- the window ----------------------------------------------------------------------------

/// A guard clock far behind Redis's (here a fixed time in 2023, as a test clock may be):
/// `until` is long past by Redis's clock, yet the proof is remembered for the time left as
/// the guard sees it, not forgotten at once; and then forgotten.
#[tokio::test]
async fn store_entry_outlives_a_past_until_by_the_guards_ttl() {
    let redis = TestRedis::get();
    let store = store(&redis.url(), &prefix()).await;
    let key = ReplayKey::new("jkt", "jti-ttl");
    let t = 1_700_000_000;
    let window = ReplayWindow {
        now: t,
        until: t + 1,
    };
    assert_eq!(
        store.check_and_insert(&key, window).await.unwrap(),
        ReplayCheck::Fresh
    );
    assert_eq!(
        store.check_and_insert(&key, window).await.unwrap(),
        ReplayCheck::Replayed
    );
    let mut raw = raw_connection(&redis.url()).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(store.redis_key(&key))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!((500..=1000).contains(&pttl), "PTTL {pttl}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        store.check_and_insert(&key, window).await.unwrap(),
        ReplayCheck::Fresh,
        "the entry outlived its ttl"
    );
}

/// RFC 9449 §11.1: a proof is remembered until the absolute end of its window, `until`, not
/// for a time-to-live from its first use: a guard whose clock runs ahead (and so sees less
/// time left) cannot shorten it.
#[tokio::test]
async fn store_entry_expires_at_the_absolute_end_of_the_window() {
    let redis = TestRedis::get();
    let store = store(&redis.url(), &prefix()).await;
    let mut raw = raw_connection(&redis.url()).await;
    let expiry = |key: ReplayKey| {
        let name = store.redis_key(&key);
        let mut raw = raw.clone();
        async move {
            let ms: i64 = redis::cmd("PEXPIRETIME")
                .arg(name)
                .query_async(&mut raw)
                .await
                .unwrap();
            ms
        }
    };

    // Clocks agree: the key expires at `until` (ms), or a little later: by the fraction of a
    // second that `now` lost to truncation, plus the time the check took.
    let window = window_for(30);
    let key = ReplayKey::new("jkt", "agreeing-clocks");
    assert_eq!(
        store.check_and_insert(&key, window).await.unwrap(),
        ReplayCheck::Fresh
    );
    let at = expiry(key).await;
    let until_ms = window.until * 1000;
    assert!(
        (until_ms..until_ms + 2000).contains(&at),
        "expires at {at}, window ends at {until_ms}"
    );

    // The guard's clock runs 20 s ahead, so it sees 10 s left: the key still lives until the
    // absolute `until`, exactly, 30 s from now.
    let real = now();
    let window = ReplayWindow {
        now: real + 20,
        until: real + 30,
    };
    let key = ReplayKey::new("jkt", "guard-ahead");
    assert_eq!(
        store.check_and_insert(&key, window).await.unwrap(),
        ReplayCheck::Fresh
    );
    assert_eq!(expiry(key.clone()).await, window.until * 1000);
    let pttl: i64 = redis::cmd("PTTL")
        .arg(store.redis_key(&key))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(pttl > 20_000, "PTTL {pttl}: a ttl from first use");
}

/// One client key signing new proofs as fast as it can fills its own share, nobody else's;
/// its replays are still replays.
#[tokio::test]
async fn one_client_over_its_share_does_not_deny_the_others() {
    let redis = TestRedis::get();
    let store = RedisReplayStore::builder()
        .key_prefix(prefix())
        .timeout(RELAXED)
        .max_per_key(5)
        .connect(&redis.url())
        .await
        .unwrap();
    let window = window_for(60);
    let greedy = |i: u32| ReplayKey::new("greedy", &i.to_string());
    for i in 0..5 {
        assert_eq!(
            store.check_and_insert(&greedy(i), window).await.unwrap(),
            ReplayCheck::Fresh
        );
    }
    for i in 5..50 {
        assert_eq!(
            store.check_and_insert(&greedy(i), window).await.unwrap(),
            ReplayCheck::OverQuota,
            "proof {i}"
        );
    }
    assert_eq!(
        store.check_and_insert(&greedy(3), window).await.unwrap(),
        ReplayCheck::Replayed,
        "a replay over the share is a replay"
    );
    for client in 0..5 {
        let honest = ReplayKey::new(&format!("honest-{client}"), "1");
        assert_eq!(
            store.check_and_insert(&honest, window).await.unwrap(),
            ReplayCheck::Fresh
        );
    }
    // Refused proofs were not stored: only the admitted five are.
    let mut raw = raw_connection(&redis.url()).await;
    let stored: i64 = redis::cmd("EXISTS")
        .arg(
            (0..50)
                .map(|i| store.redis_key(&greedy(i)))
                .collect::<Vec<_>>(),
        )
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(stored, 5);
    assert_eq!(store.unavailable_count(), 0);
}

/// The guard remembers a proof as long as it would accept it by its `iat`, plus the skew
/// margin: with a 1 s `max_age`, the Redis entry lives 7 s; a guard whose clock stands still
/// (so the proof stays in its window) accepts the proof again once the entry expired, and the
/// same guard with its clock moved on refuses it as too old, not as a replay.
#[tokio::test]
async fn guard_entry_lives_as_long_as_the_proof_window() {
    let redis = TestRedis::get();
    let issuer = TestIssuer::start().await;
    let ns = prefix();
    let store = store(&redis.url(), &ns).await;
    let t0 = now();
    let clock = TestClock::at(t0);
    let policy = ProofPolicy {
        max_age: Duration::from_secs(1),
        max_future: Duration::ZERO,
        leeway: Duration::ZERO,
        ..ProofPolicy::default()
    };
    let base = instance(
        &issuer,
        store.clone(),
        Options {
            policy,
            clock: Some(clock.clone()),
            ..Options::default()
        },
    )
    .await;
    let key = DpopKey::generate();
    let token = bound_token(&issuer, &key);
    let mut claims = key.claims("GET", HTU, Some(&token), None);
    claims["iat"] = json!(t0);
    let jti = claims["jti"].as_str().unwrap().to_owned();
    let proof = key.proof_with(claims, |_| {});

    assert_accepted(&call(&base, &token, &proof).await);
    let mut raw = raw_connection(&redis.url()).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(store.redis_key(&ReplayKey::new(&key.jkt, &jti)))
        .query_async(&mut raw)
        .await
        .unwrap();
    // iat + 1 s max_age + 1 s (whole-second acceptance) + the default 5 s skew margin.
    assert!(
        (6000..=7000).contains(&pttl),
        "PTTL {pttl} for a 7 s window"
    );
    assert_replay(&call(&base, &token, &proof).await);

    tokio::time::sleep(Duration::from_millis(7300)).await;
    assert_accepted(&call(&base, &token, &proof).await);

    clock.0.store(t0 + 2, Ordering::SeqCst);
    let reply = call(&base, &token, &proof).await;
    reply.assert_error(401, "DPoP", "invalid_dpop_proof");
    assert!(
        reply.www_authenticate()[0].contains("iat is too old"),
        "{:?}",
        reply.www_authenticate()
    );
}

// --- outages: fail closed, recover alone ---------------------------------------------------

/// Polls with fresh proofs until one is accepted; returns how long that took.
async fn until_accepted(base: &str, key: &DpopKey, token: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let reply = call(base, token, &fresh_proof(key, token)).await;
        if reply.status == 200 {
            return start.elapsed();
        }
        // Anything but a fail-closed refusal would be a bug.
        assert_failed_closed(&reply);
        assert!(start.elapsed() < limit, "not accepted within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With the default timeouts (50 ms in the store and in the guard).
#[tokio::test]
async fn fails_closed_while_redis_is_down_and_recovers_without_restarting_the_api() {
    let events = crate::support::logs();
    let mut redis = RedisServer::start();
    let issuer = TestIssuer::start().await;
    let ns = prefix();
    let store = RedisReplayStore::builder()
        .key_prefix(&ns)
        .connect(&redis.url())
        .await
        .unwrap();
    // The guard's own default replay timeout (50 ms).
    let guard_default = tower_oauth_guard::redis::DEFAULT_TIMEOUT;
    let base = instance(
        &issuer,
        store.clone(),
        Options {
            replay_timeout: guard_default,
            ..Options::default()
        },
    )
    .await;
    let key = DpopKey::generate();
    let token = bound_token(&issuer, &key);
    until_accepted(&base, &key, &token, Duration::from_secs(5)).await;
    let refused_before = store.unavailable_count();

    redis.kill();
    const OUTAGE_REQUESTS: u64 = 20;
    let mut latencies = Vec::new();
    for _ in 0..OUTAGE_REQUESTS {
        let proof = fresh_proof(&key, &token);
        let start = Instant::now();
        let reply = call(&base, &token, &proof).await;
        latencies.push(start.elapsed());
        assert_failed_closed(&reply);
    }
    latencies.sort();
    let max = *latencies.last().unwrap();
    eprintln!(
        "redis down: {OUTAGE_REQUESTS} requests refused, median {:?}, max {max:?}",
        latencies[latencies.len() / 2]
    );
    // The bound is the timeout; the slack covers HTTP on a loaded machine.
    assert!(
        max < guard_default + Duration::from_millis(250),
        "a refusal took {max:?}"
    );
    assert_eq!(store.unavailable_count() - refused_before, OUTAGE_REQUESTS);
    assert_eq!(
        events.redis_events(&ns, tracing::Level::WARN).len(),
        1,
        "one warning per outage"
    );

    redis.restart();
    let recovery = until_accepted(&base, &key, &token, Duration::from_secs(10)).await;
    eprintln!("redis back: first request accepted after {recovery:?}");
    // Working again, not merely open: replays are caught.
    let proof = fresh_proof(&key, &token);
    assert_accepted(&call(&base, &token, &proof).await);
    assert_replay(&call(&base, &token, &proof).await);
    assert_eq!(events.redis_events(&ns, tracing::Level::INFO).len(), 1);
}

/// Redis alive but not answering (`CLIENT PAUSE`): each request waits the timeout, then fails
/// closed; when Redis answers again, so does the API.
#[tokio::test]
async fn fails_closed_while_redis_stalls() {
    let redis = RedisServer::start();
    let issuer = TestIssuer::start().await;
    let timeout = Duration::from_millis(100);
    let store = RedisReplayStore::builder()
        .key_prefix(prefix())
        .timeout(timeout)
        .connect(&redis.url())
        .await
        .unwrap();
    // The guard's own timeout is longer: the store's must bound the wait on its own.
    let base = instance(&issuer, store.clone(), Options::default()).await;
    let key = DpopKey::generate();
    let token = bound_token(&issuer, &key);
    assert_accepted(&call(&base, &token, &fresh_proof(&key, &token)).await);

    let mut admin = raw_connection(&redis.url()).await;
    let pause = Duration::from_millis(1500);
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause.as_millis() as u64)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .unwrap();
    let paused_at = Instant::now();
    for _ in 0..5 {
        let start = Instant::now();
        let reply = call(&base, &token, &fresh_proof(&key, &token)).await;
        let took = start.elapsed();
        assert_failed_closed(&reply);
        assert!(
            took >= timeout,
            "refused after {took:?}, before the timeout"
        );
        assert!(
            took < timeout + Duration::from_millis(250),
            "refused after {took:?}"
        );
    }
    assert!(paused_at.elapsed() < pause, "the pause ended mid-test");
    assert_eq!(store.unavailable_count(), 5);
    until_accepted(&base, &key, &token, Duration::from_secs(10)).await;
    assert!(paused_at.elapsed() >= pause);
}

// --- TLS and Cluster -----------------------------------------------------------------------

#[tokio::test]
async fn connects_over_tls_and_verifies_the_server() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    /// Removed even when the test fails.
    struct TempDir(std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let certs = TempDir(std::env::temp_dir().join(format!("tog-redis-tls-{}", rand_u64())));
    std::fs::create_dir_all(&certs.0).unwrap();
    let path = |name: &str| certs.0.join(name).display().to_string();
    std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(path("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(path("server.key"), server_key.serialize_pem()).unwrap();

    let redis = RedisServer::start_with(free_port(), |port| {
        [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &path("server.pem"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.pem"),
            "--tls-auth-clients",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    });
    let url = format!("rediss://127.0.0.1:{}/", redis.port);

    let store = RedisReplayStore::builder()
        .key_prefix(prefix())
        .timeout(RELAXED)
        .tls_root_certificates_pem(ca_cert.pem())
        .connect(&url)
        .await
        .unwrap();
    let key = ReplayKey::new("jkt", "over-tls");
    let window = window_for(60);
    assert_eq!(
        store.check_and_insert(&key, window).await.unwrap(),
        ReplayCheck::Fresh
    );
    assert_eq!(
        store.check_and_insert(&key, window).await.unwrap(),
        ReplayCheck::Replayed
    );

    // A server the platform roots do not vouch for is refused...
    let err = RedisReplayStore::builder()
        .connection_timeout(Duration::from_millis(500))
        .connect(&url)
        .await
        .unwrap_err();
    assert!(matches!(err, RedisStoreError::Connect(_)), "{err}");
    // ...and verification cannot be switched off: this build has no `#insecure` mode.
    let insecure = format!("{url}#insecure");
    let err = RedisReplayStore::builder()
        .tls_root_certificates_pem(ca_cert.pem())
        .connect(&insecure)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RedisStoreError::Connect(_) | RedisStoreError::InvalidConfig(_)
        ),
        "{err}"
    );
}

/// Three masters, slots split by `redis-cli --cluster create`.
fn start_cluster() -> Vec<RedisServer> {
    let nodes: Vec<RedisServer> = (0..3)
        .map(|_| {
            let bus = free_port();
            RedisServer::start_with(free_port(), move |port| {
                [
                    "--port",
                    &port.to_string(),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect()
            })
        })
        .collect();
    let mut create = std::process::Command::new("redis-cli");
    create.arg("--cluster").arg("create");
    for n in &nodes {
        create.arg(format!("127.0.0.1:{}", n.port));
    }
    let out = create
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli (installed with redis-server)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in &nodes {
        loop {
            let out = std::process::Command::new("redis-cli")
                .args(["-p", &n.port.to_string(), "cluster", "info"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shares_the_window_through_a_redis_cluster() {
    let nodes = tokio::task::spawn_blocking(start_cluster).await.unwrap();
    let urls: Vec<String> = nodes.iter().map(RedisServer::url).collect();
    let ns = prefix();
    let cluster_store = || async {
        RedisReplayStore::builder()
            .key_prefix(&ns)
            .timeout(RELAXED)
            .connect_cluster(&urls)
            .await
            .unwrap()
    };

    // Keys spread over the nodes by their client key's slot (the hash tag keeps one
    // client's keys together); each proof is fresh once.
    let store = cluster_store().await;
    let window = window_for(60);
    for i in 0..64 {
        let key = ReplayKey::new(&format!("jkt-{}", i % 16), &i.to_string());
        assert_eq!(
            store.check_and_insert(&key, window).await.unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            store.check_and_insert(&key, window).await.unwrap(),
            ReplayCheck::Replayed
        );
    }
    let mut holding = 0;
    for url in &urls {
        let size: u64 = redis::cmd("DBSIZE")
            .query_async(&mut raw_connection(url).await)
            .await
            .unwrap();
        holding += usize::from(size > 0);
    }
    assert!(holding >= 2, "keys on {holding} node(s) only");

    // Two instances over the cluster.
    let issuer = TestIssuer::start().await;
    let bases = vec![
        instance(&issuer, cluster_store().await, Options::default()).await,
        instance(&issuer, cluster_store().await, Options::default()).await,
    ];
    let key = DpopKey::generate();
    let token = bound_token(&issuer, &key);
    let proof = fresh_proof(&key, &token);
    assert_accepted(&call(&bases[0], &token, &proof).await);
    assert_replay(&call(&bases[1], &token, &proof).await);
    for round in 0..3 {
        let proof = fresh_proof(&key, &token);
        assert_exactly_one_accepted(&race(&bases, &token, &proof, 16).await, round);
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// RFC 9449 §11.1 as the guard computes it with the default policy: a proof with `iat`
    /// is acceptable while `iat - 5 <= now <= iat + 60`, and remembered until
    /// `iat + 60 + 1 + 5` (a whole second of acceptance, and the skew margin).
    fn acceptable(iat: i64, now: i64) -> bool {
        iat - 5 <= now && now <= iat + 60
    }

    fn window(iat: i64, now: i64) -> ReplayWindow {
        ReplayWindow {
            now,
            until: iat + 60 + 1 + 5,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// For any sequence of (proof, arrival time), the Redis store accepts each proof at
        /// most once while it can be accepted: the property the in-process store is held to.
        #[test]
        fn the_redis_store_accepts_each_proof_at_most_once(
            arrivals in proptest::collection::vec((0usize..6, -10i64..120), 1..60),
            iats in proptest::collection::vec(-70i64..70, 6),
        ) {
            let redis = TestRedis::get();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let store = runtime.block_on(store(&redis.url(), &prefix()));
            // Arrivals around the real time, so that Redis's own clock agrees with the guard's.
            let t0 = now();
            let mut arrivals = arrivals;
            arrivals.sort_by_key(|(_, t)| *t);
            let mut fresh = [0u32; 6];
            for (proof, offset) in arrivals {
                let (now, iat) = (t0 + offset, t0 + iats[proof]);
                if !acceptable(iat, now) {
                    continue;
                }
                let key = ReplayKey::new("client", &proof.to_string());
                let check = runtime.block_on(store.check_and_insert(&key, window(iat, now))).unwrap();
                if check == ReplayCheck::Fresh {
                    fresh[proof] += 1;
                }
            }
            prop_assert!(fresh.iter().all(|n| *n <= 1), "{fresh:?}");
        }
    }
}
