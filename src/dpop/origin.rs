//! The public origin a proof's `htu` must name (RFC 9449 §4.3 check 9): configured base URLs,
//! forwarding headers (RFC 7239) from listed proxies, or, when dangerously asked for, the
//! request's own `Host`.

use std::borrow::Cow;
use std::net::IpAddr;

use http::HeaderMap;
use http::header::{AsHeaderName, FORWARDED, HOST};

use super::htu::{self, BaseUrl, HtuError, Scheme, normalize_htu};
use crate::http_syntax;
use crate::limits::{
    MAX_FORWARDED_HEADER_LEN, MAX_HOST_HEADER_LEN, MAX_HTU_LEN, MAX_PREFIX_HEADER_LEN,
};
use crate::transport;

/// Where the guard learns the public origin (scheme, host, port, and mount point) that a
/// proof's `htu` is held to (RFC 9449 §4.3 check 9). There is no default: a guard that
/// accepts DPoP must be told, because the request alone cannot be trusted to say it.
///
/// ```
/// use tower_oauth_guard::{BaseUrl, ForwardedHeaders, PublicUri};
///
/// // Fixed public URLs: nothing the client sends can change them.
/// let fixed = PublicUri::Fixed(vec![
///     BaseUrl::parse("https://api.example")?,
///     BaseUrl::parse("https://api.example.org/v1")?,
/// ]);
/// // Or what the listed proxies say, in the one header family they set.
/// let proxied = PublicUri::forwarded_by(["10.0.0.5".parse()?], ForwardedHeaders::Forwarded);
/// # let _ = (fixed, proxied);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicUri {
    /// The API's public base URLs. A proof's `htu` must be one of them followed by the
    /// request's path; no request header is consulted, so nothing a client sends can change
    /// the origin. Several URLs serve an API with several public names.
    Fixed(Vec<BaseUrl>),
    /// The forwarding headers `headers` names, honoured only on connections from these proxy
    /// addresses (the TCP peer, from [`serve_tls`](crate::serve_tls), axum's
    /// `ConnectInfo<SocketAddr>` or tonic); the other family is never read. Of a list, the last
    /// element counts: the one the trusted proxy itself added. The proxy must send both the
    /// protocol and the host; DPoP requests without them, or from any other peer, are refused
    /// (`400 invalid_request`).
    TrustForwarded {
        /// The proxies' addresses.
        proxies: Vec<IpAddr>,
        /// Which headers they set.
        headers: ForwardedHeaders,
    },
    /// **Dangerous**: the scheme of the connection (`https` on TLS this server terminates)
    /// and the authority from the `Host` header (HTTP/2 `:authority`), as the client sent
    /// them. A client can then aim a proof captured at another API that accepts the same
    /// token at this one by naming that API's host. Only for servers whose every public name
    /// is one you accept and that clients reach directly; prefer [`PublicUri::Fixed`].
    DangerousHostHeader,
}

/// The forwarding headers a trusted proxy sets; it must overwrite (or append to) them on every
/// request, so that the last element is its own.
///
/// ```
/// use tower_oauth_guard::{ForwardedHeaders, PublicUri};
///
/// // Behind a proxy that sets X-Forwarded-Proto, -Host and -Prefix (and overwrites them):
/// let public = PublicUri::forwarded_by(["10.0.0.5".parse()?], ForwardedHeaders::XForwardedWithPrefix);
/// # let _ = public;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeaders {
    /// `Forwarded` (RFC 7239 §4): `proto` and `host` of its last element.
    Forwarded,
    /// `X-Forwarded-Proto` and `X-Forwarded-Host`, their last values.
    XForwarded,
    /// As [`ForwardedHeaders::XForwarded`], plus the mount point in `X-Forwarded-Prefix`,
    /// which the proxy must then set or clear on every request.
    XForwardedWithPrefix,
}

impl PublicUri {
    /// One public base URL.
    pub fn fixed(base: BaseUrl) -> Self {
        PublicUri::Fixed(vec![base])
    }

