//! A DPoP flood against the guard, bounded in count and time, in process (no network): many
//! unique valid proofs from many client keys into a replay store smaller than the flood, while
//! other tasks replay proofs the guard already accepted.
//!
//! ```text
//! cargo run --release --example flood -- --proofs 1000000
//! ```
//!
//! It fails (exit 1) unless: no replay is ever admitted, every fresh proof is admitted or
//! refused with one of the documented answers (`429` for a client key over its share of the
//! store, `503` for a full store; RFC 9449 §11.1: nothing is evicted early), and the process's
//! resident memory grows by at most the store's documented bound. It prints the figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use clap::Parser;
use serde_json::json;
use tokio::sync::Mutex;
use tower_oauth_guard::{
    BaseUrl, Dpop, Issuer, KeySet, MemoryReplayStore, OAuthGuard, Policy, Presence, PublicUri,
    ReplayKey, ReplayStore, ReplayWindow, ath_for, jwk_thumbprint,
};

const AUD: &str = "https://api.example";
/// Client keys that send half of all proofs.
const GREEDY: usize = 5;
const ISSUER: &str = "https://issuer.example";
const URL: &str = "https://api.example/r";

/// Bytes of resident memory the flood may take per proof the store can hold (the store's own
/// share, about 64, plus the token cache, the replayers' ring and allocator slack), plus a
/// fixed allowance for the runtime and the keys.
const BYTES_PER_LIVE_PROOF: u64 = 400;
const FIXED_ALLOWANCE: u64 = 64 << 20;

#[derive(Parser)]
struct Cli {
    /// Unique valid proofs to send.
    #[arg(long, default_value_t = 1_000_000)]
    proofs: u64,
    /// Client keys they come from (at least the greedy ones).
    #[arg(long, default_value_t = 200)]
    keys: u64,
    /// The replay store's capacity (smaller than the flood).
    #[arg(long, default_value_t = 100_000)]
    store: u64,
    /// Each client key's share of the store.
    #[arg(long, default_value_t = 2_000)]
    share: u64,
    /// Tasks sending fresh proofs, and tasks replaying accepted ones.
    #[arg(long, default_value_t = 2)]
    senders: u64,
    /// Give up after this many seconds (the flood is bounded in time as well as in count).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// A P-256 key signing compact JWS (ES256, RFC 7518 §3.4).
struct Signer {
    key: EcdsaKeyPair,
    jwk: serde_json::Value,
}

impl Signer {
    fn generate() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = key.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        });
        Signer { key, jwk }
    }

    fn sign(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", B64.encode(signature.as_ref()))
    }
}

/// A client: its key and the token bound to it.
struct Client {
    signer: Signer,
    authorization: String,
    token: String,
}

impl Client {
    fn proof(&self, serial: u64) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.signer.jwk});
        let claims = json!({
            "jti": format!("{serial:x}"), "htm": "GET", "htu": URL, "iat": unix_now(),
            "ath": ath_for(&self.token),
        });
        self.signer.sign(&header, &claims)
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Resident memory per live proof of a `MemoryReplayStore` alone: `n` proofs checked into a
/// fresh store, the growth of the process divided by `n`. The store is dropped afterwards.
async fn store_alone(n: u64) -> f64 {
    let store = MemoryReplayStore::with_limits(n, n);
    let (before, _) = memory();
    let now = unix_now();
    for i in 0..n {
        let key = ReplayKey::new("measured-client", &format!("{i:x}"));
        let window = ReplayWindow {
            now,
            until: now + 71,
        };
        let _ = store.check_and_insert(&key, window).await;
    }
    let (after, _) = memory();
    after.saturating_sub(before) as f64 / n as f64
}

/// Resident and peak resident memory, in bytes (Linux `/proc/self/status`).
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[derive(Default)]
struct Tally {
    admitted: AtomicU64,
    over_share: AtomicU64,
    full: AtomicU64,
    other: AtomicU64,
    replays_sent: AtomicU64,
    replays_admitted: AtomicU64,
}

