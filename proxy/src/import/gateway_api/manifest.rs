//! Reading manifest files into objects: YAML streams (documents separated by `---`), JSON, and
//! `kind: List` wrappers; and finding the line of a field in the text, for error messages.
//!
//! Line finding is a scan of the text, not of a parse tree (serde_yaml_ng keeps no positions):
//! it follows block-style YAML and pretty-printed JSON by indentation, and where it loses the
//! way (flow style, anchors) it answers with the line of the nearest enclosing field it found.

use serde_json::Value;

use super::Error;

/// A file's name and lines.
pub(super) struct Source<'a> {
    pub name: String,
    lines: Vec<&'a str>,
    text: &'a str,
}

impl<'a> Source<'a> {
    pub fn new(name: &str, text: &'a str) -> Source<'a> {
        Source {
            name: name.to_string(),
            lines: text.lines().collect(),
            text,
        }
    }
}

/// One Kubernetes object from a file.
pub(super) struct Object<'a> {
    pub source: &'a Source<'a>,
    /// The lines of its document (0-based, end excluded).
    lines: (usize, usize),
    /// Its place in the document: empty, or `items[N]` inside a `List`.
    base: String,
    pub value: Value,
}

impl Object<'_> {
    /// The 1-based line of `field` (`spec.rules[0].matches`), or of the nearest enclosing
    /// field found, or of the object's document.
    pub fn line_of(&self, field: &str) -> usize {
        let path = [self.base.as_str(), field]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(".");
        let (start, end) = self.lines;
        let found = locate(&self.source.lines[start..end], &segments(&path));
        start + found.unwrap_or_else(|| first_content(&self.source.lines[start..end])) + 1
    }
}

/// Every object in `source`.
pub(super) fn read<'a>(source: &'a Source<'a>) -> Result<Vec<Object<'a>>, Error> {
    let error = |line: Option<usize>, message: String| Error {
        source: source.name.clone(),
        line,
        object: None,
        field: String::new(),
        message,
    };
    let mut documents = Vec::new();
    let trimmed = source.text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut stream = serde_json::Deserializer::from_str(source.text).into_iter::<Value>();
        let mut start = 0;
        while let Some(next) = stream.next() {
            let value = next.map_err(|e| error(Some(e.line()), format!("invalid JSON: {e}")))?;
            let end = stream.byte_offset();
            let line = |offset: usize| source.text[..offset].matches('\n').count();
            documents.push(((line(start), line(end) + 1), value));
            start = end;
        }
    } else {
        for (start, end) in yaml_documents(&source.lines) {
            let lines = &source.lines[start..end];
            if lines.iter().all(|l| is_blank(l)) {
                continue;
            }
            // Blank lines in front keep the parser's positions those of the file.
            let text = "\n".repeat(start) + &lines.join("\n");
            let value: Value = serde_yaml_ng::from_str(&text).map_err(|e| {
                let line = e.location().map(|l| l.line());
                let message = e.to_string();
                let message = match e.location() {
                    Some(at) => message
                        .strip_suffix(&format!(" at line {} column {}", at.line(), at.column()))
                        .unwrap_or(&message)
                        .to_string(),
                    None => message,
                };
                error(line, format!("invalid YAML: {message}"))
            })?;
            documents.push(((start, end), value));
        }
    }

    let mut objects = Vec::new();
    for (lines, value) in documents {
        let doc_line = start_line(source, lines);
        match value {
            Value::Null => {}
            Value::Object(ref map)
                if map.get("kind").and_then(Value::as_str) == Some("List")
                    && map.get("items").is_some() =>
            {
                let Some(items) = map.get("items").and_then(Value::as_array) else {
                    return Err(error(Some(doc_line), "items: expected a list".into()));
                };
                for (i, item) in items.iter().enumerate() {
                    let object = Object {
                        source,
                        lines,
                        base: format!("items[{i}]"),
                        value: item.clone(),
                    };
                    if !item.is_object() {
                        let line = object.line_of("");
                        return Err(error(
                            Some(line),
                            format!("items[{i}]: expected a Kubernetes object (a mapping)"),
                        ));
                    }
                    objects.push(object);
                }
            }
            Value::Object(_) => objects.push(Object {
                source,
                lines,
                base: String::new(),
                value,
            }),
            _ => {
                return Err(error(
                    Some(doc_line),
                    "expected a Kubernetes object (a mapping with apiVersion and kind)".into(),
                ))
            }
        }
    }
    Ok(objects)
}

fn start_line(source: &Source, (start, end): (usize, usize)) -> usize {
    start + first_content(&source.lines[start..end.min(source.lines.len())]) + 1
}

/// The line ranges of the documents of a YAML stream.
fn yaml_documents(lines: &[&str]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, line) in lines.iter().enumerate() {
        let separator = *line == "---"
            || line.starts_with("--- ")
            || line.starts_with("---\t")
            || *line == "...";
        if separator {
            out.push((start, i));
            start = i + 1;
        }
    }
    out.push((start, lines.len()));
    out
}

fn is_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

fn first_content(lines: &[&str]) -> usize {
    lines.iter().position(|l| !is_blank(l)).unwrap_or(0)
}

#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `spec.rules[0].matches` as keys and indexes.
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let key_end = part.find('[').unwrap_or(part.len());
        if key_end > 0 {
            out.push(Segment::Key(&part[..key_end]));
        }
        for index in part[key_end..].split('[').skip(1) {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                out.push(Segment::Index(i));
            }
        }
    }
    out
}

