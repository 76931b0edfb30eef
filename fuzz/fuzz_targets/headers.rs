//! Fuzz input as request header lines: `name-selector byte, value bytes` per line, so one
//! input can hold several fields and repeated ones (which the parsers must refuse or join).

use http::{HeaderMap, HeaderName, HeaderValue};

/// Splits `data` at `\n` into lines; the first byte of a line picks one of `names`, the rest
/// is the value (lines whose value no header may hold are skipped, as hyper would refuse them).
pub fn headers(data: &[u8], names: &[&'static str]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some((selector, value)) = line.split_first() else {
            continue;
        };
        let name = names[usize::from(*selector) % names.len()];
        if let Ok(value) = HeaderValue::from_bytes(value) {
            map.append(HeaderName::from_static(name), value);
        }
    }
    map
}