    /// `headers`, from these proxies only.
    pub fn forwarded_by(
        proxies: impl IntoIterator<Item = IpAddr>,
        headers: ForwardedHeaders,
    ) -> Self {
        PublicUri::TrustForwarded {
            proxies: proxies.into_iter().collect(),
            headers,
        }
    }

    /// Whether the configuration names at least one URL or proxy.
    pub(crate) fn is_usable(&self) -> bool {
        match self {
            PublicUri::Fixed(bases) => !bases.is_empty(),
            PublicUri::TrustForwarded { proxies, .. } => !proxies.is_empty(),
            PublicUri::DangerousHostHeader => true,
        }
    }
}

/// The `htu` values a DPoP proof for this request may carry (RFC 9449 §4.3 check 9): one per
/// configured public base URL, or the one the trusted proxy or the request names.
pub(crate) enum RequestHtus<'a> {
    /// Each configured base URL followed by the request's path, which normalization would
    /// leave as it is: compared in place, nothing built.
    Bases { bases: &'a [BaseUrl], path: &'a str },
    /// The URIs, normalized.
    Normalized(Vec<String>),
}

impl<'a> RequestHtus<'a> {
    pub(crate) fn of(
        parts: &'a http::request::Parts,
        public: &'a PublicUri,
    ) -> Result<Self, HtuError> {
        if let PublicUri::Fixed(bases) = public {
            let path = request_path(parts);
            if htu::is_normal_path(path) {
                if bases.iter().any(|b| b.len_with(path) > MAX_HTU_LEN) {
                    return Err(HtuError::TooLong);
                }
                return Ok(RequestHtus::Bases { bases, path });
            }
        }
        request_htus(parts, public).map(RequestHtus::Normalized)
    }

    /// Whether a proof's `htu` claim names one of these URIs (RFC 9449 §4.3 check 9, RFC
    /// 3986 §6.2.2–§6.2.3). A claim sent in normal form, as clients normally send it, is
    /// found as it is: normalization is idempotent, so it could only normalize to itself.
    pub(crate) fn named_by(&self, claimed: &str) -> bool {
        let found = |uri: &str| match self {
            RequestHtus::Bases { bases, path } => bases.iter().any(|b| b.is_followed_by(uri, path)),
            RequestHtus::Normalized(htus) => htus.iter().any(|h| h == uri),
        };
        found(claimed) || normalize_htu(claimed).is_ok_and(|c| found(&c))
    }
}

/// The normalized `htu` values a DPoP proof for this request may carry (RFC 9449 §4.3 check
/// 9): one per configured public base URL, or the one the trusted proxy or the request names.
pub fn request_htus(
    parts: &http::request::Parts,
    public: &PublicUri,
) -> Result<Vec<String>, HtuError> {
    let path = match request_path(parts) {
        "" => "/",
        p if p.starts_with('/') => p,
        _ => return Err(HtuError::InvalidRequestTarget),
    };
    let tls = transport::is_tls(parts);
    match public {
        PublicUri::Fixed(bases) => bases
            .iter()
            .map(|b| {
                normalize_htu(&format!(
                    "{}://{}{}{path}",
                    b.scheme(),
                    b.authority(),
                    b.path_prefix()
                ))
            })
            .collect(),
        PublicUri::TrustForwarded { proxies, headers } => {
            let peer = transport::remote_ip(parts).ok_or(HtuError::UntrustedPeer)?;
            if !proxies.contains(&peer) {
                return Err(HtuError::UntrustedPeer);
            }
            let (scheme, authority, prefix) = forwarded_view(parts, *headers)?;
            normalize_htu(&format!("{scheme}://{authority}{prefix}{path}")).map(|h| vec![h])
        }
        PublicUri::DangerousHostHeader => {
            let scheme = connection_scheme(tls);
            let authority = request_authority(parts)?;
            normalize_htu(&format!("{scheme}://{authority}{path}")).map(|h| vec![h])
        }
    }
}

fn request_path(parts: &http::request::Parts) -> &str {
    #[cfg(feature = "axum")]
    if let Some(original) = parts.extensions.get::<axum::extract::OriginalUri>() {
        return original.0.path();
    }
    parts.uri.path()
}

