//! The credential extractor (RFC 6750 §2.1, RFC 9449 §4.1, §7.1): `Authorization` and `DPoP`
//! fields, repeated or not.
#![no_main]

mod headers;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let headers = headers::headers(data, &["authorization", "dpop"]);
    tower_oauth_guard::fuzzing::credentials(&headers);
});
