//! The one-pass claims reader and the replay store, attacked: every payload the whole-payload parse refuses is refused, and a proof stays remembered across clock steps.

use std::sync::Arc;

use crate::support::*;
use axum::Router;
use axum::routing::get;
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
    key.sign_raw(&serde_json::to_string(&header).unwrap(), payload)
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

// ---------------------------------------------------------------------------------------------
// The typed claims reader, attacked again: serde_json's raw-value marker, repeated and
// escaped structured claims, header members spelled with escapes, NumericDate edges; and the
// verified-token cache against the guard's clock and another guard.

/// serde_json's private marker of a `RawValue` (its `raw_value` feature is on in this
/// crate): the handlers' claims map reads an object whose first member has this name as the
/// JSON inside that member's string, and refuses it when that is not JSON.
const RAW_VALUE_MARKER: &str = "$serde_json::private::RawValue";

/// A token whose payload is exactly `payload` under a header that is exactly `header`.
fn raw_token_with_header(issuer: &TestIssuer, header: &str, payload: &str) -> String {
    let key = issuer.key(0);
    key.sign_raw(&header.replace("KID", &key.kid), payload)
}

async fn echo_scope(token: AccessToken) -> axum::Json<Value> {
    axum::Json(json!({
        "claims_len": token.claims().len(),
        "scope_claim": token.claim("scope"),
        "scp_claim": token.claim("scp"),
        "scopes": token.scopes().to_scope_string(),
        "role": token.claim("role"),
    }))
}

/// A signed payload the claims map cannot read (a member whose object starts with
/// serde_json's raw-value marker and holds anything but a JSON text) must be refused: were
/// it admitted, the handler would get an empty claims map, `role` and every other claim gone.
#[tokio::test]
async fn a_payload_the_claims_map_refuses_behind_serde_jsons_raw_value_marker_is_refused() {
    let (issuer, base) = setup().await;
    let mut admitted_empty = Vec::new();
    for inner in [r#""not json""#, "1", r#""[1,]""#, r#""{}","x":1"#] {
        let payload = fill(
            &issuer,
            &format!(
                r#"{{"iss":ISS,"sub":"alice","aud":AUD,"exp":EXP,"iat":NOW,"role":"user","profile":{{"{RAW_VALUE_MARKER}":{inner}}}}}"#
            ),
        );
        assert!(serde_json::from_str::<Map<String, Value>>(&payload).is_err());
        let reply = get_with_token(&format!("{base}/echo"), &raw_token(&issuer, &payload)).await;
        if reply.status == 200 && reply.json()["claims_len"] == 0 {
            admitted_empty.push(payload);
        }
    }
    assert!(
        admitted_empty.is_empty(),
        "admitted with claims() == {{}} (role gone): {admitted_empty:#?}"
    );
}

/// `scope` as an object whose first member is serde_json's raw-value marker, which the
/// handler's `claim("scope")` would read as "admin" while the guard granted no scope: the
/// token is refused, so the two never disagree.
#[tokio::test]
async fn the_scope_claim_handlers_read_is_the_scope_the_guard_granted() {
    let issuer = TestIssuer::start().await;
    let guard: OAuthGuard = issuer.guard(AUD).build().await.unwrap();
    let app = Router::new()
        .route("/echo", get(echo_scope))
        .layer(guard.layer());
    let base = serve(app).await;
    let payload = fill(
        &issuer,
        &format!(
            r#"{{"iss":ISS,"sub":"alice","aud":AUD,"exp":EXP,"scope":{{"{RAW_VALUE_MARKER}":"\"admin\""}}}}"#
        ),
    );
    let reply = get_with_token(&format!("{base}/echo"), &raw_token(&issuer, &payload)).await;
    reply.assert_error(401, "Bearer", "invalid_token");
}

