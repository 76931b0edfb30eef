//! The registered claims of a JWT access token (RFC 7519 §4.1, RFC 9068 §2.2), read in one
//! pass over the payload before its signature is checked, without building anything else.
//!
//! Strings are borrowed from the payload where the JSON has no escapes; the structured claims
//! (`aud`, `scope`, `scp`, `cnf`) are kept as raw JSON text, read only once the signature has
//! verified. Every other member is checked for syntax and skipped. A repeated member keeps its
//! last value (RFC 7519 §4 allows it). The handlers' full claims map is built from the same
//! bytes only when a handler asks for it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::json::Skip;

/// The visitor methods of the JSON types a claim visitor does not read: the value is
/// consumed (arrays and objects checked and skipped, unbuilt) and `$other` returned.
macro_rules! other_types {
    ($other:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element_seed(Skip)?.is_some() {}
            Ok($other)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_key_seed(Skip)?.is_some() {
                map.next_value_seed(Skip)?;
            }
            Ok($other)
        }
    };
}

/// A claim as sent: absent, of the type the guard reads, or of another (`null` included).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Claim<T> {
    #[default]
    Absent,
    Value(T),
    OtherType,
}

/// The claims the guard checks, from one payload.
#[derive(Debug, Default)]
pub(crate) struct Registered<'a> {
    pub(crate) iss: Claim<Cow<'a, str>>,
    pub(crate) sub: Claim<Cow<'a, str>>,
    pub(crate) client_id: Claim<Cow<'a, str>>,
    pub(crate) exp: Claim<i64>,
    pub(crate) nbf: Claim<i64>,
    pub(crate) iat: Claim<i64>,
    /// `aud`, `scope`, `scp` and `cnf` as sent, for after the signature.
    pub(crate) structured: Vec<(&'static str, &'a RawValue)>,
}

/// The structured claims, by name.
const STRUCTURED: [&str; 4] = ["aud", "scope", "scp", "cnf"];

impl<'a> Registered<'a> {
    /// Reads a JWT payload; `None` when it is not one JSON object.
    pub(crate) fn parse(payload: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }
}

/// A structured claim as a JSON value, read as strictly and to the same depth as the rest of
/// the payload: the raw text is taken unchecked, so it is read here as the one element of an
/// array, one level down as it is in the payload's object.
pub(crate) fn structured_value(raw: &RawValue) -> Option<Value> {
    let wrapped = format!("[{}]", raw.get());
    let [value]: [Value; 1] = serde_json::from_str(&wrapped).ok()?;
    Some(value)
}

impl<'de> Deserialize<'de> for Registered<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RegisteredVisitor)
    }
}

struct RegisteredVisitor;

impl<'de> Visitor<'de> for RegisteredVisitor {
    type Value = Registered<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut claims = Registered::default();
        while let Some(Name(name)) = map.next_key()? {
            match &*name {
                "iss" => claims.iss = map.next_value::<Text<'de>>()?.0,
                "sub" => claims.sub = map.next_value::<Text<'de>>()?.0,
                "client_id" => claims.client_id = map.next_value::<Text<'de>>()?.0,
                "exp" => claims.exp = map.next_value::<Time>()?.0,
                "nbf" => claims.nbf = map.next_value::<Time>()?.0,
                "iat" => claims.iat = map.next_value::<Time>()?.0,
                other => match STRUCTURED.iter().find(|s| **s == other) {
                    Some(known) => {
                        let raw: &'de RawValue = map.next_value()?;
                        claims.structured.retain(|(n, _)| n != known);
                        claims.structured.push((known, raw));
                    }
                    // Checked as strictly as if it were built, and as deep (`Skip`).
                    None => map.next_value_seed(Skip)?,
                },
            }
        }
        Ok(claims)
    }
}

