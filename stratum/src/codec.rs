//! A newline-delimited line codec with a hard length limit.
//!
//! tokio-util's `FramedRead` ends the stream after a decoder error, so a line that
//! is not a valid message is *not* an error here: it is yielded as
//! `Err(Malformed)` inside the item, to be answered with a JSON-RPC error while the
//! session goes on. Only framing faults end the stream: a line longer than the
//! limit (the peer is not speaking the protocol, or is abusing it) and bytes that
//! are not UTF-8.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::messages::{Malformed, Wire};

/// A framing fault: the connection cannot continue.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A line (newline excluded) exceeded the limit.
    #[error("line longer than the {limit}-byte limit")]
    LineTooLong { limit: usize },
    /// A line was not UTF-8.
    #[error("line is not valid UTF-8")]
    NotUtf8,
    /// An outgoing message would exceed the peer's line limit.
    #[error("outgoing message of {len} bytes exceeds the {limit}-byte line limit")]
    MessageTooLong { len: usize, limit: usize },
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Decodes lines into `In` and encodes `Out` as lines, each at most `max_line` bytes.
pub struct LineCodec<In, Out> {
    max_line: usize,
    /// How far the current buffer has been searched for a newline.
    scanned: usize,
    _p: PhantomData<fn(Out) -> In>,
}

impl<In, Out> LineCodec<In, Out> {
    pub fn new(max_line: usize) -> Self {
        LineCodec {
            max_line,
            scanned: 0,
            _p: PhantomData,
        }
    }

    pub fn max_line(&self) -> usize {
        self.max_line
    }
}

impl<In: Wire, Out> Decoder for LineCodec<In, Out> {
    type Item = Result<In, Malformed>;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        loop {
            let found = buf[self.scanned..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|p| p + self.scanned);
            let Some(nl) = found else {
                self.scanned = buf.len();
                if buf.len() > self.max_line {
                    return Err(CodecError::LineTooLong {
                        limit: self.max_line,
                    });
                }
                return Ok(None);
            };
            self.scanned = 0;
            let mut line = buf.split_to(nl + 1);
            line.truncate(nl);
            if line.last() == Some(&b'\r') {
                line.truncate(line.len() - 1);
            }
            if line.len() > self.max_line {
                return Err(CodecError::LineTooLong {
                    limit: self.max_line,
                });
            }
            let text = std::str::from_utf8(&line).map_err(|_| CodecError::NotUtf8)?;
            if text.trim().is_empty() {
                // Blank lines (keepalive newlines some clients send) are skipped.
                continue;
            }
            return Ok(Some(In::from_line(text)));
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        match self.decode(buf)? {
            Some(item) => Ok(Some(item)),
            None if buf.is_empty() => Ok(None),
            None => {
                // A final line without a newline still counts.
                buf.put_u8(b'\n');
                self.decode(buf)
            }
        }
    }
}

impl<In, Out: Wire> Encoder<Out> for LineCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        // Serialised straight into the write buffer; taken back out if too long.
        let start = dst.len();
        if let Err(e) = item.write_line((&mut *dst).writer()) {
            dst.truncate(start);
            return Err(CodecError::Io(e));
        }
        let len = dst.len() - start;
        if len > self.max_line {
            dst.truncate(start);
            return Err(CodecError::MessageTooLong {
                len,
                limit: self.max_line,
            });
        }
        dst.put_u8(b'\n');
        Ok(())
    }
}

