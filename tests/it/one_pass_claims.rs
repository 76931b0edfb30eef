//! The one-pass claims reader and the replay store, attacked: every payload the whole-payload parse refuses is refused, and a proof stays remembered across clock steps.

use std::sync::Arc;

use crate::support::*;
use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Map, Value, json};
use tower_oauth_guard::{
    AccessToken, MemoryReplayStore, OAuthGuard, ReplayCheck, ReplayKey, ReplayStore, ReplayWindow,
};

const AUD: &str = "https://api.example";

async fn echo(token: AccessToken) -> axum::Json<Value> {
    axum::Json(json!({
        "claims_len": token.claims().len(),
        "claims_iss": token.claims().get("iss"),
        "claims_sub": token.claims().get("sub"),
        "role": token.claim("role"),
        "sub": token.subject(),
        "scope": token.scopes().to_scope_string(),
        "binding": token.binding().kind(),
    }))
}

async fn setup() -> (TestIssuer, String) {
    let issuer = TestIssuer::start().await;
    let guard: OAuthGuard = issuer.guard(AUD).build().await.unwrap();
    let app = Router::new().route("/echo", get(echo)).layer(guard.layer());
    let base = serve(app).await;
    (issuer, base)
}

/// A token whose payload is exactly `payload` (the issuer signs these bytes).
fn raw_token(issuer: &TestIssuer, payload: &str) -> String {
    let key = issuer.key(0);
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    header.typ = Some("at+jwt".into());
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!(
        "{}.{}",
        b64.encode(serde_json::to_vec(&header).unwrap()),
        b64.encode(payload.as_bytes())
    );
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key.encoding, Algorithm::ES256).unwrap();
    format!("{input}.{sig}")
}

fn fill(issuer: &TestIssuer, template: &str) -> String {
    let now = now();
    template
        .replace("ISS", &format!("\"{}\"", issuer.issuer))
        .replace("AUD", &format!("\"{AUD}\""))
        .replace("EXP", &(now + 300).to_string())
        .replace("NOW", &now.to_string())
}

fn deep(n: usize) -> String {
    "[".repeat(n) + &"]".repeat(n)
}

/// FINDING 1: a structured claim (`aud`/`scope`/`scp`/`cnf`) repeated: the first value is
/// kept as an unchecked RawValue and then dropped, never read strictly; the payload passes,
/// but `claims()` (serde_json Map of the whole payload) fails and comes back EMPTY.
/// Before (00ee824) `json_object(&payload)` failed the same way and the token was refused.
#[tokio::test]
async fn a_repeated_structured_claim_with_an_unreadable_first_value_is_refused() {
    let (issuer, base) = setup().await;
    let firsts = [
        deep(200),                // past serde_json's depth limit (RawValue skips depth)
        "1e400".to_owned(),       // number out of f64 range
        r#""\ud800""#.to_owned(), // lone surrogate
        "[1,]".to_owned(),
        r#"{"a":1,}"#.to_owned(),
        r#""\x""#.to_owned(),
        r#"{"a":1,"a":"\udc00"}"#.to_owned(),
        "-01".to_owned(),
    ];
    let mut admitted_empty = Vec::new();
    for name in ["aud", "scope", "scp", "cnf"] {
        for first in &firsts {
            let last = match name {
                "aud" => "AUD".to_owned(),
                "cnf" => continue, // a cnf would bind the token; aud/scope/scp suffice
                _ => r#""read""#.to_owned(),
            };
            let payload = fill(
                &issuer,
                &format!(
                    r#"{{"iss":ISS,"sub":"alice","aud":AUD,"exp":EXP,"iat":NOW,"role":"user","banned":true,"{name}":{first},"{name}":{last}}}"#
                ),
            );
            // The old code path: the whole payload as one Map.
            assert!(serde_json::from_str::<Map<String, Value>>(&payload).is_err());
            let reply =
                get_with_token(&format!("{base}/echo"), &raw_token(&issuer, &payload)).await;
            if reply.status == 200 {
                let body = reply.json();
                if body["claims_len"] == 0 {
                    admitted_empty.push(format!("{name}: {}...", &first[..first.len().min(12)]));
                }
            }
        }
    }
    assert!(
        admitted_empty.is_empty(),
        "admitted with claims() == {{}} (role/banned gone; old code refused): {admitted_empty:#?}"
    );
}

