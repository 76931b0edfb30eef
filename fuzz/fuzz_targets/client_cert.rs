//! The `Client-Cert` / `Client-Cert-Chain` parser (RFC 9440 §2, RFC 8941 byte sequences).
#![no_main]

mod headers;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let headers = headers::headers(data, &["client-cert", "client-cert-chain"]);
    tower_oauth_guard::fuzzing::client_cert(&headers);
});
