//! The registered claims of a JWT access token (RFC 7519 §4.1, RFC 9068 §2.2), read in one
//! pass over the payload before its signature is checked, without building anything else.
//!
//! Strings are borrowed from the payload where the JSON has no escapes; the structured claims
//! (`aud`, `scope`, `scp`, `cnf`) are read into the few strings the checks use. Every other
//! member is parsed as strictly and as deep as the handlers' claims map reads it, and skipped,
//! so a payload this reads is one that map reads too. A repeated member keeps its last value
//! (RFC 7519 §4 allows it). The handlers' full claims map is built from the same bytes only
//! when a handler asks for it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::json::{Claim, Name, Skip, Text, other_types};

/// The claims the guard checks, from one payload.
#[derive(Debug, Default)]
pub(crate) struct Registered<'a> {
    pub(crate) iss: Claim<Cow<'a, str>>,
    pub(crate) sub: Claim<Cow<'a, str>>,
    pub(crate) client_id: Claim<Cow<'a, str>>,
    pub(crate) exp: Claim<i64>,
    pub(crate) nbf: Claim<i64>,
    pub(crate) iat: Claim<i64>,
    /// `aud` (RFC 7519 §4.1.3): a string, or the strings of an array (its other elements
    /// ignored); any other JSON value is [`Claim::OtherType`].
    pub(crate) aud: Claim<Vec<Cow<'a, str>>>,
    /// The scope names of `scope` (space-separated, RFC 9068 §2.2.3.1); an array of strings is
    /// read too, any other value grants nothing.
    pub(crate) scope: Names<'a>,
    /// The scope names of `scp`, read as `scope` is.
    pub(crate) scp: Names<'a>,
    /// `cnf` (RFC 7800 §3.1).
    pub(crate) cnf: Claim<Cnf<'a>>,
    /// `active`, in an introspection response (RFC 7662 §2.2): only JSON `true` is active.
    pub(crate) active: Claim<bool>,
}

/// The members of a `cnf` object (RFC 7800 §3.1).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Cnf<'a> {
    /// `jkt`: a DPoP key's thumbprint (RFC 9449 §6.1).
    pub(crate) jkt: Claim<Cow<'a, str>>,
    /// `x5t#S256`: a client certificate's thumbprint (RFC 8705 §3.1).
    pub(crate) x5t_s256: Claim<Cow<'a, str>>,
    /// A member of another name was present (`jwk`, `kid`, `jku` or unknown).
    pub(crate) other: bool,
}

impl<'a> Registered<'a> {
    /// Reads a JWT payload; `None` when it is not one JSON object.
    pub(crate) fn parse(payload: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }
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
                "aud" => claims.aud = map.next_value::<Audience<'de>>()?.0,
                "scope" => claims.scope = map.next_value()?,
                "scp" => claims.scp = map.next_value()?,
                "cnf" => claims.cnf = map.next_value::<CnfClaim<'de>>()?.0,
                "active" => claims.active = map.next_value::<Flag>()?.0,
                // Checked as strictly as if it were built, and as deep (`Skip`).
                _ => map.next_value_seed(Skip)?,
            }
        }
        Ok(claims)
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
            other_types!(Time(Claim::OtherType); strings literals arrays objects);
        }
        deserializer.deserialize_any(V)
    }
}

/// A boolean; any other JSON value is [`Claim::OtherType`].
struct Flag(Claim<bool>);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
                Ok(Flag(Claim::Value(b)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Flag(Claim::OtherType))
            }
            other_types!(Flag(Claim::OtherType); strings numbers arrays objects);
        }
        deserializer.deserialize_any(V)
    }
}

/// The strings of an array, its other elements parsed and skipped.
fn strings<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Vec<Cow<'de, str>>, A::Error> {
    let mut out = Vec::new();
    while let Some(Text(item)) = seq.next_element::<Text<'de>>()? {
        if let Claim::Value(s) = item {
            out.push(s);
        }
    }
    Ok(out)
}

