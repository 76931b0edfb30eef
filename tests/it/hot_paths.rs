//! Attacks on the hot paths: keys parsed once, proof keys kept by their header, the token
//! hashed once for the cache and `ath`, and the compact replay store. Each test is an attack
//! that must fail.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::support::*;
use jsonwebtoken::{Algorithm as JwtAlg, Header};
use serde_json::{Value, json};
use tower_oauth_guard::{
    Algorithm, BaseUrl, Dpop, Issuer, KeySet, MemoryReplayStore, OAuthGuard, Policy, Presence,
    ProofPolicy, PublicUri, RemoteAddr, ReplayCheck, ReplayKey, ReplayStore, ReplayWindow,
};

const ISSUER: &str = "https://issuer.example";
const AUD: &str = "https://api.example";
const URL: &str = "https://api.example/r";

struct Fx {
    issuer: SigningKey,
    client: DpopKey,
    token: String,
    clock: TestClock,
}

impl Fx {
    fn new(t0: i64) -> Self {
        let issuer = SigningKey::generate("k1");
        let client = DpopKey::generate();
        let mut header = Header::new(JwtAlg::ES256);
        header.kid = Some("k1".into());
        header.typ = Some("at+jwt".into());
        let token = issuer.sign(
            header,
            &json!({"iss": ISSUER, "aud": AUD, "sub": "alice", "iat": t0,
                    "exp": t0 + 100_000, "cnf": {"jkt": client.jkt}}),
        );
        Fx {
            issuer,
            client,
            token,
            clock: TestClock::at(t0),
        }
    }

    async fn guard(&self, dpop: impl FnOnce(Dpop) -> Dpop) -> OAuthGuard {
        let keys =
            KeySet::from_json(json!({ "keys": [self.issuer.jwk] }).to_string().as_bytes()).unwrap();
        let own = PublicUri::fixed(BaseUrl::parse("https://api.example").unwrap());
        OAuthGuard::builder()
            .trust(Issuer::new(ISSUER).audience(AUD).jwks(keys))
            .clock(self.clock.clone())
            .dpop(dpop(Dpop::required(own)))
            .build()
            .await
            .unwrap()
    }

    fn proof(&self, jti: &str, iat: i64) -> String {
        self.client.proof_with(
            json!({"jti": jti, "htm": "GET", "htu": URL, "iat": iat,
                   "ath": tower_oauth_guard::ath_for(&self.token)}),
            |_| {},
        )
    }
}

async fn check(guard: &OAuthGuard, token: &str, proof: &str) -> Result<(), String> {
    let request = http::Request::get("/r")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .extension(RemoteAddr(SocketAddr::from((Ipv4Addr::LOCALHOST, 4000))));
    let (mut parts, ()) = request.body(()).unwrap().into_parts();
    guard
        .check(&mut parts, &Policy::default(), Presence::Required)
        .await
        .map(|_| ())
        .map_err(|refusal| format!("{:?}", refusal.rejection))
}

// ---------------------------------------------------------------------------------------
// Finding 1: the in-process replay store forgets by the guard's wall clock. One request seen
// while the clock is ahead (NTP step, VM resume, leap smear, a misset clock corrected) sweeps
// every proof whose `until` is behind that instant; once the clock is back, those proofs are
// inside their acceptance window again and are accepted a second time. The moka store it
// replaced kept each entry for its ttl in monotonic time, so the proof was still `Replayed`.
// ---------------------------------------------------------------------------------------

/// Store level, public API only: a check at a later `now` makes the store forget a proof
/// that a check at an earlier `now` must still see (the trait's own contract: "if `key` is
/// not remembered (or only until an instant before `window.now`)").
#[tokio::test]
async fn the_replay_store_keeps_a_live_proof_when_the_clock_steps_forward_and_back() {
    const T: i64 = 1_700_000_000;
    let store = MemoryReplayStore::default();
    let p1 = ReplayKey::new("client-jkt", "p1");
    let w = |now: i64, until: i64| ReplayWindow { now, until };
    assert_eq!(
        store.check_and_insert(&p1, w(T, T + 71)).await.unwrap(),
        ReplayCheck::Fresh
    );
    // Clock one hour ahead for one request of the same client (same shard).
    let p2 = ReplayKey::new("client-jkt", "p2");
    let _ = store
        .check_and_insert(&p2, w(T + 3600, T + 3671))
        .await
        .unwrap();
    // Clock back: p1 is still inside [T, T+71); it was remembered until T+71.
    assert_eq!(
        store.check_and_insert(&p1, w(T + 2, T + 73)).await.unwrap(),
        ReplayCheck::Replayed,
        "a proof remembered until T+71 was accepted again at T+2"
    );
}

