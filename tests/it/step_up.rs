//! Step-up authentication (RFC 9470) over real HTTP: routes that require an `acr` and a recent
//! `auth_time`, the `insufficient_user_authentication` challenge byte for byte, what passes,
//! and the claim values an attacker (or a sloppy issuer) might send. The guard reads the
//! manual clock; nothing sleeps.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use tower_oauth_guard::{AccessToken, BaseUrl, Dpop, OAuthGuard, PublicUri};

use crate::support::*;

const MFA: &str = "urn:example:mfa";
const HW: &str = "urn:example:hardware-key";

struct Env {
    issuer: TestIssuer,
    clock: TestClock,
    base: String,
    resource: String,
    metadata_url: String,
}

impl Env {
    /// `/acr` needs `acr` MFA or HW; `/age` an authentication in the last 300 s; `/both` both;
    /// `/admin` scope `admin` and MFA; `/anything` any valid token. DPoP allowed.
    async fn start() -> Self {
        let issuer = TestIssuer::start().await;
        let clock = TestClock::at(now());
        let (listener, base) = bind().await;
        let resource = format!("{base}/api");
        let guard = issuer
            .guard(&resource)
            .resource(&resource)
            .clock(clock.clone())
            .dpop(Dpop::allowed(PublicUri::fixed(
                BaseUrl::parse(&base).unwrap(),
            )))
            .build()
            .await
            .unwrap();
        let route =
            |layer| get(|t: AccessToken| async move { t.subject().to_owned() }).layer(layer);
        let age = Duration::from_secs(300);
        let app = Router::new()
            .route("/api/acr", route(guard.layer().require_acr([MFA, HW])))
            .route("/api/age", route(guard.layer().max_auth_age(age)))
            .route(
                "/api/both",
                route(guard.layer().require_acr([MFA]).max_auth_age(age)),
            )
            .route(
                "/api/admin",
                route(guard.layer().require_scope("admin").require_acr([MFA])),
            )
            .route("/api/anything", route(guard.layer()));
        serve_on(listener, app);
        let metadata_url = format!("{base}/.well-known/oauth-protected-resource/api");
        Env {
            issuer,
            clock,
            base,
            resource,
            metadata_url,
        }
    }

    /// A token valid at the manual clock's now, with `extra` claims.
    fn token(&self, extra: Value) -> String {
        let t = self.clock.now();
        let mut claims = json!({"iat": t, "exp": t + 3600});
        if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
            c.extend(e);
        }
        self.issuer.token(&self.resource, claims)
    }

    async fn get(&self, route: &str, token: &str) -> Reply {
        get_with_token(&format!("{}/api/{route}", self.base), token).await
    }

    /// The challenge of a refused step-up, byte for byte.
    fn challenge(&self, scheme: &str, description: &str, params: &str) -> String {
        format!(
            r#"{scheme} error="insufficient_user_authentication", error_description="{description}", {params}, resource_metadata="{}""#,
            self.metadata_url
        )
    }
}

const LEVEL: &str = "a different authentication level is required";
const RECENT: &str = "a more recent authentication is required";