/// A member name, borrowed unless it has escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(s.to_owned())))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// A string claim; any other JSON value is skipped and reported as [`Claim::OtherType`].
struct Text<'a>(Claim<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Claim::Value(Cow::Borrowed(s))))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Text(Claim::Value(Cow::Owned(s.to_owned()))))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text(Claim::OtherType))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text(Claim::OtherType))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text(Claim::OtherType))
            }
            other_types!(Text(Claim::OtherType));
        }
        deserializer.deserialize_any(V)
    }
}

/// A NumericDate claim (RFC 7519 §2): an integer, or a finite number whose fraction is
/// dropped; values beyond `i64` saturate. Any other JSON value is [`Claim::OtherType`].
struct Time(Claim<i64>);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Time;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
                Ok(Time(Claim::Value(n)))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Time(Claim::Value(i64::try_from(n).unwrap_or(i64::MAX))))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
                // `as` saturates at the i64 bounds.
                Ok(Time(if n.is_finite() {
                    Claim::Value(n as i64)
                } else {
                    Claim::OtherType
                }))
            }
            fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(Time(Claim::OtherType))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Time(Claim::OtherType))
            }
            other_types!(Time(Claim::OtherType));
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_claim_as_its_type_and_everything_else_as_other() {
        let payload = br#"{"iss":"https://i","sub":"a\"b","client_id":7,"exp":10.9,"nbf":null,
            "iat":18446744073709551615,"aud":["x",1],"scope":"read write","cnf":{"jkt":"t"},
            "other":{"deep":[1,2,{"x":null}]},"scp":"old","scp":["new"]}"#;
        let r = Registered::parse(payload).unwrap();
        assert_eq!(r.iss, Claim::Value(Cow::Borrowed("https://i")));
        assert_eq!(r.sub, Claim::Value(Cow::Owned("a\"b".into())));
        assert_eq!(r.client_id, Claim::OtherType);
        assert_eq!(r.exp, Claim::Value(10));
        assert_eq!(r.nbf, Claim::OtherType);
        assert_eq!(r.iat, Claim::Value(i64::MAX));
        let structured: Vec<(&str, &str)> =
            r.structured.iter().map(|(n, v)| (*n, v.get())).collect();
        assert_eq!(
            structured,
            [
                ("aud", r#"["x",1]"#),
                ("scope", r#""read write""#),
                ("cnf", r#"{"jkt":"t"}"#),
                ("scp", r#"["new"]"#),
            ]
        );
    }

    #[test]
    fn a_structured_claim_is_read_strictly_and_to_the_payloads_depth() {
        let nested = |levels: usize| "[".repeat(levels) + &"]".repeat(levels);
        // 127 levels in all is serde_json's limit: the object and 126 arrays.
        for (levels, read) in [(126, true), (127, false)] {
            let payload = format!(r#"{{"aud":{}}}"#, nested(levels));
            let r = Registered::parse(payload.as_bytes()).unwrap();
            let (_, raw) = r.structured[0];
            assert_eq!(structured_value(raw).is_some(), read, "{levels}");
            let whole =
                serde_json::from_slice::<serde_json::Map<String, Value>>(payload.as_bytes());
            assert_eq!(whole.is_ok(), read, "{levels}");
        }
        let payload = br#"{"aud":"\ud800"}"#;
        if let Some(r) = Registered::parse(payload) {
            assert!(structured_value(r.structured[0].1).is_none());
        }
    }

    #[test]
    fn a_repeated_claim_keeps_its_last_value() {
        let r = Registered::parse(br#"{"iss":"a","iss":"b","exp":1,"exp":"x"}"#).unwrap();
        assert_eq!(r.iss, Claim::Value(Cow::Borrowed("b")));
        assert_eq!(r.exp, Claim::OtherType);
    }

    #[test]
    fn refuses_what_is_not_one_json_object() {
        for payload in [
            &b"[]"[..],
            b"\"iss\"",
            b"{\"iss\":\"a\"} {}",
            b"{\"iss\":\"a\"",
            b"{\"a\":[1,}",
            b"",
        ] {
            assert!(Registered::parse(payload).is_none(), "{payload:?}");
        }
        assert!(Registered::parse(b"{}").is_some());
    }
}
