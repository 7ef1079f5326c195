//! Writing protobuf by hand, for the answers keyward encodes without building the generated
//! message first (`ext_authz::wire`, `verify::wire`): field keys, varints and length-delimited
//! fields, with their encoded lengths. What these write is checked byte for byte against prost
//! in those modules' tests.

use bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint};

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

pub(crate) fn varint_field(number: u32, value: u64, buf: &mut impl BufMut) {
    if value != 0 {
        key(number, WireType::Varint, buf);
        varint(value, buf);
    }
}

/// A field's key: one byte for the field numbers 1-15.
pub(crate) fn key(number: u32, wire: WireType, buf: &mut impl BufMut) {
    if number < 16 {
        buf.put_u8((number << 3) as u8 | wire as u8);
    } else {
        encode_key(number, wire, buf);
    }
}

/// A varint: one byte below 128 (most lengths).
pub(crate) fn varint(value: u64, buf: &mut impl BufMut) {
    if value < 0x80 {
        buf.put_u8(value as u8);
    } else {
        encode_varint(value, buf);
    }
}

pub(crate) fn bytes_field(number: u32, bytes: &[u8], buf: &mut impl BufMut) {
    if !bytes.is_empty() {
        message_header(number, bytes.len(), buf);
        buf.put_slice(bytes);
    }
}

pub(crate) fn message_header(number: u32, len: usize, buf: &mut impl BufMut) {
    key(number, WireType::LengthDelimited, buf);
    varint(len as u64, buf);
}
