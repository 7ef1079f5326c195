//! Protobuf by hand, for the messages keyward reads and writes on the wire without the generated
//! types. Writing (`ext_authz::wire`, `verify::wire`): field keys, varints and length-delimited
//! fields, with their encoded lengths. Reading (`ext_authz::wire`): the fields of a message
//! located in its bytes ([`Fields`]), so strings are read in place. Both are checked against
//! prost in those modules' tests.

use std::fmt;

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{WireType, decode_key, decode_varint, encode_key};

#[cfg(test)]
pub(crate) mod arbitrary;

// proto3 leaves out scalar fields holding their default (0, ""), as prost does; a message field
// that is set is written even when empty.

pub(crate) fn key_len(number: u32) -> usize {
    prost::encoding::key_len(number)
}

pub(crate) fn varint_field_len(number: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(number) + prost::encoding::encoded_len_varint(value)
    }
}

pub(crate) fn bytes_field_len(number: u32, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        message_field_len(number, len)
    }
}

pub(crate) fn message_field_len(number: u32, len: usize) -> usize {
    key_len(number) + prost::encoding::encoded_len_varint(len as u64) + len
}

#[inline]
pub(crate) fn varint_field(number: u32, value: u64, buf: &mut impl BufMut) {
    if value != 0 {
        key_and_varint(number, WireType::Varint, value, buf);
    }
}

/// A field's key and a varint (a value, or a length): in one piece when both take one byte,
/// as most do (a buffer's every `put` checks its capacity).
#[inline]
fn key_and_varint(number: u32, wire: WireType, value: u64, buf: &mut impl BufMut) {
    if number < 16 && value < 0x80 {
        buf.put_slice(&[(number << 3) as u8 | wire as u8, value as u8]);
    } else {
        key(number, wire, buf);
        varint(value, buf);
    }
}

/// A field's key: one byte for the field numbers 1-15.
#[inline]
pub(crate) fn key(number: u32, wire: WireType, buf: &mut impl BufMut) {
    if number < 16 {
        buf.put_u8((number << 3) as u8 | wire as u8);
    } else {
        encode_key(number, wire, buf);
    }
}

/// A varint: one byte below 128 (most lengths).
#[inline]
pub(crate) fn varint(value: u64, buf: &mut impl BufMut) {
    if value < 0x80 {
        buf.put_u8(value as u8);
    } else {
        long_varint(value, buf);
    }
}

/// A varint of two or more bytes, made on the stack and put in one piece (a buffer's `put_u8`
/// checks its capacity byte by byte).
fn long_varint(mut value: u64, buf: &mut impl BufMut) {
    let mut bytes = [0; 10];
    let mut len = 0;
    while value >= 0x80 {
        bytes[len] = (value as u8) | 0x80;
        value >>= 7;
        len += 1;
    }
    bytes[len] = value as u8;
    buf.put_slice(&bytes[..=len]);
}

#[inline]
pub(crate) fn bytes_field(number: u32, bytes: &[u8], buf: &mut impl BufMut) {
    if !bytes.is_empty() {
        message_header(number, bytes.len(), buf);
        buf.put_slice(bytes);
    }
}

#[inline]
pub(crate) fn message_header(number: u32, len: usize, buf: &mut impl BufMut) {
    key_and_varint(number, WireType::LengthDelimited, len as u64, buf);
}

// Reading: the fields of a message located in its encoded bytes, for the requests keyward reads
// in place (`ext_authz::wire`) instead of decoding them into owned strings.

/// A byte range of a request body, in 32-bit offsets: requests keep several, and a smaller
/// request is moved more cheaply on its way through the server (bodies are bounded far below
/// 4 GiB by the transport; [`Span::whole`] refuses a larger one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// `start..end` of a body [`Span::whole`] accepted.
    pub(crate) fn new(start: usize, end: usize) -> Self {
        debug_assert!(start <= end && end <= u32::MAX as usize);
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The whole body.
    pub(crate) fn whole(body: &[u8]) -> Result<Self, Malformed> {
        if u32::try_from(body.len()).is_err() {
            return Err(Malformed("the body is larger than 4 GiB".into()));
        }
        Ok(Span::new(0, body.len()))
    }

    /// Where the range starts.
    pub(crate) fn start(self) -> usize {
        self.start as usize
    }

    /// Where the range ends.
    pub(crate) fn end(self) -> usize {
        self.end as usize
    }

    /// How many bytes the range holds.
    pub(crate) fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether the range is empty.
    pub(crate) fn is_empty(self) -> bool {
        self.start == self.end
    }

    /// An empty range at this one's start (a field absent from its message).
    pub(crate) fn empty_at(self) -> Self {
        Span {
            start: self.start,
            end: self.start,
        }
    }

    /// The bytes of the range.
    pub(crate) fn of(self, body: &[u8]) -> &[u8] {
        &body[self.start()..self.end()]
    }
}

