//! The `htu` of a DPoP proof and the URI it is checked against
//! (RFC 9449 §4.2, §4.3 check 9; RFC 3986 §6.2.2, §6.2.3).
//!
//! Both sides of the comparison go through [`normalize_htu`], so two URIs
//! compare equal exactly when their normalized strings are equal.
//!
//! Dot segments (`.` and `..`, RFC 3986 §6.2.2.3) are deliberately *not*
//! removed: whether `/a/../b` reaches the handler for `/b` depends on the
//! server's router, and treating them as equal could let a proof minted for
//! one resource be accepted for another. Keeping them makes the comparison
//! stricter, never looser.

use std::borrow::Cow;
use std::fmt;
use std::net::Ipv6Addr;

use http::header::{AsHeaderName, FORWARDED, HOST};
use http::{HeaderMap, Uri};

/// Longest `htu` accepted; real endpoint URIs are far shorter and this bounds work on attacker input.
pub const MAX_HTU_LEN: usize = 2048;
/// Longest Host / X-Forwarded-Host value read: DNS names stop at 253 octets, plus port and IPv6 brackets.
const MAX_HOST_HEADER_LEN: usize = 512;
/// Longest `Forwarded` / `X-Forwarded-Proto` line read: enough for several proxy hops of for/by/host/proto.
const MAX_FORWARDED_HEADER_LEN: usize = 4096;
/// Longest `X-Forwarded-Prefix` line read: a mount point, not a full path.
const MAX_PREFIX_HEADER_LEN: usize = 1024;

/// Why a URI could not serve as, or be compared with, an `htu` (RFC 9449 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HtuError {
    /// The URI or the URI assembled from the request exceeds [`MAX_HTU_LEN`].
    TooLong,
    /// A byte is not allowed where it appears (control, space, non-ASCII, or outside the component's grammar).
    InvalidCharacter,
    /// The URI has no scheme, so it is not absolute (RFC 3986 §4.3).
    NotAbsolute,
    /// The scheme is not `http` or `https` (RFC 9449 §4.2 `htu` is an HTTP URI).
    UnsupportedScheme,
    /// There is no authority, or its host is empty (RFC 9110 §4.2.1 forbids an empty host).
    MissingHost,
    /// The request carries more than one `Host` header (RFC 9112 §3.2).
    AmbiguousHost,
    /// The authority contains `userinfo@`, which RFC 9110 §4.2.4 deprecates for http(s).
    UserinfoNotAllowed,
    /// The host is neither a reg-name nor a valid IPv6 literal (RFC 3986 §3.2.2).
    InvalidHost,
    /// The port is not a decimal number in 0..=65535 (RFC 3986 §3.2.3).
    InvalidPort,
    /// A `%` is not followed by two hex digits (RFC 3986 §2.1).
    InvalidPercentEncoding,
    /// A base URL carries a query, which cannot be prefixed to request paths.
    QueryNotAllowed,
    /// A base URL carries a fragment, which cannot be prefixed to request paths.
    FragmentNotAllowed,
    /// The request target is not origin-form (it does not start with `/`), e.g. `*`.
    InvalidRequestTarget,
    /// A header consulted for the public URI exceeds its size bound.
    HeaderTooLong,
    /// A header consulted for the public URI is not visible ASCII.
    InvalidHeaderValue,
    /// The `Forwarded` header does not follow the RFC 7239 §4 grammar.
    InvalidForwarded,
    /// A forwarded protocol is not `http` or `https` (RFC 7239 §5.4).
    InvalidForwardedProto,
    /// `X-Forwarded-Prefix` is not an absolute path without query or fragment.
    InvalidForwardedPrefix,
}