/// Sends one request; `Ok` when admitted, else the status the guard answers with.
async fn send(guard: &OAuthGuard, client: &Client, proof: &str) -> Result<(), u16> {
    let request = http::Request::get("/r")
        .header("authorization", &client.authorization)
        .header("dpop", proof)
        .body(())
        .unwrap();
    let (mut parts, ()) = request.into_parts();
    match guard
        .check(&mut parts, &Policy::default(), Presence::Required)
        .await
    {
        Ok(_) => Ok(()),
        Err(refusal) => Err(refusal.challenge().status.as_u16()),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Cli::parse();
    let issuer = Signer::generate();
    let mut jwk = issuer.jwk.clone();
    jwk["kid"] = json!("flood");
    let keys = KeySet::from_json(json!({ "keys": [jwk] }).to_string().as_bytes())?;
    let store = Arc::new(MemoryReplayStore::with_limits(args.store, args.share));
    let guard = OAuthGuard::builder()
        .trust(Issuer::new(ISSUER).audience(AUD).jwks(keys))
        .dpop(Dpop::required(PublicUri::fixed(BaseUrl::parse(AUD)?)).replay_store(store.clone()))
        .build()
        .await?;
    let clients: Arc<Vec<Client>> = Arc::new(
        (0..args.keys)
            .map(|_| {
                let signer = Signer::generate();
                let jkt = jwk_thumbprint(&signer.jwk.to_string()).unwrap();
                let now = unix_now();
                let token = issuer.sign(
                    &json!({"alg": "ES256", "kid": "flood", "typ": "at+jwt"}),
                    &json!({"iss": ISSUER, "aud": AUD, "sub": "flood", "iat": now,
                            "exp": now + 3600, "cnf": {"jkt": jkt}}),
                );
                Client {
                    signer,
                    authorization: format!("DPoP {token}"),
                    token,
                }
            })
            .collect(),
    );
    let per_entry = store_alone(args.store).await;
    let (rss_before, _) = memory();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout);
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    // Accepted proofs, for the replayers: the most recent ones, a bounded ring.
    let accepted: Arc<Mutex<Vec<(usize, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let mut tasks = Vec::new();
    for _ in 0..args.senders {
        let (guard, clients, tally, next, accepted) = (
            guard.clone(),
            clients.clone(),
            tally.clone(),
            next.clone(),
            accepted.clone(),
        );
        let proofs = args.proofs;
        tasks.push(tokio::spawn(async move {
            loop {
                let serial = next.fetch_add(1, Ordering::Relaxed);
                if serial >= proofs || Instant::now() > deadline {
                    break;
                }
                // Half the traffic from a few greedy keys, which meet their share; the rest
                // from every key, which fills the store.
                let spread = if serial % 2 == 0 {
                    clients.len()
                } else {
                    GREEDY
                };
                let index = (serial % spread as u64) as usize;
                let client = &clients[index];
                let proof = client.proof(serial);
                match send(&guard, client, &proof).await {
                    Ok(()) => {
                        tally.admitted.fetch_add(1, Ordering::Relaxed);
                        let mut ring = accepted.lock().await;
                        if ring.len() < 4096 {
                            ring.push((index, proof));
                        } else {
                            let slot = (serial % 4096) as usize;
                            ring[slot] = (index, proof);
                        }
                    }
                    Err(429) => _ = tally.over_share.fetch_add(1, Ordering::Relaxed),
                    Err(503) => _ = tally.full.fetch_add(1, Ordering::Relaxed),
                    Err(_) => _ = tally.other.fetch_add(1, Ordering::Relaxed),
                }
            }
        }));
    }
    let replayers: Vec<_> = (0..args.senders)
        .map(|r| {
            let (guard, clients, tally, accepted, done) = (
                guard.clone(),
                clients.clone(),
                tally.clone(),
                accepted.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                let mut i = r as usize;
                while !done.load(Ordering::Relaxed) {
                    let pick = {
                        let ring = accepted.lock().await;
                        (!ring.is_empty()).then(|| ring[i % ring.len()].clone())
                    };
                    i = i.wrapping_mul(31).wrapping_add(7);
                    let Some((index, proof)) = pick else {
                        tokio::task::yield_now().await;
                        continue;
                    };
                    tally.replays_sent.fetch_add(1, Ordering::Relaxed);
                    if send(&guard, &clients[index], &proof).await.is_ok() {
                        tally.replays_admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    done.store(true, Ordering::Relaxed);
    for task in replayers {
        task.await?;
    }
    let elapsed = started.elapsed();
    let (rss_after, peak) = memory();

    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let sent = next.load(Ordering::Relaxed).min(args.proofs);
    let refused = load(&tally.over_share) + load(&tally.full) + load(&tally.other);
    let growth = peak.saturating_sub(rss_before);
    let bound = args.store * BYTES_PER_LIVE_PROOF + FIXED_ALLOWANCE;
    println!(
        "fresh proofs sent:     {sent} from {} keys in {:.1} s ({:.0}/s)",
        args.keys,
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );
    println!("  admitted:            {}", load(&tally.admitted));
    println!("  429 over its share:  {}", load(&tally.over_share));
    println!("  503 store full:      {}", load(&tally.full));
    println!("  other refusals:      {}", load(&tally.other));
    println!(
        "replays sent:          {} (admitted: {})",
        load(&tally.replays_sent),
        load(&tally.replays_admitted)
    );
    println!(
        "store:                 {} live proofs (capacity {}, share {}); alone it takes {per_entry:.0} bytes per live proof",
        store.len(),
        args.store,
        args.share
    );
    println!(
        "resident memory:       {} MiB before, {} MiB after, peak {} MiB; growth {} MiB ({:.0} bytes per live proof, all costs included), bound {} MiB",
        rss_before >> 20,
        rss_after >> 20,
        peak >> 20,
        growth >> 20,
        growth as f64 / store.len().max(1) as f64,
        bound >> 20,
    );

    let mut failures = Vec::new();
    if sent < args.proofs {
        failures.push(format!(
            "only {sent} of {} proofs sent in {} s",
            args.proofs, args.timeout
        ));
    }
    if load(&tally.replays_admitted) > 0 {
        failures.push("a replayed proof was admitted".to_owned());
    }
    if load(&tally.replays_sent) == 0 {
        failures.push("no replay was attempted".to_owned());
    }
    if load(&tally.other) > 0 {
        failures.push("a fresh proof got an undocumented refusal".to_owned());
    }
    if load(&tally.admitted) + refused != sent {
        failures.push("requests went unanswered".to_owned());
    }
    if sent > args.store && (load(&tally.full) == 0 || load(&tally.over_share) == 0) {
        failures
            .push("the flood did not meet both the store's bound and the keys' share".to_owned());
    }
    if growth > bound {
        failures.push(format!(
            "memory grew by {growth} bytes, past the bound of {bound}"
        ));
    }
    if failures.is_empty() {
        println!("ok");
        Ok(())
    } else {
        for f in &failures {
            eprintln!("FAIL: {f}");
        }
        std::process::exit(1);
    }
}