/// Held: a binding the guard must enforce, however it is spelled or repeated, is enforced;
/// a `cnf` the guard cannot enforce refuses the token; a bearer token stays one.
#[tokio::test]
async fn cnf_spelled_with_escapes_or_repeated_still_binds_the_token() {
    let (issuer, base) = setup().await;
    let common = r#""iss":ISS,"sub":"alice","aud":AUD,"exp":EXP"#;
    let refused = [
        r#""cnf":{"j\u006bt":"abc"}"#,
        r#""\u0063nf":{"jkt":"abc"}"#,
        r#""cnf":{"x5t\u0023S256":"abc"}"#,
        r#""cnf":{"x5t#S256":"abc"},"cnf":{"jkt":"abc"}"#,
        r#""cnf":{"jkt":1,"jkt":"abc"}"#,
        r#""cnf":{"jkt":"abc","jkt":1}"#,
        r#""cnf":{"jkt":"abc","jkt":""}"#,
        r#""cnf":null"#,
        r#""cnf":"abc""#,
        r#""cnf":["jkt","abc"]"#,
        r#""cnf":{}"#,
        r#""cnf":{"jkt":"abc"},"cnf":{}"#,
        r#""cnf":{"jkt":"abc"},"cnf":1"#,
        r#""cnf":{},"cnf":{"jkt":"abc"}"#,
        r#""cnf":{"jkt":"abc","j\u006bt":"abc"}"#,
        r#""cnf":{"jwk":{"kty":"EC"}}"#,
        r#""cnf":{"jkt":"abc","jwk":1}"#,
        r#""cnf":{"JKT":"abc"}"#,
        r#""cnf":{"jkt ":"abc"}"#,
        r#""cnf":{"x5t#s256":"abc"}"#,
    ];
    for cnf in refused {
        let payload = fill(&issuer, &format!("{{{common},{cnf}}}"));
        let reply = get_with_token(&format!("{base}/echo"), &raw_token(&issuer, &payload)).await;
        assert_eq!(reply.status, 401, "{cnf}: {}", reply.body);
    }
    for cnf in [
        r#""cnf":{"jkt":"abc"},"cnf":{"jkt":"abc"},"x":0"#,
        r#""cnf":{"jkt":"abc"},"\u0063nf":null,"x":0"#,
    ] {
        let payload = fill(&issuer, &format!("{{{common},{cnf}}}"));
        let reply = get_with_token(&format!("{base}/echo"), &raw_token(&issuer, &payload)).await;
        assert_eq!(reply.status, 401, "{cnf}: {}", reply.body);
    }
    // The last `cnf` absent-in-effect is impossible: a repeated member is never unset.
    let payload = fill(
        &issuer,
        &format!("{{{common},\"x\":{{\"cnf\":{{\"jkt\":\"a\"}}}}}}"),
    );
    let reply = get_with_token(&format!("{base}/echo"), &raw_token(&issuer, &payload)).await;
    assert_eq!(reply.status, 200, "a nested cnf is not the token's");
    assert_eq!(reply.json()["binding"], "bearer");
}