/// `aud`: a string or an array; anything else is [`Claim::OtherType`].
struct Audience<'a>(Claim<Vec<Cow<'a, str>>>);

impl<'de> Deserialize<'de> for Audience<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Audience<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Audience(Claim::Value(vec![Cow::Borrowed(s)])))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Audience(Claim::Value(vec![Cow::Owned(s.to_owned())])))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Ok(Audience(Claim::Value(strings(seq)?)))
            }
            other_types!(Audience(Claim::OtherType); numbers literals objects);
        }
        deserializer.deserialize_any(V)
    }
}

/// Scope names: the space-separated names of a string (empty ones dropped), or the strings of
/// an array; any other JSON value grants none.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Names<'a>(pub(crate) Vec<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Names<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Names<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Names(
                    s.split(' ')
                        .filter(|n| !n.is_empty())
                        .map(Cow::Borrowed)
                        .collect(),
                ))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                let names = s.split(' ').filter(|n| !n.is_empty());
                Ok(Names(names.map(|n| Cow::Owned(n.to_owned())).collect()))
            }
            other_types!(Names::default(); numbers literals objects);
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Ok(Names(strings(seq)?))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `cnf`: an object's members by name (a repeated one keeps its last value); any other JSON
/// value is [`Claim::OtherType`].
struct CnfClaim<'a>(Claim<Cnf<'a>>);

