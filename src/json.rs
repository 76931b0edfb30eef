//! JSON from senders who may be attackers (RFC 8259): only the members a step acts on are
//! built; every other member is parsed in full (so the document is held to the whole JSON
//! grammar, RFC 7515 §5.2) but not stored, so that what a sender adds costs parsing time,
//! never memory. Input size is bounded by each caller, nesting by serde_json's recursion limit.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The visitor methods of the JSON types a claim visitor does not read, by kind (`strings`,
/// `numbers`, `literals` for booleans and null, `arrays`, `objects`): the value is consumed
/// (arrays and objects checked and skipped, unbuilt) and `$other` returned.
macro_rules! other_types {
    (@strings $other:expr) => {
        fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($other)
        }
    };
    (@numbers $other:expr) => {
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($other)
        }
    };
    (@literals $other:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($other)
        }
    };
    (@arrays $other:expr) => {
        fn visit_seq<A: ::serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element_seed($crate::json::Skip)?.is_some() {}
            Ok($other)
        }
    };
    (@objects $other:expr) => {
        fn visit_map<A: ::serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_key_seed($crate::json::SkipName)?.is_some() {
                map.next_value_seed($crate::json::Skip)?;
            }
            Ok($other)
        }
    };
    ($other:expr; $($kind:ident)+) => {
        $($crate::json::other_types!(@$kind $other);)+
    };
}
pub(crate) use other_types;

/// A claim as sent: absent, of the type the guard reads, or of another (`null` included).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Claim<T> {
    #[default]
    Absent,
    Value(T),
    OtherType,
}

/// The prefix of serde_json's private member names. An object whose first member is named
/// `$serde_json::private::RawValue` (with serde_json's `raw_value` feature, which any crate of
/// an application may turn on) or `$serde_json::private::Number` (`arbitrary_precision`) is
/// read by `serde_json::Value` as an instruction, not as a member: its string is parsed as
/// JSON of its own, unchecked by the pass that read the document. No token or answer needs
/// such a name; every reader here refuses it, anywhere, so the handlers' claims map (a
/// `Value` map of the same bytes) never meets one.
const SERDE_JSON_PRIVATE: &str = "$serde_json::private::";

/// Refuses serde_json's private member names ([`SERDE_JSON_PRIVATE`]).
fn ordinary_name<E: de::Error>(name: &str) -> Result<(), E> {
    if name.starts_with(SERDE_JSON_PRIVATE) {
        return Err(E::custom("a member name reserved by serde_json"));
    }
    Ok(())
}

/// A member name skipped: checked ([`ordinary_name`]), not stored.
#[derive(Clone, Copy)]
pub(crate) struct SkipName;

impl<'de> DeserializeSeed<'de> for SkipName {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for SkipName {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<(), E> {
        ordinary_name(name)
    }
}

/// A member name, borrowed unless it has escapes.
pub(crate) struct Name<'a>(pub(crate) Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                ordinary_name(s)?;
                Ok(Name(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                ordinary_name(s)?;
                Ok(Name(Cow::Owned(s.to_owned())))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// A string claim; any other JSON value is skipped and reported as [`Claim::OtherType`].
pub(crate) struct Text<'a>(pub(crate) Claim<Cow<'a, str>>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
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
            other_types!(Text(Claim::OtherType); numbers literals arrays objects);
        }
        deserializer.deserialize_any(V)
    }
}

/// Which members of an object to build.
#[derive(Clone, Copy)]
pub(crate) struct Members<'k> {
    /// Members built as [`Value`]s when they are strings, numbers, booleans or null; an array
    /// or object there is skipped unbuilt and kept as an empty array, a marker of presence
    /// that no caller takes for the string it reads.
    pub(crate) keep: &'k [&'k str],
    /// One member that is itself an object read with its own list (a non-object value there
    /// is kept as [`Value::Null`], which no caller takes for an object).
    pub(crate) nested: Option<(&'k str, &'k [&'k str])>,
}

impl Members<'_> {
    /// The kept members of the JSON object in `bytes`; `None` when `bytes` is not one. A
    /// repeated member keeps its last value (RFC 7515 §4 and RFC 8259 §4 allow that).
    pub(crate) fn parse(self, bytes: &[u8]) -> Option<Map<String, Value>> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let map = self.deserialize(&mut deserializer).ok()?;
        deserializer.end().ok()?;
        Some(map)
    }
}

impl<'de> DeserializeSeed<'de> for Members<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Members<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        let nested = self.nested.map(|(name, _)| name);
        while let Some(name) = map.next_key_seed(KeptName(self.keep, nested))? {
            match name {
                Some(name) if self.nested.is_some_and(|(n, _)| n == name) => {
                    let keep = self.nested.map_or(&[][..], |(_, keep)| keep);
                    let members = Members { keep, nested: None };
                    let value = map.next_value_seed(ObjectOrNull(members))?;
                    out.insert(name.to_owned(), value);
                }
                Some(name) => {
                    out.insert(name.to_owned(), map.next_value_seed(Scalar)?);
                }
                None => {
                    map.next_value_seed(Skip)?;
                }
            }
        }
        Ok(out)
    }
}

/// Any JSON value, parsed as strictly as when it is built (UTF-8, escapes, number range;
/// serde's `IgnoredAny` is not) and then dropped: nothing is stored.
#[derive(Clone, Copy)]
pub(crate) struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(SkipName)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

