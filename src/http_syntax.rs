//! HTTP field syntax shared by the parsers and the challenge writer (RFC 9110 §5.6):
//! `token`, optional whitespace, and `quoted-string`.

/// Bytes of a header value, one at a time, with lookahead.
pub(crate) type Bytes<'a> = std::iter::Peekable<std::str::Bytes<'a>>;

/// `tchar` (RFC 9110 §5.6.2).
pub(crate) fn is_tchar(b: u8) -> bool {
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

/// Skips `OWS` (RFC 9110 §5.6.3).
pub(crate) fn skip_ows(it: &mut Bytes<'_>) {
    while it.next_if(|b| matches!(b, b' ' | b'\t')).is_some() {}
}

/// `token` (RFC 9110 §5.6.2): one or more `tchar`; `None` when there is none.
pub(crate) fn read_token(it: &mut Bytes<'_>) -> Option<String> {
    let mut out = String::new();
    while let Some(b) = it.next_if(|b| is_tchar(*b)) {
        out.push(char::from(b));
    }
    (!out.is_empty()).then_some(out)
}

/// `quoted-string` (RFC 9110 §5.6.4), after the opening quote: its content, unescaped;
/// `None` when the closing quote is missing.
pub(crate) fn read_quoted(it: &mut Bytes<'_>) -> Option<String> {
    let mut out = String::new();
    loop {
        match it.next()? {
            b'"' => return Some(out),
            b'\\' => out.push(char::from(it.next()?)),
            b => out.push(char::from(b)),
        }
    }
}

/// Appends `value` as `quoted-string` content (RFC 9110 §5.6.4): `"` and `\` escaped; control
/// and non-ASCII characters, which a header value built from a `str` cannot hold, dropped, so
/// that the value is always sendable.
pub(crate) fn push_quoted(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tokens_and_quoted_strings() {
        let mut it = "abc=\"x\\\"y\" ".bytes().peekable();
        assert_eq!(read_token(&mut it).as_deref(), Some("abc"));
        assert_eq!(it.next(), Some(b'='));
        assert_eq!(it.next(), Some(b'"'));
        assert_eq!(read_quoted(&mut it).as_deref(), Some("x\"y"));
        skip_ows(&mut it);
        assert_eq!(it.next(), None);
        assert_eq!(read_token(&mut "=".bytes().peekable()), None);
        assert_eq!(read_quoted(&mut "unterminated".bytes().peekable()), None);
    }

    #[test]
    fn quotes_are_escaped() {
        let mut s = String::new();
        push_quoted(&mut s, "a\"b\\c\nd\u{e9}\t");
        assert_eq!(s, "a\\\"b\\\\cd");
    }
}