/// The scheme the server itself saw: `https` exactly when it terminated TLS. A client's
/// `:scheme` or absolute-form target never decides it.
fn connection_scheme(connection_is_tls: bool) -> &'static str {
    if connection_is_tls { "https" } else { "http" }
}

/// The request's authority: the one `Host` header, or HTTP/2's `:authority`. An absolute-form
/// target (`GET https://other.example/x HTTP/1.1`) never changes it: if its authority is not
/// the `Host` header's, the request is refused as ambiguous.
fn request_authority(parts: &http::request::Parts) -> Result<&str, HtuError> {
    let mut hosts = parts.headers.get_all(HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(HtuError::AmbiguousHost),
        (Some(host), None) => {
            if host.len() > MAX_HOST_HEADER_LEN {
                return Err(HtuError::HeaderTooLong);
            }
            Some(host.to_str().map_err(|_| HtuError::InvalidHeaderValue)?)
        }
        (None, None) => None,
    };
    let target = parts.uri.authority().map(http::uri::Authority::as_str);
    let authority = match (host, target) {
        (Some(h), Some(t)) if !h.eq_ignore_ascii_case(t) => return Err(HtuError::AmbiguousHost),
        (Some(h), _) => h,
        // HTTP/2 carries the authority as `:authority`; HTTP/1.1 must send `Host`
        // (RFC 9112 §3.2), so an absolute-form target alone is not enough there.
        (None, Some(t)) if parts.version >= http::Version::HTTP_2 => t,
        _ => return Err(HtuError::MissingHost),
    };
    check_header_authority(authority)?;
    Ok(authority)
}

fn check_header_authority(authority: &str) -> Result<(), HtuError> {
    if authority.is_empty() {
        return Err(HtuError::MissingHost);
    }
    if authority.len() > MAX_HOST_HEADER_LEN {
        return Err(HtuError::HeaderTooLong);
    }
    if authority.contains('@') {
        return Err(HtuError::UserinfoNotAllowed);
    }
    if authority.contains(['/', '?', '#', '\\']) {
        return Err(HtuError::InvalidHost);
    }
    Ok(())
}

/// The last line of a header, bounded: a trusted proxy that appends a line adds the last one.
fn last_line(
    headers: &HeaderMap,
    name: impl AsHeaderName,
    max_len: usize,
) -> Result<Option<&str>, HtuError> {
    let Some(value) = headers.get_all(name).iter().next_back() else {
        return Ok(None);
    };
    if value.len() > max_len {
        return Err(HtuError::HeaderTooLong);
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| HtuError::InvalidHeaderValue)
}

/// The last value of a comma-separated header list: the one the nearest proxy added.
fn last_list_value<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
    max_len: usize,
) -> Result<Option<&'h str>, HtuError> {
    Ok(last_line(headers, name, max_len)?.map(|line| {
        line.rsplit(',')
            .next()
            .unwrap_or(line)
            .trim_matches([' ', '\t'])
    }))
}

fn forwarded_proto(proto: &str) -> Result<&'static str, HtuError> {
    Scheme::parse(proto)
        .map(Scheme::as_str)
        .ok_or(HtuError::InvalidForwardedProto)
}

type View<'a> = (Cow<'a, str>, Cow<'a, str>, Cow<'a, str>);

