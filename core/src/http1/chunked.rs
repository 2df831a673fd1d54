//! TODO
pub struct ChunkedDecoder;
pub fn encode_chunk() {}
pub fn encode_last_chunk() {}
