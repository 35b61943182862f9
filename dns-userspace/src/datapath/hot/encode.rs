//! Pool answers in the kernel's form: the answer RRs as the XDP path appends them (with
//! their checksum sums), the folded name and the answer set around them.

use dns_common::{Answer, AnswerSet, MAX_ANSWER_RRS, MAX_VARIANTS, name::FoldedName, pool_qtypes};
use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RData},
    serialize::binary::{BinEncodable, BinEncoder},
};

use crate::datapath::{
    DatapathError,
    pools::{PoolAnswer, Selection},
};

/// Encodes `rdata` (some of the pool's records) the way the XDP path appends them after the
/// echoed question: owner names compress to the question (`0xC00C`), so the bytes are valid
/// whatever case the client used. Encoded with hickory-proto as the answer section of a
/// message whose question is the pool's name, then cut out of it; the checksum sum of the
/// octets comes with it.
fn encode_rrs(answer: &PoolAnswer, rdata: &[RData]) -> Result<Answer, DatapathError> {
    let pool = || answer.name.to_string();
    if rdata.is_empty() {
        return Err(DatapathError::NoRecords { pool: pool() });
    }
    if rdata.len() > MAX_ANSWER_RRS {
        return Err(DatapathError::TooManyRecords {
            pool: pool(),
            count: rdata.len(),
        });
    }
    let name = answer.name.to_lowercase();
    let mut msg = Message::query();
    msg.add_query(Query::query(name.clone(), answer.rtype));
    msg.add_answers(rdata.iter().map(|d| answer.record(&name, d)));
    let mut buf = Vec::with_capacity(512);
    let mut enc = BinEncoder::new(&mut buf);
    let encoding = |source| DatapathError::Encode {
        pool: pool(),
        source: Box::new(source),
    };
    msg.emit(&mut enc).map_err(encoding)?;

    let qname_len = name.to_bytes().map_err(encoding)?.len();
    let start = 12 + qname_len + 4;
    let rrs = buf.get(start..).ok_or_else(|| DatapathError::Unexpected {
        pool: pool(),
        problem: "is too short",
    })?;
    if !rrs.starts_with(&[0xc0, 0x0c]) {
        return Err(DatapathError::Unexpected {
            pool: pool(),
            problem: "does not point at the question",
        });
    }
    Answer::new(rdata.len() as u16, rrs).ok_or_else(|| DatapathError::AnswerTooLong {
        pool: pool(),
        len: rrs.len(),
    })
}

/// Every record of the pool as one kernel answer.
pub fn encode_variant(answer: &PoolAnswer) -> Result<Answer, DatapathError> {
    encode_rrs(answer, &answer.rdata)
}

/// What the kernel stores for one published pool answer.
#[derive(Clone, Debug)]
pub struct EncodedSet {
    /// The answer set with everything but `pool` and `answers` filled in.
    pub set: AnswerSet,
    /// One answer per variant, in order.
    pub answers: Vec<Answer>,
}

/// The kernel's form of a pool's answer: one variant with every record, one variant per
/// record with the weighted thresholds, or `None` for SERVFAIL (the kernel passes the query
/// and the daemon answers SERVFAIL).
pub fn encode_set(answer: &PoolAnswer) -> Result<Option<EncodedSet>, DatapathError> {
    let name = folded_name(&answer.name)?;
    let mut set = AnswerSet::empty();
    set.name_len = name.len as u8;
    set.name = name.words;
    set.qtypes = pool_qtypes(u16::from(answer.rtype));
    let answers = match &answer.selection {
        Selection::All => {
            set.thresholds[0] = u32::MAX;
            vec![encode_rrs(answer, &answer.rdata)?]
        }
        Selection::WeightedOne { thresholds, .. } => {
            let n = answer.rdata.len();
            if n != thresholds.len() || n == 0 || n > MAX_VARIANTS {
                return Err(DatapathError::Weights {
                    pool: answer.name.to_string(),
                    records: n,
                    thresholds: thresholds.len(),
                });
            }
            set.thresholds[..n].copy_from_slice(thresholds);
            answer
                .rdata
                .iter()
                .map(|d| encode_rrs(answer, std::slice::from_ref(d)))
                .collect::<Result<Vec<_>, _>>()?
        }
        Selection::Servfail => return Ok(None),
    };
    set.n_variants = answers.len() as u8;
    Ok(Some(EncodedSet { set, answers }))
}

/// A pool's name as the kernel stores and hashes it: lower case, in 8-octet words.
pub fn folded_name(name: &Name) -> Result<FoldedName, DatapathError> {
    let invalid = || DatapathError::InvalidName(name.to_string());
    let wire = name.to_lowercase().to_bytes().map_err(|_| invalid())?;
    FoldedName::new(&wire).map_err(|_| invalid())
}
