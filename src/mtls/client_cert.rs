//! Client certificates forwarded by a TLS-terminating proxy in the
//! `Client-Cert` and `Client-Cert-Chain` header fields (RFC 9440 §2).
//!
//! Only trust these headers when every path to the server passes a proxy
//! that strips them from client requests (RFC 9440 §4).

use std::fmt;

use http::HeaderMap;
use sfv::{Item, List, ListEntry, Parser};

use crate::limits::{
    MAX_CHAIN_CERTS, MAX_CLIENT_CERT_CHAIN_HEADER_LEN, MAX_CLIENT_CERT_HEADER_LEN,
    MAX_CLIENT_CERT_PARAMETERS,
};

/// `Client-Cert` field name (RFC 9440 §2.2).
pub const CLIENT_CERT: &str = "client-cert";
/// `Client-Cert-Chain` field name (RFC 9440 §2.3).
pub const CLIENT_CERT_CHAIN: &str = "client-cert-chain";

/// Why the forwarded client certificate headers were rejected (RFC 9440 §2).
///
/// ```
/// use tower_oauth_guard::{Mtls, MtlsError};
///
/// // A trusted proxy's `Client-Cert` that does not parse refuses a certificate-bound token with
/// // `MtlsError::MalformedClientCertHeader` (the `ClientCertError` says why, in the logs).
/// let mtls = Mtls::allowed();
/// # let _ = (mtls, MtlsError::MalformedClientCertHeader);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientCertError {
    /// `Client-Cert` exceeds [`MAX_CLIENT_CERT_HEADER_LEN`].
    TooLarge,
    /// `Client-Cert-Chain` (all lines together) exceeds [`MAX_CLIENT_CERT_CHAIN_HEADER_LEN`].
    ChainTooLarge,
    /// `Client-Cert-Chain` lists more than [`MAX_CHAIN_CERTS`] certificates.
    ChainTooLong,
    /// A value is a structured field, but not a Byte Sequence (RFC 9440 §2.2, §2.3).
    NotAByteSequence,
    /// A value is not a valid structured field (RFC 8941 §4.2).
    Malformed,
    /// A Byte Sequence is empty, so it holds no certificate.
    Empty,
    /// `Client-Cert` appears more than once; an Item cannot span lines (RFC 8941 §4.2).
    DuplicateClientCert,
    /// `Client-Cert-Chain` is present without `Client-Cert` (RFC 9440 §2.3).
    ChainWithoutClientCert,
}

impl fmt::Display for ClientCertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLarge => "Client-Cert header is too large",
            Self::ChainTooLarge => "Client-Cert-Chain header is too large",
            Self::ChainTooLong => "Client-Cert-Chain has too many certificates",
            Self::NotAByteSequence => "client certificate header is not a byte sequence",
            Self::Malformed => "client certificate header is not a valid structured field",
            Self::Empty => "client certificate header holds an empty certificate",
            Self::DuplicateClientCert => "more than one Client-Cert header",
            Self::ChainWithoutClientCert => "Client-Cert-Chain without Client-Cert",
        })
    }
}

impl std::error::Error for ClientCertError {}

/// How many times `byte` occurs in `value`.
fn separators(value: &[u8], byte: u8) -> usize {
    value.iter().filter(|b| **b == byte).count()
}

fn certificate(bytes: Option<&[u8]>) -> Result<Vec<u8>, ClientCertError> {
    match bytes {
        None => Err(ClientCertError::NotAByteSequence),
        Some([]) => Err(ClientCertError::Empty),
        Some(der) => Ok(der.to_vec()),
    }
}

/// Decodes a `Client-Cert` value: an sf-binary Item holding the DER leaf
/// certificate (RFC 9440 §2.2). Parameters are ignored (RFC 8941 §3.1.2).
pub fn parse_client_cert(value: &[u8]) -> Result<Vec<u8>, ClientCertError> {
    if value.len() > MAX_CLIENT_CERT_HEADER_LEN {
        return Err(ClientCertError::TooLarge);
    }
    if separators(value, b';') > MAX_CLIENT_CERT_PARAMETERS {
        return Err(ClientCertError::Malformed);
    }
    let item = Parser::new(value)
        .parse::<Item>()
        .map_err(|_| ClientCertError::Malformed)?;
    certificate(item.bare_item.as_byte_sequence())
}