impl<'de> Deserialize<'de> for CnfClaim<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CnfClaim<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut cnf = Cnf::default();
                while let Some(Name(name)) = map.next_key()? {
                    match &*name {
                        "jkt" => cnf.jkt = map.next_value::<Text<'de>>()?.0,
                        "x5t#S256" => cnf.x5t_s256 = map.next_value::<Text<'de>>()?.0,
                        _ => {
                            cnf.other = true;
                            map.next_value_seed(Skip)?;
                        }
                    }
                }
                Ok(CnfClaim(Claim::Value(cnf)))
            }
            other_types!(CnfClaim(Claim::OtherType); strings numbers literals arrays);
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
            "iat":18446744073709551615,"aud":["x",1,["y"],"z\u0031"],"scope":"read  write",
            "cnf":{"jkt":"t","jwk":{}},"other":{"deep":[1,2,{"x":null}]},"scp":"old","scp":["new"]}"#;
        let r = Registered::parse(payload).unwrap();
        assert_eq!(r.iss, Claim::Value(Cow::Borrowed("https://i")));
        assert_eq!(r.sub, Claim::Value(Cow::Owned("a\"b".into())));
        assert_eq!(r.client_id, Claim::OtherType);
        assert_eq!(r.exp, Claim::Value(10));
        assert_eq!(r.nbf, Claim::OtherType);
        assert_eq!(r.iat, Claim::Value(i64::MAX));
        assert_eq!(r.aud, Claim::Value(vec!["x".into(), "z1".into()]));
        assert_eq!(r.scope, Names(vec!["read".into(), "write".into()]));
        assert_eq!(r.scp, Names(vec!["new".into()]));
        let cnf = Cnf {
            jkt: Claim::Value("t".into()),
            x5t_s256: Claim::Absent,
            other: true,
        };
        assert_eq!(r.cnf, Claim::Value(cnf));
    }

    #[test]
    fn reads_as_strictly_and_as_deep_as_the_claims_map() {
        let nested = |levels: usize| "[".repeat(levels) + &"]".repeat(levels);
        let object = |levels: usize| "{\"a\":".repeat(levels) + "1" + &"}".repeat(levels);
        // 127 levels in all is serde_json's limit: the object and 126 more.
        for (levels, read) in [(126, true), (127, false)] {
            for name in ["aud", "scope", "scp", "cnf", "iss", "exp", "other"] {
                for value in [nested(levels), object(levels)] {
                    let payload = format!(r#"{{"{name}":{value}}}"#);
                    let whole = serde_json::from_slice::<serde_json::Map<_, _>>(payload.as_bytes());
                    assert_eq!(whole.is_ok(), read, "{name} {levels}");
                    let ours = Registered::parse(payload.as_bytes());
                    assert_eq!(ours.is_some(), read, "{name} {levels}");
                }
            }
        }
        // What the claims map refuses, anywhere in the payload, is refused here too.
        for bad in [
            r#""\ud800""#,
            r#"["\ud800"]"#,
            r#"{"jkt":"\udc00"}"#,
            r#"{"\ud800":1}"#,
            "1e999",
            "[1e999]",
            r#"{"jkt":"t","x":-1e400}"#,
        ] {
            for name in ["aud", "scope", "scp", "cnf", "iss", "other"] {
                let payload = format!(r#"{{"{name}":{bad},"{name}":"later"}}"#);
                let whole = serde_json::from_slice::<serde_json::Map<_, _>>(payload.as_bytes());
                assert!(whole.is_err(), "{payload}");
                assert!(Registered::parse(payload.as_bytes()).is_none(), "{payload}");
            }
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

/// The typed reader against the handlers' claims map: every payload is read by both, and
/// what the guard checks must be what serde_json's own `Map<String, Value>` holds, read by
/// the map-based logic this reader replaced. A payload the typed reader accepts and the map
/// refuses would hand handlers an empty claims map; one they read differently would have the
/// guard check other claims than the handlers see.
#[cfg(test)]
mod map_differential {
    use super::*;
    use crate::json::hostile;
    use crate::token::claims::{Confirmation, Scopes};
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    /// What the guard acts on, from one payload.
    #[derive(Debug, PartialEq)]
    struct Checked {
        iss: Claim<String>,
        sub: Claim<String>,
        client_id: Claim<String>,
        exp: Claim<i64>,
        nbf: Claim<i64>,
        iat: Claim<i64>,
        aud: Claim<Vec<String>>,
        scopes: Scopes,
        cnf: Option<Confirmation>,
    }

    fn ours(payload: &[u8]) -> Option<Checked> {
        let r = Registered::parse(payload)?;
        let text = |c: &Claim<Cow<'_, str>>| match c {
            Claim::Absent => Claim::Absent,
            Claim::Value(s) => Claim::Value(s.to_string()),
            Claim::OtherType => Claim::OtherType,
        };
        Some(Checked {
            iss: text(&r.iss),
            sub: text(&r.sub),
            client_id: text(&r.client_id),
            exp: r.exp.clone(),
            nbf: r.nbf.clone(),
            iat: r.iat.clone(),
            aud: match &r.aud {
                Claim::Absent => Claim::Absent,
                Claim::Value(v) => Claim::Value(v.iter().map(|s| s.to_string()).collect()),
                Claim::OtherType => Claim::OtherType,
            },
            scopes: Scopes::from_names(r.scope.0.iter().chain(&r.scp.0).map(|n| &**n)),
            cnf: Confirmation::from_cnf(&r.cnf),
        })
    }

    /// The handlers' claims map, read as the map-based code before this reader did.
    fn reference(payload: &[u8]) -> Option<Checked> {
        let map: Map<String, Value> = serde_json::from_slice(payload).ok()?;
        let text = |name: &str| match map.get(name) {
            None => Claim::Absent,
            Some(Value::String(s)) => Claim::Value(s.clone()),
            Some(_) => Claim::OtherType,
        };
        let time = |name: &str| match map.get(name) {
            None => Claim::Absent,
            Some(Value::Number(n)) => Claim::Value(match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => i,
                (None, Some(_), _) => i64::MAX,
                #[allow(clippy::cast_possible_truncation)]
                (None, None, Some(f)) => f as i64,
                (None, None, None) => unreachable!("a JSON number is one of the three"),
            }),
            Some(_) => Claim::OtherType,
        };
        let aud = match map.get("aud") {
            None => Claim::Absent,
            Some(Value::String(a)) => Claim::Value(vec![a.clone()]),
            Some(Value::Array(items)) => Claim::Value(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ),
            Some(_) => Claim::OtherType,
        };
        let mut names = Vec::new();
        for name in ["scope", "scp"] {
            match map.get(name) {
                Some(Value::String(s)) => names.extend(s.split(' ').filter(|s| !s.is_empty())),
                Some(Value::Array(items)) => names.extend(items.iter().filter_map(Value::as_str)),
                _ => {}
            }
        }
        let cnf = match map.get("cnf") {
            None => Some(Confirmation::default()),
            Some(Value::Object(cnf)) if !cnf.is_empty() => {
                if cnf.keys().any(|k| k != "jkt" && k != "x5t#S256") {
                    None
                } else {
                    let member = |name: &str| match cnf.get(name) {
                        None => Some(None),
                        Some(Value::String(s)) if !s.is_empty() => Some(Some(s.clone())),
                        Some(_) => None,
                    };
                    (|| {
                        Some(Confirmation {
                            jkt: member("jkt")?,
                            x5t_s256: member("x5t#S256")?,
                        })
                    })()
                }
            }
            Some(_) => None,
        };
        Some(Checked {
            iss: text("iss"),
            sub: text("sub"),
            client_id: text("client_id"),
            exp: time("exp"),
            nbf: time("nbf"),
            iat: time("iat"),
            aud,
            scopes: Scopes::from_names(names),
            cnf,
        })
    }

    #[track_caller]
    fn assert_agree(payload: &[u8]) {
        assert_eq!(
            ours(payload),
            reference(payload),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }

    const NAMES: &[&str] = &[
        "iss",
        "sub",
        "client_id",
        "exp",
        "nbf",
        "iat",
        "aud",
        "scope",
        "scp",
        "cnf",
        "jkt",
        "x5t#S256",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn the_typed_reader_agrees_with_the_claims_map(payload in hostile::document(NAMES)) {
            prop_assert_eq!(
                ours(&payload),
                reference(&payload),
                "{}",
                String::from_utf8_lossy(&payload)
            );
        }
    }

    #[test]
    fn repeated_structured_claims_of_mixed_types_agree_in_either_order() {
        let values = [
            r#""api""#,
            r#"["api"]"#,
            r#"[["api"]]"#,
            r#"[1,"api",null]"#,
            r#""read write""#,
            r#"["read","write",""]"#,
            r#""read	write""#,
            r#""read\u0020write""#,
            r#""read\u00a0write""#,
            "\"read\u{2003}write\"",
            r#"{"jkt":"t"}"#,
            r#"{"j\u006bt":"t"}"#,
            r#"{"x5t\u0023S256":"c"}"#,
            r#"{"jkt":"t","x5t#S256":"c"}"#,
            r#"{"jkt":"t","jkt":1}"#,
            r#"{"jkt":1,"jkt":"t"}"#,
            r#"{"jkt":""}"#,
            r#"{"jkt":"t","jwk":{}}"#,
            r#"{"jkt":"t","":1}"#,
            r#"{}"#,
            r#"[]"#,
            "null",
            "0",
            "true",
            r#""""#,
        ];
        for name in ["aud", "scope", "scp", "cnf"] {
            for first in values {
                for second in values {
                    assert_agree(format!(r#"{{"{name}":{first},"{name}":{second}}}"#).as_bytes());
                    // The same name spelled with an escape is the same member.
                    let escaped = format!("\\u{:04x}{}", u32::from(name.as_bytes()[0]), &name[1..]);
                    assert_agree(
                        format!(r#"{{"{name}":{first},"{escaped}":{second}}}"#).as_bytes(),
                    );
                }
            }
        }
    }

    #[test]
    fn numeric_dates_at_the_edges_agree() {
        for n in [
            "1e308",
            "-1e308",
            "-0.0",
            "-0",
            "0.9",
            "-0.9",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "1.5e19",
            "-1e19",
            "1E2",
            "1e+2",
            "12e-1",
            "5e-324",
            "1e400",
            "1e-400",
        ] {
            for name in ["exp", "nbf", "iat"] {
                assert_agree(format!(r#"{{"{name}":{n}}}"#).as_bytes());
            }
        }
    }

    #[test]
    fn nesting_at_serde_jsons_limit_agrees_in_every_claim_position() {
        let arrays = |n: usize, inner: &str| "[".repeat(n) + inner + &"]".repeat(n);
        for levels in 124..=128 {
            for name in NAMES.iter().chain(&["other"]) {
                for value in [
                    arrays(levels, ""),
                    arrays(levels, r#""api""#),
                    format!(r#"["api",{}]"#, arrays(levels - 1, "")),
                    format!(r#"{{"jkt":"t","x":{}}}"#, arrays(levels - 1, "")),
                    format!(r#"{{"jkt":{}}}"#, arrays(levels - 1, "")),
                ] {
                    assert_agree(format!(r#"{{"{name}":{value}}}"#).as_bytes());
                    assert_agree(format!(r#"{{"{name}":{value},"{name}":"api"}}"#).as_bytes());
                }
            }
        }
    }

    #[test]
    fn invalid_text_anywhere_agrees() {
        for bad in [
            &b"\"\xff\""[..],
            b"\"\xed\xa0\x80\"",
            b"\"\xc0\xaf\"",
            b"\"\x7f\"",
            b"\"\x1f\"",
            b"\"\\ud800\\ud800\"",
            b"\"\\udbff\\udfff\"",
            b"\"\\uDC00\"",
            b"\"\\u12\"",
        ] {
            for name in NAMES.iter().chain(&["other"]) {
                let inside = [&b"{\""[..], name.as_bytes(), b"\":", bad, b"}"].concat();
                assert_agree(&inside);
                let in_array = [&b"{\""[..], name.as_bytes(), b"\":[", bad, b"]}"].concat();
                assert_agree(&in_array);
                let as_name = [&b"{\""[..], name.as_bytes(), b"\":{", bad, b":\"t\"}}"].concat();
                assert_agree(&as_name);
            }
        }
        for document in [
            &b"\xef\xbb\xbf{}"[..],
            b"{} ",
            b"{}\n",
            b"{}\0",
            b"{},",
            b" {}",
            b"{\"iss\":\"a\"}}",
        ] {
            assert_agree(document);
        }
    }
    /// serde_json's private marker of a `RawValue`. With serde_json's `raw_value` feature on
    /// (any crate of an application may turn it on), a `Value` read from an object whose
    /// first member has this name (escapes decoded) is the JSON *inside* that member's
    /// string, parsed anew; an object where that member is not a string, or is followed by
    /// another member, is an error. The claims map is a map of `Value`s, so it would read
    /// such an object in any claim that way: the reader refuses the name anywhere.
    const MARKER: &str = "$serde_json::private::RawValue";

    /// A payload the claims map refuses must be refused: here it is accepted, and the guard
    /// admits a token whose handlers get an empty claims map (every claim gone, `role`
    /// included).
    #[test]
    fn a_payload_the_claims_map_refuses_behind_serde_jsons_raw_value_marker_is_refused() {
        let spellings = [MARKER.to_owned(), MARKER.replace('e', "\\u0065")];
        let inners = [
            r#""not json""#.to_owned(),
            r#""""#.to_owned(),
            "1".to_owned(),
            "null".to_owned(),
            r#""1","more":2"#.to_owned(),
            r#""\"\\ud800\"""#.to_owned(),
            // Past the depth limit inside the string: the claims map parses it afresh.
            format!(r#""{}""#, "[".repeat(130) + &"]".repeat(130)),
        ];
        let mut accepted = Vec::new();
        for marker in &spellings {
            for inner in &inners {
                for name in ["other", "role", "scope", "scp"] {
                    let payload =
                        format!(r#"{{"iss":"i","role":"user","{name}":{{"{marker}":{inner}}}}}"#);
                    let map = serde_json::from_slice::<Map<String, Value>>(payload.as_bytes());
                    assert!(map.is_err(), "{payload}");
                    if Registered::parse(payload.as_bytes()).is_some() {
                        accepted.push(payload);
                    }
                }
            }
        }
        assert!(
            accepted.is_empty(),
            "{} payloads the claims map refuses are accepted, e.g. {}",
            accepted.len(),
            accepted[0]
        );
    }

    /// What the guard reads and what the handlers' map holds must agree: the map would
    /// hold `"scope": "admin"` read from inside the marker's string, so the payload is
    /// refused rather than read two ways.
    #[test]
    fn the_claims_map_holds_the_scopes_the_guard_read_behind_serde_jsons_raw_value_marker() {
        for name in ["scope", "scp"] {
            let payload = format!(r#"{{"{name}":{{"{MARKER}":"\"admin\""}}}}"#);
            let map: Map<String, Value> = serde_json::from_slice(payload.as_bytes()).unwrap();
            assert_eq!(map[name], "admin", "the claims map, as serde_json reads it");
            assert!(Registered::parse(payload.as_bytes()).is_none(), "{payload}");
        }
    }

    /// The marker, or any of serde_json's private names, spelled plainly or with escapes, as
    /// the name of a member anywhere (the payload itself, a checked claim, a claim the guard
    /// skips, deep inside one): the payload is refused.
    #[test]
    fn serde_jsons_private_member_names_are_refused_anywhere() {
        let names = [
            MARKER.to_owned(),
            MARKER.replace('e', "\\u0065"),
            "$serde_json::private::Number".to_owned(),
            "$serde_json::private::".to_owned(),
        ];
        for marker in &names {
            let wrap = |json: &str| format!(r#"{{"{marker}":{}}}"#, Value::from(json));
            let mut payloads = vec![
                format!(r#"{{"{marker}":"not json","iss":"i"}}"#),
                format!(r#"{{"x":[1,{{"a":{{"b":{}}}}}]}}"#, wrap("1")),
                format!(r#"{{"x":{{"ok":1,"{marker}":2}}}}"#),
            ];
            for name in [
                "iss",
                "sub",
                "client_id",
                "exp",
                "nbf",
                "iat",
                "aud",
                "cnf",
                "other",
            ] {
                payloads.push(format!(r#"{{"{name}":{}}}"#, wrap("1")));
            }
            payloads.push(format!(r#"{{"cnf":{{"jkt":"t","{marker}":1}}}}"#));
            for payload in payloads {
                assert!(Registered::parse(payload.as_bytes()).is_none(), "{payload}");
            }
        }
        // A name that only starts like one is a name like any other.
        let payload = r#"{"$serde_json":1,"serde_json::private::RawValue":2,"iss":"i"}"#;
        assert!(Registered::parse(payload.as_bytes()).is_some());
    }

    /// serde_json's depth limit (128) bounds the claims map's nesting, and so the stack a
    /// handler needs to build it (json.rs: "nesting by serde_json's recursion limit"). Behind
    /// the marker, each string would be parsed afresh with a limit of its own: under 5 KB of
    /// payload would nest the map over a thousand levels deep (some 1.6 MiB of stack to build
    /// in a build of serde_json without optimizations; a tokio worker has 2 MiB). The reader
    /// refuses the payload, so no handler builds that map.
    #[test]
    fn a_payload_nested_past_serde_jsons_limit_behind_the_raw_value_marker_is_refused() {
        let mut inner = "1".to_owned();
        for _ in 0..9 {
            let object = format!(
                "{{{}:{}}}",
                Value::from(MARKER),
                Value::from(inner.as_str())
            );
            inner = "[".repeat(125) + &object + &"]".repeat(125);
        }
        let payload = format!(r#"{{"x":{inner}}}"#);
        assert!(payload.len() < 5_000);
        assert!(Registered::parse(payload.as_bytes()).is_none());
    }
}
