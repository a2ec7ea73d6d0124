//! Splitting a stream of bytes into JSON documents, reading it a bounded chunk at a time.
//!
//! Three framings, told apart by the first byte that is not white space: a JSON array (`[`)
//! is split into its elements; anything else is JSON documents one after another separated
//! by any white space (JSON lines, pretty-printed documents, a missing final newline). A
//! stretch that does not parse is set aside up to the next line break and reading goes on
//! after it; in an array, the rest of the file is set aside.
//!
//! Memory stays bounded by the largest document allowed (`max_document`) plus one read
//! chunk, whatever the size of the input: a document that grows past the limit is set
//! aside (its first `max_document` bytes kept as evidence) up to the next line break.
//!
//! Offsets are byte offsets in the (decompressed) stream, just past each piece, so a reader
//! can resume exactly after the last piece it handled.

use std::io::Read;

use bytes::{Bytes, BytesMut};
use serde_json::Value;

/// How many bytes one read asks for.
const CHUNK: usize = 256 * 1024;

/// One piece of a stream.
#[derive(Debug)]
pub enum Piece {
    /// A document, with its text; `end` is the offset just past it.
    Doc { doc: Value, raw: Bytes, end: u64 },
    /// A stretch that does not parse (up to the next line break); `end` is past it.
    Bad { raw: Bytes, error: String, end: u64 },
    /// A document larger than the limit, set aside; `raw` is its first bytes.
    Oversized { raw: Bytes, size: usize, end: u64 },
}

