//! JWS compact serialization (RFC 7515 §7.1), split in one place for access tokens and DPoP
//! proofs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The three parts of a compact JWS, as sent.
pub(crate) struct CompactJws<'a> {
    pub(crate) header: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) signature: &'a str,
    /// `header.payload` as sent: what the signature covers (RFC 7515 §5.2).
    pub(crate) signing_input: &'a str,
}

/// Why a string is not a compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SplitError {
    /// Not exactly three dot-separated parts.
    WrongPartCount,
    /// One of the three parts is empty.
    EmptyPart,
}

impl<'a> CompactJws<'a> {
    /// Exactly three non-empty dot-separated parts.
    pub(crate) fn split(jws: &'a str) -> Result<Self, SplitError> {
        let mut parts = jws.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SplitError::WrongPartCount);
        };
        if header.is_empty() || payload.is_empty() || signature.is_empty() {
            return Err(SplitError::EmptyPart);
        }
        let signing_input = jws
            .get(..header.len() + 1 + payload.len())
            .ok_or(SplitError::WrongPartCount)?;
        Ok(CompactJws {
            header,
            payload,
            signature,
            signing_input,
        })
    }
}

/// A part decoded from unpadded base64url; `None` when it is not that.
pub(crate) fn decode(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_exactly_three_non_empty_parts() {
        let jws = CompactJws::split("a.bc.d").unwrap();
        assert_eq!(
            (jws.header, jws.payload, jws.signature, jws.signing_input),
            ("a", "bc", "d", "a.bc")
        );
        assert_eq!(
            CompactJws::split("a.b").err(),
            Some(SplitError::WrongPartCount)
        );
        assert_eq!(
            CompactJws::split("a.b.c.d").err(),
            Some(SplitError::WrongPartCount)
        );
        assert_eq!(CompactJws::split("a..c").err(), Some(SplitError::EmptyPart));
        assert_eq!(
            CompactJws::split("").err(),
            Some(SplitError::WrongPartCount)
        );
    }
}