impl fmt::Display for HtuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLong => "URI is too long",
            Self::InvalidCharacter => "URI contains a character not allowed there",
            Self::NotAbsolute => "URI is not absolute",
            Self::UnsupportedScheme => "URI scheme is neither http nor https",
            Self::MissingHost => "URI has no host",
            Self::AmbiguousHost => "request has more than one Host header",
            Self::UserinfoNotAllowed => "URI authority contains userinfo",
            Self::InvalidHost => "URI host is invalid",
            Self::InvalidPort => "URI port is invalid",
            Self::InvalidPercentEncoding => "URI contains an invalid percent escape",
            Self::QueryNotAllowed => "base URL must not have a query",
            Self::FragmentNotAllowed => "base URL must not have a fragment",
            Self::InvalidRequestTarget => "request target is not an absolute path",
            Self::HeaderTooLong => "forwarding or Host header is too long",
            Self::InvalidHeaderValue => "forwarding or Host header is not visible ASCII",
            Self::InvalidForwarded => "Forwarded header is malformed",
            Self::InvalidForwardedProto => "forwarded protocol is neither http nor https",
            Self::InvalidForwardedPrefix => "X-Forwarded-Prefix is not an absolute path",
        })
    }
}

impl std::error::Error for HtuError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    /// RFC 9110 §4.2.1 / §4.2.2; omitted after normalization (RFC 3986 §6.2.3).
    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("http") {
            Some(Self::Http)
        } else if s.eq_ignore_ascii_case("https") {
            Some(Self::Https)
        } else {
            None
        }
    }
}

/// An absolute http(s) URI split into normalized parts.
struct Normalized {
    scheme: Scheme,
    /// Lowercased host plus `:port` unless it is the scheme's default.
    authority: String,
    /// Percent-normalized path, never empty.
    path: String,
}

impl Normalized {
    fn into_string(self) -> String {
        format!("{}://{}{}", self.scheme.as_str(), self.authority, self.path)
    }
}

/// `unreserved` (RFC 3986 §2.3): these octets may be decoded from `%XX` (§6.2.2.2).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `sub-delims` (RFC 3986 §2.2).
fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// `reg-name` octets other than `%` (RFC 3986 §3.2.2).
fn is_reg_name_char(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b)
}

/// `path-abempty` octets other than `%` (RFC 3986 §3.3).
fn is_path_char(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@' | b'/')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Applies RFC 3986 §6.2.2.1 (uppercase hex, lowercase host) and §6.2.2.2
/// (decode unreserved) to one component, rejecting octets outside `allowed`.
fn normalize_component(
    s: &str,
    allowed: fn(u8) -> bool,
    lowercase: bool,
) -> Result<String, HtuError> {
    let case = |b: u8| {
        if lowercase { b.to_ascii_lowercase() } else { b }
    };
    let mut out = String::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let (Some(hi), Some(lo)) = (bytes.next(), bytes.next()) else {
                return Err(HtuError::InvalidPercentEncoding);
            };
            let (Some(h), Some(l)) = (hex_value(hi), hex_value(lo)) else {
                return Err(HtuError::InvalidPercentEncoding);
            };
            let decoded = (h << 4) | l;
            if is_unreserved(decoded) {
                out.push(char::from(case(decoded)));
            } else {
                out.push('%');
                out.push(char::from(hi.to_ascii_uppercase()));
                out.push(char::from(lo.to_ascii_uppercase()));
            }
        } else if allowed(b) {
            out.push(char::from(case(b)));
        } else {
            return Err(HtuError::InvalidCharacter);
        }
    }
    Ok(out)
}