impl Piece {
    /// The offset just past the piece.
    pub fn end(&self) -> u64 {
        match self {
            Piece::Doc { end, .. } | Piece::Bad { end, .. } | Piece::Oversized { end, .. } => *end,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Not yet known: nothing but white space so far.
    Unknown,
    Documents,
    /// Inside a JSON array, before an element (or the closing bracket).
    Array,
    /// After a broken array: the rest was set aside, nothing more to read.
    Finished,
}

/// Reads documents from `input`, a chunk at a time.
pub struct Framer<R> {
    input: R,
    buf: BytesMut,
    /// The stream offset of `buf[0]`.
    base: u64,
    eof: bool,
    mode: Mode,
    max_document: usize,
    /// How many bytes at the start of `buf` are known to hold no line break, so input
    /// without line breaks (documents back to back, as Firehose writes them) is searched
    /// once, not once per document.
    no_break: usize,
}

/// The longest first line the JSON-lines fast path parses: beyond it, a line is more likely
/// many documents back to back than one, and checking the rest of it as UTF-8 for each of
/// them would cost more than it saves.
const FAST_LINE: usize = 64 * 1024;

impl<R: Read> Framer<R> {
    /// A framer over `input`, whose first byte is at stream offset `start` (a reader resuming
    /// mid-stream passes where it resumed, and `array` when the stream is a JSON array).
    pub fn new(input: R, start: u64, array: Option<bool>, max_document: usize) -> Self {
        let mode = match array {
            None => Mode::Unknown,
            Some(true) => Mode::Array,
            Some(false) => Mode::Documents,
        };
        Framer {
            input,
            buf: BytesMut::new(),
            base: start,
            eof: false,
            mode,
            max_document: max_document.max(1),
            no_break: 0,
        }
    }

    /// Whether the stream turned out to be a JSON array (`None` until known).
    pub fn is_array(&self) -> Option<bool> {
        match self.mode {
            Mode::Unknown => None,
            Mode::Array | Mode::Finished => Some(true),
            Mode::Documents => Some(false),
        }
    }

    /// Reads one more chunk; false at the end of the input.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let old = self.buf.len();
        self.buf.resize(old + CHUNK, 0);
        let n = loop {
            match self.input.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(old + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    /// Takes the buffer's first `n` bytes as a piece's text: a copy, not a slice of the
    /// buffer. A slice would keep the whole chunk it was read in alive for as long as any
    /// record from it is (and records from one chunk end in different sinks, written at
    /// different times); copied, a record holds only its own bytes, and the buffer, no longer
    /// shared, is reused in place. Peak RSS on the throughput graph: 3 KB records 99–110 MB
    /// against 105–126 MB, 16 KB records 124–141 MB against 145–175 MB, 88 KB records
    /// 139–152 MB against 158–168 MB, at the same speed (docs/performance.md, fourteenth
    /// round).
    fn consume(&mut self, n: usize) -> Bytes {
        let piece = Bytes::copy_from_slice(&self.buf[..n]);
        self.skip(n);
        piece
    }

    /// Drops the buffer's first `n` bytes (separators, what is set aside unkept).
    fn skip(&mut self, n: usize) {
        self.base += n as u64;
        self.no_break = self.no_break.saturating_sub(n);
        bytes::Buf::advance(&mut self.buf, n);
    }

    /// The first document, when it ends on the buffer's first line (JSON lines): parsed from
    /// that line's text, checked as UTF-8 once. `None` sends the caller to the general path.
    fn first_on_line(&mut self) -> Option<(Value, usize)> {
        let Some(found) = memchr::memchr(b'\n', &self.buf[self.no_break..]) else {
            self.no_break = self.buf.len();
            return None;
        };
        let line = self.no_break + found;
        self.no_break = line;
        if line > FAST_LINE {
            return None;
        }
        crate::json::parse_first(&self.buf[..line])
    }

    /// Skips white space (and, in an array, the commas between elements); false at the end.
    fn skip_separators(&mut self) -> std::io::Result<bool> {
        loop {
            let sep = |b: &u8| b.is_ascii_whitespace() || (self.mode == Mode::Array && *b == b',');
            let n = self.buf.iter().take_while(|b| sep(b)).count();
            if n > 0 {
                self.skip(n);
            }
            if !self.buf.is_empty() {
                return Ok(true);
            }
            if !self.fill()? {
                return Ok(false);
            }
        }
    }

    /// The index of the next line break in the buffer, reading more as needed; the end of
    /// the input counts as one.
    fn line_end(&mut self, from: usize) -> std::io::Result<usize> {
        let mut searched = from;
        loop {
            if let Some(i) = self.buf[searched..].iter().position(|b| *b == b'\n') {
                return Ok(searched + i + 1);
            }
            searched = self.buf.len();
            if !self.fill()? {
                return Ok(self.buf.len());
            }
        }
    }

    /// The next piece, or `None` at the end of the input.
    pub fn next_piece(&mut self) -> std::io::Result<Option<Piece>> {
        if self.mode == Mode::Finished || !self.skip_separators()? {
            return Ok(None);
        }
        if self.mode == Mode::Unknown {
            if self.buf[0] == b'[' {
                self.mode = Mode::Array;
                self.skip(1);
                return self.next_piece();
            }
            self.mode = Mode::Documents;
        }
        if self.mode == Mode::Array && self.buf[0] == b']' {
            // Whatever follows the array (more documents, another array) is read too.
            self.skip(1);
            self.mode = Mode::Unknown;
            return self.next_piece();
        }
        loop {
            // JSON lines, the common case, parses fast; anything else (a document over several
            // lines, a broken one, one not yet read whole) takes the general path, which
            // reads more or reports the error.
            let parsed = match self.first_on_line() {
                Some((doc, len)) => Some(Ok((doc, len))),
                None => {
                    let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
                    stream.next().map(|parsed| parsed.map(|doc| (doc, stream.byte_offset())))
                }
            };
            match parsed {
                Some(Ok((doc, len))) => {
                    if len > self.max_document {
                        return self.oversized(len).map(Some);
                    }
                    let raw = self.consume(len);
                    return Ok(Some(Piece::Doc { doc, raw, end: self.base }));
                }
                // The document goes on past what is buffered: read more, unless it is
                // already past the limit.
                Some(Err(e)) if e.is_eof() && !self.eof => {
                    if self.buf.len() > self.max_document {
                        return self.oversized(self.buf.len()).map(Some);
                    }
                    self.fill()?;
                }
                Some(Err(e)) => {
                    let error = e.to_string();
                    if self.mode == Mode::Array {
                        // Where the next element starts is unknowable: the rest is bad.
                        while self.fill()? {}
                        let raw = self.consume(self.buf.len());
                        self.mode = Mode::Finished;
                        return Ok(Some(Piece::Bad {
                            raw,
                            error: format!("not a JSON array of documents: {error}"),
                            end: self.base,
                        }));
                    }
                    let end = self.line_end(0)?;
                    let raw = self.consume(end);
                    return Ok(Some(Piece::Bad { raw, error, end: self.base }));
                }
                None => return Ok(None),
            }
        }
    }

    /// Sets aside a document of at least `seen` bytes, up to the next line break.
    fn oversized(&mut self, seen: usize) -> std::io::Result<Piece> {
        let evidence = Bytes::copy_from_slice(&self.buf[..self.max_document.min(self.buf.len())]);
        // Drop what is buffered beyond the evidence as we go, so memory stays bounded.
        let mut size = 0usize;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                size += i + 1;
                self.skip(i + 1);
                break;
            }
            size += self.buf.len();
            self.skip(self.buf.len());
            if !self.fill()? {
                break;
            }
        }
        if self.mode == Mode::Array {
            self.mode = Mode::Finished;
        }
        Ok(Piece::Oversized { raw: evidence, size: size.max(seen), end: self.base })
    }
}

/// Splits a whole buffer into pieces, starting at `offset` (for tests and fuzzing; the
/// file source streams).
pub fn split_documents(buf: &[u8], offset: u64, max_document: usize) -> Vec<Piece> {
    let start = (offset as usize).min(buf.len());
    let array = if start == 0 { None } else { Some(buf.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')) };
    let mut framer = Framer::new(&buf[start..], start as u64, array, max_document);
    let mut out = Vec::new();
    while let Ok(Some(p)) = framer.next_piece() {
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(text: &str, offset: u64) -> Vec<String> {
        split_documents(text.as_bytes(), offset, 1 << 20)
            .into_iter()
            .map(|p| match p {
                Piece::Doc { raw, .. } => String::from_utf8(raw.to_vec()).unwrap(),
                Piece::Bad { raw, .. } => format!("BAD:{}", String::from_utf8_lossy(&raw).trim()),
                Piece::Oversized { size, .. } => format!("BIG:{size}"),
            })
            .collect()
    }

    /// A record keeps its text for as long as it waits in a sink: that must be its own
    /// bytes, not a share of the read buffer, which would keep a whole chunk alive.
    #[test]
    fn a_documents_text_is_its_own_not_a_share_of_the_read_buffer() {
        let text = "{\"a\":1}\n{\n \"b\": 2\n}\n{\"a\":\n".repeat(3);
        let mut framer = Framer::new(text.as_bytes(), 0, None, 1 << 20);
        let pieces: Vec<Piece> = std::iter::from_fn(|| framer.next_piece().unwrap()).collect();
        assert_eq!(pieces.len(), 9);
        for piece in &pieces {
            let (Piece::Doc { raw, .. } | Piece::Bad { raw, .. } | Piece::Oversized { raw, .. }) = piece;
            assert!(raw.is_unique(), "{piece:?} shares its buffer");
        }
    }

    #[test]
    fn json_lines_without_a_final_newline() {
        assert_eq!(docs("{\"a\":1}\n{\"a\":2}", 0), ["{\"a\":1}", "{\"a\":2}"]);
    }

    #[test]
    fn concatenated_pretty_documents() {
        assert_eq!(docs("{\n \"a\": 1\n}\n\n  {\"a\":2}{\"a\":3}", 0).len(), 3);
    }

    #[test]
    fn a_json_array_and_resuming_by_offset() {
        let text = "[{\"a\":1},{\"a\":2}, {\"a\":3}]";
        assert_eq!(docs(text, 0), ["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"]);
        let after_first = split_documents(text.as_bytes(), 0, 1 << 20)[0].end();
        assert_eq!(docs(text, after_first), ["{\"a\":2}", "{\"a\":3}"]);
    }

    #[test]
    fn a_bad_line_is_set_aside_and_reading_goes_on() {
        assert_eq!(docs("{\"a\":1}\n{\"a\":\n{\"a\":3}\n", 0), ["{\"a\":1}", "BAD:{\"a\":", "{\"a\":3}"]);
    }

    #[test]
    fn a_broken_array_sets_the_rest_aside() {
        assert_eq!(docs("[{\"a\":1}, {\"a\" 2}, {\"a\":3}]", 0), ["{\"a\":1}", "BAD:{\"a\" 2}, {\"a\":3}]"]);
    }

    // A JSON-lines file whose first line is an array must not lose the lines after it. (Once
    // the stream is documents, a later array is one document: the source refuses it as not a
    // contact record, so it is dead-lettered, not lost.)
    #[test]
    fn documents_after_an_array_are_read_too() {
        assert_eq!(docs("[{\"a\":1}]\n{\"a\":2}\n[{\"a\":3}]", 0), ["{\"a\":1}", "{\"a\":2}", "[{\"a\":3}]"]);
    }

    #[test]
    fn resuming_at_a_byte_offset() {
        let text = "{\"a\":1}\n{\"a\":2}\n";
        assert_eq!(docs(text, 8), ["{\"a\":2}"]);
    }

    #[test]
    fn offsets_are_just_past_each_piece() {
        let pieces = split_documents(b"{\"a\":1}\n  {\"a\":2}\n", 0, 1 << 20);
        assert_eq!(pieces.iter().map(Piece::end).collect::<Vec<_>>(), [7, 17]);
    }

    #[test]
    fn a_document_over_the_limit_is_set_aside_and_the_next_is_read() {
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(100));
        let text = format!("{big}\n{{\"a\":2}}\n");
        let pieces = split_documents(text.as_bytes(), 0, 50);
        assert!(matches!(&pieces[0], Piece::Oversized { raw, size, .. } if raw.len() == 50 && *size >= 100));
        assert!(matches!(&pieces[1], Piece::Doc { .. }));
    }

    #[test]
    fn documents_spanning_many_reads_are_whole() {
        // Larger than one read chunk, so the framer must read on to finish it.
        let long = format!("{{\"a\":\"{}\"}}", "y".repeat(CHUNK * 2));
        let text = format!("{long}\n{{\"b\":1}}");
        let pieces = split_documents(text.as_bytes(), 0, 4 << 20);
        assert_eq!(pieces.len(), 2);
        assert!(matches!(&pieces[0], Piece::Doc { raw, .. } if raw.len() == long.len()));
    }

    /// Documents back to back without line breaks (as Firehose writes them), over several
    /// reads, then a long line of them, then JSON lines: every document whole, every offset
    /// just past it, whichever path parsed it.
    #[test]
    fn documents_back_to_back_long_lines_and_json_lines_give_the_same_pieces() {
        let doc = |i: usize| format!("{{\"ContactId\":\"c{i:05}\",\"pad\":\"{}\"}}", "x".repeat(100));
        let run: String = (0..5000).map(doc).collect();
        let line: String = (0..1000).map(doc).collect();
        let lines: String = (0..100).map(|i| doc(i) + "\n").collect();
        let text = format!("{run}{line}\n{lines}");
        assert!(run.len() > 2 * CHUNK && line.len() > FAST_LINE);
        let pieces = split_documents(text.as_bytes(), 0, 1 << 20);
        assert_eq!(pieces.len(), 6100);
        let mut end = 0u64;
        for p in &pieces {
            let Piece::Doc { raw, end: e, .. } = p else { panic!("{p:?}") };
            assert!(raw.starts_with(b"{\"ContactId\"") && raw.ends_with(b"\"}"));
            assert!(*e > end);
            end = *e;
        }
        assert_eq!(end as usize, text.len() - 1, "the last document ends before the final line break");
    }
}
