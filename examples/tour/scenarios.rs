//! The tour's logic, shared by `examples/tour/main.rs` (which prints it) and `tests/tour.rs`
//! (which checks every cell).
//!
//! [`run`] starts, on 127.0.0.1, an API protected by one `OAuthGuard` and served over TLS by
//! `serve_tls` (client certificates optional), next to an in-process authorization server whose
//! signing key is generated at start. Then alice (the legitimate client) and mallory (the
//! attacker) make real requests, and each cell of the returned [`Tour`] records what the API, or
//! the token endpoint's PKCE check, actually answered.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_oauth_guard::BaseUrl;
use tower_oauth_guard::CertificateThumbprint;
use tower_oauth_guard::pkce::{ChallengeMethod, CodeVerifier};
use tower_oauth_guard::{AccessToken, Dpop, OAuthGuard, PublicUri};
use tower_oauth_guard::{ClientAuth, serve_tls, server_config};

use crate::actors::{
    AuthorizationServer, DpopKey, HttpsClient, ISSUER, Pki, SigningKey, install_jwt_provider,
    sign_token,
};
use crate::table::{Defence, Observation, Row, Tour, Verdict};

/// Any error of the tour's own machinery (not an observed refusal).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The audience of the protected API.
pub const API: &str = "https://api.tour.example";
/// Another API of the same issuer; its tokens must not work at ours.
pub const OTHER_API: &str = "https://other-api.tour.example";

// The scenarios, one per row, in the order printed.
pub const LEGITIMATE: &str = "legitimate client, own token (no attack)";
pub const STOLEN_TOKEN: &str = "stolen access token replayed by another client";
pub const STOLEN_CODE: &str = "intercepted authorization code redeemed by attacker";
pub const REPLAYED_REQUEST: &str = "captured request (proof) replayed";
pub const ALTERED_REQUEST: &str = "request altered (method/URL)";
pub const OTHER_AUDIENCE: &str = "token used at another API (audience)";
pub const EXPIRED: &str = "expired token";
pub const FORGED: &str = "token forged with the attacker's own key";
pub const KEY_STRIPPED: &str = "bound token sent without proof / certificate";
pub const SPOOFED_CLIENT_CERT: &str = "victim's certificate claimed in Client-Cert";

// ---- the protected API and the people who call it ---------------------------------------

const BALANCE: &str = "/api/balance";
const TRANSFER: &str = "/api/transfer";

async fn balance(token: AccessToken) -> axum::Json<Value> {
    axum::Json(json!({"binding": token.binding().kind(), "balance": 42}))
}

async fn transfer(token: AccessToken) -> axum::Json<Value> {
    axum::Json(json!({"binding": token.binding().kind(), "sent": true}))
}

/// alice, the legitimate client, or mallory, the attacker: a DPoP key and a TLS client
/// certificate each (mallory's is as valid as alice's, just not hers).
struct Party {
    name: &'static str,
    key: DpopKey,
    certificate: CertificateDer<'static>,
    /// Connections presenting this party's certificate.
    with_cert: HttpsClient,
}

/// Whether a request goes over a connection that presents the sender's certificate.
#[derive(Clone, Copy)]
enum Tls {
    NoCert,
    OwnCert,
}
use Tls::{NoCert, OwnCert};

