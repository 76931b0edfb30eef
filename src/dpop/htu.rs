//! The `htu` comparison: RFC 3986 §6.2.2 / §6.2.3 normalization of a proof's `htu` and of the
//! URI it is checked against (RFC 9449 §4.2, §4.3 check 9), and the public base URL type.
//!
//! Both sides of the comparison go through [`normalize_htu`], so two URIs
//! compare equal exactly when their normalized strings are equal.
//!
//! Dot segments (`.` and `..`, RFC 3986 §6.2.2.3) are deliberately *not*
//! removed: whether `/a/../b` reaches the handler for `/b` depends on the
//! server's router, and treating them as equal could let a proof minted for
//! one resource be accepted for another. Keeping them makes the comparison
//! stricter, never looser.

use std::fmt;
use std::net::Ipv6Addr;

use crate::limits::MAX_HTU_LEN;

/// Why a URI could not serve as, or be compared with, an `htu` (RFC 9449 §4.3).
///
/// ```
/// use tower_oauth_guard::{HtuError, normalize_htu};
///
/// assert_eq!(normalize_htu("ftp://api.example/"), Err(HtuError::UnsupportedScheme));
/// assert_eq!(normalize_htu("https://user@api.example/"), Err(HtuError::UserinfoNotAllowed));
/// ```
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
    /// The request names more than one authority: several `Host` headers (RFC 9112 §3.2), or
    /// an absolute-form target whose authority is not the `Host` header's.
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
    /// Forwarded headers are trusted from listed proxies only, and the request's peer is not
    /// one of them (or its address is unknown).
    UntrustedPeer,
    /// The trusted proxy sent no forwarded protocol or no forwarded host.
    MissingForwarded,
}

impl fmt::Display for HtuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLong => "URI is too long",
            Self::InvalidCharacter => "URI contains a character not allowed there",
            Self::NotAbsolute => "URI is not absolute",
            Self::UnsupportedScheme => "URI scheme is neither http nor https",
            Self::MissingHost => "URI has no host",
            Self::AmbiguousHost => "request names more than one host",
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
            Self::UntrustedPeer => "request did not come through a trusted proxy",
            Self::MissingForwarded => "the trusted proxy sent no forwarded protocol or no host",
        })
    }
}

impl std::error::Error for HtuError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub(crate) fn as_str(self) -> &'static str {
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

    pub(crate) fn parse(s: &str) -> Option<Self> {
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
///
/// ```
/// use tower_oauth_guard::normalize_htu;
///
/// // RFC 3986 §6.2.2-6.2.3: case, percent-encoding and default ports do not make another URI.
/// assert_eq!(normalize_htu("HTTPS://API.example:443/%7Ea?q=1").as_deref(), Ok("https://api.example/~a"));
/// // Dot segments are kept: whether `/a/../b` is `/b` is the router's business.
/// assert_ne!(normalize_htu("https://api.example/a/../b"), normalize_htu("https://api.example/b"));
/// ```
pub fn normalize_htu(uri: &str) -> Result<String, HtuError> {
    parse_normalized(uri).map(Normalized::into_string)
}

/// The externally visible origin and mount point of the API, for servers
/// behind a proxy that rewrites the URI (RFC 9449 §4.3 check 9 compares
/// against the URI the *client* used).
///
/// ```
/// use tower_oauth_guard::BaseUrl;
///
/// let base = BaseUrl::parse("HTTPS://API.example:443/v1/")?;
/// assert_eq!((base.scheme(), base.authority(), base.path_prefix()), ("https", "api.example", "/v1"));
/// assert!(BaseUrl::parse("https://api.example/?q").is_err()); // a query cannot prefix a path
/// # Ok::<(), tower_oauth_guard::HtuError>(())
/// ```
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

    /// Whether `uri` is exactly this base URL followed by `path`, compared in place.
    pub(crate) fn is_followed_by(&self, uri: &str, path: &str) -> bool {
        uri.strip_prefix(self.scheme.as_str())
            .and_then(|rest| rest.strip_prefix("://"))
            .and_then(|rest| rest.strip_prefix(self.authority.as_str()))
            .and_then(|rest| rest.strip_prefix(self.path_prefix.as_str()))
            == Some(path)
    }

    /// The length of this base URL followed by `path`.
    pub(crate) fn len_with(&self, path: &str) -> usize {
        let scheme = self.scheme.as_str().len() + "://".len();
        scheme + self.authority.len() + self.path_prefix.len() + path.len()
    }
}

/// Whether normalization leaves a path as it is (RFC 3986 §6.2.2): every octet a `path`
/// character and none a `%`. A base URL, normalized already, followed by such a path is then
/// its own normal form, within [`MAX_HTU_LEN`].
pub(crate) fn is_normal_path(path: &str) -> bool {
    path.starts_with('/') && path.bytes().all(is_path_char)
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
}