/// Decodes a `Client-Cert-Chain` value: a List of sf-binary Items, each a
/// DER certificate, issuer of the previous one first (RFC 9440 §2.3).
pub fn parse_client_cert_chain(value: &[u8]) -> Result<Vec<Vec<u8>>, ClientCertError> {
    if value.len() > MAX_CLIENT_CERT_CHAIN_HEADER_LEN {
        return Err(ClientCertError::ChainTooLarge);
    }
    // Counted before parsing, so that a list of a thousand tiny members is refused without
    // being built. A byte sequence never holds `,` or `;`, so each one separates members
    // or parameters (or sits inside a string parameter, which only makes this stricter).
    if separators(value, b',') >= MAX_CHAIN_CERTS {
        return Err(ClientCertError::ChainTooLong);
    }
    // An inner list (RFC 8941 §3.1.1) is never a certificate; refused before it is built.
    if value.contains(&b'(') {
        return Err(ClientCertError::NotAByteSequence);
    }
    if separators(value, b';') > MAX_CLIENT_CERT_PARAMETERS * MAX_CHAIN_CERTS {
        return Err(ClientCertError::Malformed);
    }
    let list = Parser::new(value)
        .parse::<List>()
        .map_err(|_| ClientCertError::Malformed)?;
    if list.len() > MAX_CHAIN_CERTS {
        return Err(ClientCertError::ChainTooLong);
    }
    list.iter()
        .map(|entry| match entry {
            ListEntry::Item(item) => certificate(item.bare_item.as_byte_sequence()),
            ListEntry::InnerList(_) => Err(ClientCertError::NotAByteSequence),
        })
        .collect()
}

/// DER leaf certificate and DER chain (issuer of the leaf first), as forwarded (RFC 9440 §2.2, §2.3).
pub type ForwardedClientCert = (Vec<u8>, Vec<Vec<u8>>);