/// Normalizes `host[:port]` (RFC 3986 §3.2, §6.2.2.1, §6.2.3).
fn normalize_authority(authority: &str, scheme: Scheme) -> Result<String, HtuError> {
    if authority.contains('@') {
        return Err(HtuError::UserinfoNotAllowed);
    }
    let (host, port) = if let Some(literal) = authority.strip_prefix('[') {
        let (inside, after) = literal.split_once(']').ok_or(HtuError::InvalidHost)?;
        // IPv6 has one canonical text form (RFC 5952); IPvFuture and zone IDs are not supported.
        let addr: Ipv6Addr = inside.parse().map_err(|_| HtuError::InvalidHost)?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(HtuError::InvalidHost),
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        (normalize_component(host, is_reg_name_char, true)?, port)
    };
    if host.is_empty() {
        return Err(HtuError::MissingHost);
    }
    // An empty port means the default one (RFC 3986 §3.2.3, §6.2.3).
    let port = match port.filter(|p| !p.is_empty()) {
        None => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
            let n: u16 = p.parse().map_err(|_| HtuError::InvalidPort)?;
            (n != scheme.default_port()).then_some(n)
        }
        Some(_) => return Err(HtuError::InvalidPort),
    };
    Ok(match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// Length and character checks shared by every entry point.
fn check_bounds(uri: &str) -> Result<(), HtuError> {
    if uri.len() > MAX_HTU_LEN {
        return Err(HtuError::TooLong);
    }
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HtuError::InvalidCharacter);
    }
    Ok(())
}

fn parse_normalized(uri: &str) -> Result<Normalized, HtuError> {
    check_bounds(uri)?;
    let without_fragment = uri.split_once('#').map_or(uri, |(u, _)| u);
    let (scheme, rest) = without_fragment
        .split_once(':')
        .ok_or(HtuError::NotAbsolute)?;
    // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1)
    let mut scheme_bytes = scheme.bytes();
    let well_formed = scheme_bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme_bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !well_formed {
        return Err(HtuError::NotAbsolute);
    }
    let scheme = Scheme::parse(scheme).ok_or(HtuError::UnsupportedScheme)?;
    let rest = rest.strip_prefix("//").ok_or(HtuError::MissingHost)?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest
        .split_at_checked(authority_end)
        .ok_or(HtuError::InvalidCharacter)?;
    let path = tail.split_once('?').map_or(tail, |(p, _)| p);
    let authority = normalize_authority(authority, scheme)?;
    let mut path = normalize_component(path, is_path_char, false)?;
    if path.is_empty() {
        path.push('/');
    }
    Ok(Normalized {
        scheme,
        authority,
        path,
    })
}

/// Normalizes an absolute http(s) URI for `htu` comparison (RFC 9449 §4.3
/// check 9, using RFC 3986 §6.2.2 and §6.2.3): drops query and fragment,
/// lowercases scheme and host, removes the default port, turns an empty path
/// into `/`, uppercases `%xx` and decodes escaped unreserved characters.
/// Dot segments are kept (see the module docs).
pub fn normalize_htu(uri: &str) -> Result<String, HtuError> {
    parse_normalized(uri).map(Normalized::into_string)
}

/// The externally visible origin and mount point of the API, for servers
/// behind a proxy that rewrites the URI (RFC 9449 §4.3 check 9 compares
/// against the URI the *client* used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    scheme: Scheme,
    authority: String,
    /// Normalized, without trailing slashes; empty for the root.
    path_prefix: String,
}

impl BaseUrl {
    /// Parses an absolute http(s) URL without query or fragment, normalized
    /// as in [`normalize_htu`]; trailing slashes of the path are dropped.
    pub fn parse(url: &str) -> Result<Self, HtuError> {
        check_bounds(url)?;
        if url.contains('#') {
            return Err(HtuError::FragmentNotAllowed);
        }
        if url.contains('?') {
            return Err(HtuError::QueryNotAllowed);
        }
        let n = parse_normalized(url)?;
        Ok(Self {
            scheme: n.scheme,
            authority: n.authority,
            path_prefix: n.path.trim_end_matches('/').to_owned(),
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        self.scheme.as_str()
    }

    /// Lowercased host, with the port only when it is not the default.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Path the API is mounted under, without trailing slash (`""` for the root).
    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority,
            self.path_prefix
        )
    }
}

