//! KPL de-aggregation: one Kinesis record that the Kinesis Producer Library packed with
//! several user records becomes those records again.
//!
//! Format (awslabs/amazon-kinesis-producer `aggregation-format.md`): the magic bytes
//! `F3 89 9A C2`, a protobuf `AggregatedRecord`, then the MD5 of the protobuf bytes. The
//! protobuf is small enough to decode by hand (proto2):
//!
//! ```text
//! message AggregatedRecord { repeated string partition_key_table = 1;
//!                            repeated string explicit_hash_key_table = 2;
//!                            repeated Record records = 3; }
//! message Record { required uint64 partition_key_index = 1;
//!                  optional uint64 explicit_hash_key_index = 2;
//!                  required bytes data = 3; repeated Tag tags = 4; }
//! ```
//!
//! As the KCL does (`AggregatorUtil.deaggregate`): a record is treated as aggregated only
//! if the magic matches, the MD5 matches and the protobuf parses; anything else passes
//! through unchanged. Sub-records whose hash key (the explicit one, else the MD5 of the
//! partition key as an unsigned 128-bit number) falls outside the shard's hash range are
//! dropped: after a reshard they belong to another shard. Tags are skipped.

use md5::{Digest, Md5};

/// The KPL's magic prefix.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// One user record from an aggregated Kinesis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubRecord {
    /// Its partition key.
    pub partition_key: String,
    /// Its explicit hash key, if it had one.
    pub explicit_hash_key: Option<String>,
    /// Its data.
    pub data: Vec<u8>,
}

impl SubRecord {
    /// The 128-bit hash key Kinesis routes it by.
    pub fn hash_key(&self) -> u128 {
        if let Some(k) = self.explicit_hash_key.as_deref().and_then(|k| k.parse::<u128>().ok()) {
            return k;
        }
        u128::from_be_bytes(Md5::digest(self.partition_key.as_bytes()).into())
    }
}

/// The user records inside `data`, or `None` when it is not a (valid) aggregated record.
pub fn deaggregate(data: &[u8]) -> Option<Vec<SubRecord>> {
    // Magic, a body (empty for an aggregate of no records), and the body's MD5.
    if data.len() < MAGIC.len() + 16 || data[..4] != MAGIC {
        return None;
    }
    let body = &data[4..data.len() - 16];
    let digest = &data[data.len() - 16..];
    if Md5::digest(body).as_slice() != digest {
        return None;
    }
    parse_aggregated(body)
}

/// Keeps the sub-records whose hash key is inside `[start, end]` (the shard's range).
pub fn in_range(records: Vec<SubRecord>, range: Option<(u128, u128)>) -> Vec<SubRecord> {
    match range {
        None => records,
        Some((lo, hi)) => records
            .into_iter()
            .filter(|r| {
                let k = r.hash_key();
                lo <= k && k <= hi
            })
            .collect(),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let end = self.pos.checked_add(len)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// Skips a field of this wire type.
    fn skip(&mut self, wire: u64) -> Option<()> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => {
                self.pos = self.pos.checked_add(8).filter(|p| *p <= self.buf.len())?;
                Some(())
            }
            2 => self.bytes().map(|_| ()),
            5 => {
                self.pos = self.pos.checked_add(4).filter(|p| *p <= self.buf.len())?;
                Some(())
            }
            _ => None,
        }
    }
}

fn parse_aggregated(body: &[u8]) -> Option<Vec<SubRecord>> {
    let mut r = Reader { buf: body, pos: 0 };
    let mut keys: Vec<String> = Vec::new();
    let mut hash_keys: Vec<String> = Vec::new();
    let mut raw: Vec<(u64, Option<u64>, Vec<u8>)> = Vec::new();
    while !r.done() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => keys.push(String::from_utf8(r.bytes()?.to_vec()).ok()?),
            (2, 2) => hash_keys.push(String::from_utf8(r.bytes()?.to_vec()).ok()?),
            (3, 2) => raw.push(parse_record(r.bytes()?)?),
            (_, wire) => r.skip(wire)?,
        }
    }
    raw.into_iter()
        .map(|(pk, ehk, data)| {
            Some(SubRecord {
                partition_key: keys.get(usize::try_from(pk).ok()?)?.clone(),
                explicit_hash_key: match ehk {
                    None => None,
                    Some(i) => Some(hash_keys.get(usize::try_from(i).ok()?)?.clone()),
                },
                data,
            })
        })
        .collect()
}

fn parse_record(buf: &[u8]) -> Option<(u64, Option<u64>, Vec<u8>)> {
    let mut r = Reader { buf, pos: 0 };
    let (mut pk, mut ehk, mut data) = (None, None, None);
    while !r.done() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 0) => pk = Some(r.varint()?),
            (2, 0) => ehk = Some(r.varint()?),
            (3, 2) => data = Some(r.bytes()?.to_vec()),
            (_, wire) => r.skip(wire)?,
        }
    }
    Some((pk?, ehk, data?))
}

