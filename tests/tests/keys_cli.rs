//! The command line's subscription-key tools: `ringway key new` and `ringway key hash`.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ringway_tests::process::ringway_bin;
use ringway_tests::run_ringway;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The SHA-256 of "abc" (FIPS 180-2, appendix B.1), in the configuration's form.
const ABC_HASH: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn both_of(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The value after `label` on its line of `text`.
fn labelled<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no line starting {label:?} in:\n{text}"))
        .trim()
}

#[test]
fn key_hash_prints_the_sha256_form() {
    let output = run_ringway(&["key", "hash", "abc"], &[], TIMEOUT);
    assert_eq!(output.status.code(), Some(0), "{}", both_of(&output));
    assert_eq!(stdout_of(&output), format!("{ABC_HASH}\n"));
}

#[test]
fn key_hash_reads_the_key_from_stdin_with_a_dash() {
    let mut child = Command::new(ringway_bin())
        .args(["key", "hash", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringway");
    // A trailing newline (as `echo` adds) is not part of the key.
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(b"abc\n")
        .expect("write the key");
    let output = child.wait_with_output().expect("ringway exits");
    assert_eq!(output.status.code(), Some(0), "{}", both_of(&output));
    assert_eq!(stdout_of(&output), format!("{ABC_HASH}\n"));
}

#[test]
fn key_new_prints_a_fresh_key_and_its_hash() {
    let first = run_ringway(&["key", "new"], &[], TIMEOUT);
    assert_eq!(first.status.code(), Some(0), "{}", both_of(&first));
    let text = stdout_of(&first);
    assert_eq!(text.lines().count(), 2, "two lines expected:\n{text}");
    let key = labelled(&text, "key:");
    let hash = labelled(&text, "hash:");
    assert_eq!(key.len(), 64, "{key:?}");
    assert!(key.bytes().all(|c| c.is_ascii_hexdigit()), "{key:?}");
    assert!(
        hash.starts_with("sha256:") && hash.len() == 7 + 64,
        "{hash:?}"
    );

    // The printed hash is the hash of the printed key.
    let hashed = run_ringway(&["key", "hash", key], &[], TIMEOUT);
    assert_eq!(stdout_of(&hashed).trim(), hash);

    let second = run_ringway(&["key", "new"], &[], TIMEOUT);
    assert_ne!(labelled(&stdout_of(&second), "key:"), key, "keys repeat");
}

#[test]
fn bad_key_arguments_exit_2_with_a_usage_line() {
    for args in [
        &["key"][..],
        &["key", "frob"],
        &["key", "new", "extra"],
        &["key", "hash"],
        &["key", "hash", "a", "b"],
        &["key", "hash", ""],
    ] {
        let output = run_ringway(args, &[], TIMEOUT);
        let text = both_of(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}:\n{text}");
        assert!(
            text.lines().any(|l| l.contains("usage: ringway key")),
            "{args:?}: no usage line in:\n{text}"
        );
        assert!(
            output.stdout.is_empty(),
            "{args:?} printed to stdout:\n{text}"
        );
    }
}