/// What held: each payload's outcome and, when admitted, that the handler's view agrees
/// with the guard's (iss, sub, scope) and is non-empty.
#[tokio::test]
async fn registered_claims_agree_with_the_handlers_view() {
    let (issuer, base) = setup().await;
    let base_claims = r#""sub":"alice","aud":AUD,"exp":EXP,"iat":NOW"#;
    let cases: Vec<(String, bool)> = vec![
        (
            format!(r#"{{"iss":"https://evil","iss":ISS,{base_claims}}}"#),
            true,
        ),
        (
            format!(r#"{{"iss":ISS,"iss":"https://evil",{base_claims}}}"#),
            false,
        ),
        (format!(r#"{{"iss":ISS,"iss":null,{base_claims}}}"#), false),
        (format!(r#"{{"i\u0073s":ISS,{base_claims}}}"#), true),
        (
            format!(r#"{{"iss":"https://evil","i\u0073s":ISS,{base_claims}}}"#),
            true,
        ),
        (
            format!(r#"{{"iss":ISS,"i\u0073s":"https://evil",{base_claims}}}"#),
            false,
        ),
        (format!(r#"{{"iss":ISS,{base_claims},"sub":7}}"#), false),
        (
            format!(r#"{{"iss":ISS,{base_claims},"sub":"\ud800"}}"#),
            false,
        ),
        (
            format!(r#"{{"iss":ISS,{base_claims},"sub":"x","sub":"\ud800"}}"#),
            false,
        ),
        (
            format!(r#"{{"iss":ISS,{base_claims},"x":"\ud800"}}"#),
            false,
        ),
        (format!(r#"{{"iss":ISS,{base_claims},"x":1e400}}"#), false),
        (
            format!(r#"{{"iss":ISS,{base_claims},"x":{}}}"#, deep(126)),
            true,
        ),
        (
            format!(r#"{{"iss":ISS,{base_claims},"x":{}}}"#, deep(127)),
            false,
        ),
        (
            format!(r#"{{"iss":ISS,{base_claims},"x":{},"x":1}}"#, deep(127)),
            false,
        ),
        (
            format!(
                r#"{{"iss":ISS,{base_claims},"role":{},"role":1}}"#,
                deep(200)
            ),
            false,
        ),
        (
            format!(r#"{{"iss":{},"iss":ISS,{base_claims}}}"#, deep(127)),
            false,
        ),
        (
            format!(
                r#"{{"iss":ISS,"sub":"alice","aud":AUD,"exp":EXP,"iat":NOW,"exp":{}}}"#,
                deep(127)
            ),
            false,
        ),
        (
            r#"{"iss":ISS,"sub":"alice","aud":[1,AUD],"exp":EXP}"#.to_string(),
            true,
        ),
        (
            format!(
                r#"{{"iss":ISS,"sub":"alice","aud":{},"exp":EXP}}"#,
                deep(126)
            ),
            false,
        ),
        (
            r#"{"iss":ISS,"sub":"alice","aud":AUD,"exp":1e30}"#.to_string(),
            true,
        ),
        (
            r#"{"iss":ISS,"sub":"alice","aud":AUD,"exp":-1}"#.to_string(),
            false,
        ),
        (
            r#"{"iss":ISS,"sub":"alice","aud":AUD,"exp":EXP,"exp":"9999999999"}"#.to_string(),
            false,
        ),
        (
            r#"{"iss":ISS,"sub":"alice","aud":AUD,"exp":EXP,"nbf":1e400}"#.to_string(),
            false,
        ),
        (
            r#"{"iss":ISS,"sub":"alice","aud":AUD,"exp":EXP,"iat":99999999999.5}"#.to_string(),
            false,
        ),
        (
            format!(r#"{{"iss":ISS,{base_claims},"cnf":{{"jwk":{{}}}}}}"#),
            false,
        ),
        (
            format!(r#"{{"iss":ISS,{base_claims},"cnf":{{"jkt":"a","x":1}}}}"#),
            false,
        ),
        (format!(r#"{{"iss":ISS,{base_claims},"cnf":{{}}}}"#), false),
        (format!(r#"{{"iss":ISS,{base_claims},"cnf":null}}"#), false),
        (
            format!(r#"{{"iss":ISS,{base_claims},"cnf":{{"jwk":1}},"cnf":{{"jkt":"t"}}}}"#),
            true,
        ),
        (
            format!(r#"{{"iss":ISS,{base_claims},"scope":"a b","scp":["c",1]}}"#),
            true,
        ),
        (format!(r#"{{"iss":ISS,{base_claims}}} {{}}"#), false),
        (format!(r#"{{"iss":ISS,{base_claims}}}  "#), true),
        (format!("[{{\"iss\":ISS,{base_claims}}}]"), false),
        (
            format!("{{\"iss\":ISS,{base_claims},\"x\":\"\u{0001}\"}}"),
            false,
        ),
    ];
    let mut mismatches = Vec::new();
    for (i, (template, _expected)) in cases.iter().enumerate() {
        let payload = fill(&issuer, template);
        let reply = get_with_token(&format!("{base}/echo"), &raw_token(&issuer, &payload)).await;
        let old_ok = serde_json::from_str::<Map<String, Value>>(&payload).is_ok();
        let line = format!(
            "case {i}: {} old_map_ok={old_ok} {}",
            reply.status,
            &template[..template.len().min(90)]
        );
        eprintln!("{line}");
        if reply.status == 200 {
            let body = reply.json();
            if body["claims_iss"] != json!(issuer.issuer) || body["claims_sub"] != body["sub"] {
                mismatches.push(format!("{line} => {body}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

/// Many tasks on a multi-thread runtime against a small full store: each proof admitted
/// once, counts exact afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_on_a_full_store_admits_each_proof_once_and_counts_stay_exact() {
    const N: u64 = 2_000;
    let store = Arc::new(MemoryReplayStore::with_limits(N / 2, N / 8));
    let now = 1_700_000_000;
    let w = ReplayWindow {
        now,
        until: now + 600,
    };
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut fresh = Vec::new();
            for i in 0..N {
                let k = ReplayKey::new(&format!("jkt-{}", i % 13), &i.to_string());
                if let Ok(ReplayCheck::Fresh) = store.check_and_insert(&k, w).await {
                    fresh.push(i);
                }
                tokio::task::yield_now().await;
                let _ = t;
            }
            fresh
        }));
    }
    let mut seen = std::collections::HashMap::<u64, u32>::new();
    for t in tasks {
        for i in t.await.unwrap() {
            *seen.entry(i).or_default() += 1;
        }
    }
    assert!(seen.values().all(|c| *c == 1), "a proof admitted twice");
    assert_eq!(store.len(), seen.len() as u64);
    let per_key: u64 = (0..13)
        .map(|j| store.len_for_key(&format!("jkt-{j}")))
        .sum();
    assert_eq!(per_key, store.len());
    assert!(store.len() <= N / 2);
}

/// FINDING 3 (minor): the monotonic floor is whole seconds, rounded down at insert: a proof
/// can be forgotten ~1 s short of its ttl in real time. A guard clock stepped 1 s forward
/// (a sweep then) and back makes a live proof new again.
#[tokio::test]
async fn a_proof_is_not_forgotten_before_its_whole_ttl_in_real_time() {
    let store = MemoryReplayStore::default();
    let epoch = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(950)).await; // mono = 0, frac .95
    let t = 1_700_000_000;
    let p1 = ReplayKey::new("client", "p1");
    let inserted = std::time::Instant::now();
    assert_eq!(
        store
            .check_and_insert(
                &p1,
                ReplayWindow {
                    now: t,
                    until: t + 2
                }
            )
            .await
            .unwrap(),
        ReplayCheck::Fresh
    );
    // Real time reaches mono second 2 (kept_until), 1.05 s after the insert; the guard clock
    // reads one second ahead of the truth at that moment and sweeps the shard.
    tokio::time::sleep_until((epoch + std::time::Duration::from_millis(2_020)).into()).await;
    let p2 = ReplayKey::new("client", "p2");
    store
        .check_and_insert(
            &p2,
            ReplayWindow {
                now: t + 2,
                until: t + 4,
            },
        )
        .await
        .unwrap();
    // Clock back to the truth (t + 1 < until): P1 is live, and not remembered.
    let again = store
        .check_and_insert(
            &p1,
            ReplayWindow {
                now: t + 1,
                until: t + 2,
            },
        )
        .await
        .unwrap();
    let elapsed = inserted.elapsed();
    assert_eq!(
        again,
        ReplayCheck::Replayed,
        "P1 re-admitted {elapsed:?} after insert, ttl 2 s"
    );
}