/// The same through `OAuthGuard::check`: a captured proof is admitted twice.
#[tokio::test]
async fn a_proof_replayed_after_the_clock_stepped_forward_and_back_is_refused() {
    let t0 = now();
    let fx = Fx::new(t0);
    let guard = fx.guard(|d| d).await;
    let captured = fx.proof("captured", t0);
    check(&guard, &fx.token, &captured).await.unwrap();
    assert!(
        check(&guard, &fx.token, &captured).await.is_err(),
        "plain replay"
    );
    // The clock jumps one hour ahead; any request of this client (same shard) is checked.
    fx.clock.set(t0 + 3600);
    check(&guard, &fx.token, &fx.proof("while-ahead", t0 + 3600))
        .await
        .unwrap();
    // The clock is corrected; the captured proof is replayed 2 s after its first use.
    fx.clock.set(t0 + 2);
    let replay = check(&guard, &fx.token, &captured).await;
    assert!(replay.is_err(), "replayed proof admitted: {replay:?}");
}

// ---------------------------------------------------------------------------------------
// Finding 2: the store's memory follows the sum of each shard's historical peak, not the live
// proofs. A shard's hash table never shrinks (`retain` keeps the capacity), and the global
// bound only limits proofs live at once; filling the shards one after another (clients whose
// digest byte 31 picks each shard, `max_entries` proofs per round, one window apart) leaves
// 64 tables each sized for `max_entries`: 64x the documented bound of ~60-105 bytes a live
// proof. The moka store freed its entries.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_one_proof_through_the_guard_admits_it_once() {
    let t0 = now();
    let fx = Arc::new(Fx::new(t0));
    let guard = fx.guard(|d| d).await;
    for round in 0..20 {
        let proof = Arc::new(fx.proof(&format!("race-{round}"), t0));
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (guard, fx, proof, barrier) =
                    (guard.clone(), fx.clone(), proof.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    check(&guard, &fx.token, &proof).await.is_ok()
                })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += usize::from(t.await.unwrap());
        }
        assert_eq!(admitted, 1, "round {round}");
    }
}

/// The proof-key cache is keyed by header text: a cached header with another key's signature,
/// a cached header under a guard (sharing the `Dpop` clone, hence the cache) whose policy no
/// longer allows its alg, and a proof for token A presented with token B are all refused.
#[tokio::test]
async fn a_cached_proof_key_never_admits_another_key_algorithm_or_token() {
    let t0 = now();
    let fx = Fx::new(t0);
    let base = Dpop::required(PublicUri::fixed(
        BaseUrl::parse("https://api.example").unwrap(),
    ));
    let loose = fx.guard(|_| base.clone()).await;
    let strict = fx
        .guard(|_| {
            base.clone().proof_policy(ProofPolicy {
                algorithms: vec![Algorithm::EdDSA],
                ..ProofPolicy::default()
            })
        })
        .await;
    check(&loose, &fx.token, &fx.proof("warm", t0))
        .await
        .unwrap();
    // Cached ES256 header, policy without ES256.
    assert!(
        check(&strict, &fx.token, &fx.proof("strict", t0))
            .await
            .is_err()
    );
    // Cached header text, signature by another key.
    let other = DpopKey::generate();
    let good = fx.proof("x", t0);
    let header = good.split('.').next().unwrap();
    let forged = other.proof_with(
        json!({"jti": "forged", "htm": "GET", "htu": URL, "iat": t0,
               "ath": tower_oauth_guard::ath_for(&fx.token)}),
        |_| {},
    );
    let mut parts = forged.split('.');
    let (_, payload, sig) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
    assert!(
        check(&loose, &fx.token, &format!("{header}.{payload}.{sig}"))
            .await
            .is_err()
    );
    // Token B bound to the same key, proof with ath of token A (A cached, B not, then both).
    let mut h = Header::new(JwtAlg::ES256);
    h.kid = Some("k1".into());
    let token_b = fx.issuer.sign(
        h,
        &json!({"iss": ISSUER, "aud": AUD, "sub": "bob", "iat": t0, "exp": t0 + 1000,
                "cnf": {"jkt": fx.client.jkt}}),
    );
    for jti in ["ath-1", "ath-2"] {
        assert!(check(&loose, &token_b, &fx.proof(jti, t0)).await.is_err());
    }
    let _: Value = json!(null);
}