fn forwarded_view(
    parts: &http::request::Parts,
    family: ForwardedHeaders,
) -> Result<View<'_>, HtuError> {
    let headers = &parts.headers;
    // Only the family the proxy sets is read: a header of the other family may come from the
    // client, passed through untouched.
    let (proto, host): (Option<Cow<'_, str>>, Option<Cow<'_, str>>) = match family {
        ForwardedHeaders::Forwarded => {
            match last_line(headers, FORWARDED, MAX_FORWARDED_HEADER_LEN)? {
                Some(line) => {
                    let element = last_forwarded_element(line)?;
                    (element.proto.map(Cow::Owned), element.host.map(Cow::Owned))
                }
                None => (None, None),
            }
        }
        ForwardedHeaders::XForwarded | ForwardedHeaders::XForwardedWithPrefix => (
            last_list_value(headers, "x-forwarded-proto", MAX_FORWARDED_HEADER_LEN)?
                .map(Cow::Borrowed),
            last_list_value(headers, "x-forwarded-host", MAX_HOST_HEADER_LEN)?.map(Cow::Borrowed),
        ),
    };
    // Both are required: falling back to the `Host` header or the connection would hand the
    // choice to the client again.
    let (Some(proto), Some(host)) = (proto, host) else {
        return Err(HtuError::MissingForwarded);
    };
    let scheme: Cow<'_, str> = forwarded_proto(&proto)?.into();
    check_header_authority(&host)?;
    let prefix = match family {
        ForwardedHeaders::XForwardedWithPrefix => {
            match last_list_value(headers, "x-forwarded-prefix", MAX_PREFIX_HEADER_LEN)? {
                None | Some("") => "",
                Some(p) if p.starts_with('/') && !p.contains(['?', '#']) => p.trim_end_matches('/'),
                Some(_) => return Err(HtuError::InvalidForwardedPrefix),
            }
        }
        ForwardedHeaders::Forwarded | ForwardedHeaders::XForwarded => "",
    };
    Ok((scheme, host, prefix.into()))
}

#[derive(Debug, Default, PartialEq, Eq)]
struct ForwardedElement {
    proto: Option<String>,
    host: Option<String>,
}