/// The body is not a protobuf message (or a field keyward reads has the wrong wire type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub(crate) String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<prost::DecodeError> for Malformed {
    fn from(error: prost::DecodeError) -> Self {
        Malformed(error.to_string())
    }
}

impl From<Malformed> for tonic::Status {
    /// The message names what is wrong with the structure, never field contents.
    fn from(error: Malformed) -> Self {
        tonic::Status::invalid_argument(format!(
            "the request body is not a valid protobuf message: {error}"
        ))
    }
}

/// A field's value: what the next field of a message holds.
pub(crate) enum Value {
    /// An integer, a bool or an enum (keyward's hand reader reads none: it is skipped).
    Varint,
    Fixed,
    Bytes(Span),
    /// A group (a deprecated proto2 encoding), already skipped: only an unknown field may be
    /// one.
    Group,
}

impl Value {
    /// A length-delimited field: bytes or a message.
    pub(crate) fn bytes(self) -> Result<Span, Malformed> {
        match self {
            Value::Bytes(span) => Ok(span),
            _ => Err(Malformed(
                "a string or message field has another wire type".into(),
            )),
        }
    }

    /// A string field: length-delimited and UTF-8, checked on every occurrence (a later one
    /// does not excuse an earlier one, as protobuf decodes them).
    #[inline]
    pub(crate) fn string(self, body: &[u8], field: &'static str) -> Result<Span, Malformed> {
        let span = self.bytes()?;
        // ASCII, as nearly every request string is, checked inline; the rest by the standard
        // library (a call per string costs more than the check on short ones).
        let bytes = span.of(body);
        if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
            Ok(span)
        } else {
            Err(Malformed(format!("{field} is not valid UTF-8")))
        }
    }
}

/// The fields of one message, in wire order, read by prost's rules: unknown fields of every
/// wire type (groups too) skipped, non-minimal varints and lengths accepted, nesting bounded as
/// prost bounds it.
pub(crate) struct Fields<'a> {
    body: &'a [u8],
    pos: usize,
    end: usize,
    /// How deep this message is nested: prost refuses past its recursion limit.
    depth: u32,
}

/// prost's recursion limit (`prost::RECURSION_LIMIT`, not exported): how deep messages and
/// groups may nest.
const RECURSION_LIMIT: u32 = 100;

impl<'a> Fields<'a> {
    /// The fields of the message that is the whole of `body`.
    pub(crate) fn top(body: &'a [u8]) -> Result<Self, Malformed> {
        let span = Span::whole(body)?;
        Ok(Fields {
            body,
            pos: span.start(),
            end: span.end(),
            depth: 0,
        })
    }

    /// The fields of the message `value` holds, one level down.
    #[inline]
    pub(crate) fn message(&self, value: Value) -> Result<Fields<'a>, Malformed> {
        let span = value.bytes()?;
        if self.depth >= RECURSION_LIMIT {
            return Err(Malformed("messages are nested too deeply".into()));
        }
        Ok(Fields {
            body: self.body,
            pos: span.start(),
            end: span.end(),
            depth: self.depth + 1,
        })
    }

    /// The message's bytes.
    #[inline]
    pub(crate) fn span(&self) -> Span {
        Span::new(self.pos, self.end)
    }

    /// The body the message is part of.
    #[inline]
    pub(crate) fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The next field's number and value; `None` at the end of the message. The usual field is
    /// read inline (every read of a request makes dozens of these calls); the rest by
    /// [`Fields::next_general`].
    #[inline]
    pub(crate) fn next(&mut self) -> Result<Option<(u32, Value)>, Malformed> {
        if self.pos == self.end {
            return Ok(None);
        }
        // Most fields of a request: numbered 1-15 (a one-byte key), a string or message shorter
        // than 128 bytes (a one-byte length) or a small integer (one byte).
        if let [key @ 0x08..0x80, byte @ 0..0x80, ..] = self.body[self.pos..self.end] {
            let number = u32::from(key >> 3);
            match key & 0x07 {
                0 => {
                    self.pos += 2;
                    return Ok(Some((number, Value::Varint)));
                }
                2 if self.pos + 2 + usize::from(byte) <= self.end => {
                    let start = self.pos + 2;
                    self.pos = start + usize::from(byte);
                    let span = Span::new(start, self.pos);
                    return Ok(Some((number, Value::Bytes(span))));
                }
                _ => {}
            }
        }
        self.next_general()
    }

    /// Any other field: a longer length, a larger number, a fixed-width value, a group, or a
    /// malformed one.
    #[inline(never)]
    fn next_general(&mut self) -> Result<Option<(u32, Value)>, Malformed> {
        // A message of 128 bytes to 16 KiB (a two-byte length), as Envoy's attributes are.
        if let [key @ 0x08..0x80, low @ 0x80..=0xff, high @ 0..0x80, ..] =
            self.body[self.pos..self.end]
            && key & 0x07 == 2
        {
            let start = self.pos + 3;
            let end = start + (usize::from(low & 0x7f) | usize::from(high) << 7);
            if end <= self.end {
                self.pos = end;
                return Ok(Some((
                    u32::from(key >> 3),
                    Value::Bytes(Span::new(start, end)),
                )));
            }
        }
        let mut rest = &self.body[self.pos..self.end];
        let (number, wire) = decode_key(&mut rest)?;
        let value = match wire {
            WireType::Varint => {
                decode_varint(&mut rest)?;
                Value::Varint
            }
            WireType::ThirtyTwoBit => {
                take(&mut rest, 4)?;
                Value::Fixed
            }
            WireType::SixtyFourBit => {
                take(&mut rest, 8)?;
                Value::Fixed
            }
            WireType::LengthDelimited => {
                let len = decode_varint(&mut rest)?;
                let start = self.end - rest.len();
                let len = take(&mut rest, len)?;
                Value::Bytes(Span::new(start, start + len))
            }
            WireType::StartGroup => {
                skip_group(number, &mut rest, self.depth)?;
                Value::Group
            }
            WireType::EndGroup => return Err(Malformed("a group ends that never started".into())),
        };
        self.pos = self.end - rest.len();
        Ok(Some((number, value)))
    }
}

