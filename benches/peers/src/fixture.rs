//! The keys, access tokens and DPoP proofs every contender is given.
//!
//! All are signed here with aws-lc-rs (`EcdsaKeyPair`, ES256 = ECDSA P-256 with SHA-256, the
//! signature as the 64-byte `r || s` of RFC 7518 §3.4), before any timing starts.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// `iss` of every token, and the issuer each contender trusts.
pub const ISSUER: &str = "https://issuer.bench.example";
/// `aud` of every token, and the audience each contender demands.
pub const AUDIENCE: &str = "https://api.bench.example";
/// The public origin of the protected API, which DPoP proofs name in `htu`.
pub const ORIGIN: &str = "https://api.bench.example";
/// The `Host` header of every request.
pub const HOST: &str = "api.bench.example";
/// The protected route.
pub const PATH: &str = "/api/whoami";
/// `htu` of every proof (RFC 9449 §4.2): the origin and the path, no query.
pub const HTU: &str = "https://api.bench.example/api/whoami";
/// `kid` of the issuer key in its JWK Set.
pub const KID: &str = "bench-issuer-1";
/// How long the tokens are valid: far longer than any run.
const TOKEN_LIFETIME: i64 = 3600;

/// Unix time in seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An ES256 key pair.
pub struct SigningKey {
    pair: EcdsaKeyPair,
}

impl SigningKey {
    fn generate(rng: &SystemRandom) -> Self {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
            .expect("a P-256 key is generated");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("a generated PKCS#8 key parses");
        SigningKey { pair }
    }

    /// The public key as the uncompressed SEC1 point `04 || x || y` (65 bytes).
    pub fn point(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The public key as a JWK (RFC 7517, RFC 7518 §6.2.1) with only the required members.
    pub fn public_jwk(&self) -> Value {
        let (x, y) = self.point()[1..].split_at(32);
        json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)})
    }

    /// The JWK thumbprint (RFC 7638 §3): SHA-256 over the required members in lexicographic
    /// order, without whitespace, base64url-encoded. This is `cnf.jkt` (RFC 9449 §6.1).
    pub fn thumbprint(&self) -> String {
        let (x, y) = self.point()[1..].split_at(32);
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            b64(x),
            b64(y)
        );
        b64(&Sha256::digest(canonical.as_bytes()))
    }

    /// A JWS in compact serialization (RFC 7515 §7.1) over the JSON header and claims.
    fn sign(&self, rng: &SystemRandom, header: &Value, claims: &Value) -> String {
        let encode = |v: &Value| b64(&serde_json::to_vec(v).expect("JSON serializes"));
        let input = format!("{}.{}", encode(header), encode(claims));
        let signature = self.pair.sign(rng, input.as_bytes()).expect("ES256 signs");
        format!("{input}.{}", b64(signature.as_ref()))
    }
}

/// A compact JWS split for a bare signature check: the signing input and the raw signature.
pub struct SplitJws {
    /// `BASE64URL(header) || '.' || BASE64URL(payload)` (RFC 7515 §5.2 step 8).
    pub message: Vec<u8>,
    /// The 64-byte ES256 signature.
    pub signature: Vec<u8>,
}

impl SplitJws {
    pub fn new(jws: &str) -> Self {
        let (message, signature) = jws.rsplit_once('.').expect("a compact JWS has two dots");
        SplitJws {
            message: message.as_bytes().to_vec(),
            signature: URL_SAFE_NO_PAD
                .decode(signature)
                .expect("the signature is base64url"),
        }
    }
}

/// The issuer's key, the client's key (for DPoP), a stranger's key (for forgeries), and the
/// two tokens that are "seen before" in the table's rows.
pub struct Fixture {
    rng: SystemRandom,
    /// Signs every access token; the contenders trust it through [`Fixture::jwks`].
    pub issuer: SigningKey,
    /// The DPoP client's key: `cnf.jkt` of bound tokens, `jwk` of every proof.
    pub client: SigningKey,
    /// Signs the forged token and proof that every contender must refuse.
    stranger: SigningKey,
    /// Makes `jti`s unique across runs as well as within one.
    run_id: String,
    counter: Cell<u64>,
    /// An unbound access token, presented on every call of the "seen before" rows.
    pub seen_token: String,
    /// A DPoP-bound access token (`cnf.jkt` = the client key's thumbprint), presented on every
    /// call of the "DPoP-bound token seen before" row.
    pub bound_token: String,
}

