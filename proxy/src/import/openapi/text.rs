//! The document's text: parsing it into a JSON value, and finding the line a JSON pointer
//! names so that errors can say where to look.
//!
//! serde keeps no positions, so [`line_of`] walks the pointer's keys through the text
//! itself: block mappings and sequences by indentation, flow collections (and so JSON) by
//! brackets, quoted keys unquoted. It is best-effort: anchors' aliases, complex keys and
//! multi-line keys are not followed, and then the deepest key it did find gives the line.

use serde_json::Value;

/// The document as a JSON value: JSON when the text looks like JSON and is, YAML otherwise
/// (JSON is YAML, but serde_json says more precisely what is wrong with broken JSON).
pub(super) fn parse_value(text: &str) -> Result<Value, (Option<usize>, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if blank {
        return Err((
            None,
            "the document is empty: expected an OpenAPI document (openapi, info, paths)"
                .to_string(),
        ));
    }
    let mut json_error = None;
    if text.trim_start().starts_with('{') {
        match serde_json::from_str(text) {
            Ok(value) => return Ok(value),
            Err(e) => json_error = Some(e),
        }
    }
    match serde_yaml_ng::from_str::<Value>(text) {
        Ok(value) => Ok(value),
        Err(yaml) => Err(match json_error {
            Some(e) => {
                let message = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let message = message.strip_suffix(&suffix).unwrap_or(&message);
                (
                    Some(e.line()),
                    format!("JSON syntax error at column {}: {message}", e.column()),
                )
            }
            None => {
                let message = yaml.to_string();
                match yaml.location() {
                    Some(at) => {
                        let suffix = format!(" at line {} column {}", at.line(), at.column());
                        let message = message.strip_suffix(&suffix).unwrap_or(&message);
                        (
                            Some(at.line()),
                            format!("YAML syntax error at column {}: {message}", at.column()),
                        )
                    }
                    None => (None, format!("YAML syntax error: {message}")),
                }
            }
        }),
    }
}

/// The 1-based line of the key (or sequence item) `pointer` names, or of the deepest of its
/// ancestors found; `None` when not even the first key is found.
pub(super) fn line_of(text: &str, pointer: &str) -> Option<usize> {
    let scan = Scan {
        text: text.as_bytes(),
    };
    let mut at = scan.root()?;
    let mut line = None;
    for token in super::refs::pointer_tokens(pointer) {
        let Some((key, value)) = scan.child(at, &token) else {
            break;
        };
        line = Some(scan.line(key));
        match value {
            Some(value) => at = value,
            None => break,
        }
    }
    line
}

struct Scan<'a> {
    text: &'a [u8],
}

