//! `${VAR}` / `${VAR:-default}` substitution on the configuration text, before YAML parsing.
//!
//! It works on the raw text (comments included) and inserts values verbatim, so a value that
//! contains YAML syntax is read as YAML. `$${` writes a literal `${`. Every problem is reported,
//! not just the first, each with its line and column.

/// Substitutes variables in `text`, looking them up with `env`. On failure returns one message
/// per problem, each starting with `line L column C: `.
pub fn substitute(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    // Start of the copied-but-not-yet-written run of plain text.
    let mut plain = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if bytes[i..].starts_with(b"$${") {
            out.push_str(&text[plain..i]);
            out.push_str("${");
            i += 3;
            plain = i;
            continue;
        }
        if !bytes[i..].starts_with(b"${") {
            i += 1;
            continue;
        }
        out.push_str(&text[plain..i]);
        let (line, column) = position(text, i);
        let at = format!("line {line} column {column}");
        let Some(close) = text[i + 2..].find(['}', '\n']).map(|n| n + i + 2) else {
            errors.push(format!(
                "{at}: \"${{\" is not closed by \"}}\" (write $${{ for a literal ${{)"
            ));
            break;
        };
        if bytes[close] != b'}' {
            errors.push(format!("{at}: \"${{\" is not closed by \"}}\" on the same line (write $${{ for a literal ${{)"));
            i = close;
            plain = i;
            continue;
        }
        let inner = &text[i + 2..close];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if !valid_name(name) {
            errors.push(format!(
                "{at}: ${{{inner}}}: {name:?} is not a variable name (letters, digits and _, not starting with a digit)"
            ));
        } else {
            match (env(name).filter(|v| !v.is_empty() || default.is_none()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => errors.push(format!(
                    "{at}: ${{{name}}}: environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                )),
            }
        }
        i = close + 1;
        plain = i;
    }
    out.push_str(&text[plain..]);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.bytes();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// 1-based line and column (in characters) of byte offset `at`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("9000".into()),
            "EMPTY" => Some(String::new()),
            "HOST" => Some("example.com".into()),
            _ => None,
        }
    }

    fn sub(text: &str) -> Result<String, Vec<String>> {
        substitute(text, &env)
    }

    #[test]
    fn set_variable() {
        assert_eq!(sub("port: ${PORT}\n").unwrap(), "port: 9000\n");
        assert_eq!(sub("${HOST}:${PORT}").unwrap(), "example.com:9000");
    }

    #[test]
    fn default_used_when_unset_or_empty() {
        assert_eq!(
            sub("a: ${NOPE:-127.0.0.1:8080}").unwrap(),
            "a: 127.0.0.1:8080"
        );
        assert_eq!(sub("a: ${EMPTY:-x}").unwrap(), "a: x");
        assert_eq!(sub("a: ${PORT:-1}").unwrap(), "a: 9000");
        assert_eq!(sub("a: ${NOPE:-}").unwrap(), "a: ");
    }

    #[test]
    fn empty_without_default_is_empty() {
        assert_eq!(sub("a: '${EMPTY}'").unwrap(), "a: ''");
    }

    #[test]
    fn unset_is_an_error_with_its_line() {
        let errors = sub("a: 1\nb: ${NOPE}\nc: ${ALSO_NOPE}").unwrap_err();
        assert_eq!(
            errors,
            vec![
                "line 2 column 4: ${NOPE}: environment variable NOPE is not set (write ${NOPE:-default} to give a default)",
                "line 3 column 4: ${ALSO_NOPE}: environment variable ALSO_NOPE is not set (write ${ALSO_NOPE:-default} to give a default)",
            ]
        );
    }

    #[test]
    fn escape_writes_literal() {
        assert_eq!(sub("a: $${PORT}").unwrap(), "a: ${PORT}");
        assert_eq!(sub("price: $5 and $$").unwrap(), "price: $5 and $$");
    }

    #[test]
    fn malformed() {
        let errors = sub("a: ${PORT\nb: ${1X}\nc: ${").unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("line 1 column 4: \"${\" is not closed"));
        assert!(errors[1].starts_with("line 2 column 4: ${1X}: \"1X\" is not a variable name"));
        assert!(errors[2].starts_with("line 3 column 4: "));
    }
}