/// The last element of a `Forwarded` list (RFC 7239 §4): the one the nearest proxy added.
/// Every element is parsed, so a malformed one anywhere refuses the request; parameters may
/// not repeat in an element.
fn last_forwarded_element(line: &str) -> Result<ForwardedElement, HtuError> {
    let mut it = line.bytes().peekable();
    let mut last = ForwardedElement::default();
    let mut element = ForwardedElement::default();
    let mut seen: Vec<String> = Vec::new();
    loop {
        http_syntax::skip_ows(&mut it);
        match it.peek() {
            None => {
                // Empty list elements are allowed and skipped (RFC 9110 §5.6.1).
                return Ok(if seen.is_empty() { last } else { element });
            }
            Some(b',') => {
                it.next();
                if !seen.is_empty() {
                    last = std::mem::take(&mut element);
                    seen.clear();
                }
                continue;
            }
            Some(b';') => {
                it.next();
                continue;
            }
            Some(_) => {}
        }
        let name = http_syntax::read_token(&mut it)
            .ok_or(HtuError::InvalidForwarded)?
            .to_ascii_lowercase();
        if it.next() != Some(b'=') {
            return Err(HtuError::InvalidForwarded);
        }
        let value = if it.next_if_eq(&b'"').is_some() {
            http_syntax::read_quoted(&mut it).ok_or(HtuError::InvalidForwarded)?
        } else {
            http_syntax::read_token(&mut it).ok_or(HtuError::InvalidForwarded)?
        };
        if seen.contains(&name) {
            return Err(HtuError::InvalidForwarded);
        }
        match name.as_str() {
            "proto" => element.proto = Some(value),
            "host" => element.host = Some(value),
            _ => {}
        }
        seen.push(name);
        http_syntax::skip_ows(&mut it);
        if !matches!(it.peek(), None | Some(b',' | b';')) {
            return Err(HtuError::InvalidForwarded);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    const SPOOFED: [(&str, &str); 5] = [
        ("host", "api.example.com"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-prefix", "/evil"),
        ("forwarded", "proto=http;host=evil.example"),
    ];

    const PROXY: &str = "10.0.0.5:40000";

    fn from(mut p: http::request::Parts, peer: &str, tls: bool) -> http::request::Parts {
        p.extensions
            .insert(crate::transport::RemoteAddr(peer.parse().unwrap()));
        if tls {
            p.extensions.insert(crate::transport::TlsConnection);
        }
        p
    }

    fn forwarded() -> PublicUri {
        by(ForwardedHeaders::Forwarded)
    }

    fn by(headers: ForwardedHeaders) -> PublicUri {
        PublicUri::forwarded_by(["10.0.0.5".parse().unwrap()], headers)
    }

    fn one(p: &http::request::Parts, public: &PublicUri) -> Result<String, HtuError> {
        let mut htus = request_htus(p, public)?;
        assert_eq!(htus.len(), 1);
        Ok(htus.remove(0))
    }

    #[test]
    fn host_header_mode_uses_host_and_connection_tls() {
        let p = parts("/Res%7e?x=1", &[("host", "API.example.com:443")]);
        let tls = from(p, "192.0.2.1:1", true);
        assert_eq!(
            one(&tls, &PublicUri::DangerousHostHeader).as_deref(),
            Ok("https://api.example.com/Res~")
        );
        let plain = parts("/Res%7e?x=1", &[("host", "API.example.com:443")]);
        assert_eq!(
            one(&plain, &PublicUri::DangerousHostHeader).as_deref(),
            Ok("http://api.example.com:443/Res~")
        );
    }

    #[test]
    fn an_absolute_form_target_never_changes_the_origin() {
        // HTTP/1.1 `GET https://other.example/x` with `Host: api.example.com`.
        let p = parts("https://other.example/r", &[("host", "api.example.com")]);
        assert_eq!(
            request_htus(&p, &PublicUri::DangerousHostHeader),
            Err(HtuError::AmbiguousHost)
        );
        // Without `Host`, HTTP/1.1 names no authority of its own.
        let alone = parts("https://other.example/r", &[]);
        assert_eq!(
            request_htus(&alone, &PublicUri::DangerousHostHeader),
            Err(HtuError::MissingHost)
        );
        // The same authority in both is fine; its scheme is still the connection's.
        let same = parts("https://api.example.com/r", &[("host", "API.example.com")]);
        assert_eq!(
            one(&same, &PublicUri::DangerousHostHeader).as_deref(),
            Ok("http://api.example.com/r")
        );
        // With fixed URLs the target's authority plays no part at all.
        let base = PublicUri::fixed(BaseUrl::parse("https://a.example").unwrap());
        assert_eq!(one(&p, &base).as_deref(), Ok("https://a.example/r"));
    }

    #[test]
    fn http2_authority_counts_and_its_scheme_does_not() {
        let mut p = parts("http://h2.example/r", &[]);
        p.version = http::Version::HTTP_2;
        let p = from(p, "192.0.2.1:1", true);
        assert_eq!(
            one(&p, &PublicUri::DangerousHostHeader).as_deref(),
            Ok("https://h2.example/r")
        );
    }

    #[cfg(feature = "axum")]
    #[test]
    fn path_comes_from_axum_original_uri_inside_nested_routers() {
        let mut p = parts("/inner", &[("host", "api.example.com")]);
        p.extensions
            .insert(axum::extract::OriginalUri(http::Uri::from_static(
                "/v1/inner?q=1",
            )));
        let base = PublicUri::fixed(BaseUrl::parse("https://api.example.com").unwrap());
        assert_eq!(
            one(&p, &base).as_deref(),
            Ok("https://api.example.com/v1/inner")
        );
    }

    #[test]
    fn host_header_mode_ignores_forwarding_headers() {
        let p = from(parts("/r", &SPOOFED), PROXY, true);
        assert_eq!(
            one(&p, &PublicUri::DangerousHostHeader).as_deref(),
            Ok("https://api.example.com/r")
        );
    }

    #[test]
    fn host_header_mode_rejects_missing_duplicate_or_malformed_host() {
        let cases: [(&[(&str, &str)], HtuError); 4] = [
            (&[], HtuError::MissingHost),
            (
                &[("host", "a.example"), ("host", "b.example")],
                HtuError::AmbiguousHost,
            ),
            (&[("host", "a.example/admin?")], HtuError::InvalidHost),
            (&[("host", "evil@a.example")], HtuError::UserinfoNotAllowed),
        ];
        for (headers, expected) in cases {
            let p = parts("/r", headers);
            assert_eq!(
                request_htus(&p, &PublicUri::DangerousHostHeader),
                Err(expected),
                "{headers:?}"
            );
        }
        let huge = "a".repeat(MAX_HOST_HEADER_LEN + 1);
        let long = parts("/r", &[("host", huge.as_str())]);
        assert_eq!(
            request_htus(&long, &PublicUri::DangerousHostHeader),
            Err(HtuError::HeaderTooLong)
        );
    }

    #[test]
    fn rejects_non_origin_form_request_target() {
        let p = parts("*", &[("host", "a.example")]);
        assert_eq!(
            request_htus(&p, &PublicUri::DangerousHostHeader),
            Err(HtuError::InvalidRequestTarget)
        );
    }

    #[test]
    fn fixed_prepends_each_base_and_ignores_spoofed_headers() {
        let public = PublicUri::Fixed(vec![
            BaseUrl::parse("https://public.example/api/").unwrap(),
            BaseUrl::parse("https://other.example:8443").unwrap(),
        ]);
        let p = from(parts("/users/1?x", &SPOOFED), PROXY, false);
        assert_eq!(
            request_htus(&p, &public),
            Ok(vec![
                "https://public.example/api/users/1".to_owned(),
                "https://other.example:8443/users/1".to_owned()
            ])
        );
        // Fixed does not even need a Host header.
        let bare = parts("/", &[]);
        assert_eq!(
            request_htus(&bare, &public).unwrap()[0],
            "https://public.example/api/"
        );
    }

    #[test]
    fn forwarded_headers_count_only_from_a_listed_proxy() {
        let headers = [
            ("host", "internal:8080"),
            ("forwarded", "proto=https;host=public.example"),
        ];
        let direct = from(parts("/r", &headers), "192.0.2.7:5555", false);
        assert_eq!(
            request_htus(&direct, &forwarded()),
            Err(HtuError::UntrustedPeer)
        );
        let unknown_peer = parts("/r", &headers);
        assert_eq!(
            request_htus(&unknown_peer, &forwarded()),
            Err(HtuError::UntrustedPeer)
        );
        let proxied = from(parts("/r", &headers), PROXY, false);
        assert_eq!(
            one(&proxied, &forwarded()).as_deref(),
            Ok("https://public.example/r")
        );
    }

    #[test]
    fn trust_forwarded_takes_the_element_the_proxy_added() {
        // A client's own element comes first; the trusted proxy appends the last one.
        let p = from(
            parts(
                "/r",
                &[
                    ("host", "internal:8080"),
                    ("forwarded", "proto=http;host=evil.example"),
                    (
                        "forwarded",
                        "for=192.0.2.60;Proto=HTTPS;host=\"evil2.example\", for=x;proto=https;host=\"Public.Example:443\"",
                    ),
                    // The other family, and a prefix, are not read in this mode.
                    ("x-forwarded-host", "ignored.example"),
                    ("x-forwarded-prefix", "/evil"),
                ],
            ),
            PROXY,
            false,
        );
        assert_eq!(
            one(&p, &forwarded()).as_deref(),
            Ok("https://public.example/r")
        );
    }

    #[test]
    fn x_forwarded_mode_reads_only_x_forwarded_headers() {
        let headers = [
            ("host", "internal:8080"),
            // A client's own `Forwarded`, passed through by a proxy that sets X-Forwarded-*.
            ("forwarded", "proto=https;host=other.example"),
            ("x-forwarded-proto", "http, https"),
            ("x-forwarded-host", "evil.example, public.example:8443"),
            ("x-forwarded-prefix", "/api"),
        ];
        let p = from(parts("/r", &headers), PROXY, false);
        assert_eq!(
            one(&p, &by(ForwardedHeaders::XForwarded)).as_deref(),
            Ok("https://public.example:8443/r")
        );
        assert_eq!(
            one(&p, &by(ForwardedHeaders::XForwardedWithPrefix)).as_deref(),
            Ok("https://public.example:8443/api/r")
        );
    }

    #[test]
    fn a_trusted_proxy_must_send_both_protocol_and_host() {
        // No fallback to the `Host` header (the client's, passed through) or the connection.
        let cases: [(&[(&str, &str)], ForwardedHeaders); 5] = [
            (&[("host", "internal:8080")], ForwardedHeaders::Forwarded),
            (
                &[("host", "h"), ("forwarded", "proto=https")],
                ForwardedHeaders::Forwarded,
            ),
            (
                &[("host", "h"), ("forwarded", "host=a.example, for=1.2.3.4")],
                ForwardedHeaders::Forwarded,
            ),
            (
                &[("host", "h"), ("x-forwarded-proto", "https")],
                ForwardedHeaders::XForwarded,
            ),
            (
                &[("host", "h"), ("forwarded", "proto=https;host=a.example")],
                ForwardedHeaders::XForwardedWithPrefix,
            ),
        ];
        for (headers, family) in cases {
            let p = from(parts("/r", headers), PROXY, true);
            assert_eq!(
                request_htus(&p, &by(family)),
                Err(HtuError::MissingForwarded),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn trust_forwarded_rejects_invalid_values() {
        use ForwardedHeaders::{Forwarded, XForwarded, XForwardedWithPrefix};
        type Case<'a> = (&'a [(&'a str, &'a str)], ForwardedHeaders, HtuError);
        let cases: [Case<'_>; 10] = [
            (
                &[("x-forwarded-proto", "ftp"), ("x-forwarded-host", "h")],
                XForwarded,
                HtuError::InvalidForwardedProto,
            ),
            (
                &[("forwarded", "proto=gopher;host=h")],
                Forwarded,
                HtuError::InvalidForwardedProto,
            ),
            (
                &[
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "evil/x"),
                ],
                XForwarded,
                HtuError::InvalidHost,
            ),
            (
                &[("x-forwarded-proto", "https"), ("x-forwarded-host", "")],
                XForwarded,
                HtuError::MissingHost,
            ),
            (
                &[("forwarded", "host=a;host=b")],
                Forwarded,
                HtuError::InvalidForwarded,
            ),
            (
                &[("forwarded", "host=\"unterminated")],
                Forwarded,
                HtuError::InvalidForwarded,
            ),
            (
                // A port makes the value a non-token, so it must be quoted.
                &[("forwarded", "proto=https;host=a:8080")],
                Forwarded,
                HtuError::InvalidForwarded,
            ),
            (
                // A malformed element anywhere in the list refuses the request.
                &[("forwarded", "host=a b, proto=https;host=c")],
                Forwarded,
                HtuError::InvalidForwarded,
            ),
            (
                &[
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "h"),
                    ("x-forwarded-prefix", "svc"),
                ],
                XForwardedWithPrefix,
                HtuError::InvalidForwardedPrefix,
            ),
            (
                &[
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "h"),
                    ("x-forwarded-prefix", "/svc?x=1"),
                ],
                XForwardedWithPrefix,
                HtuError::InvalidForwardedPrefix,
            ),
        ];
        for (headers, family, expected) in cases {
            let p = from(parts("/r", headers), PROXY, true);
            assert_eq!(request_htus(&p, &by(family)), Err(expected), "{headers:?}");
        }
    }

    #[test]
    fn trust_forwarded_bounds_header_size() {
        let huge = format!("proto=https;x={}", "a".repeat(MAX_FORWARDED_HEADER_LEN));
        let p = from(
            parts("/r", &[("host", "h"), ("forwarded", huge.as_str())]),
            PROXY,
            true,
        );
        assert_eq!(request_htus(&p, &forwarded()), Err(HtuError::HeaderTooLong));
    }

    #[test]
    fn forwarded_parser_skips_empty_elements_and_unescapes_quotes() {
        assert_eq!(
            last_forwarded_element("host=c, ;for=x ; host=\"a\\.b\";proto=https , ,"),
            Ok(ForwardedElement {
                proto: Some("https".into()),
                host: Some("a.b".into()),
            })
        );
        assert_eq!(
            last_forwarded_element("for"),
            Err(HtuError::InvalidForwarded)
        );
        assert_eq!(
            last_forwarded_element("for=a b"),
            Err(HtuError::InvalidForwarded)
        );
    }
}
