//! TODO
#[derive(Debug)]
pub struct CodecError;