/// A line as the scan sees it.
struct Line<'a> {
    /// Spaces before the first character.
    indent: usize,
    /// Whether it starts a block sequence item (`- `).
    dash: bool,
    /// The column of the content after any `- ` markers.
    column: usize,
    /// That content.
    text: &'a str,
}

fn line(raw: &str) -> Option<Line<'_>> {
    if is_blank(raw) {
        return None;
    }
    let indent = raw.len() - raw.trim_start_matches(' ').len();
    let mut text = &raw[indent..];
    let mut column = indent;
    let dash = text == "-" || text.starts_with("- ");
    while text == "-" || text.starts_with("- ") {
        let rest = text[1..].trim_start_matches(' ');
        column += text.len() - rest.len();
        text = rest;
    }
    Some(Line {
        indent,
        dash,
        column,
        text,
    })
}

/// The index (in `lines`) of the deepest segment of `path` found.
fn locate(lines: &[&str], path: &[Segment]) -> Option<usize> {
    let parsed: Vec<Option<Line>> = lines.iter().map(|l| line(l)).collect();
    let significant =
        |from: usize, to: usize| (from..to).filter_map(|i| parsed[i].as_ref().map(|l| (i, l)));
    let mut region = (0, lines.len());
    let mut found = None;
    for segment in path {
        match segment {
            Segment::Key(key) => {
                // A lone `{` opens a JSON object: its keys are on the lines after it.
                let Some((_, first)) = significant(region.0, region.1).find(|(_, l)| l.text != "{")
                else {
                    break;
                };
                let column = first.column;
                let hit = significant(region.0, region.1)
                    .find(|(_, l)| l.column == column && is_key(l.text, key));
                let Some((at, _)) = hit else {
                    break;
                };
                found = Some(at);
                // The value's lines: deeper ones, and a block sequence at the key's own column.
                let end = significant(at + 1, region.1)
                    .find(|(_, l)| l.indent < column || (l.indent == column && !l.dash))
                    .map_or(region.1, |(i, _)| i);
                region = (at + 1, end);
            }
            Segment::Index(n) => {
                let Some((_, first)) = significant(region.0, region.1).next() else {
                    break;
                };
                let indent = first.indent;
                let item = |l: &Line| {
                    l.indent == indent
                        && if first.dash {
                            l.dash
                        } else {
                            !l.text.starts_with(['}', ']'])
                        }
                };
                let items: Vec<usize> = significant(region.0, region.1)
                    .filter(|(_, l)| item(l))
                    .map(|(i, _)| i)
                    .collect();
                let Some(&at) = items.get(*n) else {
                    break;
                };
                found = Some(at);
                let end = items.get(n + 1).copied().unwrap_or(region.1);
                let opens_alone = parsed[at].as_ref().is_some_and(|l| l.text == "{");
                region = (if opens_alone { at + 1 } else { at }, end);
            }
        }
    }
    found
}

fn is_key(text: &str, key: &str) -> bool {
    let rest = [("", ""), ("\"", "\""), ("'", "'")]
        .iter()
        .find_map(|(open, close)| {
            text.strip_prefix(open)?
                .strip_prefix(key)?
                .strip_prefix(close)
        });
    rest.is_some_and(|r| {
        r.trim_start().starts_with(':')
            && (r.trim_start().len() == 1 || r.trim_start()[1..].starts_with([' ', '\t']))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
apiVersion: v1
kind: HTTPRoute
spec:
  rules:
  - matches:
    - path:
        type: Prefix
  - backendRefs:
    - name: a
      port: 80
    - name: b
      weight: 3
";

    #[test]
    fn finds_fields_in_block_yaml() {
        let lines: Vec<&str> = YAML.lines().collect();
        let at = |p: &str| locate(&lines, &segments(p)).map(|i| i + 1);
        assert_eq!(at("spec"), Some(3));
        assert_eq!(at("spec.rules[0].matches[0].path.type"), Some(7));
        assert_eq!(at("spec.rules[1]"), Some(8));
        assert_eq!(at("spec.rules[1].backendRefs[1].weight"), Some(12));
        assert_eq!(at("spec.rules[1].backendRefs[0].port"), Some(10));
        // Not there: the deepest enclosing field found.
        assert_eq!(at("spec.rules[1].filters[0]"), Some(8));
        assert_eq!(at("spec.rules[5]"), Some(4));
    }

    #[test]
    fn finds_fields_in_pretty_json() {
        let json = serde_json::to_string_pretty(&serde_json::json!({
            "spec": {"rules": [{"matches": [{"path": {"type": "Prefix"}}]}, {"backendRefs": [{"name": "a", "port": 80}]}]}
        }))
        .unwrap();
        let lines: Vec<&str> = json.lines().collect();
        let at = |p: &str| locate(&lines, &segments(p)).map(|i| lines[i].trim());
        assert_eq!(
            at("spec.rules[0].matches[0].path.type"),
            Some("\"type\": \"Prefix\"")
        );
        assert_eq!(
            at("spec.rules[1].backendRefs[0].port"),
            Some("\"port\": 80")
        );
    }

    #[test]
    fn splits_yaml_streams() {
        let lines: Vec<&str> = "a: 1\n---\nb: 2\n--- \n...\n".lines().collect();
        assert_eq!(yaml_documents(&lines), vec![(0, 1), (2, 3), (4, 4), (5, 5)]);
    }
}
