use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, Ed25519KeyPair, RsaKeyPair,
};
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

use super::*;

const NOW: i64 = 1_700_000_000;
const METHOD: &str = "POST";
const HTU: &str = "https://api.example.com/resource";
const TOKEN: &str = "an-access-token";

/// RFC 9449 §5, Figure 5: the proof whose decoded form is Figure 4 (§4.2).
const RFC9449_TOKEN_REQUEST_PROOF: &str = concat!(
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik",
    "VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR",
    "nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE",
    "QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIj",
    "oiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwia",
    "WF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg",
    "4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg",
);

/// RFC 9449 §7.1, Figure 13: a resource request proof with `ath`.
const RFC9449_RESOURCE_PROOF: &str = concat!(
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik",
    "VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR",
    "nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE",
    "QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIj",
    "oiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0Z",
    "WRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNF",
    "c05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71E",
    "OptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA",
);

/// RFC 9449 §5 and §7.1: the access token the §7.1 proof is bound to.
const RFC9449_ACCESS_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";

/// Stand-in for RFC 3986 normalization: lowercase and drop query and
/// fragment; anything not https fails, to exercise that path.
fn normalize(uri: &str) -> Option<String> {
    let lower = uri.to_ascii_lowercase();
    if !lower.starts_with("https://") {
        return None;
    }
    let end = lower.find(['?', '#']).unwrap_or(lower.len());
    Some(lower[..end].to_owned())
}

struct TestKey {
    encoding: EncodingKey,
    jwk: Map<String, Value>,
    /// The same public key as jsonwebtoken models it.
    model: Jwk,
}

fn test_key(encoding: EncodingKey, alg: Algorithm) -> TestKey {
    crate::crypto::ensure_jwt_provider();
    let model = Jwk::from_encoding_key(&encoding, alg).unwrap();
    let Value::Object(jwk) = serde_json::to_value(&model).unwrap() else {
        panic!("a JWK serializes to an object");
    };
    TestKey {
        encoding,
        jwk,
        model,
    }
}

fn ec_key(signing: &'static EcdsaSigningAlgorithm, alg: Algorithm) -> TestKey {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &SystemRandom::new()).unwrap();
    test_key(EncodingKey::from_ec_der(pkcs8.as_ref()), alg)
}

/// The content of a DER TLV at the start of `input`, and what follows it.
fn der_content(input: &[u8]) -> (&[u8], &[u8]) {
    let first = usize::from(input[1]);
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let count = first & 0x7f;
        let len = input[2..2 + count]
            .iter()
            .fold(0, |len, byte| (len << 8) | usize::from(*byte));
        (len, 2 + count)
    };
    (&input[header..header + len], &input[header + len..])
}

/// jsonwebtoken signs RSA with a PKCS#1 key; aws-lc exports PKCS#8.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let (info, _) = der_content(pkcs8);
    let (_version, rest) = der_content(info);
    let (_algorithm, rest) = der_content(rest);
    let (private_key, _) = der_content(rest);
    private_key.to_vec()
}

fn es256() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING, Algorithm::ES256))
}

fn other_es256() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING, Algorithm::ES256))
}

fn es384() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| ec_key(&ECDSA_P384_SHA384_FIXED_SIGNING, Algorithm::ES384))
}

fn ed25519() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
        test_key(EncodingKey::from_ed_der(pkcs8.as_ref()), Algorithm::EdDSA)
    })
}

fn rsa() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs8 = pair.as_der().unwrap();
        let pkcs1 = pkcs1_from_pkcs8(pkcs8.as_ref());
        test_key(EncodingKey::from_rsa_der(&pkcs1), Algorithm::RS256)
    })
}

fn alg_name(alg: Algorithm) -> Value {
    serde_json::to_value(alg).unwrap()
}

fn header_for(key: &TestKey, alg: Algorithm) -> Map<String, Value> {
    let mut header = Map::new();
    header.insert("typ".into(), json!("dpop+jwt"));
    header.insert("alg".into(), alg_name(alg));
    header.insert("jwk".into(), Value::Object(key.jwk.clone()));
    header
}

fn valid_claims() -> Map<String, Value> {
    let Value::Object(claims) = json!({
        "jti": "ZTdhYjQyNmQtMjVhNS00",
        "htm": METHOD,
        "htu": HTU,
        "iat": NOW,
    }) else {
        unreachable!()
    };
    claims
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs arbitrary header and payload bytes, so tests can send anything.
fn sign_raw(key: &TestKey, alg: Algorithm, header: &[u8], payload: &[u8]) -> String {
    crate::crypto::ensure_jwt_provider();
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key.encoding, alg).unwrap();
    format!("{input}.{signature}")
}

fn mint(
    key: &TestKey,
    alg: Algorithm,
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
) -> String {
    sign_raw(
        key,
        alg,
        &serde_json::to_vec(header).unwrap(),
        &serde_json::to_vec(claims).unwrap(),
    )
}

/// An ES256 proof for the default request, after `edit` changes one thing.
fn proof_with(edit: impl FnOnce(&mut Map<String, Value>, &mut Map<String, Value>)) -> String {
    let mut header = header_for(es256(), Algorithm::ES256);
    let mut claims = valid_claims();
    edit(&mut header, &mut claims);
    mint(es256(), Algorithm::ES256, &header, &claims)
}

fn jwk_of(header: &mut Map<String, Value>) -> &mut Map<String, Value> {
    header.get_mut("jwk").unwrap().as_object_mut().unwrap()
}

