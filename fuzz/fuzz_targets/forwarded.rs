//! The public origin of a request from a trusted proxy's `Forwarded` (RFC 7239 §4) or
//! `X-Forwarded-*` fields, or from `Host`: whatever they hold, the origin is one the
//! configuration allows, or the request is refused.
#![no_main]

mod headers;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tower_oauth_guard::{ForwardedHeaders, PublicUri, RemoteAddr};

static ORIGINS: LazyLock<[PublicUri; 3]> = LazyLock::new(|| {
    let proxy = [Ipv4Addr::LOCALHOST.into()];
    [
        PublicUri::forwarded_by(proxy, ForwardedHeaders::Forwarded),
        PublicUri::forwarded_by(proxy, ForwardedHeaders::XForwardedWithPrefix),
        PublicUri::DangerousHostHeader,
    ]
});

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    let names = [
        "forwarded",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-prefix",
        "host",
    ];
    let mut request = http::Request::get("/r")
        .extension(RemoteAddr(SocketAddr::from((Ipv4Addr::LOCALHOST, 4000))))
        .body(())
        .expect("a request");
    *request.headers_mut() = headers::headers(rest, &names);
    let (parts, ()) = request.into_parts();
    let public = &ORIGINS[usize::from(*which) % ORIGINS.len()];
    if let Ok(htus) = tower_oauth_guard::fuzzing::request_origin(&parts, public) {
        for htu in htus {
            // An origin the guard compares with must itself be in normal form.
            assert_eq!(
                tower_oauth_guard::normalize_htu(&htu).as_deref(),
                Ok(htu.as_str())
            );
        }
    }
});
