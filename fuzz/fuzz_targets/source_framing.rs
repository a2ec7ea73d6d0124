//! The file source's framing: JSON lines, a JSON array, concatenated documents, gzip.
//!
//! Besides "no panic", it checks what the checkpoint relies on: pieces end in increasing
//! order, every document's text parses back to the same document, and resuming at any
//! piece's end yields exactly the pieces that followed it (nothing skipped, nothing read
//! twice).
//!
//! The source streams gzip through `flate2::read::MultiGzDecoder`; gzip input (`1f 8b`) is
//! decoded here with the same decoder before framing.
#![no_main]

use std::io::Read;

use bytes::Bytes;
use ctrflow::connectors::file::{Piece, split_documents};
use libfuzzer_sys::fuzz_target;

fn end(p: &Piece) -> u64 {
    p.end()
}

fn same(a: &Piece, b: &Piece) -> bool {
    match (a, b) {
        (Piece::Doc { doc: d1, raw: r1, end: e1 }, Piece::Doc { doc: d2, raw: r2, end: e2 }) => {
            d1 == d2 && r1 == r2 && e1 == e2
        }
        (Piece::Bad { raw: r1, end: e1, .. }, Piece::Bad { raw: r2, end: e2, .. }) => r1 == r2 && e1 == e2,
        (Piece::Oversized { raw: r1, end: e1, .. }, Piece::Oversized { raw: r2, end: e2, .. }) => r1 == r2 && e1 == e2,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let buf = if data.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        if flate2::read::MultiGzDecoder::new(data).take(1 << 20).read_to_end(&mut out).is_err() {
            return;
        }
        Bytes::from(out)
    } else {
        Bytes::copy_from_slice(data)
    };
    let pieces = split_documents(&buf, 0, 4096);
    let mut last = 0;
    for p in &pieces {
        assert!(end(p) > last, "piece ends must increase: {} after {last}", end(p));
        last = end(p);
        if let Piece::Doc { doc, raw, .. } = p {
            let again: serde_json::Value = serde_json::from_slice(raw).expect("a document's text parses");
            assert_eq!(&again, doc, "a document's text parses to the document");
        }
    }
    // Resume from every checkpoint the source could have written.
    for (i, p) in pieces.iter().enumerate().take(16) {
        let resumed = split_documents(&buf, end(p), 4096);
        let expected = &pieces[i + 1..];
        assert_eq!(resumed.len(), expected.len(), "resuming at {} changes the pieces that follow", end(p));
        for (a, b) in resumed.iter().zip(expected) {
            assert!(same(a, b), "resuming at {} changes the pieces that follow", end(p));
        }
    }
});
