//! The `zone` target: any text as the zone file of `example.test.` to [`Zone::parse`].
//!
//! Checked, besides "does not panic":
//! * a zone that loads has its SOA at the apex, and the answer path answers the apex's SOA
//!   and NS from it;
//! * an error is a `ZoneError` naming the zone file, with a message, and with the line of
//!   the entry at fault whenever the file does not parse (a line inside the text);
//!   problems of the zone as a whole (no SOA, no NS) may have none.
//!
//! The file lives in a directory that does not exist, so relative `$INCLUDE`s find
//! nothing; texts that could include an absolute path (a `/` or an escape anywhere in a
//! text with `$INCLUDE`) are skipped: reading `/dev/zero` never ends.

use std::sync::Arc;

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
    serialize::txt::Parser,
};
use hotpool::{
    datapath::pools::PoolTable,
    dns::{
        authority::Authority,
        request::{Request, Transport},
        zone::Zone,
    },
};

use crate::{Violation, answer::CLIENT, seeds::QuerySpec, world};

/// The `zone` target's body.
pub fn check(data: &[u8]) -> Result<(), Violation> {
    let text = String::from_utf8_lossy(data);
    if may_include_outside(&text) {
        return Ok(());
    }
    let settings = world::zone_settings();
    match Zone::parse(&settings, &text) {
        Ok(zone) => loaded(zone),
        Err(e) => {
            if e.file() != settings.file || e.message().is_empty() {
                return Err(Violation::new(format!(
                    "error without file or message: {e:?}"
                )));
            }
            let lines = text.split('\n').count();
            match e.line() {
                Some(line) if line == 0 || line > lines => Err(Violation::new(format!(
                    "error at line {line} of a {lines}-line text: {e}"
                ))),
                None if syntax_error(&text) => Err(Violation::new(format!(
                    "the file does not parse, but the error names no line: {e}"
                ))),
                _ => Ok(()),
            }
        }
    }
}

/// Whether `text` has an `$INCLUDE` that could name a file outside the zone's directory.
fn may_include_outside(text: &str) -> bool {
    text.to_ascii_lowercase().contains("$include") && (text.contains('/') || text.contains('\\'))
}

/// Whether hickory-proto's zone-file parser rejects `text` (as `Zone::parse` sees it).
fn syntax_error(text: &str) -> bool {
    let settings = world::zone_settings();
    Parser::new(text, Some(settings.file), Some(settings.origin))
        .parse()
        .is_err()
}

/// A zone that loaded answers its apex SOA and NS.
fn loaded(zone: Zone) -> Result<(), Violation> {
    let apex = zone.origin().clone();
    if zone.soa().record_type() != RecordType::SOA || zone.soa().name != apex {
        return Err(Violation::new(format!(
            "SOA not at the apex: {}",
            zone.soa()
        )));
    }
    let authority = Authority::new(vec![zone], Arc::new(PoolTable::new([])), 1232);
    for (qtype, rtype) in [(6u16, RecordType::SOA), (2, RecordType::NS)] {
        let q = QuerySpec::new(&apex.to_string(), qtype).bytes();
        let r = authority
            .respond(&Request::new(&q, CLIENT, Transport::Tcp))
            .ok_or_else(|| Violation::new("no response to the apex query".into()))?;
        let r = Message::from_vec(&r)
            .map_err(|e| Violation::new(format!("apex response does not parse: {e}")))?;
        let answered = r.metadata.response_code == ResponseCode::NoError
            && !r.answers.is_empty()
            && r.answers
                .iter()
                .all(|a| a.record_type() == rtype && a.name == apex);
        if !answered {
            return Err(Violation::new(format!("apex {rtype} not answered: {r}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bounded, mutate, rng::Rng, seeds};

    #[test]
    fn seeds_load() {
        for z in seeds::zones() {
            let settings = world::zone_settings();
            Zone::parse(&settings, &z).unwrap_or_else(|e| panic!("{z}: {e}"));
            check(z.as_bytes()).unwrap();
        }
    }

    #[test]
    fn includes_outside_are_skipped_and_others_fail_cleanly() {
        assert!(may_include_outside("$INCLUDE /dev/zero\n"));
        assert!(may_include_outside("$include \\047dev\n"));
        assert!(!may_include_outside("$INCLUDE other.zone\n"));
        assert!(!may_include_outside("a TXT \"/\"\n"));
        check(b"$INCLUDE other.zone\n@ 60 SOA ns1 h 1 2 3 4 5\n").unwrap();
    }

    #[test]
    fn syntax_errors_need_a_line() {
        assert!(syntax_error("bad IN A 300.1.2.3\n"));
        assert!(!syntax_error("@ 60 NS ns1\n"));
    }

    #[test]
    fn bounded_run() {
        let seeds = seeds::zones();
        let tokens: Vec<&[u8]> = seeds::ZONE_TOKENS.iter().map(|t| t.as_bytes()).collect();
        bounded::run(
            "zone",
            1500,
            |rng: &mut Rng| {
                let base = rng.pick(&seeds[1..]).as_bytes();
                mutate::mutate(rng, base, &tokens, 6, 4096)
            },
            check,
        );
    }
}