/// Reads the forwarded leaf certificate and chain (RFC 9440 §2). `None`
/// when no `Client-Cert` is present. Chain lines are joined as one List
/// (RFC 8941 §4.2); an absent chain is empty.
pub fn client_cert_from_headers(
    headers: &HeaderMap,
) -> Result<Option<ForwardedClientCert>, ClientCertError> {
    let mut certs = headers.get_all(CLIENT_CERT).iter();
    let Some(leaf) = certs.next() else {
        if headers.contains_key(CLIENT_CERT_CHAIN) {
            return Err(ClientCertError::ChainWithoutClientCert);
        }
        return Ok(None);
    };
    if certs.next().is_some() {
        return Err(ClientCertError::DuplicateClientCert);
    }
    let leaf = parse_client_cert(leaf.as_bytes())?;

    let mut combined: Vec<u8> = Vec::new();
    for line in headers.get_all(CLIENT_CERT_CHAIN) {
        let separator = if combined.is_empty() { 0 } else { 2 };
        if combined.len() + separator + line.len() > MAX_CLIENT_CERT_CHAIN_HEADER_LEN {
            return Err(ClientCertError::ChainTooLarge);
        }
        if separator > 0 {
            combined.extend_from_slice(b", ");
        }
        combined.extend_from_slice(line.as_bytes());
    }
    let chain = if combined.is_empty() {
        Vec::new()
    } else {
        parse_client_cert_chain(&combined)?
    };
    Ok(Some((leaf, chain)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use http::HeaderValue;

    // Starts like a DER certificate (SEQUENCE, long length) and includes
    // bytes that exercise '+' and '/' in standard base64.
    const LEAF: &[u8] = b"\x30\x82\x01\x0a\xfb\xff\xfe\x00leaf";
    const INTERMEDIATE: &[u8] = b"\x30\x82\x02\x00intermediate";
    const ROOT: &[u8] = b"\x30\x82\x03\x00root";

    fn sf_binary(bytes: &[u8]) -> String {
        format!(":{}:", STANDARD.encode(bytes))
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn decodes_client_cert_byte_sequence() {
        assert_eq!(parse_client_cert(sf_binary(LEAF).as_bytes()).unwrap(), LEAF);
    }

    #[test]
    fn ignores_parameters_on_client_cert() {
        let value = format!("{};x=1", sf_binary(LEAF));
        assert_eq!(parse_client_cert(value.as_bytes()).unwrap(), LEAF);
    }

    #[test]
    fn rejects_malformed_client_cert() {
        assert_eq!(
            parse_client_cert(b":not base64!:"),
            Err(ClientCertError::Malformed)
        );
        assert_eq!(parse_client_cert(b":abc"), Err(ClientCertError::Malformed));
        assert_eq!(parse_client_cert(b""), Err(ClientCertError::Malformed));
        // Two items: Client-Cert is a single Item, not a List.
        let two = format!("{}, {}", sf_binary(LEAF), sf_binary(ROOT));
        assert_eq!(
            parse_client_cert(two.as_bytes()),
            Err(ClientCertError::Malformed)
        );
    }

    #[test]
    fn rejects_client_cert_that_is_not_a_byte_sequence() {
        assert_eq!(
            parse_client_cert(b"\"MIIB\""),
            Err(ClientCertError::NotAByteSequence)
        );
        assert_eq!(
            parse_client_cert(b"token"),
            Err(ClientCertError::NotAByteSequence)
        );
    }

    #[test]
    fn rejects_empty_client_cert() {
        assert_eq!(parse_client_cert(b"::"), Err(ClientCertError::Empty));
    }

    #[test]
    fn rejects_oversized_client_cert_before_parsing() {
        let big = vec![b'A'; MAX_CLIENT_CERT_HEADER_LEN + 1];
        assert_eq!(parse_client_cert(&big), Err(ClientCertError::TooLarge));
        let max = sf_binary(&vec![0x30; (MAX_CLIENT_CERT_HEADER_LEN - 2) / 4 * 3]);
        assert!(max.len() <= MAX_CLIENT_CERT_HEADER_LEN);
        assert!(parse_client_cert(max.as_bytes()).is_ok());
    }

    #[test]
    fn parses_chain_in_order() {
        let value = format!("{}, {}", sf_binary(INTERMEDIATE), sf_binary(ROOT));
        assert_eq!(
            parse_client_cert_chain(value.as_bytes()).unwrap(),
            vec![INTERMEDIATE.to_vec(), ROOT.to_vec()]
        );
    }

    #[test]
    fn rejects_chain_with_non_binary_or_inner_list_members() {
        let token = format!("{}, nope", sf_binary(ROOT));
        assert_eq!(
            parse_client_cert_chain(token.as_bytes()),
            Err(ClientCertError::NotAByteSequence)
        );
        let inner = format!("({})", sf_binary(ROOT));
        assert_eq!(
            parse_client_cert_chain(inner.as_bytes()),
            Err(ClientCertError::NotAByteSequence)
        );
        assert_eq!(
            parse_client_cert_chain(b":AAAA:, ::"),
            Err(ClientCertError::Empty)
        );
    }

    #[test]
    fn rejects_too_long_chain() {
        let one = sf_binary(ROOT);
        let value = vec![one; MAX_CHAIN_CERTS + 1].join(", ");
        assert_eq!(
            parse_client_cert_chain(value.as_bytes()),
            Err(ClientCertError::ChainTooLong)
        );
    }

    #[test]
    fn reads_leaf_and_chain_from_headers() {
        let map = headers(&[
            (CLIENT_CERT, sf_binary(LEAF)),
            (CLIENT_CERT_CHAIN, sf_binary(INTERMEDIATE)),
            (CLIENT_CERT_CHAIN, sf_binary(ROOT)),
        ]);
        assert_eq!(
            client_cert_from_headers(&map).unwrap(),
            Some((LEAF.to_vec(), vec![INTERMEDIATE.to_vec(), ROOT.to_vec()]))
        );
    }

    #[test]
    fn reads_leaf_without_chain() {
        let map = headers(&[(CLIENT_CERT, sf_binary(LEAF))]);
        assert_eq!(
            client_cert_from_headers(&map).unwrap(),
            Some((LEAF.to_vec(), Vec::new()))
        );
    }

    #[test]
    fn returns_none_without_headers() {
        assert_eq!(client_cert_from_headers(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn rejects_duplicate_client_cert_headers() {
        let map = headers(&[
            (CLIENT_CERT, sf_binary(LEAF)),
            (CLIENT_CERT, sf_binary(ROOT)),
        ]);
        assert_eq!(
            client_cert_from_headers(&map),
            Err(ClientCertError::DuplicateClientCert)
        );
    }

    #[test]
    fn rejects_chain_without_client_cert() {
        let map = headers(&[(CLIENT_CERT_CHAIN, sf_binary(ROOT))]);
        assert_eq!(
            client_cert_from_headers(&map),
            Err(ClientCertError::ChainWithoutClientCert)
        );
    }

    #[test]
    fn bounds_combined_chain_lines() {
        let line = "A".repeat(MAX_CLIENT_CERT_CHAIN_HEADER_LEN / 2);
        let map = headers(&[
            (CLIENT_CERT, sf_binary(LEAF)),
            (CLIENT_CERT_CHAIN, format!(":{line}:")),
            (CLIENT_CERT_CHAIN, format!(":{line}:")),
        ]);
        assert_eq!(
            client_cert_from_headers(&map),
            Err(ClientCertError::ChainTooLarge)
        );
    }

    #[test]
    fn propagates_malformed_header_errors() {
        let map = headers(&[(CLIENT_CERT, "garbage :".to_owned())]);
        assert_eq!(
            client_cert_from_headers(&map),
            Err(ClientCertError::Malformed)
        );
    }
}
