//! Hostile JSON for the differential tests of the typed readers: text built from fragments
//! that stress what a typed visitor and serde_json's own `Map<String, Value>` could read
//! differently (escapes in names, repeated members, lone surrogates, invalid UTF-8, numbers
//! at and past the `i64`/`u64`/`f64` bounds, nesting at serde_json's depth limit, trailing
//! data, a byte order mark), valid or not.
//!
//! One member name is left out on purpose: serde_json's private `RawValue` marker, which the
//! claims map reads as an instruction (see the tests named after it in `token::registered`);
//! the differentials here are about everything else.

use proptest::prelude::*;

/// Scalars, valid and invalid, as JSON text.
pub(crate) fn scalar() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => proptest::sample::select(VALID_SCALARS).prop_map(<[u8]>::to_vec),
        1 => proptest::sample::select(INVALID_SCALARS).prop_map(<[u8]>::to_vec),
    ]
}

const VALID_SCALARS: &[&[u8]] = &[
    b"null",
    b"true",
    b"false",
    b"0",
    b"-0",
    b"-0.0",
    b"1",
    b"-1",
    b"7.9",
    b"-7.9",
    b"-0.5",
    b"1e3",
    b"1E+2",
    b"1e-400",
    b"1e308",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551615",
    b"18446744073709551616",
    b"1.5e19",
    b"-1e19",
    b"1700000000.999",
    b"\"\"",
    b"\"a\"",
    b"\" \"",
    b"\"read write\"",
    b"\" read  write \"",
    b"\"read\\twrite\"",
    b"\"read\\nwrite\"",
    b"\"read\xe2\x80\x83write\"",
    b"\"read\\u00a0write\"",
    b"\"a\\u0020b\"",
    b"\"\\ud83d\\ude00\"",
    b"\"\\u0000\"",
    b"\"\\/\"",
    b"\"\xc3\xa9\"",
    b"\"api\"",
    b"\"https://api.example\"",
    b"\"https://issuer.example\"",
    b"\"ES256\"",
    b"\"at+jwt\"",
    b"\"thumb\"",
];

const INVALID_SCALARS: &[&[u8]] = &[
    b"1e400",
    b"-1e400",
    b"01",
    b"1.",
    b".5",
    b"+1",
    b"NaN",
    b"Infinity",
    b"\"read\twrite\"",
    b"\"\\ud800\"",
    b"\"\\udc00\"",
    b"\"\\ud800\\u0041\"",
    b"\"\x01\"",
    b"\"\\x\"",
    b"\"\xff\"",
    b"\"\xed\xa0\x80\"",
    b"\"\xc0\xaf\"",
];

/// Member names, as JSON text: the claims and header members the readers act on, spelled
/// plainly and with escapes, and others.
pub(crate) fn name(names: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let extra: &[&str] = &[
        "\"other\"",
        "\"\"",
        "\"\\u0000\"",
        "\"jkt\"",
        "\"j\\u006bt\"",
        "\"x5t#S256\"",
        "\"x5t\\u0023S256\"",
        "\"x5t#s256\"",
        "\"jwk\"",
        "\"JKT\"",
        "\"crit\"",
        "\"cr\\u0069t\"",
    ];
    prop_oneof![
        8 => proptest::sample::select(names).prop_map(|n| format!("\"{n}\"").into_bytes()),
        3 => proptest::sample::select(extra).prop_map(|n| n.as_bytes().to_vec()),
        // A name with a character escaped: the name it spells.
        3 => proptest::sample::select(names).prop_map(|n| {
            let mut c = n.chars();
            let first = c.next().map_or(String::new(), |f| format!("\\u{:04x}", u32::from(f)));
            format!("\"{first}{}\"", c.as_str()).into_bytes()
        }),
        // Not a name: invalid.
        1 => proptest::sample::select(INVALID_NAMES).prop_map(<[u8]>::to_vec),
    ]
}

/// Member names that are not JSON strings.
const INVALID_NAMES: &[&[u8]] = &[b"1", b"\"\xff\"", b"\"\\ud800\"", b"a", b"\"a"];

/// Values that are not JSON.
const INVALID: &[&[u8]] = &[b"[1,]", b"{\"a\":1,}", b"[", b"{\"a\"}", b"{1:2}", b"[1 2]"];

/// Any value: scalars, arrays and objects of them (members named from `names`), sometimes
/// wrapped at or past serde_json's depth limit, sometimes not JSON at all.
pub(crate) fn value(names: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    scalar().prop_recursive(4, 32, 5, move |inner| {
        prop_oneof![
            6 => proptest::collection::vec(inner.clone(), 0..4).prop_map(|items| join(b"[", &items, b"]")),
            6 => proptest::collection::vec((name(names), inner.clone()), 0..4).prop_map(|members| object(&members)),
            1 => (120usize..=127, inner.clone(), any::<bool>()).prop_map(|(levels, v, arrays)| {
                let (open, close): (&[u8], &[u8]) = if arrays { (b"[", b"]") } else { (b"{\"a\":", b"}") };
                let mut out = open.repeat(levels);
                out.extend_from_slice(&v);
                out.extend_from_slice(&close.repeat(levels));
                out
            }),
            1 => proptest::sample::select(INVALID).prop_map(<[u8]>::to_vec),
        ]
    })
}

/// A document: an object of members named from `names` (repeats likely), with what may
/// precede or follow it.
pub(crate) fn document(names: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let around: &[(&[u8], &[u8])] = &[
        (b"", b""),
        (b"", b""),
        (b"", b""),
        (b"", b""),
        (b"", b""),
        (b"", b""),
        (b"", b""),
        (b"", b""),
        (b" \n\t", b" \r\n"),
        (b"\xef\xbb\xbf", b""),
        (b"", b" x"),
        (b"", b"{}"),
        (b"", b"\0"),
        (b"[", b"]"),
    ];
    (
        proptest::collection::vec((name(names), value(names)), 0..8),
        proptest::sample::select(around),
    )
        .prop_map(|(members, (before, after))| {
            let mut out = before.to_vec();
            out.extend_from_slice(&object(&members));
            out.extend_from_slice(after);
            out
        })
}

fn object(members: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let items: Vec<Vec<u8>> = members
        .iter()
        .map(|(n, v)| [&n[..], b":", &v[..]].concat())
        .collect();
    join(b"{", &items, b"}")
}

fn join(open: &[u8], items: &[Vec<u8>], close: &[u8]) -> Vec<u8> {
    let mut out = open.to_vec();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(close);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    /// The documents are worth comparing: a good share are JSON objects, and a good share
    /// are not.
    #[test]
    fn documents_are_often_json_objects_and_often_not() {
        let mut runner = TestRunner::deterministic();
        let strategy = document(&["iss", "aud", "cnf"]);
        let total = 2_000;
        let objects = (0..total)
            .filter(|_| {
                let doc = strategy.new_tree(&mut runner).unwrap().current();
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&doc).is_ok()
            })
            .count();
        eprintln!("{objects} of {total} are JSON objects");
        assert!(objects > total / 5, "{objects} of {total}");
        assert!(objects < total * 4 / 5, "{objects} of {total}");
    }
}
