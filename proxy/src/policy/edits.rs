//! Header edits made by policies while a request runs (`set-header` with any `exists_action`,
//! the `RateLimit-*` headers, `X-Cache`), kept in buffers the connection reuses.
//!
//! Names and values are copied into one byte buffer and referred to by spans, so an edit
//! costs no allocation once the buffers have grown to a request's needs. The head writers ask
//! [`Edits::touches`] whether to drop an original header line and then append
//! [`Edits::lines`].

use std::ops::Range;

/// APIM's `exists-action` of `set-header` and `set-query-parameter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExistsAction {
    /// Replace every value with this one (the default).
    Override,
    /// Leave a header that exists alone; add it otherwise.
    Skip,
    /// Add another value.
    Append,
    /// Remove the header.
    Delete,
}

#[derive(Clone, Debug)]
struct Op {
    name: Range<u32>,
    value: Range<u32>,
}

/// The edits of one message (the request to the upstream, or the response to the client).
#[derive(Default, Debug)]
pub struct Edits {
    bytes: Vec<u8>,
    /// Lines to add, in order.
    added: Vec<Op>,
    /// Names whose original lines are dropped (overridden or deleted).
    dropped: Vec<Range<u32>>,
}

impl Edits {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.added.clear();
        self.dropped.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.dropped.is_empty()
    }

    fn text(&self, r: &Range<u32>) -> &[u8] {
        &self.bytes[r.start as usize..r.end as usize]
    }

    fn push_bytes(&mut self, b: &[u8]) -> Range<u32> {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(b);
        start..self.bytes.len() as u32
    }

    /// Whether the original header `name` is dropped.
    #[inline]
    pub fn touches(&self, name: &[u8]) -> bool {
        self.dropped
            .iter()
            .any(|r| self.text(r).eq_ignore_ascii_case(name))
    }

    /// Whether the message will carry `name`: an added line, or an original one (`original`)
    /// that is not dropped.
    pub fn has(&self, name: &[u8], original: bool) -> bool {
        (original && !self.touches(name))
            || self
                .added
                .iter()
                .any(|op| self.text(&op.name).eq_ignore_ascii_case(name))
    }

    /// Applies one `set-header`. `value` is the rendered value (ignored for `Delete`);
    /// `original` says whether the message as received has the header.
    pub fn apply(&mut self, action: ExistsAction, name: &[u8], value: &[u8], original: bool) {
        match action {
            ExistsAction::Skip if self.has(name, original) => {}
            ExistsAction::Skip | ExistsAction::Append => self.add(name, value),
            ExistsAction::Override => {
                self.remove(name);
                self.add(name, value);
            }
            ExistsAction::Delete => self.remove(name),
        }
    }

    /// Adds a line (the original lines of `name`, if any, stay).
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        let name = self.push_bytes(name);
        let value = self.push_bytes(value);
        self.added.push(Op { name, value });
    }

    /// Adds a line whose value is written by `write` straight into the buffer.
    pub fn add_with(&mut self, name: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
        let name = self.push_bytes(name);
        let start = self.bytes.len() as u32;
        write(&mut self.bytes);
        let value = start..self.bytes.len() as u32;
        self.added.push(Op { name, value });
    }

    /// Removes every value of `name`: original lines and lines added so far.
    pub fn remove(&mut self, name: &[u8]) {
        let bytes = &self.bytes;
        self.added.retain(|op| {
            !bytes[op.name.start as usize..op.name.end as usize].eq_ignore_ascii_case(name)
        });
        if !self.touches(name) {
            let r = self.push_bytes(name);
            self.dropped.push(r);
        }
    }

    /// The lines to add, as (name, value).
    pub fn lines(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.added
            .iter()
            .map(|op| (self.text(&op.name), self.text(&op.value)))
    }

    /// Writes the lines to add as `name: value\r\n`.
    pub fn write(&self, out: &mut Vec<u8>) {
        for (name, value) in self.lines() {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(e: &Edits) -> Vec<(String, String)> {
        e.lines()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn exists_actions_follow_apim() {
        let mut e = Edits::default();
        e.apply(ExistsAction::Override, b"X-A", b"1", true);
        assert!(e.touches(b"x-a"));
        e.apply(ExistsAction::Append, b"x-a", b"2", true);
        e.apply(ExistsAction::Skip, b"X-A", b"3", true);
        e.apply(ExistsAction::Skip, b"x-b", b"4", false);
        e.apply(ExistsAction::Skip, b"x-c", b"5", true);
        assert_eq!(
            lines(&e),
            [("X-A", "1"), ("x-a", "2"), ("x-b", "4")].map(|(a, b)| (a.to_string(), b.to_string()))
        );
        e.apply(ExistsAction::Delete, b"x-a", b"", true);
        assert_eq!(lines(&e).len(), 1);
        assert!(e.touches(b"X-A"));
        assert!(!e.touches(b"x-c"));
        e.clear();
        assert!(e.is_empty());
    }
}
