//! The generator's cost per record: `Synth::next_record` with `now` advancing 1 ms per record,
//! as an unthrottled `generator` source with a `start_time` calls it. The records are dropped
//! outside the timed section (criterion's `iter_with_large_drop`), so this is the cost of
//! planning and rendering a CTR, not of freeing it.
//!
//! Throughput is in records, so criterion's `thrpt` is records per second.
//!
//! Run: `cargo bench -p ctrflow --bench generator` (add `-- --quick` while iterating).

#[global_allocator]
static GLOBAL: ctrflow::Allocator = ctrflow::Allocator;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ctrflow::connectors::generator::Synth;

/// Records per timed iteration: enough that the re-deliveries and transfer legs the stream
/// schedules are part of the mix.
const RECORDS: u64 = 1000;

fn next_record(c: &mut Criterion) {
    let start = time::macros::datetime!(2025-06-15 12:00:00 UTC);
    let mut group = c.benchmark_group("generator");
    group.throughput(Throughput::Elements(RECORDS));
    let mut synth = Synth::new(1);
    let mut i: i64 = 0;
    group.bench_function("next_record", |b| {
        b.iter_with_large_drop(|| {
            let mut out = Vec::with_capacity(RECORDS as usize);
            for _ in 0..RECORDS {
                out.push(synth.next_record(start + time::Duration::milliseconds(i)));
                i += 1;
            }
            out
        })
    });
    group.finish();
}

criterion_group!(benches, next_record);
criterion_main!(benches);