/// Token signatures of the wrong length, over-long, non-base64, or an `alg` the key's curve or
/// the JWK's `alg` does not allow: all refused, no panic.
#[tokio::test]
async fn malformed_signatures_and_algorithm_confusion_are_refused() {
    let t0 = now();
    let fx = Fx::new(t0);
    let guard = fx.guard(|d| d).await;
    let proof = |token: &str| {
        fx.client.proof_with(
            json!({"jti": format!("{}", rand_u64()), "htm": "GET", "htu": URL, "iat": t0,
                   "ath": tower_oauth_guard::ath_for(token)}),
            |_| {},
        )
    };
    check(&guard, &fx.token, &proof(&fx.token)).await.unwrap();
    let (head, sig) = fx.token.rsplit_once('.').unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let raw = b64.decode(sig).unwrap();
    let mut longer = raw.clone();
    longer.push(0);
    let variants = [
        format!("{head}.{}", b64.encode(&longer)),
        format!("{head}.{}", b64.encode(&raw[..63])),
        format!("{head}.{}", b64.encode(vec![7u8; 1025])),
        format!("{head}.{}", b64.encode(vec![7u8; 5000])),
        format!("{head}.{sig}="),
        format!("{head}.{}", &sig[..sig.len() - 1]),
        format!("{head}.{sig}A"),
    ];
    for token in &variants {
        assert!(
            check(&guard, token, &proof(token)).await.is_err(),
            "{token}"
        );
    }
    // ES384 header over the P-256 key's signature input.
    let mut h = Header::new(JwtAlg::ES384);
    h.kid = Some("k1".into());
    let header_384 = b64.encode(serde_json::to_vec(&h).unwrap());
    let payload = head.split_once('.').unwrap().1;
    let t = format!("{header_384}.{payload}.{sig}");
    assert!(check(&guard, &t, &proof(&t)).await.is_err());
    // The JWK says ES384 on a P-256 key: the set has no usable key.
    let mut jwk = serde_json::to_value(&fx.issuer.jwk).unwrap();
    jwk["alg"] = json!("ES384");
    assert!(KeySet::from_json(json!({"keys": [jwk]}).to_string().as_bytes()).is_err());
    // P-384 curve name on P-256 coordinates.
    let mut jwk = serde_json::to_value(&fx.issuer.jwk).unwrap();
    jwk["crv"] = json!("P-384");
    jwk.as_object_mut().unwrap().remove("alg");
    assert!(KeySet::from_json(json!({"keys": [jwk]}).to_string().as_bytes()).is_err());
}

/// What every request awaits stays small: the state of the steps only some requests take (a
/// signature check, a key fetch, introspection, a DPoP proof) is boxed when a request takes
/// them, so a request with a cached token does not carry and move kilobytes of room for
/// them. (The layer's future holds this one.)
#[tokio::test]
async fn a_request_waits_on_a_future_of_at_most_512_bytes() {
    let fx = Fx::new(1_000_000);
    let guard = fx.guard(|d| d).await;
    let (mut parts, ()) = http::Request::get(URL).body(()).unwrap().into_parts();
    let policy = Policy::default();
    let future = guard.check(&mut parts, &policy, Presence::Required);
    let size = std::mem::size_of_val(&future);
    eprintln!("OAuthGuard::check: a future of {size} bytes");
    assert!(size <= 512, "OAuthGuard::check: a future of {size} bytes");
    assert!(future.await.is_err(), "no credentials, no admission");
}