/// Where the server learns the URI the client used, to compute the expected
/// `htu` (RFC 9449 §4.3 check 9).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PublicUri {
    /// The request as received: `https` on a TLS connection this server terminates, else the
    /// scheme of an absolute (HTTP/2) URI, else `http`; the URI's authority if absolute, else
    /// the `Host` header.
    #[default]
    AsSeen,
    /// A configured origin and mount point; request headers are not consulted.
    Fixed(BaseUrl),
    /// As seen, overridden by `Forwarded` (RFC 7239) or else
    /// `X-Forwarded-Proto`/`-Host`, plus `X-Forwarded-Prefix`. Only safe when
    /// every path to the server passes a proxy that overwrites these headers.
    TrustForwarded,
}

/// The normalized `htu` a DPoP proof for this request must carry
/// (RFC 9449 §4.3 check 9), derived according to `public`.
pub fn request_htu(
    parts: &http::request::Parts,
    public: &PublicUri,
    connection_is_tls: bool,
) -> Result<String, HtuError> {
    let path = match request_path(parts) {
        "" => "/",
        p if p.starts_with('/') => p,
        _ => return Err(HtuError::InvalidRequestTarget),
    };
    let (scheme, authority, prefix): (Cow<'_, str>, Cow<'_, str>, Cow<'_, str>) = match public {
        PublicUri::AsSeen => (
            as_seen_scheme(&parts.uri, connection_is_tls).into(),
            as_seen_authority(parts)?.into(),
            "".into(),
        ),
        PublicUri::Fixed(base) => (
            base.scheme().into(),
            base.authority().into(),
            base.path_prefix().into(),
        ),
        PublicUri::TrustForwarded => forwarded_view(parts, connection_is_tls)?,
    };
    normalize_htu(&format!("{scheme}://{authority}{prefix}{path}"))
}

/// The path the client asked for. axum's `Router::nest` strips its prefix from the URI that
/// layers inside the nested router see; axum keeps the URI as received in [`OriginalUri`], and
/// that is the one the client signed.
///
/// [`OriginalUri`]: axum::extract::OriginalUri
fn request_path(parts: &http::request::Parts) -> &str {
    #[cfg(feature = "axum")]
    if let Some(original) = parts.extensions.get::<axum::extract::OriginalUri>() {
        return original.0.path();
    }
    parts.uri.path()
}

/// The connection's own TLS state, when the server knows it, outranks the `:scheme` an
/// HTTP/2 client claims: a client on a TLS connection cannot make the guard expect `http`.
fn as_seen_scheme(uri: &Uri, connection_is_tls: bool) -> &str {
    match uri.scheme_str() {
        _ if connection_is_tls => "https",
        Some(s) => s,
        None => "http",
    }
}

fn as_seen_authority(parts: &http::request::Parts) -> Result<&str, HtuError> {
    if let Some(authority) = parts.uri.authority() {
        return Ok(authority.as_str());
    }
    let mut hosts = parts.headers.get_all(HOST).iter();
    let host = hosts.next().ok_or(HtuError::MissingHost)?;
    if hosts.next().is_some() {
        return Err(HtuError::AmbiguousHost);
    }
    if host.len() > MAX_HOST_HEADER_LEN {
        return Err(HtuError::HeaderTooLong);
    }
    let host = host.to_str().map_err(|_| HtuError::InvalidHeaderValue)?;
    check_header_authority(host)?;
    Ok(host)
}

/// A header-supplied authority is spliced into a URI string, so it must not
/// contain delimiters that would move text into the path or userinfo.
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

