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