/// Packs records the way the KPL does (partition keys de-duplicated into the table). The
/// runtime only reads aggregated records; this is for tests and for loading a stream
/// with aggregated data.
pub fn aggregate(records: &[SubRecord]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        varint(out, (field << 3) | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut hash_keys: Vec<&str> = Vec::new();
    let mut body = Vec::new();
    let mut records_buf = Vec::new();
    for r in records {
        let pk = keys.iter().position(|k| *k == r.partition_key).unwrap_or_else(|| {
            keys.push(&r.partition_key);
            keys.len() - 1
        });
        let mut rec = Vec::new();
        varint(&mut rec, 1 << 3);
        varint(&mut rec, pk as u64);
        if let Some(h) = &r.explicit_hash_key {
            let i = hash_keys.iter().position(|k| k == h).unwrap_or_else(|| {
                hash_keys.push(h);
                hash_keys.len() - 1
            });
            varint(&mut rec, 2 << 3);
            varint(&mut rec, i as u64);
        }
        field_bytes(&mut rec, 3, &r.data);
        field_bytes(&mut records_buf, 3, &rec);
    }
    for k in &keys {
        field_bytes(&mut body, 1, k.as_bytes());
    }
    for k in &hash_keys {
        field_bytes(&mut body, 2, k.as_bytes());
    }
    body.extend_from_slice(&records_buf);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `cargo xtask fuzz kpl_deaggregate`: a body holding no records read back as an
    /// aggregate of none, but the aggregate of none (an empty body) was not recognised.
    #[test]
    fn an_aggregate_of_no_records_reads_back_as_one() {
        let body = [0x10, 0x14]; // an unknown field, no records
        let mut framed = MAGIC.to_vec();
        framed.extend_from_slice(&body);
        framed.extend_from_slice(&Md5::digest(body));
        assert_eq!(deaggregate(&framed), Some(Vec::new()));
        assert_eq!(deaggregate(&aggregate(&[])), Some(Vec::new()));
    }

    fn sub(pk: &str, data: &str) -> SubRecord {
        SubRecord { partition_key: pk.into(), explicit_hash_key: None, data: data.as_bytes().to_vec() }
    }

    /// Built byte by byte from the format description, not by [`aggregate`]: two records,
    /// one partition key, no explicit hash keys.
    #[test]
    fn a_hand_built_aggregated_record_yields_its_user_records() {
        let mut body = vec![0x0A, 0x01, b'k']; // partition_key_table[0] = "k"
        // records[0] = { partition_key_index: 0, data: "{\"a\":1}" }
        let rec1 = [&[0x08, 0x00, 0x1A, 0x07][..], b"{\"a\":1}"].concat();
        body.extend_from_slice(&[0x1A, rec1.len() as u8]);
        body.extend_from_slice(&rec1);
        // records[1] = { partition_key_index: 0, data: "{\"a\":2}", tags: [{key: "t"}] }
        let rec2 = [&[0x08, 0x00, 0x1A, 0x07][..], b"{\"a\":2}", &[0x22, 0x03, 0x0A, 0x01, b't']].concat();
        body.extend_from_slice(&[0x1A, rec2.len() as u8]);
        body.extend_from_slice(&rec2);
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&body);
        data.extend_from_slice(&Md5::digest(&body));

        let out = deaggregate(&data).expect("an aggregated record");
        assert_eq!(out, vec![sub("k", "{\"a\":1}"), sub("k", "{\"a\":2}")]);
        assert_eq!(aggregate(&out[..1]), aggregate(&[sub("k", "{\"a\":1}")]));
    }

    #[test]
    fn aggregate_and_deaggregate_round_trip_with_explicit_hash_keys() {
        let mut records = vec![sub("a", "1"), sub("b", "2"), sub("a", "3")];
        records[1].explicit_hash_key = Some("42".into());
        assert_eq!(deaggregate(&aggregate(&records)).unwrap(), records);
    }

    #[test]
    fn plain_records_and_a_bad_checksum_pass_through() {
        assert_eq!(deaggregate(b"{\"ContactId\":\"x\"}"), None);
        let mut data = aggregate(&[sub("k", "x")]);
        let last = data.len() - 1;
        data[last] ^= 1;
        assert_eq!(deaggregate(&data), None, "an MD5 mismatch is not an aggregated record");
    }

    #[test]
    fn sub_records_outside_the_shard_range_are_dropped() {
        let mut inside = sub("a", "1");
        inside.explicit_hash_key = Some("10".into());
        let mut outside = sub("b", "2");
        outside.explicit_hash_key = Some("1000".into());
        let kept = in_range(vec![inside.clone(), outside], Some((0, 100)));
        assert_eq!(kept, vec![inside]);
    }
}