/// The first line of a header, bounded; later lines are not read.
fn first_line(
    headers: &HeaderMap,
    name: impl AsHeaderName,
    max_len: usize,
) -> Result<Option<&str>, HtuError> {
    let Some(value) = headers.get(name) else {
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

/// The first comma-separated value, which the client-facing proxy wrote.
fn first_list_value<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
    max_len: usize,
) -> Result<Option<&'h str>, HtuError> {
    Ok(first_line(headers, name, max_len)?.map(|line| {
        line.split(',')
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
    connection_is_tls: bool,
) -> Result<View<'_>, HtuError> {
    let headers = &parts.headers;
    let (proto, host): (Option<Cow<'_, str>>, Option<Cow<'_, str>>) =
        match first_line(headers, FORWARDED, MAX_FORWARDED_HEADER_LEN)? {
            Some(line) => {
                let element = first_forwarded_element(line)?;
                (element.proto.map(Cow::Owned), element.host.map(Cow::Owned))
            }
            None => (
                first_list_value(headers, "x-forwarded-proto", MAX_FORWARDED_HEADER_LEN)?
                    .map(Cow::Borrowed),
                first_list_value(headers, "x-forwarded-host", MAX_HOST_HEADER_LEN)?
                    .map(Cow::Borrowed),
            ),
        };
    let scheme: Cow<'_, str> = match proto {
        Some(p) => forwarded_proto(&p)?.into(),
        None => as_seen_scheme(&parts.uri, connection_is_tls).into(),
    };
    let authority = match host {
        Some(h) => {
            check_header_authority(&h)?;
            h
        }
        None => as_seen_authority(parts)?.into(),
    };
    let prefix = match first_list_value(headers, "x-forwarded-prefix", MAX_PREFIX_HEADER_LEN)? {
        None | Some("") => "",
        Some(p) if p.starts_with('/') && !p.contains(['?', '#']) => p.trim_end_matches('/'),
        Some(_) => return Err(HtuError::InvalidForwardedPrefix),
    };
    Ok((scheme, authority, prefix.into()))
}

#[derive(Debug, Default, PartialEq, Eq)]
struct ForwardedElement {
    proto: Option<String>,
    host: Option<String>,
}

/// `tchar` (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

type Bytes<'a> = std::iter::Peekable<std::str::Bytes<'a>>;

fn skip_ows(it: &mut Bytes<'_>) {
    while it.next_if(|b| matches!(b, b' ' | b'\t')).is_some() {}
}

fn read_token(it: &mut Bytes<'_>) -> Result<String, HtuError> {
    let mut out = String::new();
    while let Some(b) = it.next_if(|b| is_tchar(*b)) {
        out.push(char::from(b));
    }
    if out.is_empty() {
        return Err(HtuError::InvalidForwarded);
    }
    Ok(out)
}

/// `quoted-string` (RFC 9110 §5.6.4), after the opening quote.
fn read_quoted(it: &mut Bytes<'_>) -> Result<String, HtuError> {
    let mut out = String::new();
    loop {
        match it.next().ok_or(HtuError::InvalidForwarded)? {
            b'"' => return Ok(out),
            b'\\' => out.push(char::from(it.next().ok_or(HtuError::InvalidForwarded)?)),
            b => out.push(char::from(b)),
        }
    }
}

/// Parses the first non-empty element of `Forwarded` (RFC 7239 §4): the one
/// the client-facing proxy added. Parameters may not repeat in an element.
fn first_forwarded_element(line: &str) -> Result<ForwardedElement, HtuError> {
    let mut it = line.bytes().peekable();
    let mut element = ForwardedElement::default();
    let mut seen: Vec<String> = Vec::new();
    loop {
        skip_ows(&mut it);
        match it.peek() {
            None => return Ok(element),
            Some(b',') => {
                it.next();
                // Empty list elements are allowed and skipped (RFC 9110 §5.6.1).
                if seen.is_empty() {
                    continue;
                }
                return Ok(element);
            }
            Some(b';') => {
                it.next();
                continue;
            }
            Some(_) => {}
        }
        let name = read_token(&mut it)?.to_ascii_lowercase();
        if it.next() != Some(b'=') {
            return Err(HtuError::InvalidForwarded);
        }
        let value = if it.next_if_eq(&b'"').is_some() {
            read_quoted(&mut it)?
        } else {
            read_token(&mut it)?
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
        skip_ows(&mut it);
        if !matches!(it.peek(), None | Some(b',' | b';')) {
            return Err(HtuError::InvalidForwarded);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_equivalent_uris_to_one_form() {
        let cases = [
            (
                "HTTPS://Example.COM:443/a%7eb?q#f",
                "https://example.com/a~b",
            ),
            ("http://x:8080", "http://x:8080/"),
            ("http://x:80", "http://x/"),
            ("https://x:80/", "https://x:80/"),
            ("http://x:443/", "http://x:443/"),
            ("http://x:/p", "http://x/p"),
            ("http://x:008080/", "http://x:8080/"),
            ("https://x/a%2fb", "https://x/a%2Fb"),
            ("https://x/%41%62%2D%2e%5F%7E", "https://x/Ab-._~"),
            ("https://x/%c3%a9", "https://x/%C3%A9"),
            ("https://x/A/B?Q=1", "https://x/A/B"),
            ("https://x?q", "https://x/"),
            ("https://x#frag", "https://x/"),
            ("https://x/a/../b/./c", "https://x/a/../b/./c"),
            ("https://x/%2E%2E/", "https://x/../"),
            ("https://[2001:DB8:0:0::1]:443/", "https://[2001:db8::1]/"),
            ("https://[::1]:8443/p", "https://[::1]:8443/p"),
            ("https://Ex%41mple.com/", "https://example.com/"),
            ("https://x/a:b@c;d=e,f", "https://x/a:b@c;d=e,f"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_htu(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn rejects_uris_that_cannot_be_an_htu() {
        let long = format!("https://x/{}", "a".repeat(MAX_HTU_LEN));
        let cases = [
            ("/relative/path", HtuError::NotAbsolute),
            ("", HtuError::NotAbsolute),
            ("1http://x/", HtuError::NotAbsolute),
            ("ftp://x/", HtuError::UnsupportedScheme),
            ("wss://x/", HtuError::UnsupportedScheme),
            ("http:/x", HtuError::MissingHost),
            ("https://", HtuError::MissingHost),
            ("https://:443/", HtuError::MissingHost),
            ("https://user@x/", HtuError::UserinfoNotAllowed),
            ("https://user:pw@x/", HtuError::UserinfoNotAllowed),
            ("https://x:99999/", HtuError::InvalidPort),
            ("https://x:+80/", HtuError::InvalidPort),
            ("https://x:8o/", HtuError::InvalidPort),
            ("https://[::1/", HtuError::InvalidHost),
            ("https://[zz::1]/", HtuError::InvalidHost),
            ("https://[::1]x/", HtuError::InvalidHost),
            ("https://x/a%2", HtuError::InvalidPercentEncoding),
            ("https://x/a%g0", HtuError::InvalidPercentEncoding),
            ("https://x%zz/", HtuError::InvalidPercentEncoding),
            ("https://x/a b", HtuError::InvalidCharacter),
            ("https://x/é", HtuError::InvalidCharacter),
            ("https://x/a\"b", HtuError::InvalidCharacter),
            ("https://x/a[b", HtuError::InvalidCharacter),
            ("https://x/a\nb", HtuError::InvalidCharacter),
            ("https://x]/", HtuError::InvalidCharacter),
            (long.as_str(), HtuError::TooLong),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_htu(input), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn base_url_keeps_origin_and_prefix_without_trailing_slash() {
        let base = BaseUrl::parse("HTTPS://API.Example.com:443/v1/").unwrap();
        assert_eq!(base.scheme(), "https");
        assert_eq!(base.authority(), "api.example.com");
        assert_eq!(base.path_prefix(), "/v1");
        assert_eq!(base.to_string(), "https://api.example.com/v1");
        assert_eq!(BaseUrl::parse("http://h:8080").unwrap().path_prefix(), "");
    }

    #[test]
    fn base_url_rejects_query_fragment_and_bad_uris() {
        assert_eq!(
            BaseUrl::parse("https://x/v1?a=b"),
            Err(HtuError::QueryNotAllowed)
        );
        assert_eq!(
            BaseUrl::parse("https://x/v1#top"),
            Err(HtuError::FragmentNotAllowed)
        );
        assert_eq!(BaseUrl::parse("ftp://x/"), Err(HtuError::UnsupportedScheme));
        assert_eq!(
            BaseUrl::parse("https://u@x/"),
            Err(HtuError::UserinfoNotAllowed)
        );
    }

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

    #[test]
    fn as_seen_uses_host_header_and_connection_tls() {
        let p = parts("/Res%7e?x=1", &[("host", "API.example.com:443")]);
        assert_eq!(
            request_htu(&p, &PublicUri::AsSeen, true).as_deref(),
            Ok("https://api.example.com/Res~")
        );
        assert_eq!(
            request_htu(&p, &PublicUri::AsSeen, false).as_deref(),
            Ok("http://api.example.com:443/Res~")
        );
    }

    #[test]
    fn as_seen_prefers_absolute_request_uri() {
        let p = parts("https://h2.example:8443/r", &[("host", "other.example")]);
        assert_eq!(
            request_htu(&p, &PublicUri::AsSeen, false).as_deref(),
            Ok("https://h2.example:8443/r")
        );
    }

    #[test]
    fn as_seen_trusts_a_tls_connection_over_the_claimed_scheme() {
        let p = parts("http://h2.example/r", &[]);
        assert_eq!(
            request_htu(&p, &PublicUri::AsSeen, true).as_deref(),
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
        assert_eq!(
            request_htu(&p, &PublicUri::AsSeen, true).as_deref(),
            Ok("https://api.example.com/v1/inner")
        );
    }

    #[test]
    fn as_seen_ignores_spoofed_forwarding_headers() {
        let p = parts("/r", &SPOOFED);
        assert_eq!(
            request_htu(&p, &PublicUri::AsSeen, true).as_deref(),
            Ok("https://api.example.com/r")
        );
    }

    #[test]
    fn as_seen_rejects_missing_duplicate_or_malformed_host() {
        let none = parts("/r", &[]);
        assert_eq!(
            request_htu(&none, &PublicUri::AsSeen, true),
            Err(HtuError::MissingHost)
        );
        let two = parts("/r", &[("host", "a.example"), ("host", "b.example")]);
        assert_eq!(
            request_htu(&two, &PublicUri::AsSeen, true),
            Err(HtuError::AmbiguousHost)
        );
        let pathy = parts("/r", &[("host", "a.example/admin?")]);
        assert_eq!(
            request_htu(&pathy, &PublicUri::AsSeen, true),
            Err(HtuError::InvalidHost)
        );
        let userinfo = parts("/r", &[("host", "evil@a.example")]);
        assert_eq!(
            request_htu(&userinfo, &PublicUri::AsSeen, true),
            Err(HtuError::UserinfoNotAllowed)
        );
        let huge = "a".repeat(MAX_HOST_HEADER_LEN + 1);
        let long = parts("/r", &[("host", huge.as_str())]);
        assert_eq!(
            request_htu(&long, &PublicUri::AsSeen, true),
            Err(HtuError::HeaderTooLong)
        );
    }

    #[test]
    fn rejects_non_origin_form_request_target() {
        let p = parts("*", &[("host", "a.example")]);
        assert_eq!(
            request_htu(&p, &PublicUri::AsSeen, true),
            Err(HtuError::InvalidRequestTarget)
        );
    }

    #[test]
    fn fixed_prepends_base_and_ignores_spoofed_headers() {
        let base = BaseUrl::parse("https://public.example/api/").unwrap();
        let p = parts("/users/1?x", &SPOOFED);
        assert_eq!(
            request_htu(&p, &PublicUri::Fixed(base.clone()), false).as_deref(),
            Ok("https://public.example/api/users/1")
        );
        // Fixed does not even need a Host header.
        let bare = parts("/", &[]);
        assert_eq!(
            request_htu(&bare, &PublicUri::Fixed(base), false).as_deref(),
            Ok("https://public.example/api/")
        );
    }

    #[test]
    fn trust_forwarded_prefers_rfc7239_first_element() {
        let p = parts(
            "/r",
            &[
                ("host", "internal:8080"),
                (
                    "forwarded",
                    "for=192.0.2.60;Proto=HTTPS;host=\"Public.Example:443\", proto=http;host=hop2",
                ),
                ("x-forwarded-host", "ignored.example"),
                ("x-forwarded-prefix", "/svc/"),
            ],
        );
        assert_eq!(
            request_htu(&p, &PublicUri::TrustForwarded, false).as_deref(),
            Ok("https://public.example/svc/r")
        );
    }

    #[test]
    fn trust_forwarded_falls_back_to_x_forwarded_headers() {
        let p = parts(
            "/r",
            &[
                ("host", "internal:8080"),
                ("x-forwarded-proto", "https, http"),
                ("x-forwarded-host", "public.example:8443, internal"),
                ("x-forwarded-prefix", "/api"),
            ],
        );
        assert_eq!(
            request_htu(&p, &PublicUri::TrustForwarded, false).as_deref(),
            Ok("https://public.example:8443/api/r")
        );
    }

    #[test]
    fn trust_forwarded_without_headers_is_as_seen() {
        let p = parts("/r", &[("host", "internal:8080")]);
        assert_eq!(
            request_htu(&p, &PublicUri::TrustForwarded, false).as_deref(),
            Ok("http://internal:8080/r")
        );
        let only_proto = parts("/r", &[("host", "h"), ("forwarded", "proto=https")]);
        assert_eq!(
            request_htu(&only_proto, &PublicUri::TrustForwarded, false).as_deref(),
            Ok("https://h/r")
        );
    }

    #[test]
    fn trust_forwarded_rejects_invalid_values() {
        let cases: [(&[(&str, &str)], HtuError); 9] = [
            (
                &[("host", "h"), ("x-forwarded-proto", "ftp")],
                HtuError::InvalidForwardedProto,
            ),
            (
                &[("host", "h"), ("forwarded", "proto=gopher")],
                HtuError::InvalidForwardedProto,
            ),
            (
                &[("host", "h"), ("x-forwarded-host", "evil/x")],
                HtuError::InvalidHost,
            ),
            (
                &[("host", "h"), ("x-forwarded-host", "")],
                HtuError::MissingHost,
            ),
            (
                &[("host", "h"), ("forwarded", "host=a;host=b")],
                HtuError::InvalidForwarded,
            ),
            (
                &[("host", "h"), ("forwarded", "host=\"unterminated")],
                HtuError::InvalidForwarded,
            ),
            (
                // A port makes the value a non-token, so it must be quoted.
                &[("host", "h"), ("forwarded", "host=a:8080")],
                HtuError::InvalidForwarded,
            ),
            (
                &[("host", "h"), ("x-forwarded-prefix", "svc")],
                HtuError::InvalidForwardedPrefix,
            ),
            (
                &[("host", "h"), ("x-forwarded-prefix", "/svc?x=1")],
                HtuError::InvalidForwardedPrefix,
            ),
        ];
        for (headers, expected) in cases {
            let p = parts("/r", headers);
            assert_eq!(
                request_htu(&p, &PublicUri::TrustForwarded, true),
                Err(expected),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn trust_forwarded_bounds_header_size() {
        let huge = format!("proto=https;x={}", "a".repeat(MAX_FORWARDED_HEADER_LEN));
        let p = parts("/r", &[("host", "h"), ("forwarded", huge.as_str())]);
        assert_eq!(
            request_htu(&p, &PublicUri::TrustForwarded, true),
            Err(HtuError::HeaderTooLong)
        );
    }

    #[test]
    fn forwarded_parser_skips_empty_elements_and_unescapes_quotes() {
        assert_eq!(
            first_forwarded_element(" , ;for=x ; host=\"a\\.b\";proto=https, host=c"),
            Ok(ForwardedElement {
                proto: Some("https".into()),
                host: Some("a.b".into()),
            })
        );
        assert_eq!(
            first_forwarded_element("for"),
            Err(HtuError::InvalidForwarded)
        );
        assert_eq!(
            first_forwarded_element("for=a b"),
            Err(HtuError::InvalidForwarded)
        );
    }
}
