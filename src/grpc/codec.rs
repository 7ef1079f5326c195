//! The protobuf codec of keyward's services: prost's, except that a request body that does not
//! decode (garbage bytes, a truncated message, invalid UTF-8 in a string) is the client's mistake
//! and is answered `INVALID_ARGUMENT`, where prost's codec says `INTERNAL`.

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// prost's codec with decode errors reported as `INVALID_ARGUMENT`.
#[derive(Debug, Clone, Default)]
pub struct KeywardCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Codec for KeywardCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = KeywardDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        KeywardDecoder(self.0.decoder())
    }
}

/// Decodes with prost; a message that does not decode is `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct KeywardDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for KeywardDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| {
            // prost's message names the field path that failed, never field contents.
            Status::invalid_argument(format!(
                "the request body is not a valid protobuf message: {}",
                status.message()
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