/// A scalar as itself; an array or object skipped unbuilt, as an empty array.
struct Scalar;

impl<'de> DeserializeSeed<'de> for Scalar {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scalar {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(Value::Array(Vec::new()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        while map.next_key_seed(SkipName)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(Value::Array(Vec::new()))
    }
}

/// A member name: which of `names` (or `also`) it is, compared without storing it (`None` for
/// others).
struct KeptName<'n, 'k>(&'n [&'k str], Option<&'k str>);

impl<'de, 'k> DeserializeSeed<'de> for KeptName<'_, 'k> {
    type Value = Option<&'k str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'k> Visitor<'_> for KeptName<'_, 'k> {
    type Value = Option<&'k str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        ordinary_name(name)?;
        Ok(self.0.iter().copied().chain(self.1).find(|n| *n == name))
    }
}

/// A nested object read by its own [`Members`], or [`Value::Null`] for any other value.
struct ObjectOrNull<'k>(Members<'k>);

impl<'de> DeserializeSeed<'de> for ObjectOrNull<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ObjectOrNull<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        self.0.visit_map(map).map(Value::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// Up to `limit` elements of the array member `name` of a JSON object, each read by
/// `element`; the elements past `limit` and every other member are skipped unbuilt. `None`
/// when `bytes` is not an object with that array.
pub(crate) fn array_member(
    bytes: &[u8],
    name: &str,
    limit: usize,
    element: Members<'_>,
) -> Option<Vec<Value>> {
    struct Outer<'a> {
        name: &'a str,
        inner: Inner<'a>,
    }
    #[derive(Clone, Copy)]
    struct Inner<'a> {
        limit: usize,
        element: Members<'a>,
    }
    impl<'de> Visitor<'de> for Outer<'_> {
        type Value = Option<Vec<Value>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(name) = map.next_key_seed(KeptName(&[], Some(self.name)))? {
                match name {
                    Some(_) => found = Some(map.next_value_seed(self.inner)?),
                    None => {
                        map.next_value_seed(Skip)?;
                    }
                }
            }
            Ok(found)
        }
    }
    impl<'de> DeserializeSeed<'de> for Inner<'_> {
        type Value = Vec<Value>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for Inner<'_> {
        type Value = Vec<Value>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while out.len() < self.limit {
                match seq.next_element_seed(ObjectOrNull(self.element))? {
                    Some(value) => out.push(value),
                    None => return Ok(out),
                }
            }
            while seq.next_element_seed(Skip)?.is_some() {}
            Ok(out)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let outer = Outer {
        name,
        inner: Inner { limit, element },
    };
    let found = de::Deserializer::deserialize_map(&mut deserializer, outer).ok()?;
    deserializer.end().ok()?;
    found
}

#[cfg(test)]
pub(crate) mod hostile;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HEADER: Members<'static> = Members {
        keep: &["alg", "typ"],
        nested: Some(("jwk", &["kty", "x"])),
    };

    #[test]
    fn builds_only_the_members_asked_for() {
        let bytes = br#"{"alg":"ES256","z":[1,2,{"a":[3]}],"typ":null,
            "jwk":{"kty":"EC","x":{"big":[0,0]},"extra":[0,0,0]},"alg":"ES384"}"#;
        let map = HEADER.parse(bytes).unwrap();
        // An object or array where a kept member is read: present, and not built.
        assert_eq!(
            Value::Object(map),
            json!({"alg": "ES384", "typ": null, "jwk": {"kty": "EC", "x": []}})
        );
    }

    #[test]
    fn a_nested_member_that_is_not_an_object_is_null_and_other_input_is_refused() {
        for other in ["[1,2]", "\"s\"", "7", "true", "null"] {
            let bytes = format!(r#"{{"jwk":{other}}}"#);
            assert_eq!(
                HEADER.parse(bytes.as_bytes()).unwrap()["jwk"],
                Value::Null,
                "{other}"
            );
        }
        for bad in ["[]", "\"s\"", "{\"alg\":1", "{} {}", "{\"alg\":1}x", ""] {
            assert_eq!(HEADER.parse(bad.as_bytes()), None, "{bad}");
        }
        // Skipped members are held to the grammar too.
        for invalid in [
            r#"{"z":1e400}"#,
            r#"{"z":"\ud800"}"#,
            r#"{"z":["\u0000\x"]}"#,
        ] {
            assert_eq!(HEADER.parse(invalid.as_bytes()), None, "{invalid}");
        }
        // Escaped names are the names they spell.
        assert_eq!(HEADER.parse(br#"{"\u0061lg":"x"}"#).unwrap()["alg"], "x");
    }

    #[test]
    fn an_array_member_yields_at_most_its_limit() {
        let element = Members {
            keep: &["kty"],
            nested: None,
        };
        let bytes =
            br#"{"other":[{}],"keys":[{"kty":"EC","big":[0,0]},5,{"kty":"RSA"},{"kty":"OKP"}]}"#;
        let keys = array_member(bytes, "keys", 3, element).unwrap();
        assert_eq!(
            keys,
            vec![json!({"kty": "EC"}), Value::Null, json!({"kty": "RSA"})]
        );
        assert_eq!(array_member(br#"{"keys":{}}"#, "keys", 3, element), None);
        assert_eq!(array_member(br#"{"other":[]}"#, "keys", 3, element), None);
    }
}