/// Feeds `bytes` to a fresh codec in the given chunk sizes and collects every item;
/// the body of the codec's property test and fuzz target.
pub fn decode_chunked<In: Wire>(
    max_line: usize,
    bytes: &[u8],
    chunks: &[usize],
) -> (Vec<Result<In, Malformed>>, Option<String>) {
    let mut codec = LineCodec::<In, ()>::new(max_line);
    let mut buf = BytesMut::new();
    let mut out = vec![];
    let mut rest = bytes;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(item)) => out.push(item),
                Ok(None) => break,
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(item)) => out.push(item),
            Ok(None) => break,
            Err(e) => return (out, Some(e.to_string())),
        }
        if buf.is_empty() {
            break;
        }
    }
    buf.advance(buf.len());
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::*;
    use proptest::prelude::*;

    fn ping(id: u64) -> String {
        ToPool {
            id: crate::Id::Num(id),
            call: Call::Ping(Ping {}),
        }
        .to_line()
    }

    proptest! {
        /// The same messages come out however the bytes are split.
        #[test]
        fn split_does_not_matter(ids in proptest::collection::vec(any::<u64>(), 1..20), chunks in proptest::collection::vec(1usize..50, 1..10)) {
            let text: String = ids.iter().map(|i| ping(*i) + "\n").collect();
            let (whole, err) = decode_chunked::<ToPool>(1024, text.as_bytes(), &[text.len()]);
            prop_assert!(err.is_none());
            let (split, err) = decode_chunked::<ToPool>(1024, text.as_bytes(), &chunks);
            prop_assert!(err.is_none());
            prop_assert_eq!(whole.len(), ids.len());
            prop_assert_eq!(whole, split);
        }

        /// Arbitrary bytes never panic the decoder: the fuzz body, run in CI.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000), chunks in proptest::collection::vec(1usize..64, 1..6)) {
            let _ = decode_chunked::<ToPool>(256, &bytes, &chunks);
            let _ = decode_chunked::<ToMiner>(256, &bytes, &chunks);
        }
    }

    #[test]
    fn malformed_line_is_an_item_and_the_next_line_still_decodes() {
        let text = format!("garbage\n{}\n", ping(5));
        let (items, err) = decode_chunked::<ToPool>(1024, text.as_bytes(), &[3]);
        assert!(err.is_none());
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0].as_ref().unwrap_err().error.kind(),
            Some(crate::ErrorCode::ParseError)
        );
        assert_eq!(items[1].as_ref().unwrap().id, crate::Id::Num(5));
    }

    #[test]
    fn over_long_line_is_a_framing_error_even_without_newline() {
        let long = "x".repeat(2000);
        let (_, err) = decode_chunked::<ToPool>(1024, long.as_bytes(), &[100]);
        assert_eq!(err.as_deref(), Some("line longer than the 1024-byte limit"));
        let (items, err) =
            decode_chunked::<ToPool>(1024, format!("{}\n{long}\n", ping(1)).as_bytes(), &[4096]);
        assert_eq!(items.len(), 1);
        assert!(err.is_some());
    }

    /// An outgoing message over the limit is refused whole: nothing of it is left in
    /// the write buffer, and what was queued before it is untouched.
    #[test]
    fn an_outgoing_message_over_the_limit_leaves_the_buffer_as_it_was() {
        let mut codec = LineCodec::<ToMiner, ToPool>::new(64);
        let mut dst = BytesMut::new();
        let short = ToPool {
            id: crate::Id::Num(1),
            call: Call::Ping(Ping {}),
        };
        codec.encode(short.clone(), &mut dst).unwrap();
        let before = dst.clone();
        let long = ToPool {
            id: crate::Id::Num(2),
            call: Call::Authorize(Authorize {
                worker: "w".repeat(100),
                password: None,
            }),
        };
        match codec.encode(long, &mut dst) {
            Err(CodecError::MessageTooLong { len, limit: 64 }) => assert!(len > 100),
            other => panic!("expected MessageTooLong, got {other:?}"),
        }
        assert_eq!(dst, before);
        assert_eq!(&dst[..], format!("{}\n", short.to_line()).as_bytes());
    }

    #[test]
    fn crlf_and_blank_lines_are_accepted() {
        let text = format!("\r\n\n{}\r\n", ping(2));
        let (items, err) = decode_chunked::<ToPool>(1024, text.as_bytes(), &[1]);
        assert!(err.is_none());
        assert_eq!(items.len(), 1);
    }
}