/// Takes `len` bytes off `rest`, or fails when it holds fewer.
fn take(rest: &mut &[u8], len: u64) -> Result<usize, Malformed> {
    let len = usize::try_from(len)
        .ok()
        .filter(|len| *len <= rest.len())
        .ok_or_else(|| Malformed("a field runs past the end of its message".into()))?;
    rest.advance(len);
    Ok(len)
}

/// Skips the rest of group `number` (its start already read) in a message at `depth`, as
/// prost's `skip_field` does: every field up to the group's own end, nested groups counted
/// against the recursion limit.
fn skip_group(number: u32, rest: &mut &[u8], depth: u32) -> Result<(), Malformed> {
    loop {
        let (inner, wire) = decode_key(rest)?;
        match wire {
            WireType::EndGroup if inner == number => return Ok(()),
            WireType::EndGroup => {
                return Err(Malformed("a group ends with another group's number".into()));
            }
            _ if depth + 1 >= RECURSION_LIMIT => {
                return Err(Malformed("groups are nested too deeply".into()));
            }
            WireType::Varint => {
                decode_varint(rest)?;
            }
            WireType::ThirtyTwoBit => {
                take(rest, 4)?;
            }
            WireType::SixtyFourBit => {
                take(rest, 8)?;
            }
            WireType::LengthDelimited => {
                let len = decode_varint(rest)?;
                take(rest, len)?;
            }
            WireType::StartGroup => skip_group(inner, rest, depth + 1)?,
        }
    }
}

/// A request read in place from its body (the `Decode` side of [`super::gateway::WireCodec`]).
pub trait ReadInPlace: Sized + Send + 'static {
    /// Locates the message's fields in `body`.
    fn read(body: Bytes) -> Result<Self, Malformed>;
}

/// An answer written straight to the wire (the `Encode` side of [`super::gateway::WireCodec`]).
pub trait WriteInPlace: Send + 'static {
    /// Writes the encoded message.
    fn write(&self, buf: &mut impl BufMut);
}

/// The number of `field` in the message `message` (its full name, nested messages with dots:
/// `envoy.service.auth.v3.AttributeContext.Peer`), from the descriptors of `proto/`: what the
/// hand-written readers and writers' field numbers are checked against.
#[cfg(test)]
pub(crate) fn field_number(message: &str, field: &str) -> u32 {
    use prost::Message as _;
    use prost_types::DescriptorProto;
    fn find<'a>(
        prefix: &str,
        messages: &'a [DescriptorProto],
        name: &str,
    ) -> Option<&'a DescriptorProto> {
        messages.iter().find_map(|m| {
            let full = format!("{prefix}.{}", m.name());
            if full == name {
                Some(m)
            } else {
                find(&full, &m.nested_type, name)
            }
        })
    }
    let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let found = set
        .file
        .iter()
        .find_map(|f| find(f.package(), &f.message_type, message))
        .unwrap_or_else(|| panic!("no message {message} in proto/"));
    let number = found
        .field
        .iter()
        .find(|f| f.name() == field)
        .unwrap_or_else(|| panic!("no field {field} in {message}"))
        .number();
    u32::try_from(number).expect("field numbers are positive")
}
