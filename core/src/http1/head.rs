//! TODO: request and response heads.
use super::{CodecError, Limits};
#[derive(Debug, Default)]
pub struct RequestHead;
#[derive(Debug, Default)]
pub struct ResponseHead;
pub fn parse_request(
    _buf: &[u8],
    _limits: &Limits,
    _head: &mut RequestHead,
) -> Result<Option<usize>, CodecError> {
    todo!()
}
pub fn parse_response(
    _buf: &[u8],
    _limits: &Limits,
    _head: &mut ResponseHead,
) -> Result<Option<usize>, CodecError> {
    todo!()
}
