//! The KPL de-aggregator. The input is tried as a Kinesis record as is, and also as the
//! protobuf body of an aggregated record (magic and MD5 added here, or the fuzzer would
//! almost never get past the digest). Checks: what de-aggregates re-aggregates to the same
//! sub-records, and the hash-range filter keeps exactly the records inside the range.
#![no_main]

use ctrflow::connectors::aws::kinesis::deaggregate::{MAGIC, aggregate, deaggregate, in_range};
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};

fuzz_target!(|data: &[u8]| {
    let _ = deaggregate(data);
    let mut framed = MAGIC.to_vec();
    framed.extend_from_slice(data);
    framed.extend_from_slice(&Md5::digest(data));
    let Some(records) = deaggregate(&framed) else { return };
    let again = deaggregate(&aggregate(&records));
    assert_eq!(again.as_ref(), Some(&records), "aggregate(deaggregate(x)) reads back the same records");
    let (lo, hi) = (u128::MAX / 4, u128::MAX / 4 * 3);
    let kept = in_range(records.clone(), Some((lo, hi)));
    let expected: Vec<_> = records.into_iter().filter(|r| (lo..=hi).contains(&r.hash_key())).collect();
    assert_eq!(kept, expected);
});