impl Fixture {
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let mut run = [0u8; 6];
        rng.fill(&mut run).expect("random bytes");
        let mut fixture = Fixture {
            issuer: SigningKey::generate(&rng),
            client: SigningKey::generate(&rng),
            stranger: SigningKey::generate(&rng),
            rng,
            run_id: b64(&run),
            counter: Cell::new(0),
            seen_token: String::new(),
            bound_token: String::new(),
        };
        fixture.seen_token = fixture.access_token(false);
        fixture.bound_token = fixture.access_token(true);
        fixture
    }

    /// The issuer's JWK Set (RFC 7517 §5): one ES256 signing key with a `kid`.
    pub fn jwks(&self) -> String {
        let mut jwk = self.issuer.public_jwk();
        jwk["kid"] = json!(KID);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!("ES256");
        json!({ "keys": [jwk] }).to_string()
    }

    /// The issuer's JWK alone.
    pub fn issuer_jwk(&self) -> String {
        let jwks: Value = serde_json::from_str(&self.jwks()).expect("JSON");
        jwks["keys"][0].to_string()
    }

    fn unique(&self, kind: &str) -> String {
        let n = self.counter.get();
        self.counter.set(n + 1);
        format!("{kind}-{}-{n}", self.run_id)
    }

    fn token_claims(&self, bound: bool) -> Value {
        let now = now();
        let mut claims = json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-4711",
            "client_id": "bench-client",
            "scope": "read write",
            "iat": now,
            "exp": now + TOKEN_LIFETIME,
            "jti": self.unique("at"),
        });
        if bound {
            claims["cnf"] = json!({ "jkt": self.client.thumbprint() });
        }
        claims
    }

    /// A JWT access token as RFC 9068 §2 describes it (`typ: at+jwt`; `iss`, `aud`, `exp`,
    /// `iat`, `sub`, `client_id`, `jti`, `scope`), never issued before. `bound` adds
    /// `cnf.jkt`, binding it to the client key (RFC 9449 §6).
    pub fn access_token(&self, bound: bool) -> String {
        let header = json!({"typ": "at+jwt", "alg": "ES256", "kid": KID});
        self.issuer
            .sign(&self.rng, &header, &self.token_claims(bound))
    }

    /// A well-formed token with the issuer's `kid` but signed by another key.
    pub fn forged_token(&self, bound: bool) -> String {
        let header = json!({"typ": "at+jwt", "alg": "ES256", "kid": KID});
        self.stranger
            .sign(&self.rng, &header, &self.token_claims(bound))
    }

    fn proof_with(&self, signer: &SigningKey, token: &str) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.client.public_jwk()});
        let claims = json!({
            "jti": self.unique("proof"),
            "htm": "GET",
            "htu": HTU,
            "iat": now(),
            // RFC 9449 §4.2: the hash of the access token the proof accompanies.
            "ath": b64(&Sha256::digest(token.as_bytes())),
        });
        signer.sign(&self.rng, &header, &claims)
    }

    /// A DPoP proof (RFC 9449 §4.2) for `GET` [`HTU`] with `token`, never used before.
    pub fn proof(&self, token: &str) -> String {
        self.proof_with(&self.client, token)
    }

    /// A proof whose header carries the client's key but which another key signed.
    pub fn forged_proof(&self, token: &str) -> String {
        self.proof_with(&self.stranger, token)
    }
}

/// What one timed round presents: the same inputs to every contender, made before the round's
/// clock starts. Proofs are made per round so their `iat` stays fresh (RFC 9449 §11.1).
pub struct RoundInputs {
    /// Row 1: unbound access tokens, each never seen before.
    pub new_tokens: Vec<String>,
    /// Row 3: proofs for [`Fixture::bound_token`], each never used before.
    pub proofs: Vec<String>,
    /// Row 4: bound access tokens never seen before, each with its own fresh proof.
    pub new_bound: Vec<(String, String)>,
}

impl RoundInputs {
    pub fn new(fixture: &Fixture, batch: usize) -> Self {
        RoundInputs {
            new_tokens: (0..batch).map(|_| fixture.access_token(false)).collect(),
            proofs: (0..batch)
                .map(|_| fixture.proof(&fixture.bound_token))
                .collect(),
            new_bound: (0..batch)
                .map(|_| {
                    let token = fixture.access_token(true);
                    let proof = fixture.proof(&token);
                    (token, proof)
                })
                .collect(),
        }
    }
}