#[tokio::test]
async fn acr_only_route() {
    let env = Env::start().await;
    for acr in [MFA, HW] {
        let reply = env.get("acr", &env.token(json!({ "acr": acr }))).await;
        assert_eq!(reply.status, 200, "{acr}: {:?}", reply.www_authenticate());
        assert_eq!(reply.body, "alice");
    }
    let expected = [env.challenge("Bearer", LEVEL, &format!(r#"acr_values="{MFA} {HW}""#))];
    for refused in [
        json!({}),
        json!({"acr": "urn:example:password"}),
        json!({"acr": "URN:EXAMPLE:MFA"}),
        json!({"acr": format!("{MFA} ")}),
        json!({"acr": [MFA]}),
        json!({"acr": [MFA, HW]}),
        json!({"acr": 2}),
        json!({"acr": null}),
        json!({"acr": {"values": [MFA]}}),
        json!({"acr": format!("{MFA} {HW}")}),
    ] {
        let reply = env.get("acr", &env.token(refused.clone())).await;
        assert_eq!(reply.status, 401, "{refused}");
        assert_eq!(reply.www_authenticate(), &expected, "{refused}");
    }
    // No age requirement on this route: an ancient authentication is fine.
    let old = env.token(json!({"acr": MFA, "auth_time": 0}));
    assert_eq!(env.get("acr", &old).await.status, 200);
}

#[tokio::test]
async fn max_age_only_route_reads_the_guards_clock() {
    let env = Env::start().await;
    let t = env.clock.now();
    let expected = [env.challenge("Bearer", RECENT, "max_age=300")];
    let fresh = env.token(json!({"auth_time": t - 300}));
    assert_eq!(env.get("age", &fresh).await.status, 200);
    let stale = env.token(json!({"auth_time": t - 301}));
    let reply = env.get("age", &stale).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.www_authenticate(), &expected);
    // The same token, once the clock moves on: refused, though its signature is cached.
    env.clock.set(t + 1);
    let reply = env.get("age", &fresh).await;
    assert_eq!(reply.www_authenticate(), &expected);
    // It still serves routes without step-up.
    assert_eq!(env.get("anything", &fresh).await.status, 200);
    env.clock.set(t);
    assert_eq!(env.get("age", &fresh).await.status, 200);
    // A fractional NumericDate keeps its whole seconds (RFC 7519 §2).
    let fractional = env.token(json!({"auth_time": (t - 300) as f64 + 0.75}));
    assert_eq!(env.get("age", &fractional).await.status, 200);
    // auth_time is not needed where no age is required, nor acr where none is.
    let plain = env.token(json!({}));
    assert_eq!(env.get("anything", &plain).await.status, 200);
    assert_eq!(env.get("age", &plain).await.www_authenticate(), expected);
}

#[tokio::test]
async fn auth_time_must_be_a_plausible_numeric_date() {
    let env = Env::start().await;
    let t = env.clock.now();
    let expected = [env.challenge("Bearer", RECENT, "max_age=300")];
    // Within the guard's leeway (60 s) of the future: clock skew, accepted.
    let skewed = env.token(json!({"auth_time": t + 60}));
    assert_eq!(env.get("age", &skewed).await.status, 200);
    for refused in [
        json!(t + 61),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1e30),
        json!(-1),
        json!(-1.5),
        json!(i64::MIN),
        json!(t.to_string()),
        json!(format!("{t}")),
        json!(""),
        json!(null),
        json!(true),
        json!([t]),
        json!({"t": t}),
    ] {
        let token = env.token(json!({ "auth_time": refused }));
        let reply = env.get("age", &token).await;
        assert_eq!(reply.status, 401, "{refused}");
        assert_eq!(reply.www_authenticate(), expected, "{refused}");
    }
    // A number too large for JSON's doubles does not even make a valid token.
    let key = env.issuer.key(0);
    let payload = format!(
        r#"{{"iss":"{}","aud":"{}","sub":"alice","iat":{t},"exp":{},"auth_time":1e400}}"#,
        env.issuer.issuer,
        env.resource,
        t + 3600
    );
    let token = sign_raw(&key, &payload);
    env.get("age", &token)
        .await
        .assert_error(401, "Bearer", "invalid_token");
}

/// A JWS over `payload` exactly as given (jsonwebtoken would re-serialize it).
fn sign_raw(key: &SigningKey, payload: &str) -> String {
    let header = format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{}"}}"#, key.kid);
    key.sign_raw(&header, payload)
}

#[tokio::test]
async fn both_requirements_are_stated_whichever_failed() {
    let env = Env::start().await;
    let t = env.clock.now();
    let ok = env.token(json!({"acr": MFA, "auth_time": t}));
    assert_eq!(env.get("both", &ok).await.status, 200);
    let params = format!(r#"acr_values="{MFA}", max_age=300"#);
    for (claims, description) in [
        (json!({"acr": MFA, "auth_time": t - 301}), RECENT),
        (json!({"acr": MFA}), RECENT),
        (json!({"acr": HW, "auth_time": t}), LEVEL),
        (json!({"auth_time": t - 1000}), LEVEL),
    ] {
        let reply = env.get("both", &env.token(claims.clone())).await;
        assert_eq!(reply.status, 401, "{claims}");
        assert_eq!(
            reply.www_authenticate(),
            [env.challenge("Bearer", description, &params)],
            "{claims}"
        );
    }
}

#[tokio::test]
async fn a_dpop_bound_token_is_challenged_with_the_dpop_scheme() {
    let env = Env::start().await;
    let key = DpopKey::generate();
    let token = env.token(json!({"cnf": {"jkt": key.jkt}, "acr": "urn:example:password"}));
    let url = format!("{}/api/acr", env.base);
    let proof = key.proof("GET", &url, Some(&token), None);
    let authorization = format!("DPoP {token}");
    let reply = send(
        "GET",
        &url,
        &[("authorization", &authorization), ("dpop", &proof)],
    )
    .await;
    assert_eq!(reply.status, 401);
    let algs: Vec<&str> = tower_oauth_guard::ProofPolicy::default()
        .algorithms
        .iter()
        .map(|a| a.name())
        .collect();
    assert_eq!(
        reply.www_authenticate(),
        [format!(
            r#"{}, algs="{}""#,
            env.challenge("DPoP", LEVEL, &format!(r#"acr_values="{MFA} {HW}""#)),
            algs.join(" ")
        )]
    );
    // With the right acr, and a fresh proof, it passes.
    let token = env.token(json!({"cnf": {"jkt": key.jkt}, "acr": MFA}));
    let proof = key.proof("GET", &url, Some(&token), None);
    let authorization = format!("DPoP {token}");
    let reply = send(
        "GET",
        &url,
        &[("authorization", &authorization), ("dpop", &proof)],
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.www_authenticate());
}

#[tokio::test]
async fn a_missing_scope_is_answered_before_step_up() {
    let env = Env::start().await;
    let reader = env.token(json!({"scope": "read"}));
    let reply = env.get("admin", &reader).await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.www_authenticate(),
        [format!(
            r#"Bearer error="insufficient_scope", error_description="the token lacks a required scope", scope="admin", resource_metadata="{}""#,
            env.metadata_url
        )]
    );
    let admin = env.token(json!({"scope": "admin"}));
    let reply = env.get("admin", &admin).await;
    assert_eq!(
        reply.www_authenticate(),
        [env.challenge("Bearer", LEVEL, &format!(r#"acr_values="{MFA}""#))]
    );
    let admin_mfa = env.token(json!({"scope": "admin", "acr": MFA}));
    assert_eq!(env.get("admin", &admin_mfa).await.status, 200);
}

/// A 401 that asks for a token names the route's scopes (RFC 6750 §3), so that a client asks
/// for them; other 401s, about the proof or the authentication, do not.
#[tokio::test]
async fn a_scoped_routes_401s_that_ask_for_a_token_name_its_scopes() {
    let env = Env::start().await;
    let url = format!("{}/api/admin", env.base);
    let rm = &env.metadata_url;
    let reply = send("GET", &url, &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.www_authenticate(),
        [
            format!(r#"Bearer scope="admin", resource_metadata="{rm}""#),
            format!(
                r#"DPoP scope="admin", resource_metadata="{rm}", algs="ES256 ES384 PS256 RS256 EdDSA""#
            ),
        ]
    );
    let expired = env.issuer.token(
        &env.resource,
        json!({"scope": "admin", "iat": env.clock.now() - 7200, "exp": env.clock.now() - 3600}),
    );
    let reply = env.get("admin", &expired).await;
    reply.assert_error(401, "Bearer", "invalid_token");
    assert!(
        reply.www_authenticate()[0]
            .ends_with(&format!(r#", scope="admin", resource_metadata="{rm}""#)),
        "{:?}",
        reply.www_authenticate()
    );
    // A route without scopes says none.
    let reply = send("GET", &format!("{}/api/anything", env.base), &[]).await;
    assert_eq!(
        reply.www_authenticate()[0],
        format!(r#"Bearer resource_metadata="{rm}""#)
    );
    // A bound token without its proof: the proof is at fault, not the token's scopes.
    let bound = env.token(
        json!({"scope": "admin", "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}),
    );
    let auth = format!("DPoP {bound}");
    let reply = send("GET", &url, &[("authorization", &auth)]).await;
    assert_eq!(reply.status, 401);
    let challenges = reply.www_authenticate();
    assert!(
        challenges[0].starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{challenges:?}"
    );
    assert!(!challenges[0].contains("scope="), "{challenges:?}");
}

/// Nested layers: the route's step-up applies even though an outer layer admitted the token.
#[tokio::test]
async fn an_inner_step_up_layer_refuses_what_the_outer_guard_admitted() {
    let issuer = TestIssuer::start().await;
    let clock = TestClock::at(now());
    let (listener, base) = bind().await;
    let guard: OAuthGuard = issuer
        .guard("https://api.example")
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let app = Router::new()
        .route(
            "/x",
            get(|| async { "ok" }).layer(guard.layer().max_auth_age(Duration::from_secs(60))),
        )
        .layer(guard.layer());
    serve_on(listener, app);
    let t = clock.now();
    let claims = |auth_time: i64| json!({"iat": t, "exp": t + 600, "auth_time": auth_time});
    let ok = issuer.token("https://api.example", claims(t - 60));
    assert_eq!(get_with_token(&format!("{base}/x"), &ok).await.status, 200);
    let old = issuer.token("https://api.example", claims(t - 61));
    let reply = get_with_token(&format!("{base}/x"), &old).await;
    // No resource here: no resource_metadata.
    assert_eq!(
        reply.www_authenticate(),
        [format!(
            r#"Bearer error="insufficient_user_authentication", error_description="{RECENT}", max_age=60"#
        )]
    );
}
