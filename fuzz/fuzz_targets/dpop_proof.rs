//! The DPoP proof verifier (RFC 9449 §4.3): any string as the `DPoP` field of
//! `GET https://api.example/r` with the seed token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_oauth_guard::{ExpectedRequest, ProofPolicy, normalize_htu, verify_proof};

/// The seed proofs' time and token (`fuzz/seeds/dpop_proof` was made at this instant).
const NOW: i64 = 1_767_225_600;
const TOKEN: &str = "seed-access-token";

fuzz_target!(|data: &[u8]| {
    let Ok(proof) = std::str::from_utf8(data) else {
        return;
    };
    let expected = ExpectedRequest {
        method: "GET",
        htu: "https://api.example/r",
        access_token: Some(TOKEN),
    };
    let _ = verify_proof(proof, &expected, &ProofPolicy::default(), NOW, |h| {
        normalize_htu(h).ok()
    });
});
