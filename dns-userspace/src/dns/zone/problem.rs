//! The zone-file parser's errors said for people: which record, which field, what is wrong
//! with it ("A record www: "192.0.2.300" is not an IPv4 address"), instead of the parser's
//! internals ("proto error: decoding error: ...").

use std::str::FromStr as _;

use hickory_proto::{
    rr::{DNSClass, Name, RecordType},
    serialize::txt::ParseError,
};

/// The fields of a record type's data, in order, as the zone file writes them; `#` marks a
/// number, `@` a domain name.
fn fields(rtype: RecordType) -> &'static [&'static str] {
    match rtype {
        RecordType::A => &["IPv4 address"],
        RecordType::AAAA => &["IPv6 address"],
        RecordType::NS => &["@name server"],
        RecordType::CNAME | RecordType::PTR | RecordType::ANAME => &["@target"],
        RecordType::MX => &["#preference", "@exchange"],
        RecordType::SRV => &["#priority", "#weight", "#port", "@target"],
        RecordType::SOA => &[
            "@mname", "@rname", "#serial", "#refresh", "#retry", "#expire", "#minimum",
        ],
        RecordType::CAA => &["#flags", "tag", "value"],
        RecordType::SSHFP => &["#algorithm", "#fingerprint type", "fingerprint"],
        RecordType::TLSA => &["#usage", "#selector", "#matching type", "data"],
        RecordType::NAPTR => &[
            "#order",
            "#preference",
            "flags",
            "services",
            "regexp",
            "@replacement",
        ],
        RecordType::DS => &["#key tag", "#algorithm", "#digest type", "digest"],
        RecordType::HINFO => &["cpu", "os"],
        RecordType::TXT => &["text"],
        _ => &[],
    }
}

/// Whether `t` reads as a TTL: seconds (that fit), or BIND's `1h30m` style.
fn is_ttl(t: &str) -> bool {
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<u32>().is_ok();
    }
    let mut digits = false;
    for c in t.chars() {
        match c {
            '0'..='9' => digits = true,
            'w' | 'd' | 'h' | 'm' | 's' | 'W' | 'D' | 'H' | 'M' | 'S' if digits => digits = false,
            _ => return false,
        }
    }
    !t.is_empty()
}

/// One entry of a zone file split as the parser reads it: owner (`None` when the entry
/// starts with white space and takes the previous owner), type and data words.
struct Entry<'a> {
    owner: Option<&'a str>,
    /// The word where the type should be, and the type if it is one.
    rtype: Option<(&'a str, Option<RecordType>)>,
    data: Vec<&'a str>,
}