/// Held: `aud` must name us as a string or an element string; nested arrays, objects,
/// escapes and repeats agree with the claims map.
#[tokio::test]
async fn aud_nested_repeated_or_escaped_names_us_only_where_the_map_does() {
    let (issuer, base) = setup().await;
    let common = r#""iss":ISS,"sub":"alice","exp":EXP"#;
    for (aud, admitted) in [
        (r#""aud":AUD"#, true),
        (r#""aud":[AUD]"#, true),
        (r#""aud":[[AUD]]"#, false),
        (r#""aud":[{"a":AUD}]"#, false),
        (r#""aud":{"aud":AUD}"#, false),
        (r#""aud":[1,null,AUD]"#, true),
        (r#""aud":AUD,"aud":"x""#, false),
        (r#""aud":"x","aud":AUD"#, true),
        (r#""aud":AUD,"aud":[]"#, false),
        (r#""aud":AUD,"aud":null"#, false),
        (r#""aud":AUD,"a\u0075d":"x""#, false),
        (r#""aud":"x","a\u0075d":AUD"#, true),
        (r#""aud":"https:\/\/api.example""#, true),
        (r#""aud":"https://api.exampl\u0065""#, true),
        (r#""aud":"https://api.example\u0000""#, false),
        (r#""aud":"https://api.example ""#, false),
        (r#""aud":"HTTPS://api.example""#, false),
        (r#""aud":["\ud800",AUD]"#, false),
        (r#""aud":[AUD,1e400]"#, false),
    ] {
        let payload = fill(&issuer, &format!("{{{common},{aud}}}"));
        let reply = get_with_token(&format!("{base}/echo"), &raw_token(&issuer, &payload)).await;
        assert_eq!(reply.status == 200, admitted, "{aud}: {}", reply.body);
        if admitted {
            let map: Map<String, Value> = serde_json::from_str(&payload).unwrap();
            let ours = match &map["aud"] {
                Value::String(a) => a == AUD,
                Value::Array(items) => items.iter().any(|i| i == AUD),
                _ => false,
            };
            assert!(ours, "{aud}");
        }
    }
}

/// Held: scope names are split on the space character alone (RFC 6749 §3.3); tabs, line
/// breaks and other spaces are part of a name, as in the claims map.
#[tokio::test]
async fn scope_separators_other_than_space_are_part_of_a_name() {
    let issuer = TestIssuer::start().await;
    let guard: OAuthGuard = issuer.guard(AUD).build().await.unwrap();
    let app = Router::new()
        .route("/echo", get(echo_scope))
        .layer(guard.layer());
    let base = serve(app).await;
    for (scope, granted) in [
        (r#""read write""#, "read write"),
        (r#""read\twrite""#, "read\twrite"),
        (r#""read\nwrite""#, "read\nwrite"),
        (r#""read\u00a0write""#, "read\u{a0}write"),
        ("\"read\u{2003}write\"", "read\u{2003}write"),
        (r#""  read   ""#, "read"),
        (r#""read","scope":"write""#, "write"),
        (r#""read","scope":7"#, ""),
        (r#"["read write",""]"#, " read write"),
        (r#"[["admin"]]"#, ""),
    ] {
        let payload = fill(
            &issuer,
            &format!(r#"{{"iss":ISS,"sub":"alice","aud":AUD,"exp":EXP,"scope":{scope}}}"#),
        );
        let reply = get_with_token(&format!("{base}/echo"), &raw_token(&issuer, &payload)).await;
        assert_eq!(reply.status, 200, "{scope}: {}", reply.body);
        let body = reply.json();
        assert_eq!(body["scopes"], granted, "{scope}");
        assert!(body["claims_len"].as_u64().unwrap() >= 5, "{scope}");
    }
}

/// Held: the header's `crit` refuses the token however it is spelled; `alg` and `typ`
/// spelled with escapes are the values they spell; repeats keep the last.
#[tokio::test]
async fn header_members_spelled_with_escapes_are_the_members_they_spell() {
    let (issuer, base) = setup().await;
    let payload = fill(
        &issuer,
        r#"{"iss":ISS,"sub":"alice","aud":AUD,"exp":EXP,"iat":NOW}"#,
    );
    for (header, admitted) in [
        (r#"{"alg":"ES256","kid":"KID","typ":"at+jwt"}"#, true),
        (r#"{"alg":"ES256","kid":"KID","cr\u0069t":["exp"]}"#, false),
        (r#"{"alg":"ES256","kid":"KID","\u0063rit":null}"#, false),
        (r#"{"alg":"ES256","kid":"KID","crit":[],"x":1}"#, false),
        (r#"{"alg":"E\u0053256","kid":"KID"}"#, true),
        (r#"{"\u0061lg":"ES256","kid":"KID"}"#, true),
        (r#"{"alg":"none","alg":"ES256","kid":"KID"}"#, true),
        (r#"{"alg":"ES256","alg":"none","kid":"KID"}"#, false),
        (r#"{"alg":"ES256","alg":"HS256","kid":"KID"}"#, false),
        (
            r#"{"alg":"ES256","kid":"KID","t\u0079p":"dpop+jwt"}"#,
            false,
        ),
        (
            r#"{"alg":"ES256","kid":"KID","typ":"at+jwt","typ":"dpop+jwt"}"#,
            false,
        ),
        (r#"{"alg":"ES256","kid":"KID","typ":null}"#, false),
        (r#"{"alg":"ES256","kid":"KID","kid":7}"#, false),
        (r#"{"alg":"ES256","kid":"KID","x":"\ud800"}"#, false),
        (r#"{"alg":"ES256","kid":"KID","x":[[[[[[[[1]]]]]]]]}"#, true),
        (r#"{"alg":"ES256","kid":"KID"} "#, true),
        (r#"{"alg":"ES256","kid":"KID"}x"#, false),
        ("\u{feff}{\"alg\":\"ES256\",\"kid\":\"KID\"}", false),
    ] {
        let token = raw_token_with_header(&issuer, header, &payload);
        let reply = get_with_token(&format!("{base}/echo"), &token).await;
        assert_eq!(reply.status == 200, admitted, "{header}: {}", reply.body);
    }
}

/// Held: NumericDates at and past the `i64` and `f64` edges neither panic nor admit an
/// expired or not-yet-valid token.
#[tokio::test]
async fn numeric_dates_at_the_edges_fail_closed() {
    let (issuer, base) = setup().await;
    let common = r#""iss":ISS,"sub":"alice","aud":AUD"#;
    for (times, admitted) in [
        (r#""exp":1e308"#, true),
        (r#""exp":9223372036854775808"#, true),
        (r#""exp":18446744073709551615"#, true),
        (r#""exp":1.5e19"#, true),
        (r#""exp":-1e19"#, false),
        (r#""exp":-0.0"#, false),
        (r#""exp":-9223372036854775809"#, false),
        (r#""exp":EXP,"exp":-1"#, false),
        (r#""exp":EXP,"exp":null"#, false),
        (r#""exp":EXP,"exp":"EXP""#, false),
        (r#""exp":EXP,"exp":[EXP]"#, false),
        (r#""exp":EXP,"nbf":1e308"#, false),
        (r#""exp":EXP,"nbf":-1e308"#, true),
        (r#""exp":EXP,"nbf":9223372036854775808"#, false),
        (r#""exp":EXP,"nbf":NOW.9"#, true),
        (r#""exp":EXP,"iat":1.5e19"#, false),
        (r#""exp":EXP,"iat":-1e19"#, true),
        (r#""exp":EXP,"iat":-0.0"#, true),
        (r#""exp":EXP,"iat":1e-400"#, true),
        (r#""exp":EXP,"iat":1e400"#, false),
    ] {
        let payload = fill(&issuer, &format!("{{{common},{times}}}"));
        let reply = get_with_token(&format!("{base}/echo"), &raw_token(&issuer, &payload)).await;
        assert_eq!(reply.status == 200, admitted, "{times}: {}", reply.body);
    }
}

/// Held: a cached token is served only while valid at the guard's clock: moved past `exp`,
/// or back before `nbf`, the same token is refused though it sits in the cache.
#[tokio::test]
async fn the_token_cache_serves_only_within_exp_and_nbf_at_the_guards_clock() {
    let issuer = TestIssuer::start().await;
    let start = now();
    let clock = TestClock::at(start);
    let guard: OAuthGuard = issuer
        .guard(AUD)
        .leeway(std::time::Duration::ZERO)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let app = Router::new().route("/echo", get(echo)).layer(guard.layer());
    let base = serve(app).await;
    let payload = format!(
        r#"{{"iss":"{}","sub":"alice","aud":"{AUD}","nbf":{},"exp":{}}}"#,
        issuer.issuer,
        start + 100,
        start + 200
    );
    let token = raw_token(&issuer, &payload);
    let url = format!("{base}/echo");
    assert_eq!(get_with_token(&url, &token).await.status, 401, "before nbf");
    clock.set(start + 100);
    assert_eq!(
        get_with_token(&url, &token).await.status,
        200,
        "validated, cached"
    );
    assert_eq!(
        get_with_token(&url, &token).await.status,
        200,
        "from the cache"
    );
    clock.set(start + 99);
    assert_eq!(
        get_with_token(&url, &token).await.status,
        401,
        "cached, before nbf"
    );
    clock.set(start + 199);
    assert_eq!(get_with_token(&url, &token).await.status, 200);
    clock.set(start + 200);
    assert_eq!(
        get_with_token(&url, &token).await.status,
        401,
        "cached, at exp"
    );
    clock.set(i64::MAX);
    assert_eq!(get_with_token(&url, &token).await.status, 401);
    clock.set(i64::MIN);
    assert_eq!(get_with_token(&url, &token).await.status, 401);
    clock.set(start + 150);
    assert_eq!(get_with_token(&url, &token).await.status, 200);
}

/// Held: a token one guard validated and cached is not served by another guard that trusts
/// another issuer or expects another audience: each guard has its own cache.
#[tokio::test]
async fn a_token_cached_by_one_guard_is_not_served_by_another() {
    let ours = TestIssuer::start().await;
    let theirs = TestIssuer::start().await;
    let serve_guard = |guard: OAuthGuard| async move {
        serve(Router::new().route("/echo", get(echo)).layer(guard.layer())).await
    };
    let a = serve_guard(ours.guard(AUD).build().await.unwrap()).await;
    let other_issuer = serve_guard(theirs.guard(AUD).build().await.unwrap()).await;
    let other_audience =
        serve_guard(ours.guard("https://other.example").build().await.unwrap()).await;
    let token = ours.token(AUD, json!({}));
    for _ in 0..2 {
        assert_eq!(
            get_with_token(&format!("{a}/echo"), &token).await.status,
            200
        );
    }
    for base in [&other_issuer, &other_audience] {
        let reply = get_with_token(&format!("{base}/echo"), &token).await;
        assert_eq!(reply.status, 401, "{base}: {}", reply.body);
    }
}

/// Held: a token at the size limit made of hundreds of audiences and scope names (escaped
/// or not) is read whole, and the guard's scopes are the claims map's.
#[tokio::test]
async fn a_token_at_the_size_limit_of_many_names_is_read_whole() {
    let issuer = TestIssuer::start().await;
    let guard: OAuthGuard = issuer.guard(AUD).build().await.unwrap();
    let app = Router::new()
        .route("/echo", get(echo_scope))
        .layer(guard.layer());
    let base = serve(app).await;
    let payload_of = |names: usize| {
        let auds: Vec<String> = (0..100)
            .map(|i| format!(r#""a\u00{:02x}{i}""#, 0x30 + i % 10))
            .collect();
        let scope: Vec<String> = (0..names).map(|i| format!("s{i}")).collect();
        fill(
            &issuer,
            &format!(
                r#"{{"iss":ISS,"sub":"alice","aud":[{},AUD],"exp":EXP,"scope":"{}","scp":["\u0073{}"]}}"#,
                auds.join(","),
                scope.join(" "),
                names
            ),
        )
    };
    let mut names = 100;
    while raw_token(&issuer, &payload_of(names + 10)).len() <= 8 * 1024 {
        names += 10;
    }
    let token = raw_token(&issuer, &payload_of(names));
    assert!(token.len() > 8 * 1024 - 64, "{}", token.len());
    let reply = get_with_token(&format!("{base}/echo"), &token).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    let granted: Vec<&str> = body["scopes"].as_str().unwrap().split(' ').collect();
    assert_eq!(granted.len(), names + 1);
    assert!(granted.contains(&format!("s{names}").as_str()));
    let map: Map<String, Value> = serde_json::from_str(&payload_of(names)).unwrap();
    let from_map = map["scope"].as_str().unwrap().split(' ').count() + 1;
    assert_eq!(granted.len(), from_map);
    // Ten names more, past the limit: refused.
    let over = raw_token(&issuer, &payload_of(names + 10));
    assert!(over.len() > 8 * 1024);
    assert_eq!(
        get_with_token(&format!("{base}/echo"), &over).await.status,
        401
    );
}
