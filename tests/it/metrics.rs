//! The guard's metrics (feature `metrics`) as `examples/resource_server` exposes them at
//! `/metrics` in the Prometheus text format: known traffic over real HTTP, then a scrape whose
//! counts must match it exactly.

use std::collections::BTreeMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::json;
use tower_oauth_guard::{
    BaseUrl, Dpop, MemoryReplayStore, OAuthGuard, Policy, Presence, PublicUri,
};

use crate::support::*;

const AUD: &str = "https://api.example";

/// One sample of the scrape: its labels and its value.
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of the metric `name` in a Prometheus text exposition.
fn samples(text: &str, name: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap();
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            Some(Sample {
                labels,
                value: value.trim().parse().unwrap(),
            })
        })
        .collect()
}

/// The value of the sample of `name` with exactly these labels; 0 when there is none.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let found: Vec<f64> = samples(text, name)
        .into_iter()
        .filter(|s| s.labels == want)
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} twice in\n{text}");
    found.first().copied().unwrap_or(0.0)
}

#[tokio::test]
async fn the_example_counts_each_decision_by_reason_binding_and_issuer() {
    let issuer = TestIssuer::start().await;
    let server = ExampleServer::start(&issuer).await;
    let whoami = format!("{}/api/whoami", server.base);
    let admin = format!("{}/api/admin", server.base);

    // Admitted: three bearer tokens, one DPoP-bound token with its proof.
    let bearer = issuer.token(AUD, json!({}));
    for _ in 0..3 {
        assert_eq!(get_with_token(&whoami, &bearer).await.status, 200);
    }
    let key = DpopKey::generate();
    let bound = issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}));
    let proof = key.proof("GET", &whoami, Some(&bound), None);
    let authorization = format!("DPoP {bound}");
    let reply = send(
        "GET",
        &whoami,
        &[("authorization", &authorization), ("dpop", &proof)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Refused: two malformed tokens, one request without credentials, one token for another
    // audience, and one token without the admin route's scope (which the outer layer admits
    // and the route's own layer refuses).
    for _ in 0..2 {
        get_with_token(&whoami, "not-a-jwt")
            .await
            .assert_error(401, "Bearer", "invalid_token");
    }
    assert_eq!(send("GET", &whoami, &[]).await.status, 401);
    let elsewhere = issuer.token("https://other.example", json!({}));
    get_with_token(&whoami, &elsewhere)
        .await
        .assert_error(401, "Bearer", "invalid_token");
    get_with_token(&admin, &bearer)
        .await
        .assert_error(403, "Bearer", "insufficient_scope");
    // The issuer rotates to a new key: the first token it signs makes the guard fetch the set
    // again, and is admitted.
    let rotated = SigningKey::generate("k2");
    issuer.keys.lock().unwrap().push(rotated.clone());
    let token = rotated.sign(at_header("k2"), &issuer.claims(AUD, json!({})));
    assert_eq!(get_with_token(&whoami, &token).await.status, 200);
    // Unguarded routes are not counted.
    assert_eq!(
        send("GET", &format!("{}/health", server.base), &[])
            .await
            .status,
        200
    );

    let scrape = send("GET", &format!("{}/metrics", server.base), &[]).await;
    assert_eq!(scrape.status, 200);
    let text = &scrape.body;
    let requests = |outcome: &str, reason: &str, binding: &str, issuer: &str| {
        value(
            text,
            "oauth_guard_requests_total",
            &[
                ("outcome", outcome),
                ("reason", reason),
                ("binding", binding),
                ("issuer", issuer),
            ],
        )
    };
    let iss = issuer.issuer.as_str();
    assert_eq!(
        requests("admitted", "admitted", "bearer", iss),
        5.0,
        "{text}"
    );
    assert_eq!(requests("admitted", "admitted", "dpop", iss), 1.0, "{text}");
    assert_eq!(
        requests("refused", "token_malformed", "bearer", "none"),
        2.0,
        "{text}"
    );
    assert_eq!(
        requests("refused", "credentials_missing", "none", "none"),
        1.0,
        "{text}"
    );
    assert_eq!(
        requests("refused", "token_wrong_audience", "bearer", "none"),
        1.0,
        "{text}"
    );
    assert_eq!(
        requests("refused", "insufficient_scope", "bearer", iss),
        1.0,
        "{text}"
    );
    // Nothing else was counted, and no label value came from what a client sent.
    let all = samples(text, "oauth_guard_requests_total");
    assert_eq!(all.iter().map(|s| s.value).sum::<f64>(), 11.0, "{text}");
    assert!(
        all.iter()
            .all(|s| [iss, "none"].contains(&s.labels["issuer"].as_str())),
        "{text}"
    );
    // The latency histogram saw each decision once.
    let count = |outcome: &str| {
        value(
            text,
            "oauth_guard_duration_seconds_count",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(count("admitted"), 6.0, "{text}");
    assert_eq!(count("refused"), 5.0, "{text}");
    let jwks = issuer.jwks_url();
    let refreshes = |result: &str| {
        let labels = [("jwks_uri", jwks.as_str()), ("result", result)];
        value(text, "oauth_guard_jwks_refreshes_total", &labels)
    };
    assert_eq!((refreshes("ok"), refreshes("error")), (1.0, 0.0), "{text}");
    // An in-process replay store reports how full it is.
    let fullness = value(text, "oauth_guard_replay_store_fullness", &[]);
    assert!(fullness > 0.0 && fullness < 0.01, "{text}");
}

/// The counter `name` with exactly `labels` in a snapshot of `recorder`; 0 when absent.
fn counter(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
    snapshot
        .iter()
        .filter(|(key, ..)| key.key().name() == name)
        .filter(|(key, ..)| {
            let mut have: Vec<(&str, &str)> =
                key.key().labels().map(|l| (l.key(), l.value())).collect();
            let mut want = labels.to_vec();
            have.sort_unstable();
            want.sort_unstable();
            have == want
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

/// `oauth_guard_requests_total` with these `outcome`, `reason`, `binding` and `issuer`.
fn requests_counted(snapshot: &Snapshot, [outcome, reason, binding, issuer]: [&str; 4]) -> u64 {
    let labels = [
        ("outcome", outcome),
        ("reason", reason),
        ("binding", binding),
        ("issuer", issuer),
    ];
    counter(snapshot, "oauth_guard_requests_total", &labels)
}

type Snapshot = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// The guard's decision on a request for `/r` with `token` (and a DPoP proof, if any).
async fn decide(guard: &OAuthGuard, token: &str, proof: Option<&str>) -> Result<(), String> {
    let scheme = if proof.is_some() { "DPoP" } else { "Bearer" };
    let mut request = http::Request::get("/r").header("authorization", format!("{scheme} {token}"));
    if let Some(proof) = proof {
        request = request.header("dpop", proof);
    }
    let (mut parts, ()) = request.body(()).unwrap().into_parts();
    guard
        .check(&mut parts, &Policy::default(), Presence::Required)
        .await
        .map(|_| ())
        .map_err(|refusal| refusal.rejection.reason().to_owned())
}

// The recorder is the test thread's own (a current-thread runtime polls every task of the
// test there), so tests running beside it do not count into it.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_key_refresh_and_a_full_replay_store_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let issuer = TestIssuer::start().await;
    let public = BaseUrl::parse("https://api.example").unwrap();
    let dpop = Dpop::allowed(PublicUri::fixed(public)).replay_store(MemoryReplayStore::new(1));
    let guard = issuer.guard(AUD).dpop(dpop).build().await.unwrap();

    // A token naming a key the guard does not know makes it fetch the issuer's set again;
    // the issuer is down, so the refresh fails and the token is refused.
    issuer.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let unknown = SigningKey::generate("k9");
    let token = unknown.sign(at_header("k9"), &issuer.claims(AUD, json!({})));
    assert_eq!(
        decide(&guard, &token, None).await.unwrap_err(),
        "token_unknown_key"
    );
    // A store of one proof: the second proof cannot be remembered, and is refused (503).
    let key = DpopKey::generate();
    let bound = issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}));
    let htu = "https://api.example/r";
    let first = key.proof("GET", htu, Some(&bound), None);
    decide(&guard, &bound, Some(&first)).await.unwrap();
    let second = key.proof("GET", htu, Some(&bound), None);
    let refused = decide(&guard, &bound, Some(&second)).await.unwrap_err();

    let snapshot = snapshotter.snapshot().into_vec();
    let jwks = issuer.jwks_url();
    let refreshes = |result| {
        let labels = [("jwks_uri", jwks.as_str()), ("result", result)];
        counter(&snapshot, "oauth_guard_jwks_refreshes_total", &labels)
    };
    assert_eq!((refreshes("ok"), refreshes("error")), (0, 1));
    let errors = |error| {
        counter(
            &snapshot,
            "oauth_guard_replay_store_errors_total",
            &[("error", error)],
        )
    };
    assert_eq!(
        (errors("full"), errors("timeout"), errors("unavailable")),
        (1, 0, 0)
    );
    let iss = issuer.issuer.as_str();
    let requests = |labels| requests_counted(&snapshot, labels);
    assert_eq!(
        requests(["refused", "token_unknown_key", "bearer", "none"]),
        1
    );
    assert_eq!(requests(["admitted", "admitted", "dpop", iss]), 1);
    assert_eq!(requests(["refused", &refused, "dpop", iss]), 1);
}

/// A request without credentials that an optional layer lets through is counted apart from
/// authenticated admissions, and a refusal on a required route as before.
#[tokio::test(flavor = "current_thread")]
async fn an_anonymous_request_on_an_optional_route_is_counted_as_anonymous() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let issuer = TestIssuer::start().await;
    let guard = issuer.guard(AUD).build().await.unwrap();
    let anonymous = || http::Request::get("/r").body(()).unwrap().into_parts().0;
    for presence in [Presence::Optional, Presence::Optional, Presence::Required] {
        let decided = guard
            .check(&mut anonymous(), &Policy::default(), presence)
            .await;
        assert_eq!(decided.is_ok(), presence == Presence::Optional);
    }
    assert!(
        decide(&guard, &issuer.token(AUD, json!({})), None)
            .await
            .is_ok()
    );

    let snapshot = snapshotter.snapshot().into_vec();
    let requests = |labels| requests_counted(&snapshot, labels);
    assert_eq!(requests(["admitted", "anonymous", "none", "none"]), 2);
    assert_eq!(
        requests(["refused", "credentials_missing", "none", "none"]),
        1
    );
    let iss = issuer.issuer.as_str();
    assert_eq!(requests(["admitted", "admitted", "bearer", iss]), 1);
    assert_eq!(requests(["admitted", "admitted", "none", "none"]), 0);
}

/// Two optional layers around a route (the router's and the route's own): a request without
/// credentials is counted once, by the outer one, as a request with a token is; a required
/// layer inside an optional one counts its refusal, and its admission of a token that server
/// code between the two added.
#[tokio::test(flavor = "current_thread")]
async fn stacked_layers_count_an_anonymous_request_once() {
    use axum::Router;
    use axum::routing::get;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let issuer = TestIssuer::start().await;
    let guard = issuer.guard(AUD).build().await.unwrap();
    // Server code between the layers that turns a session into a token (as a cookie-to-token
    // middleware would): the inner layer's admission is its own to count.
    let session = issuer.token(AUD, json!({}));
    let sign_in = axum::middleware::map_request(move |mut request: axum::extract::Request| {
        let authorization = format!("Bearer {session}").parse().unwrap();
        async move {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, authorization);
            request
        }
    });
    let app = Router::new()
        .route(
            "/open",
            get(|| async { "open" }).layer(guard.layer().optional()),
        )
        .route("/closed", get(|| async { "closed" }).layer(guard.layer()))
        .route(
            "/session",
            get(|| async { "session" })
                .layer(guard.layer())
                .layer(sign_in),
        )
        .layer(guard.layer().optional());
    let base = serve(app).await;
    assert_eq!(
        send("GET", &format!("{base}/session"), &[]).await.status,
        200
    );
    assert_eq!(send("GET", &format!("{base}/open"), &[]).await.status, 200);
    let token = issuer.token(AUD, json!({}));
    assert_eq!(
        get_with_token(&format!("{base}/open"), &token).await.status,
        200
    );
    assert_eq!(
        send("GET", &format!("{base}/closed"), &[]).await.status,
        401
    );

    let snapshot = snapshotter.snapshot().into_vec();
    let requests = |labels| requests_counted(&snapshot, labels);
    assert_eq!(requests(["admitted", "anonymous", "none", "none"]), 3);
    let iss = issuer.issuer.as_str();
    assert_eq!(requests(["admitted", "admitted", "bearer", iss]), 2);
    assert_eq!(
        requests(["refused", "credentials_missing", "none", "none"]),
        1
    );
}
