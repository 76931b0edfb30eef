//! The tokens and proofs, all signed before the window they are used in.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::HeaderValue;
use serde_json::{Value, json};
use tower_oauth_guard::{ath_for, jwk_thumbprint};

use crate::{AUDIENCE, ISSUER, PROTECTED, PUBLIC_URL, Scenario};

const KID: &str = "e2e";
const TOKEN_LIFETIME_SECS: i64 = 3_600;
/// Proofs one client key signs before the next key (and its token) takes over; the replay
/// store holds at most 10 000 live proofs of one key by default, and refuses more (`429`).
const PROOFS_PER_KEY: usize = 2_000;

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A P-256 key signing compact JWS (ES256, RFC 7518 §3.4).
struct Signer {
    key: EcdsaKeyPair,
    jwk: Value,
}

impl Signer {
    fn generate() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("a new P-256 key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("the key just generated");
        let point = key.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        });
        Signer { key, jwk }
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("an ES256 signature");
        format!("{input}.{}", B64.encode(signature.as_ref()))
    }
}

/// The headers one request carries.
#[derive(Clone)]
pub struct Credential {
    pub authorization: HeaderValue,
    pub dpop: Option<HeaderValue>,
}

fn header_value(value: String) -> HeaderValue {
    HeaderValue::try_from(value).expect("a JWS is a valid header value")
}

/// What the requests of one window carry.
pub enum Credentials {
    None,
    /// The same on every request.
    Every(Credential),
    /// One each, used once; the window ends early when they run out.
    EachOnce(Vec<Credential>),
}

impl Credentials {
    /// The credential of request `i`: `None` when the pool ran out, `Some(None)` for no
    /// credential at all.
    pub fn nth(&self, i: usize) -> Option<Option<&Credential>> {
        match self {
            Credentials::None => Some(None),
            Credentials::Every(c) => Some(Some(c)),
            Credentials::EachOnce(pool) => pool.get(i).map(Some),
        }
    }
}

/// An RFC 9068 access token signed by `issuer`, bound to the DPoP key of thumbprint `jkt` if
/// given.
fn access_token(issuer: &Signer, jti: &str, jkt: Option<&str>) -> String {
    let now = unix_now();
    let mut claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "e2e", "client_id": "e2e", "scope": "read",
        "iat": now, "exp": now + TOKEN_LIFETIME_SECS, "jti": jti,
    });
    if let Some(jkt) = jkt {
        claims["cnf"] = json!({ "jkt": jkt });
    }
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": KID});
    issuer.sign(&header, &claims)
}

/// The issuer: signs access tokens, bearer or bound to a DPoP key.
pub struct Issuer {
    signer: Signer,
    /// Numbers every key and every batch of tokens, for unique `jti`s.
    serial: AtomicU64,
    cached: Credential,
}

impl Issuer {
    pub fn new() -> Issuer {
        let signer = Signer::generate();
        let token = access_token(&signer, "cached", None);
        Issuer {
            signer,
            serial: AtomicU64::new(0),
            cached: Credential {
                authorization: header_value(format!("Bearer {token}")),
                dpop: None,
            },
        }
    }

    /// The JWK Set the server trusts.
    pub fn jwks(&self) -> String {
        let mut jwk = self.signer.jwk.clone();
        jwk["kid"] = json!(KID);
        jwk["alg"] = json!("ES256");
        json!({ "keys": [jwk] }).to_string()
    }

    /// The credentials of a window of `n` requests.
    pub fn credentials(&self, scenario: Scenario, n: usize) -> Credentials {
        match scenario {
            Scenario::Unprotected => Credentials::None,
            Scenario::BearerCached => Credentials::Every(self.cached.clone()),
            Scenario::BearerCold => Credentials::EachOnce(self.pool(n, |serial, len| {
                (0..len)
                    .map(|i| {
                        let token = access_token(&self.signer, &format!("{serial:x}.{i:x}"), None);
                        Credential {
                            authorization: header_value(format!("Bearer {token}")),
                            dpop: None,
                        }
                    })
                    .collect()
            })),
            Scenario::DpopFresh => Credentials::EachOnce(self.pool(n, |serial, len| {
                let client = Signer::generate();
                let jkt = jwk_thumbprint(&client.jwk.to_string()).expect("a P-256 JWK");
                let token = access_token(&self.signer, &format!("{serial:x}"), Some(&jkt));
                let authorization = header_value(format!("DPoP {token}"));
                let (ath, iat) = (ath_for(&token), unix_now());
                let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": client.jwk});
                (0..len)
                    .map(|i| {
                        let claims = json!({
                            "jti": format!("{serial:x}.{i:x}"), "htm": "GET",
                            "htu": format!("{PUBLIC_URL}{PROTECTED}"), "iat": iat, "ath": ath,
                        });
                        Credential {
                            authorization: authorization.clone(),
                            dpop: Some(header_value(client.sign(&header, &claims))),
                        }
                    })
                    .collect()
            })),
        }
    }

    /// `n` credentials made on every core, in batches of at most [`PROOFS_PER_KEY`], each
    /// batch with its own serial number.
    fn pool(
        &self,
        n: usize,
        batch: impl Fn(u64, usize) -> Vec<Credential> + Sync,
    ) -> Vec<Credential> {
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
        let batches = n.div_ceil(PROOFS_PER_KEY);
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut made = Vec::new();
                        loop {
                            let b = next.fetch_add(1, Relaxed);
                            if b >= batches {
                                return made;
                            }
                            let len = PROOFS_PER_KEY.min(n - b * PROOFS_PER_KEY);
                            made.extend(batch(self.serial.fetch_add(1, Relaxed), len));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("a signing thread panicked"))
                .collect()
        })
    }
}
