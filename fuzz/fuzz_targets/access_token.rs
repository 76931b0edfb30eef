//! The access-token validator with static keys (RFC 9068 §4), through the guard: any bytes as
//! a bearer token. Only a token the seed issuer signed may pass.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tower_oauth_guard::{FixedClock, Issuer, KeySet, OAuthGuard, Policy, Presence};

/// The seed tokens' time (`fuzz/seeds/access_token` was made at this instant).
const NOW: i64 = 1_767_225_600;
/// The public key the seed tokens are signed with.
const JWKS: &str = include_str!("../seeds/issuer-jwks.json");

static GUARD: LazyLock<(tokio::runtime::Runtime, OAuthGuard)> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let keys = KeySet::from_json(JWKS.as_bytes()).expect("the seed issuer's keys");
    let guard = runtime
        .block_on(
            OAuthGuard::builder()
                .trust(
                    Issuer::new("https://issuer.example")
                        .audience("https://api.example")
                        .jwks(keys),
                )
                .clock(FixedClock(NOW))
                .no_token_cache()
                .build(),
        )
        .expect("a guard");
    (runtime, guard)
});

fuzz_target!(|data: &[u8]| {
    let (runtime, guard) = &*GUARD;
    let mut value = b"Bearer ".to_vec();
    value.extend_from_slice(data);
    let Ok(request) = http::Request::get("/r")
        .header("authorization", value)
        .body(())
    else {
        return;
    };
    let (mut parts, ()) = request.into_parts();
    let _ = runtime.block_on(guard.check(&mut parts, &Policy::default(), Presence::Required));
});