fn request(access_token: Option<&str>) -> ExpectedRequest<'_> {
    ExpectedRequest {
        method: METHOD,
        htu: HTU,
        access_token,
    }
}

fn check(proof: &str) -> Result<VerifiedProof, ProofError> {
    verify_proof(
        proof,
        &request(None),
        &ProofPolicy::default(),
        NOW,
        normalize,
    )
}

fn check_with_token(proof: &str) -> Result<VerifiedProof, ProofError> {
    verify_proof(
        proof,
        &request(Some(TOKEN)),
        &ProofPolicy::default(),
        NOW,
        normalize,
    )
}

fn check_with_policy(proof: &str, policy: &ProofPolicy) -> Result<VerifiedProof, ProofError> {
    verify_proof(proof, &request(None), policy, NOW, normalize)
}

fn malformed(why: MalformedProof) -> Result<VerifiedProof, ProofError> {
    Err(ProofError::Malformed(why))
}

// RFC vectors.

#[test]
fn thumbprint_matches_rfc7638_example() {
    let jwk: Jwk = serde_json::from_value(json!({
        "kty": "RSA",
        "n": concat!(
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAt",
            "VT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn6",
            "4tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F",
            "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n9",
            "1CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINH",
            "aQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }))
    .unwrap();
    assert_eq!(
        thumbprint(&jwk).unwrap(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn thumbprint_matches_rfc8037_ed25519_example() {
    let jwk: Jwk = serde_json::from_value(json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    }))
    .unwrap();
    assert_eq!(
        thumbprint(&jwk).unwrap(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
}

#[test]
fn thumbprint_agrees_with_jsonwebtoken_for_ec_and_rsa_keys() {
    for key in [es256(), es384(), rsa()] {
        assert_eq!(
            thumbprint(&key.model).unwrap(),
            key.model.thumbprint(ThumbprintHash::SHA256).unwrap()
        );
    }
}

#[test]
fn thumbprint_refuses_symmetric_key() {
    let jwk: Jwk = serde_json::from_value(json!({"kty": "oct", "k": "c2VjcmV0"})).unwrap();
    assert_eq!(thumbprint(&jwk), Err(ProofError::PrivateKeyInJwk));
}

#[test]
fn ath_matches_rfc9449_example() {
    assert_eq!(
        ath_for(RFC9449_ACCESS_TOKEN),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    );
}

#[test]
fn accepts_rfc9449_token_request_proof() {
    let expected = ExpectedRequest {
        method: "POST",
        htu: "https://server.example.com/token",
        access_token: None,
    };
    let proof = verify_proof(
        RFC9449_TOKEN_REQUEST_PROOF,
        &expected,
        &ProofPolicy::default(),
        1_562_262_616,
        normalize,
    )
    .unwrap();
    assert_eq!(proof.jti, "-BwC3ESc6acc2lTc");
    assert_eq!(proof.iat, 1_562_262_616);
    assert_eq!(proof.htm, "POST");
    assert_eq!(proof.htu, "https://server.example.com/token");
    assert_eq!(proof.nonce, None);
    // RFC 9449 §6.1 gives this as the thumbprint of the §5 proof key.
    assert_eq!(proof.jkt, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
}

#[test]
fn accepts_rfc9449_resource_proof_with_its_access_token() {
    let expected = ExpectedRequest {
        method: "GET",
        htu: "https://resource.example.org/protectedresource",
        access_token: Some(RFC9449_ACCESS_TOKEN),
    };
    let proof = verify_proof(
        RFC9449_RESOURCE_PROOF,
        &expected,
        &ProofPolicy::default(),
        1_562_262_618,
        normalize,
    )
    .unwrap();
    assert_eq!(proof.jti, "e1j3V_bKic8-LAEB");
    assert_eq!(proof.jkt, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
}

#[test]
fn rejects_rfc9449_resource_proof_with_another_access_token() {
    let expected = ExpectedRequest {
        method: "GET",
        htu: "https://resource.example.org/protectedresource",
        access_token: Some("another-token"),
    };
    assert_eq!(
        verify_proof(
            RFC9449_RESOURCE_PROOF,
            &expected,
            &ProofPolicy::default(),
            1_562_262_618,
            normalize,
        ),
        Err(ProofError::AthMismatch)
    );
}

// One valid proof per algorithm family.

fn assert_accepts(key: &TestKey, alg: Algorithm) {
    let proof = mint(key, alg, &header_for(key, alg), &valid_claims());
    let verified = check(&proof).unwrap();
    assert_eq!(verified.jkt, thumbprint(&key.model).unwrap());
    assert_eq!(verified.jti, "ZTdhYjQyNmQtMjVhNS00");
    assert_eq!(verified.iat, NOW);
    assert_eq!(verified.htm, METHOD);
    assert_eq!(verified.htu, HTU);
}

#[test]
fn accepts_es256_proof() {
    assert_accepts(es256(), Algorithm::ES256);
}

#[test]
fn accepts_es384_proof() {
    assert_accepts(es384(), Algorithm::ES384);
}

#[test]
fn accepts_rs256_proof() {
    assert_accepts(rsa(), Algorithm::RS256);
}

#[test]
fn accepts_ps256_proof() {
    assert_accepts(rsa(), Algorithm::PS256);
}

#[test]
fn accepts_eddsa_proof() {
    assert_accepts(ed25519(), Algorithm::EdDSA);
}

// Size and structure.

/// A valid proof of exactly `len` bytes, padded with an extra claim.
fn proof_of_len(len: usize) -> String {
    let signature_len = 86; // ES256: 64 bytes, base64url.
    // Unpadded base64 skips some lengths; a kid of varying size shifts the header.
    for kid_len in 0..3 {
        let mut header_map = header_for(es256(), Algorithm::ES256);
        header_map.insert("kid".into(), json!("k".repeat(kid_len)));
        let header = serde_json::to_vec(&header_map).unwrap();
        for pad in 0..len {
            let mut claims = valid_claims();
            claims.insert("pad".into(), json!("p".repeat(pad)));
            let payload = serde_json::to_vec(&claims).unwrap();
            let total = b64(&header).len() + b64(&payload).len() + signature_len + 2;
            if total == len {
                return mint(es256(), Algorithm::ES256, &header_map, &claims);
            }
            if total > len {
                break;
            }
        }
    }
    panic!("no padding reaches {len} bytes");
}

#[test]
fn accepts_proof_of_exactly_max_len() {
    let proof = proof_of_len(MAX_DPOP_PROOF_LEN);
    assert_eq!(proof.len(), MAX_DPOP_PROOF_LEN);
    assert!(check(&proof).is_ok());
}

#[test]
fn rejects_proof_one_byte_over_max_len() {
    let proof = proof_of_len(MAX_DPOP_PROOF_LEN + 1);
    assert_eq!(proof.len(), MAX_DPOP_PROOF_LEN + 1);
    assert_eq!(check(&proof), Err(ProofError::TooLarge));
}

#[test]
fn rejects_proof_with_two_parts() {
    let proof = proof_with(|_, _| {});
    let two = proof.rsplit_once('.').unwrap().0;
    assert_eq!(check(two), malformed(MalformedProof::WrongPartCount));
}

#[test]
fn rejects_proof_with_four_parts() {
    let proof = format!("{}.AAAA", proof_with(|_, _| {}));
    assert_eq!(check(&proof), malformed(MalformedProof::WrongPartCount));
}

#[test]
fn rejects_proof_with_empty_payload_part() {
    let proof = proof_with(|_, _| {});
    let mut parts = proof.split('.');
    let (header, _, signature) = (parts.next(), parts.next(), parts.next());
    let proof = format!("{}..{}", header.unwrap(), signature.unwrap());
    assert_eq!(check(&proof), malformed(MalformedProof::EmptyPart));
}

#[test]
fn rejects_header_that_is_not_base64url() {
    let proof = proof_with(|_, _| {});
    let (_, rest) = proof.split_once('.').unwrap();
    let proof = format!("eyJ0eXAi+/==.{rest}");
    assert_eq!(check(&proof), malformed(MalformedProof::HeaderNotBase64url));
}

#[test]
fn rejects_payload_that_is_not_base64url() {
    let proof = proof_with(|_, _| {});
    let mut parts = proof.split('.');
    let (header, _, signature) = (parts.next(), parts.next(), parts.next());
    let proof = format!("{}.e30=.{}", header.unwrap(), signature.unwrap());
    assert_eq!(
        check(&proof),
        malformed(MalformedProof::PayloadNotBase64url)
    );
}

#[test]
fn rejects_signature_that_is_not_base64url() {
    let proof = proof_with(|_, _| {});
    let (input, _) = proof.rsplit_once('.').unwrap();
    let proof = format!("{input}.c2ln+bmF0dXJl");
    assert_eq!(
        check(&proof),
        malformed(MalformedProof::SignatureNotBase64url)
    );
}

#[test]
fn rejects_header_that_is_not_a_json_object() {
    let header = br#"["typ","dpop+jwt"]"#;
    let payload = serde_json::to_vec(&valid_claims()).unwrap();
    let proof = sign_raw(es256(), Algorithm::ES256, header, &payload);
    assert_eq!(
        check(&proof),
        malformed(MalformedProof::HeaderNotJsonObject)
    );
}

// typ and alg.

#[test]
fn rejects_proof_typed_as_plain_jwt() {
    let proof = proof_with(|header, _| {
        header.insert("typ".into(), json!("JWT"));
    });
    assert_eq!(check(&proof), Err(ProofError::WrongType));
}

#[test]
fn rejects_typ_spelled_with_media_type_prefix_or_other_case() {
    for typ in ["application/dpop+jwt", "DPoP+JWT"] {
        let proof = proof_with(|header, _| {
            header.insert("typ".into(), json!(typ));
        });
        assert_eq!(check(&proof), Err(ProofError::WrongType), "{typ}");
    }
}

#[test]
fn rejects_proof_without_typ() {
    let proof = proof_with(|header, _| {
        header.remove("typ");
    });
    assert_eq!(check(&proof), Err(ProofError::WrongType));
}

#[test]
fn checks_typ_before_alg() {
    let proof = proof_with(|header, _| {
        header.insert("typ".into(), json!("JWT"));
        header.insert("alg".into(), json!("none"));
    });
    assert_eq!(check(&proof), Err(ProofError::WrongType));
}

#[test]
fn rejects_alg_none() {
    let header = json!({"typ": "dpop+jwt", "alg": "none", "jwk": es256().jwk});
    let payload = serde_json::to_vec(&valid_claims()).unwrap();
    let proof = format!(
        "{}.{}.AAAA",
        b64(&serde_json::to_vec(&header).unwrap()),
        b64(&payload)
    );
    assert_eq!(check(&proof), Err(ProofError::AlgorithmNotAllowed));
}

#[test]
fn rejects_proof_without_alg() {
    let proof = proof_with(|header, _| {
        header.remove("alg");
    });
    assert_eq!(check(&proof), Err(ProofError::AlgorithmNotAllowed));
}

#[test]
fn rejects_alg_unknown_to_jsonwebtoken() {
    let proof = proof_with(|header, _| {
        header.insert("alg".into(), json!("ES512"));
    });
    assert_eq!(check(&proof), Err(ProofError::AlgorithmNotAllowed));
}

#[test]
fn rejects_alg_missing_from_policy() {
    let policy = ProofPolicy {
        algorithms: vec![crate::Algorithm::ES384],
        ..ProofPolicy::default()
    };
    let proof = proof_with(|_, _| {});
    assert_eq!(
        check_with_policy(&proof, &policy),
        Err(ProofError::AlgorithmNotAllowed)
    );
}

#[test]
fn rejects_hmac_alg_whatever_the_policy() {
    // A policy cannot even list HMAC: `crate::Algorithm` has no such variant.
    let policy = ProofPolicy::default();
    let secret = TestKey {
        encoding: EncodingKey::from_secret(b"shared secret"),
        jwk: es256().jwk.clone(),
        model: es256().model.clone(),
    };
    let header = header_for(&secret, Algorithm::HS256);
    let proof = mint(&secret, Algorithm::HS256, &header, &valid_claims());
    assert_eq!(
        check_with_policy(&proof, &policy),
        Err(ProofError::AlgorithmNotAllowed)
    );
}

#[test]
fn rejects_critical_header() {
    let proof = proof_with(|header, _| {
        header.insert("crit".into(), json!(["exp"]));
    });
    assert_eq!(check(&proof), Err(ProofError::UnsupportedCriticalHeader));
}

// jwk.

#[test]
fn rejects_proof_without_jwk() {
    let proof = proof_with(|header, _| {
        header.remove("jwk");
    });
    assert_eq!(check(&proof), Err(ProofError::MissingJwk));
}

#[test]
fn rejects_proof_with_private_key_in_jwk() {
    for member in PRIVATE_JWK_MEMBERS {
        let proof = proof_with(|header, _| {
            jwk_of(header).insert(member.into(), json!("AQAB"));
        });
        assert_eq!(check(&proof), Err(ProofError::PrivateKeyInJwk), "{member}");
    }
}

#[test]
fn rejects_jwk_whose_type_or_curve_does_not_fit_alg() {
    let cases = [
        (Algorithm::ES256, es384()),
        (Algorithm::ES384, es256()),
        (Algorithm::ES256, rsa()),
        (Algorithm::RS256, es256()),
        (Algorithm::PS256, ed25519()),
        (Algorithm::EdDSA, es256()),
    ];
    for (alg, key) in cases {
        // Signed correctly; only the advertised key is of the wrong kind.
        let signer = match alg {
            Algorithm::ES256 => es256(),
            Algorithm::ES384 => es384(),
            Algorithm::EdDSA => ed25519(),
            _ => rsa(),
        };
        let mut header = header_for(signer, alg);
        header.insert("jwk".into(), Value::Object(key.jwk.clone()));
        let proof = mint(signer, alg, &header, &valid_claims());
        assert_eq!(
            check(&proof),
            Err(ProofError::JwkAlgorithmMismatch),
            "{alg:?}"
        );
    }
}

#[test]
fn rejects_jwk_without_kty() {
    let proof = proof_with(|header, _| {
        jwk_of(header).remove("kty");
    });
    assert_eq!(check(&proof), Err(ProofError::JwkAlgorithmMismatch));
}

#[test]
fn rejects_jwk_that_is_not_an_object() {
    let proof = proof_with(|header, _| {
        header.insert("jwk".into(), json!("a key"));
    });
    assert_eq!(check(&proof), Err(ProofError::InvalidJwk));
}

#[test]
fn rejects_ec_jwk_with_short_coordinate() {
    let proof = proof_with(|header, _| {
        jwk_of(header).insert("x".into(), json!(b64(&[7; 31])));
    });
    assert_eq!(check(&proof), Err(ProofError::InvalidJwk));
}

#[test]
fn rejects_ec_jwk_with_coordinate_not_base64url() {
    let proof = proof_with(|header, _| {
        let jwk = jwk_of(header);
        let x = jwk["x"].as_str().unwrap().replace(['-', '_'], "+");
        jwk.insert("x".into(), json!(format!("{x}+")));
    });
    assert_eq!(check(&proof), Err(ProofError::InvalidJwk));
}

#[test]
fn rejects_ed25519_jwk_with_short_key() {
    let mut header = header_for(ed25519(), Algorithm::EdDSA);
    jwk_of(&mut header).insert("x".into(), json!(b64(&[7; 31])));
    let proof = mint(ed25519(), Algorithm::EdDSA, &header, &valid_claims());
    assert_eq!(check(&proof), Err(ProofError::InvalidJwk));
}

fn rsa_proof_with_jwk_member(name: &str, value: Value) -> String {
    let mut header = header_for(rsa(), Algorithm::RS256);
    jwk_of(&mut header).insert(name.into(), value);
    mint(rsa(), Algorithm::RS256, &header, &valid_claims())
}

#[test]
fn rejects_rsa_jwk_under_2048_bits() {
    let mut modulus = vec![0xC5; 128];
    modulus[127] |= 1;
    let proof = rsa_proof_with_jwk_member("n", json!(b64(&modulus)));
    assert_eq!(check(&proof), Err(ProofError::InvalidJwk));
}

#[test]
fn rejects_rsa_jwk_with_zero_padded_modulus() {
    let n = rsa().jwk["n"].as_str().unwrap();
    let mut modulus = vec![0];
    modulus.extend(URL_SAFE_NO_PAD.decode(n).unwrap());
    let proof = rsa_proof_with_jwk_member("n", json!(b64(&modulus)));
    assert_eq!(check(&proof), Err(ProofError::InvalidJwk));
}

#[test]
fn rejects_rsa_jwk_with_even_exponent() {
    let proof = rsa_proof_with_jwk_member("e", json!(b64(&[1, 0, 0])));
    assert_eq!(check(&proof), Err(ProofError::InvalidJwk));
}

// Signature.

#[test]
fn rejects_proof_signed_by_another_key() {
    let header = header_for(other_es256(), Algorithm::ES256);
    let proof = mint(es256(), Algorithm::ES256, &header, &valid_claims());
    assert_eq!(check(&proof), Err(ProofError::InvalidSignature));
}

#[test]
fn rejects_proof_whose_payload_was_altered_after_signing() {
    let proof = proof_with(|_, claims| {
        claims.insert("htm".into(), json!("GET"));
    });
    let mut parts = proof.split('.');
    let (header, _, signature) = (parts.next(), parts.next(), parts.next());
    let payload = b64(&serde_json::to_vec(&valid_claims()).unwrap());
    let proof = format!("{}.{payload}.{}", header.unwrap(), signature.unwrap());
    assert_eq!(check(&proof), Err(ProofError::InvalidSignature));
}

#[test]
fn rejects_signed_payload_that_is_not_a_json_object() {
    let header = serde_json::to_vec(&header_for(es256(), Algorithm::ES256)).unwrap();
    let proof = sign_raw(es256(), Algorithm::ES256, &header, b"not json");
    assert_eq!(
        check(&proof),
        malformed(MalformedProof::PayloadNotJsonObject)
    );
}

// Claims.

#[test]
fn rejects_proof_missing_a_required_claim() {
    for name in ["jti", "htm", "htu", "iat"] {
        let proof = proof_with(|_, claims| {
            claims.remove(name);
        });
        assert_eq!(check(&proof), Err(ProofError::MissingClaim(name)));
    }
}

#[test]
fn rejects_claims_of_the_wrong_json_type() {
    for (name, value) in [
        ("jti", json!(42)),
        ("htm", json!(["POST"])),
        ("htu", json!({"href": HTU})),
        ("iat", json!("1700000000")),
        ("iat", json!(true)),
        ("iat", json!(null)),
        ("nonce", json!(7)),
    ] {
        let proof = proof_with(|_, claims| {
            claims.insert(name.into(), value.clone());
        });
        assert_eq!(
            check(&proof),
            Err(ProofError::InvalidClaim(name)),
            "{value}"
        );
    }
}

#[test]
fn accepts_a_fractional_iat_as_rfc_7519_numeric_date() {
    // Clients with floating-point clocks send `iat` with a fraction (RFC 7519 §2).
    for (iat, floor) in [
        (json!(NOW as f64 + 0.5), NOW),
        (json!(NOW as f64 - 0.25), NOW - 1),
        (json!(NOW as f64 + 4.999), NOW + 4),
    ] {
        let proof = proof_with(|_, claims| {
            claims.insert("iat".into(), iat.clone());
        });
        assert_eq!(check(&proof).map(|v| v.iat), Ok(floor), "{iat}");
    }
    // Out of range either way: refused by the window, never a panic or a wrap-around.
    for (iat, err) in [
        (json!(1.0e300), ProofError::IatInFuture),
        (json!(-1.0e300), ProofError::IatTooOld),
        (json!(u64::MAX), ProofError::IatInFuture),
        (json!(NOW as f64 + 5.5 + 1.0), ProofError::IatInFuture),
    ] {
        let proof = proof_with(|_, claims| {
            claims.insert("iat".into(), iat.clone());
        });
        assert_eq!(check(&proof), Err(err), "{iat}");
    }
}

#[test]
fn rejects_empty_jti() {
    let proof = proof_with(|_, claims| {
        claims.insert("jti".into(), json!(""));
    });
    assert_eq!(check(&proof), Err(ProofError::InvalidClaim("jti")));
}

#[test]
fn accepts_jti_of_max_len_counted_in_characters() {
    let proof = proof_with(|_, claims| {
        claims.insert("jti".into(), json!("é".repeat(MAX_JTI_LEN)));
    });
    assert_eq!(check(&proof).unwrap().jti.chars().count(), MAX_JTI_LEN);
}

#[test]
fn rejects_jti_over_max_len() {
    let proof = proof_with(|_, claims| {
        claims.insert("jti".into(), json!("j".repeat(MAX_JTI_LEN + 1)));
    });
    assert_eq!(check(&proof), Err(ProofError::InvalidClaim("jti")));
}

#[test]
fn tolerates_extra_claims_without_checking_them() {
    let proof = proof_with(|_, claims| {
        claims.insert("exp".into(), json!(NOW - 3600));
        claims.insert("nbf".into(), json!(NOW + 3600));
        claims.insert("custom".into(), json!({"nested": [1, 2]}));
    });
    assert!(check(&proof).is_ok());
}

#[test]
fn returns_nonce_without_checking_it() {
    let proof = proof_with(|_, claims| {
        claims.insert("nonce".into(), json!("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
    });
    assert_eq!(
        check(&proof).unwrap().nonce.as_deref(),
        Some("eyJ7S_zG.eyJH0-Z.HX4w-7v")
    );
}

// htm and htu.

#[test]
fn rejects_htm_in_other_case() {
    let proof = proof_with(|_, claims| {
        claims.insert("htm".into(), json!("post"));
    });
    assert_eq!(check(&proof), Err(ProofError::HtmMismatch));
}

#[test]
fn rejects_htm_of_another_method() {
    let proof = proof_with(|_, claims| {
        claims.insert("htm".into(), json!("GET"));
    });
    assert_eq!(check(&proof), Err(ProofError::HtmMismatch));
}

#[test]
fn compares_htu_after_normalizing_the_claim() {
    let claimed = "HTTPS://API.example.com/resource?page=2#top";
    let proof = proof_with(|_, claims| {
        claims.insert("htu".into(), json!(claimed));
    });
    assert_eq!(check(&proof).unwrap().htu, claimed);
}

#[test]
fn rejects_htu_of_another_resource() {
    let proof = proof_with(|_, claims| {
        claims.insert("htu".into(), json!("https://api.example.com/other"));
    });
    assert_eq!(check(&proof), Err(ProofError::HtuMismatch));
}

#[test]
fn rejects_htu_that_cannot_be_normalized() {
    let proof = proof_with(|_, claims| {
        claims.insert("htu".into(), json!("http://api.example.com/resource"));
    });
    assert_eq!(check(&proof), Err(ProofError::HtuMismatch));
}

// iat window.

fn proof_issued_at(iat: i64) -> String {
    proof_with(|_, claims| {
        claims.insert("iat".into(), json!(iat));
    })
}

#[test]
fn accepts_iat_at_both_edges_of_the_window() {
    assert!(check(&proof_issued_at(NOW - 60)).is_ok());
    assert!(check(&proof_issued_at(NOW + 5)).is_ok());
}

#[test]
fn rejects_iat_one_second_older_than_max_age() {
    assert_eq!(
        check(&proof_issued_at(NOW - 61)),
        Err(ProofError::IatTooOld)
    );
}

#[test]
fn rejects_iat_one_second_beyond_max_future() {
    assert_eq!(
        check(&proof_issued_at(NOW + 6)),
        Err(ProofError::IatInFuture)
    );
}

#[test]
fn leeway_widens_both_edges_of_the_window() {
    let policy = ProofPolicy {
        leeway: Duration::from_secs(10),
        ..ProofPolicy::default()
    };
    assert!(check_with_policy(&proof_issued_at(NOW - 70), &policy).is_ok());
    assert!(check_with_policy(&proof_issued_at(NOW + 15), &policy).is_ok());
    assert_eq!(
        check_with_policy(&proof_issued_at(NOW - 71), &policy),
        Err(ProofError::IatTooOld)
    );
    assert_eq!(
        check_with_policy(&proof_issued_at(NOW + 16), &policy),
        Err(ProofError::IatInFuture)
    );
}

#[test]
fn huge_policy_durations_saturate_instead_of_overflowing() {
    let policy = ProofPolicy {
        max_age: Duration::MAX,
        max_future: Duration::MAX,
        leeway: Duration::MAX,
        ..ProofPolicy::default()
    };
    assert!(check_with_policy(&proof_issued_at(0), &policy).is_ok());
    assert!(check_with_policy(&proof_issued_at(i64::MAX), &policy).is_ok());
    // Still a window: NOW - i64::MAX saturates above i64::MIN.
    assert_eq!(
        check_with_policy(&proof_issued_at(i64::MIN), &policy),
        Err(ProofError::IatTooOld)
    );
}

// ath.

#[test]
fn accepts_ath_of_the_presented_token() {
    let proof = proof_with(|_, claims| {
        claims.insert("ath".into(), json!(ath_for(TOKEN)));
    });
    assert!(check_with_token(&proof).is_ok());
}

#[test]
fn rejects_missing_ath_when_a_token_is_presented() {
    let proof = proof_with(|_, _| {});
    assert_eq!(check_with_token(&proof), Err(ProofError::MissingAth));
}

#[test]
fn rejects_ath_of_another_token() {
    let proof = proof_with(|_, claims| {
        claims.insert("ath".into(), json!(ath_for("another-token")));
    });
    assert_eq!(check_with_token(&proof), Err(ProofError::AthMismatch));
}

#[test]
fn rejects_ath_that_is_not_a_string() {
    let proof = proof_with(|_, claims| {
        claims.insert("ath".into(), json!(["hash"]));
    });
    assert_eq!(
        check_with_token(&proof),
        Err(ProofError::InvalidClaim("ath"))
    );
}

#[test]
fn ignores_ath_when_no_token_is_presented() {
    let proof = proof_with(|_, claims| {
        claims.insert("ath".into(), json!(["not even a string"]));
    });
    assert!(check(&proof).is_ok());
}

// jkt comparison.

#[test]
fn jkt_matches_only_the_identical_thumbprint() {
    let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    assert!(jkt_matches(jkt, jkt));
    assert!(!jkt_matches(
        jkt,
        "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4J"
    ));
    assert!(!jkt_matches(jkt, &jkt[..42]));
    assert!(!jkt_matches("", jkt));
}

/// RFC 7515 §5.2: the header must be a valid JSON object, members the checks skip included.
/// Before the signature those members are not built; after it, the header is parsed whole.
#[test]
fn rejects_a_signed_header_whose_skipped_member_is_not_valid_json() {
    let header = serde_json::to_string(&header_for(es256(), Algorithm::ES256)).unwrap();
    let payload = serde_json::to_vec(&valid_claims()).unwrap();
    for (member, why) in [
        (r#""z":1e400"#, "a number out of range"),
        (r#""z":"\ud800""#, "a lone surrogate"),
        ("\"z\":\"\u{0}\"", "a control character"),
    ] {
        let bad = format!("{{{member},{}", &header[1..]);
        let proof = sign_raw(es256(), Algorithm::ES256, bad.as_bytes(), &payload);
        assert_eq!(
            check(&proof),
            malformed(MalformedProof::HeaderNotJsonObject),
            "{why}"
        );
    }
    // Valid JSON in a skipped member is fine.
    let good = format!("{{\"z\":[1,{{\"a\":null}}],{}", &header[1..]);
    let proof = sign_raw(es256(), Algorithm::ES256, good.as_bytes(), &payload);
    assert!(check(&proof).is_ok());
}

// The typed claims reader against the map-based one it replaced, and the proof-key cache
// under more than one policy.

/// How a claim was read: what the checks then do with it.
#[derive(Debug, PartialEq)]
enum Read<T> {
    Missing,
    Invalid,
    Value(T),
}

/// The six claims the checks read, as read.
#[derive(Debug, PartialEq)]
struct ClaimsRead {
    jti: Read<String>,
    htm: Read<String>,
    htu: Read<String>,
    iat: Read<i64>,
    ath: Read<String>,
    nonce: Read<String>,
}

/// The map-based reader this one replaced: the six members built by `Members`, then
/// classified as `take_string` and `numeric_date` did.
fn old_claims(payload: &[u8]) -> Option<ClaimsRead> {
    let claims = Members {
        keep: &["jti", "htm", "htu", "iat", "ath", "nonce"],
        nested: None,
    }
    .parse(payload)?;
    let text = |name: &str| match claims.get(name) {
        None => Read::Missing,
        Some(Value::String(s)) => Read::Value(s.clone()),
        Some(_) => Read::Invalid,
    };
    let iat = match claims.get("iat") {
        None => Read::Missing,
        Some(value) => match value.as_i64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        }) {
            Some(iat) => Read::Value(iat),
            None => Read::Invalid,
        },
    };
    Some(ClaimsRead {
        jti: text("jti"),
        htm: text("htm"),
        htu: text("htu"),
        iat,
        ath: text("ath"),
        nonce: text("nonce"),
    })
}

fn new_claims(payload: &[u8]) -> Option<ClaimsRead> {
    let claims: ProofClaims<'_> = serde_json::from_slice(payload).ok()?;
    fn read<T, U>(claim: Claim<T>, f: impl FnOnce(T) -> U) -> Read<U> {
        match claim {
            Claim::Absent => Read::Missing,
            Claim::OtherType => Read::Invalid,
            Claim::Value(v) => Read::Value(f(v)),
        }
    }
    let text = |c: Claim<Cow<'_, str>>| read(c, Cow::into_owned);
    Some(ClaimsRead {
        jti: text(claims.jti),
        htm: text(claims.htm),
        htu: text(claims.htu),
        iat: read(claims.iat, |i| i),
        ath: text(claims.ath),
        nonce: text(claims.nonce),
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

    /// Same verdict and the same claims as the map-based reader, on hostile payloads.
    #[test]
    fn the_typed_proof_claims_agree_with_the_map_based_reader(
        payload in crate::json::hostile::document(&["jti", "htm", "htu", "iat", "ath", "nonce"])
    ) {
        proptest::prop_assert_eq!(
            new_claims(&payload),
            old_claims(&payload),
            "{}",
            String::from_utf8_lossy(&payload)
        );
    }
}

#[test]
fn proof_iat_edges_and_repeats_agree_with_the_map_based_reader() {
    for iat in [
        "1e308",
        "-1e308",
        "-0.0",
        "-0.5",
        "0.5",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "1.5e19",
        "-1e19",
        "5e-324",
        "-5e-324",
        "1700000000.9999999999",
        "1e400",
    ] {
        let payload = format!(r#"{{"jti":"j","htm":"POST","htu":"h","iat":{iat}}}"#);
        assert_eq!(
            new_claims(payload.as_bytes()),
            old_claims(payload.as_bytes()),
            "{iat}"
        );
    }
    for payload in [
        r#"{"jti":"a","jti":1}"#,
        r#"{"jti":1,"jti":"a"}"#,
        r#"{"j\u0074i":"a","jti":"b"}"#,
        r#"{"htm":"POST","ht\u006d":"GET"}"#,
        r#"{"nonce":"n","nonce":null}"#,
        r#"{"ath":"x","ath":["x"]}"#,
        r#"{"iat":1,"iat":"1"}"#,
        r#"{"iat":"1","iat":1}"#,
        r#"{"x":{"$serde_json::private::RawValue":"nope"}}"#,
    ] {
        assert_eq!(
            new_claims(payload.as_bytes()),
            old_claims(payload.as_bytes()),
            "{payload}"
        );
    }
}

fn matching(
    proof: &str,
    policy: &ProofPolicy,
    keys: &ProofKeys<ProofKey>,
) -> Result<VerifiedProof, ProofError> {
    verify_proof_matching(
        proof,
        METHOD,
        |htu| normalize(htu).as_deref() == Some(HTU),
        None,
        policy,
        NOW,
        Some(keys),
    )
    .map(|(verified, _)| verified)
}

/// One cache of proof keys behind two policies (a `Dpop` cloned and given another
/// `proof_policy` shares its cache): a header verified under the policy that allows its
/// algorithm is refused under the one that does not, the second time as the first.
#[test]
fn a_cached_header_is_held_to_each_policys_algorithms() {
    let keys = ProofKeys::new(1 << 20);
    let lax = ProofPolicy::default();
    let strict = ProofPolicy {
        algorithms: vec![crate::Algorithm::ES384],
        ..ProofPolicy::default()
    };
    let proof = proof_with(|_, _| {});
    let header = proof.split('.').next().unwrap();
    assert_eq!(
        matching(&proof, &strict, &keys),
        Err(ProofError::AlgorithmNotAllowed)
    );
    assert!(
        keys.get(header).is_none(),
        "a refused proof's key is not kept"
    );
    assert!(matching(&proof, &lax, &keys).is_ok());
    assert!(keys.get(header).is_some());
    for _ in 0..2 {
        assert_eq!(
            matching(&proof, &strict, &keys),
            Err(ProofError::AlgorithmNotAllowed)
        );
    }
    assert!(matching(&proof, &lax, &keys).is_ok());
}

/// A cached header names its key; a proof that sends that header but is signed by another
/// key fails the signature, and its payload is never read; the cached key stays the one
/// that signed first.
#[test]
fn a_cached_header_does_not_vouch_for_another_keys_signature() {
    let keys = ProofKeys::new(1 << 20);
    let policy = ProofPolicy::default();
    let header = serde_json::to_vec(&header_for(es256(), Algorithm::ES256)).unwrap();
    let payload = serde_json::to_vec(&valid_claims()).unwrap();
    let genuine = sign_raw(es256(), Algorithm::ES256, &header, &payload);
    assert!(matching(&genuine, &policy, &keys).is_ok());
    let forged = sign_raw(other_es256(), Algorithm::ES256, &header, &payload);
    assert_eq!(genuine.split('.').next(), forged.split('.').next());
    assert_eq!(
        matching(&forged, &policy, &keys),
        Err(ProofError::InvalidSignature)
    );
    // Its payload invalid too: still the signature that refuses it.
    let garbage = sign_raw(other_es256(), Algorithm::ES256, &header, b"\"\\ud800");
    assert_eq!(
        matching(&garbage, &policy, &keys),
        Err(ProofError::InvalidSignature)
    );
    let header_text = genuine.split('.').next().unwrap();
    assert_eq!(keys.get(header_text).unwrap().jkt, {
        let (_, key) =
            verify_proof_matching(&genuine, METHOD, |_| true, None, &policy, NOW, None).unwrap();
        key.jkt.clone()
    });
}

/// Two header texts that differ only where base64url has spare bits (or in a member's
/// order) are two entries, each checked in full: neither is served the other's key, and a
/// header whose decoded JSON would be refused is refused however similar its text.
#[test]
fn headers_that_decode_alike_do_not_share_an_entry() {
    let keys = ProofKeys::new(1 << 20);
    let policy = ProofPolicy::default();
    let good = header_for(es256(), Algorithm::ES256);
    let payload = serde_json::to_vec(&valid_claims()).unwrap();
    let text = serde_json::to_vec(&good).unwrap();
    let proof = sign_raw(es256(), Algorithm::ES256, &text, &payload);
    assert!(matching(&proof, &policy, &keys).is_ok());
    // The same members plus `crit`: a different text, refused though its key is cached.
    let mut with_crit = good.clone();
    with_crit.insert("crit".into(), json!(["x"]));
    let crit_proof = sign_raw(
        es256(),
        Algorithm::ES256,
        &serde_json::to_vec(&with_crit).unwrap(),
        &payload,
    );
    assert_eq!(
        matching(&crit_proof, &policy, &keys),
        Err(ProofError::UnsupportedCriticalHeader)
    );
    // Whitespace after the object: another text, checked and cached on its own.
    let spaced = [&text[..], b" "].concat();
    let spaced_proof = sign_raw(es256(), Algorithm::ES256, &spaced, &payload);
    assert!(matching(&spaced_proof, &policy, &keys).is_ok());
    assert!(keys.get(spaced_proof.split('.').next().unwrap()).is_some());
    // A header text with its last character's spare bits set: whatever the decoder makes of
    // it, it is not served the cached entry of the canonical text.
    let canonical = proof.split('.').next().unwrap();
    let last = canonical.chars().last().unwrap();
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let pos = ALPHABET.find(last).unwrap();
    let spare = match canonical.len() % 4 {
        2 => 0b1111,
        3 => 0b11,
        _ => 0,
    };
    if spare != 0 {
        let tweaked_last = ALPHABET.as_bytes()[pos | spare] as char;
        let tweaked = format!("{}{tweaked_last}", &canonical[..canonical.len() - 1]);
        let rest = &proof[canonical.len()..];
        let other = format!("{tweaked}{rest}");
        assert!(keys.get(&tweaked).is_none());
        // The signature covers the header text: a changed text never verifies.
        assert!(matching(&other, &policy, &keys).is_err());
        assert!(keys.get(&tweaked).is_none());
    }
}
