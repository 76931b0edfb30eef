//! The JWK Set parser (RFC 7517 §5): any document an issuer's `jwks_uri` might serve.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(keys) = tower_oauth_guard::KeySet::from_json(data) {
        assert!(!keys.is_empty() && keys.len() <= tower_oauth_guard::limits::MAX_KEYS);
    }
});