type Headers = Vec<(&'static str, String)>;

fn bearer(token: &str) -> Headers {
    vec![("authorization", format!("Bearer {token}"))]
}

struct World {
    base: String,
    auth: AuthorizationServer,
    alice: Party,
    mallory: Party,
    /// Connections without a client certificate (anyone's).
    no_cert: HttpsClient,
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A DPoP token and a fresh proof signed by `who`'s key for `method` `path`.
    fn dpop(&self, who: &Party, method: &str, path: &str, token: &str) -> Result<Headers, Error> {
        Ok(vec![
            ("authorization", format!("DPoP {token}")),
            ("dpop", who.key.proof(method, &self.url(path), token)?),
        ])
    }

    /// A token for `audience` bound to alice's DPoP key, or to her certificate.
    fn bound_tokens(&self, audience: &str, lifetime: i64) -> Result<(String, String), Error> {
        let x5t = CertificateThumbprint::from_der(&self.alice.certificate).to_base64url();
        Ok((
            self.auth
                .mint(audience, Some(json!({"jkt": self.alice.key.jkt})), lifetime)?,
            self.auth
                .mint(audience, Some(json!({"x5t#S256": x5t})), lifetime)?,
        ))
    }

    async fn get(&self, who: &Party, tls: Tls, headers: &Headers) -> Result<Observation, Error> {
        self.send(who, tls, "GET", BALANCE, headers).await
    }

    /// Sends one request as `who` and reports what the API answered.
    async fn send(
        &self,
        who: &Party,
        tls: Tls,
        method: &str,
        path: &str,
        headers: &Headers,
    ) -> Result<Observation, Error> {
        let mut request = http::Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let client = match tls {
            NoCert => &self.no_cert,
            OwnCert => &who.with_cert,
        };
        let response = client
            .request(request.body(Full::new(Bytes::new()))?)
            .await?;
        let status = response.status();
        let challenge = response
            .headers()
            .get(http::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.into_body().collect().await?.to_bytes();
        let mut evidence = format!("{}: {method} {path} -> {}", who.name, status.as_u16());
        let verdict = if status.is_success() {
            let body: Value = serde_json::from_slice(&body)?;
            let binding = body["binding"].as_str().unwrap_or("?");
            let _ = write!(evidence, " (accepted as {binding})");
            Verdict::Accepted
        } else {
            if let Some(challenge) = challenge {
                let error = param(&challenge, "error").unwrap_or_default();
                let description = param(&challenge, "error_description").unwrap_or_default();
                let _ = write!(evidence, " {error} ({description})");
            }
            Verdict::Rejected
        };
        Ok(Observation { verdict, evidence })
    }

    /// alice's own request must go through, or the attack that follows it proves nothing.
    async fn must_accept(&self, tls: Tls, headers: &Headers) -> Result<(), Error> {
        let o = self.get(&self.alice, tls, headers).await?;
        match o.verdict {
            Verdict::Accepted => Ok(()),
            Verdict::Rejected => {
                Err(format!("a legitimate request was refused: {}", o.evidence).into())
            }
        }
    }

    /// `who` redeems an authorization code at the token endpoint, then calls the API with the
    /// token it got; a refused grant is the observation.
    async fn redeem(
        &self,
        who: &Party,
        code: &str,
        verifier: Option<&str>,
    ) -> Result<Observation, Error> {
        match self.auth.redeem(code, verifier)? {
            Ok(token) => {
                let mut o = self.get(who, NoCert, &bearer(&token)).await?;
                o.evidence = format!("{} redeemed the code, then {}", who.name, o.evidence);
                Ok(o)
            }
            Err(error) => Ok(Observation {
                verdict: Verdict::Rejected,
                evidence: format!("{}: token endpoint -> {error}", who.name),
            }),
        }
    }
}

/// `name="value"` from a challenge (the values read here contain no escaped quotes).
fn param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    let end = challenge.get(start..)?.find('"')? + start;
    challenge.get(start..end).map(str::to_owned)
}

/// Starts everything, plays every scenario, stops the API, and returns what was observed.
pub async fn run() -> Result<Tour, Error> {
    install_jwt_provider();
    let pki = Pki::generate()?;
    let auth = AuthorizationServer::new()?;
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let base = format!("https://{}", listener.local_addr()?);
    let guard = OAuthGuard::builder()
        .trust(
            tower_oauth_guard::Issuer::new(ISSUER)
                .audience(API)
                .jwks(auth.jwks()?),
        )
        // DPoP proofs must name this server's own URL.
        .dpop(Dpop::allowed(PublicUri::fixed(BaseUrl::parse(&base)?)))
        .build()
        .await?;
    let app = Router::new()
        .route(BALANCE, get(balance))
        .route(TRANSFER, post(transfer))
        .layer(guard.layer());
    let config = server_config(
        vec![pki.server.0.clone()],
        PrivateKeyDer::Pkcs8(pki.server.1.clone().into()),
        ClientAuth::Optional(pki.roots()?),
    )?;
    let server = tokio::spawn(serve_tls(listener, Arc::new(config), app));

    let party = |name, (cert, key): &(CertificateDer<'static>, Vec<u8>)| -> Result<_, Error> {
        Ok(Party {
            name,
            key: DpopKey::generate()?,
            certificate: cert.clone(),
            with_cert: pki.client(Some(&(cert.clone(), key.clone())))?,
        })
    };
    let world = World {
        base: base.clone(),
        auth,
        alice: party("alice", &pki.alice)?,
        mallory: party("mallory", &pki.mallory)?,
        no_cert: pki.client(None)?,
    };
    let rows = play(&world).await;
    server.abort();
    Ok(Tour {
        api: base,
        rows: rows?,
    })
}

async fn play(w: &World) -> Result<Vec<Row>, Error> {
    let row = |scenario, legitimate, cells: [Option<Observation>; 4]| Row {
        scenario,
        legitimate,
        cells: Defence::ALL.into_iter().zip(cells).collect(),
    };
    let (alice, mallory) = (&w.alice, &w.mallory);
    let token = w.auth.mint(API, None, 300)?;
    let (dpop, mtls) = w.bound_tokens(API, 300)?;
    let mut rows = Vec::new();

    // alice, with her own tokens, key and certificate; her PKCE code redeemed with her verifier.
    let verifier = CodeVerifier::generate()?;
    let code = w
        .auth
        .authorize(Some(verifier.challenge(ChallengeMethod::S256)))?;
    rows.push(row(
        LEGITIMATE,
        true,
        [
            Some(w.get(alice, NoCert, &bearer(&token)).await?),
            Some(w.redeem(alice, &code, Some(verifier.as_str())).await?),
            Some(
                w.get(alice, NoCert, &w.dpop(alice, "GET", BALANCE, &dpop)?)
                    .await?,
            ),
            Some(w.get(alice, OwnCert, &bearer(&mtls)).await?),
        ],
    ));

    // mallory copied alice's tokens (from a log, a proxy, a compromised front end) and uses
    // them with his own DPoP key and his own certificate.
    rows.push(row(
        STOLEN_TOKEN,
        false,
        [
            Some(w.get(mallory, OwnCert, &bearer(&token)).await?),
            None,
            Some(
                w.get(mallory, NoCert, &w.dpop(mallory, "GET", BALANCE, &dpop)?)
                    .await?,
            ),
            Some(w.get(mallory, OwnCert, &bearer(&mtls)).await?),
        ],
    ));

    // mallory intercepts alice's authorization code on its way back (e.g. a malicious app
    // registered for the same redirect URI scheme) and redeems it first. Without PKCE, the code
    // is all it takes; with PKCE, he lacks alice's verifier and can only try one of his own.
    let code = w.auth.authorize(None)?;
    let without_pkce = w.redeem(mallory, &code, None).await?;
    let verifier = CodeVerifier::generate()?;
    let code = w
        .auth
        .authorize(Some(verifier.challenge(ChallengeMethod::S256)))?;
    let guess = CodeVerifier::generate()?;
    let with_pkce = w.redeem(mallory, &code, Some(guess.as_str())).await?;
    rows.push(row(
        STOLEN_CODE,
        false,
        [Some(without_pkce), Some(with_pkce), None, None],
    ));

    // mallory records requests alice sent (headers and all) and sends them again.
    let bearer_request = bearer(&token);
    w.must_accept(NoCert, &bearer_request).await?;
    let dpop_request = w.dpop(alice, "GET", BALANCE, &dpop)?;
    w.must_accept(NoCert, &dpop_request).await?;
    let mtls_request = bearer(&mtls);
    w.must_accept(OwnCert, &mtls_request).await?;
    rows.push(row(
        REPLAYED_REQUEST,
        false,
        [
            Some(w.get(mallory, NoCert, &bearer_request).await?),
            None,
            Some(w.get(mallory, NoCert, &dpop_request).await?),
            Some(w.get(mallory, NoCert, &mtls_request).await?),
        ],
    ));

    // mallory holds back one of alice's balance queries (it never arrives) and sends it as a
    // transfer instead.
    let intercepted = w.dpop(alice, "GET", BALANCE, &dpop)?;
    rows.push(row(
        ALTERED_REQUEST,
        false,
        [
            Some(
                w.send(mallory, NoCert, "POST", TRANSFER, &bearer(&token))
                    .await?,
            ),
            None,
            Some(
                w.send(mallory, NoCert, "POST", TRANSFER, &intercepted)
                    .await?,
            ),
            Some(
                w.send(mallory, OwnCert, "POST", TRANSFER, &bearer(&mtls))
                    .await?,
            ),
        ],
    ));

    // Tokens issued to alice for another API; even their rightful holder cannot use them here.
    let other = w.auth.mint(OTHER_API, None, 300)?;
    let (other_dpop, other_mtls) = w.bound_tokens(OTHER_API, 300)?;
    rows.push(row(
        OTHER_AUDIENCE,
        false,
        [
            Some(w.get(alice, NoCert, &bearer(&other)).await?),
            None,
            Some(
                w.get(alice, NoCert, &w.dpop(alice, "GET", BALANCE, &other_dpop)?)
                    .await?,
            ),
            Some(w.get(alice, OwnCert, &bearer(&other_mtls)).await?),
        ],
    ));

    // alice's tokens, expired ten minutes ago (beyond the guard's 60 s leeway).
    let old = w.auth.mint(API, None, -600)?;
    let (old_dpop, old_mtls) = w.bound_tokens(API, -600)?;
    rows.push(row(
        EXPIRED,
        false,
        [
            Some(w.get(alice, NoCert, &bearer(&old)).await?),
            None,
            Some(
                w.get(alice, NoCert, &w.dpop(alice, "GET", BALANCE, &old_dpop)?)
                    .await?,
            ),
            Some(w.get(alice, OwnCert, &bearer(&old_mtls)).await?),
        ],
    ));

    // mallory signs tokens himself (the issuer's `iss` and `kid`), bound to his own key and
    // certificate, so that he could present them properly.
    let forger = SigningKey::generate(Some("as-1"))?;
    let forge = |cnf| sign_token(&forger.encoding, API, cnf, 300);
    let mallory_x5t = CertificateThumbprint::from_der(&mallory.certificate).to_base64url();
    let forged_dpop = forge(Some(json!({"jkt": mallory.key.jkt})))?;
    let forged_mtls = forge(Some(json!({"x5t#S256": mallory_x5t})))?;
    rows.push(row(
        FORGED,
        false,
        [
            Some(w.get(mallory, NoCert, &bearer(&forge(None)?)).await?),
            None,
            Some(
                w.get(
                    mallory,
                    NoCert,
                    &w.dpop(mallory, "GET", BALANCE, &forged_dpop)?,
                )
                .await?,
            ),
            Some(w.get(mallory, OwnCert, &bearer(&forged_mtls)).await?),
        ],
    ));

    // mallory has alice's bound tokens and leaves out what he cannot produce: the DPoP token
    // downgraded to a Bearer token without a proof; the certificate-bound token on a
    // connection without a certificate.
    rows.push(row(
        KEY_STRIPPED,
        false,
        [
            None,
            None,
            Some(w.get(mallory, NoCert, &bearer(&dpop)).await?),
            Some(w.get(mallory, NoCert, &bearer(&mtls)).await?),
        ],
    ));

    // Certificates are public: mallory sends alice's in `Client-Cert`, the RFC 9440 header of
    // TLS-terminating proxies. This API trusts no proxy, so the header proves nothing.
    let mut spoofed = bearer(&mtls);
    let der = STANDARD.encode(alice.certificate.as_ref());
    spoofed.push(("client-cert", format!(":{der}:")));
    rows.push(row(
        SPOOFED_CLIENT_CERT,
        false,
        [
            None,
            None,
            None,
            Some(w.get(mallory, NoCert, &spoofed).await?),
        ],
    ));
    Ok(rows)
}