fn words(entry: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in entry.lines() {
        let mut rest = line.split(';').next().unwrap_or_default();
        while !rest.is_empty() {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(' || c == ')');
            if rest.is_empty() {
                break;
            }
            if let Some(quoted) = rest.strip_prefix('"') {
                let end = quoted.find('"').map_or(quoted.len(), |e| e + 1);
                out.push(&rest[..=end.min(rest.len() - 1)]);
                rest = &rest[(end + 1).min(rest.len())..];
                continue;
            }
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '(' || c == ')')
                .unwrap_or(rest.len());
            out.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    out
}

impl<'a> Entry<'a> {
    fn parse(entry: &'a str) -> Self {
        let words = words(entry);
        let has_owner = !entry.starts_with([' ', '\t']);
        let mut i = 0;
        let owner = if has_owner && !words.is_empty() {
            i = 1;
            Some(words[0])
        } else {
            None
        };
        while let Some(w) = words.get(i) {
            if is_ttl(w) || DNSClass::from_str(&w.to_ascii_uppercase()).is_ok() {
                i += 1;
            } else {
                break;
            }
        }
        let rtype = words
            .get(i)
            .map(|w| (*w, RecordType::from_str(&w.to_ascii_uppercase()).ok()));
        Self {
            owner,
            rtype,
            data: words.get(i + 1..).map(<[&str]>::to_vec).unwrap_or_default(),
        }
    }

    /// `A record www` (or `A record` for a blank owner).
    fn record(&self, rtype: RecordType) -> String {
        match self.owner {
            Some(o) => format!("{rtype} record {o}"),
            None => format!("{rtype} record"),
        }
    }

    /// The first data field whose kind (`#` number, `@` name) its word is not.
    fn bad_field(&self, rtype: RecordType, kind: char) -> Option<(&'static str, &'a str)> {
        fields(rtype)
            .iter()
            .zip(&self.data)
            .filter(|(f, _)| f.starts_with(kind))
            .find(|(_, w)| match kind {
                '#' => w.parse::<u32>().is_err(),
                _ => Name::from_ascii(w).is_err(),
            })
            .map(|(f, w)| (&f[1..], *w))
    }
}

/// What is wrong with `entry` (the text of the zone-file entry that failed) given the
/// parser's `error`.
pub fn describe(entry: &str, error: &ParseError) -> String {
    let e = Entry::parse(entry);
    let directive = entry.trim_start().starts_with('$');
    let rtype = e.rtype.and_then(|(_, t)| t);
    let text = error.to_string();
    match error {
        ParseError::AddrParse(_) => match (rtype, e.data.first()) {
            (Some(t @ (RecordType::A | RecordType::AAAA)), Some(w)) => {
                format!("{}: {w:?} is not an {}", e.record(t), fields(t)[0])
            }
            _ => format!(
                "invalid address: {}",
                text.trim_start_matches("network address parse error: ")
            ),
        },
        ParseError::ParseInt(_) | ParseError::CharToInt(_) => {
            match rtype.and_then(|t| Some((t, e.bad_field(t, '#')?))) {
                Some((t, (field, w))) => format!("{}: {field} {w:?} is not a number", e.record(t)),
                None => format!("a number is invalid ({text})"),
            }
        }
        ParseError::MissingToken(what) => match rtype {
            Some(t) => format!("{}: the {what} is missing", e.record(t)),
            None => format!("the {what} is missing"),
        },
        ParseError::ParseTime(t) if directive => {
            format!("$TTL {t:?} is not a TTL (seconds, or e.g. 1h30m)")
        }
        ParseError::ParseTime(t) => format!("{t:?} is not a TTL (seconds, or e.g. 1h30m)"),
        ParseError::DataEncoding(d) => match rtype {
            Some(t) => format!("{}: invalid hex or base64 data ({d})", e.record(t)),
            None => format!("invalid hex or base64 data ({d})"),
        },
        ParseError::Lexer(l) => format!("syntax error: {l}"),
        ParseError::UnexpectedToken(_) => match rtype {
            Some(t) => format!("{}: unexpected text", e.record(t)),
            None => "unexpected text".to_string(),
        },
        ParseError::UnknownRecordType(n) => format!("record type {n} is not known"),
        ParseError::UnsupportedRecordType(t) => format!("{t} records are not supported"),
        ParseError::Proto(_) if text.contains("record type string unknown") => {
            match e.rtype.map(|(w, _)| w) {
                Some(w) if w.bytes().all(|b| b.is_ascii_digit()) => {
                    format!("TTL {w} is too large (at most 2147483647)")
                }
                Some(w) => format!("unknown record type or class {w:?}"),
                None => "a record type is missing".to_string(),
            }
        }
        ParseError::Proto(_) if directive => {
            let arg = e.rtype.map(|(w, _)| w).unwrap_or_default();
            format!(
                "{} {arg:?} is not a valid domain name",
                e.owner.unwrap_or("$ORIGIN")
            )
        }
        ParseError::Proto(_) => {
            let owner_bad = e
                .owner
                .is_some_and(|o| o != "@" && Name::from_ascii(o).is_err());
            match rtype.and_then(|t| Some((t, e.bad_field(t, '@')?))) {
                _ if owner_bad => format!(
                    "owner {:?} is not a valid domain name",
                    e.owner.unwrap_or_default()
                ),
                Some((t, (field, w))) => {
                    format!("{}: {field} {w:?} is not a valid domain name", e.record(t))
                }
                None => match rtype {
                    Some(t) => format!("{}: invalid data", e.record(t)),
                    None => "invalid entry".to_string(),
                },
            }
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::zone::{ZoneSettings, tests_support::parse_error};

    fn said(entry: &str) -> String {
        let text =
            format!("$ORIGIN example.test.\n$TTL 60\n@ SOA ns1 h 1 2 3 4 5\n  NS ns1\n{entry}\n");
        let settings = ZoneSettings {
            origin: Name::from_ascii("example.test.").unwrap(),
            file: "/nonexistent/z.zone".into(),
            soa: None,
            ns: vec![],
            ns_ttl: 3600,
        };
        let e = parse_error(&settings, &text);
        describe(entry, &e)
    }

    #[test]
    fn parser_errors_name_the_field_and_the_problem() {
        for (entry, want) in [
            (
                "www A 192.0.2.300",
                "A record www: \"192.0.2.300\" is not an IPv4 address",
            ),
            (
                "www 60 IN AAAA 1::2::3",
                "AAAA record www: \"1::2::3\" is not an IPv6 address",
            ),
            (
                "www MX ten mail",
                "MX record www: preference \"ten\" is not a number",
            ),
            (
                "_s._tcp SRV 1 2 x y",
                "SRV record _s._tcp: port \"x\" is not a number",
            ),
            ("www BOGUS 1", "unknown record type or class \"BOGUS\""),
            (
                "www 99999999999 A 1.2.3.4",
                "TTL 99999999999 is too large (at most 2147483647)",
            ),
            (
                "www CNAME a..b",
                "CNAME record www: target \"a..b\" is not a valid domain name",
            ),
            (
                "a..b A 192.0.2.1",
                "owner \"a..b\" is not a valid domain name",
            ),
            ("www A", "A record www: the ipv4 address is missing"),
            (
                "$TTL abc",
                "$TTL \"abc\" is not a TTL (seconds, or e.g. 1h30m)",
            ),
            ("www TXT \"open", "syntax error: unclosed quoted string"),
            (
                "www SSHFP 1 1 zz",
                "SSHFP record www: invalid hex or base64 data",
            ),
        ] {
            let got = said(entry);
            assert!(got.starts_with(want), "{entry}: {got}");
            assert!(!got.contains("proto error"), "{entry}: {got}");
            assert!(!got.contains("decoding error"), "{entry}: {got}");
        }
    }

    #[test]
    fn entries_split_into_owner_type_and_data() {
        let e = Entry::parse("www 3600 IN MX 10 mail");
        assert_eq!(e.owner, Some("www"));
        assert_eq!(e.rtype, Some(("MX", Some(RecordType::MX))));
        assert_eq!(e.data, ["10", "mail"]);
        let e = Entry::parse("  IN TXT \"a b\" ; c");
        assert_eq!(e.owner, None);
        assert_eq!(e.data, ["\"a b\""]);
        let e = Entry::parse("@ SOA ns1 h (\n 1 2 3\n 4 5 )");
        assert_eq!(e.data.len(), 7);
        assert!(is_ttl("1h30m") && is_ttl("60") && !is_ttl("h") && !is_ttl("IN"));
        assert!(!is_ttl("99999999999"));
    }
}