impl Scan<'_> {
    fn byte(&self, at: usize) -> u8 {
        self.text.get(at).copied().unwrap_or(0)
    }

    fn line(&self, at: usize) -> usize {
        self.text[..at].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn column(&self, at: usize) -> usize {
        at - self.text[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
    }

    /// The first content of the document: past a byte-order mark, comments, directives and
    /// `---`.
    fn root(&self) -> Option<usize> {
        let mut at = if self.text.starts_with("\u{feff}".as_bytes()) {
            3
        } else {
            0
        };
        loop {
            at = self.next_content(at)?;
            let rest = &self.text[at..];
            if self.column(at) == 0 && rest.starts_with(b"%") {
                at = self.next_line(at)?;
            } else if self.column(at) == 0
                && rest.starts_with(b"---")
                && matches!(self.byte(at + 3), b' ' | b'\t' | b'\r' | b'\n' | 0)
            {
                at += 3;
            } else {
                return Some(at);
            }
        }
    }

    /// The start of the line after the one `at` is on.
    fn next_line(&self, at: usize) -> Option<usize> {
        let newline = self.text[at..].iter().position(|&b| b == b'\n')?;
        Some(at + newline + 1)
    }

    /// The next byte at or after `at` that is neither white space nor in a comment.
    fn next_content(&self, mut at: usize) -> Option<usize> {
        loop {
            match self.byte(at) {
                0 if at >= self.text.len() => return None,
                b' ' | b'\t' | b'\r' | b'\n' => at += 1,
                b'#' => at = self.next_line(at)?,
                _ => return Some(at),
            }
        }
    }

    /// Past anchors (`&name`) and tags (`!tag`) before a node's content.
    fn skip_properties(&self, mut at: usize) -> usize {
        while matches!(self.byte(at), b'&' | b'!') {
            while !matches!(self.byte(at), b' ' | b'\t' | b'\r' | b'\n' | 0) {
                at += 1;
            }
            while matches!(self.byte(at), b' ' | b'\t') {
                at += 1;
            }
        }
        at
    }

    /// The child `token` of the node starting at `at`: where its key (or its item's dash)
    /// is, and where its own content starts (`None` when it has none to descend into).
    fn child(&self, at: usize, token: &str) -> Option<(usize, Option<usize>)> {
        match self.byte(at) {
            b'{' => self.flow_map_child(at, token),
            b'[' => self.flow_seq_child(at, token.parse().ok()?),
            b'-' if matches!(self.byte(at + 1), b' ' | b'\t' | b'\r' | b'\n' | 0) => {
                self.block_seq_child(at, token.parse().ok()?)
            }
            _ => self.block_map_child(at, token),
        }
    }

    // -- Block collections, by indentation. ---------------------------------------------

    /// The value after a block key's `:` (at `colon`), for a key at `key_column`.
    fn block_value(&self, colon: usize, key_column: usize) -> Option<usize> {
        let mut at = colon + 1;
        while matches!(self.byte(at), b' ' | b'\t') {
            at += 1;
        }
        at = self.skip_properties(at);
        if !matches!(self.byte(at), b'#' | b'\r' | b'\n' | 0) {
            return Some(at);
        }
        // On the next lines: deeper, or a sequence at the key's own indentation.
        let next = self.next_content(at)?;
        let column = self.column(next);
        let dash = self.byte(next) == b'-'
            && matches!(self.byte(next + 1), b' ' | b'\t' | b'\r' | b'\n' | 0);
        (column > key_column || (column == key_column && dash)).then_some(next)
    }

    /// The lines after `at`'s whose content starts at `column`, until one starts left of it.
    fn siblings(&self, at: usize, column: usize) -> impl Iterator<Item = usize> + '_ {
        let mut line = self.next_line(at);
        std::iter::from_fn(move || loop {
            let start = line?;
            let content = start
                + self.text[start..]
                    .iter()
                    .position(|&b| !matches!(b, b' ' | b'\t'))
                    .unwrap_or(self.text.len() - start);
            line = self.next_line(start);
            match self.byte(content) {
                b'\r' | b'\n' | b'#' => continue,
                0 if content >= self.text.len() => return None,
                _ => {}
            }
            let c = content - start;
            if c < column || (c == 0 && self.text[content..].starts_with(b"---")) {
                line = None;
                return None;
            }
            if c == column {
                return Some(content);
            }
        })
    }

    fn block_map_child(&self, at: usize, token: &str) -> Option<(usize, Option<usize>)> {
        let column = self.column(at);
        let mut key_at = Some(at);
        let mut rest = self.siblings(at, column);
        while let Some(k) = key_at {
            if let Some((key, colon)) = self.block_key(k) {
                if key == token {
                    return Some((k, self.block_value(colon, column)));
                }
            } else if self.byte(k) != b'-' {
                // Not a mapping (a scalar, or a key this scan does not read).
                return None;
            }
            key_at = rest.next();
        }
        None
    }

    /// A block mapping key at `at`: its text, and where its `:` is.
    fn block_key(&self, at: usize) -> Option<(String, usize)> {
        let (key, mut end) = match self.byte(at) {
            b'"' | b'\'' => self.quoted(at)?,
            b'-' | b'?' | b'[' | b'{' | b'#' | b'|' | b'>' => return None,
            _ => {
                let mut end = at;
                loop {
                    match self.byte(end) {
                        b'\n' | b'\r' | 0 => return None,
                        b':' if matches!(self.byte(end + 1), b' ' | b'\t' | b'\r' | b'\n' | 0) => {
                            break
                        }
                        b'#' if matches!(self.byte(end - 1), b' ' | b'\t') => return None,
                        _ => end += 1,
                    }
                }
                let key = String::from_utf8_lossy(&self.text[at..end]);
                (key.trim_end().to_string(), end)
            }
        };
        while matches!(self.byte(end), b' ' | b'\t') {
            end += 1;
        }
        (self.byte(end) == b':').then_some((key, end))
    }

    fn block_seq_child(&self, at: usize, index: usize) -> Option<(usize, Option<usize>)> {
        let column = self.column(at);
        let mut dashes = std::iter::once(at).chain(self.siblings(at, column));
        let dash = dashes.nth(index)?;
        if self.byte(dash) != b'-' {
            return None;
        }
        let mut content = dash + 1;
        while matches!(self.byte(content), b' ' | b'\t') {
            content += 1;
        }
        content = self.skip_properties(content);
        if matches!(self.byte(content), b'#' | b'\r' | b'\n' | 0) {
            let next = self.next_content(content)?;
            return Some((dash, (self.column(next) > column).then_some(next)));
        }
        Some((dash, Some(content)))
    }

    // -- Flow collections (and JSON), by brackets. --------------------------------------

    /// Past white space and comments, newlines included.
    fn flow_space(&self, mut at: usize) -> usize {
        loop {
            match self.byte(at) {
                b' ' | b'\t' | b'\r' | b'\n' => at += 1,
                b'#' => match self.next_line(at) {
                    Some(next) => at = next,
                    None => return self.text.len(),
                },
                _ => return at,
            }
        }
    }

    /// A quoted scalar at `at`, unescaped, and the offset past its closing quote.
    fn quoted(&self, at: usize) -> Option<(String, usize)> {
        let quote = self.byte(at);
        let mut out = Vec::new();
        let mut i = at + 1;
        loop {
            let b = *self.text.get(i)?;
            if quote == b'\'' {
                if b == b'\'' {
                    if self.byte(i + 1) == b'\'' {
                        out.push(b'\'');
                        i += 2;
                        continue;
                    }
                    break;
                }
            } else if b == b'"' {
                break;
            } else if b == b'\\' {
                let e = *self.text.get(i + 1)?;
                i += 2;
                match e {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'u' => {
                        let hex = std::str::from_utf8(self.text.get(i..i + 4)?).ok()?;
                        let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                        out.extend_from_slice(c.to_string().as_bytes());
                        i += 4;
                    }
                    other => out.push(other),
                }
                continue;
            }
            out.push(b);
            i += 1;
        }
        Some((String::from_utf8_lossy(&out).into_owned(), i + 1))
    }

    /// The offset past the flow value at `at`.
    fn skip_flow_value(&self, at: usize) -> usize {
        let mut depth = 0usize;
        let mut i = at;
        while i < self.text.len() {
            match self.text[i] {
                b'"' | b'\'' => match self.quoted(i) {
                    Some((_, end)) => {
                        i = end;
                        continue;
                    }
                    None => return self.text.len(),
                },
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth == 0 => return i,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                b',' if depth == 0 => return i,
                _ => {}
            }
            i += 1;
        }
        i
    }

    fn flow_map_child(&self, at: usize, token: &str) -> Option<(usize, Option<usize>)> {
        let mut i = at + 1;
        loop {
            i = self.flow_space(i);
            let key_at = i;
            let key = match self.byte(i) {
                b'}' | 0 => return None,
                b'"' | b'\'' => {
                    let (key, end) = self.quoted(i)?;
                    i = end;
                    key
                }
                _ => {
                    let start = i;
                    loop {
                        let end = matches!(self.byte(i), b',' | b'}' | b'\n' | 0)
                            || (self.byte(i) == b':'
                                && matches!(self.byte(i + 1), b' ' | b'\t' | b'\r' | b'\n' | b'"'));
                        if end {
                            break;
                        }
                        i += 1;
                    }
                    String::from_utf8_lossy(&self.text[start..i])
                        .trim()
                        .to_string()
                }
            };
            i = self.flow_space(i);
            let value = if self.byte(i) == b':' {
                let v = self.flow_space(i + 1);
                Some(self.skip_properties(v))
            } else {
                None
            };
            if key == token {
                return Some((key_at, value));
            }
            if let Some(v) = value {
                i = self.flow_space(self.skip_flow_value(v));
            }
            match self.byte(i) {
                b',' => i += 1,
                _ => return None,
            }
        }
    }

    fn flow_seq_child(&self, at: usize, index: usize) -> Option<(usize, Option<usize>)> {
        let mut i = at + 1;
        for _ in 0..index {
            i = self.flow_space(i);
            if matches!(self.byte(i), b']' | 0) {
                return None;
            }
            i = self.flow_space(self.skip_flow_value(i));
            if self.byte(i) != b',' {
                return None;
            }
            i += 1;
        }
        i = self.flow_space(i);
        if matches!(self.byte(i), b']' | 0) {
            return None;
        }
        Some((i, Some(self.skip_properties(i))))
    }
}
