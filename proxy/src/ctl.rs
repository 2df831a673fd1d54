//! `ringway ctl`: the operator's client of the admin API (docs/admin-api.md).
//!
//! Each subcommand is one request: HTTP/1.1 over a plain `TcpStream` (or rustls for an
//! `https://` admin URL), `Connection: close`, the bearer token when one is given. Output is
//! for people by default; `--json` prints the answer's JSON as it came. Exit status: 0 done,
//! 1 the admin API refused (its message and field are printed) or could not be reached, 2 a
//! usage error.
//!
//! It keeps no state and reads no configuration file: the admin URL and token come from the
//! command line or the environment, and the token is never printed.

use std::process::ExitCode;

use serde_json::{json, Value};

mod http;
mod output;

use http::{Endpoint, Request};
use output::{
    pretty, print_error, print_keys, print_status, print_subscriptions, print_upstreams,
    reload_summary, warnings,
};

const USAGE: &str = "\
usage: ringway ctl [--admin URL] [--token TOKEN | --token-file FILE] [--cacert FILE] [--json]
                   COMMAND
commands:
  status                               version, uptime, workers, configuration, last reload
  reload                               reload the configuration file
  config get                           the running configuration (secrets redacted)
  config apply FILE [--dry-run]        validate FILE and apply it (or only validate it)
  push FILE                            apply FILE and push it to every node of the cluster
  purge --key KEY | --prefix PREFIX    drop cached entries on every worker
  keys list                            subscriptions: id, scope, state, owner
  keys issue ID --product P | --api A | --all-apis [--owner O] [--display-name TEXT]
                                       issue a subscription; prints its two keys, once
  keys regenerate ID primary|secondary a new key in place of one; prints it, once
  keys suspend ID | keys activate ID | keys cancel ID
  upstreams                            breaker, health, drain mark and pool reuses per target
  drain BACKEND TARGET                 send TARGET (host:port) no new requests
  undrain BACKEND TARGET
options:
  --admin URL        the admin listener (default $RINGWAY_ADMIN, else http://127.0.0.1:9901)
  --token TOKEN      the admin token (default $RINGWAY_ADMIN_TOKEN)
  --token-file FILE  read the admin token from FILE
  --cacert FILE      CA certificates (PEM) for an https admin URL (default $RINGWAY_ADMIN_CACERT,
                     else the system's)
  --json             print the admin API's JSON answer as it is
exit status: 0 done, 1 the admin API refused or could not be reached, 2 usage";

const DEFAULT_ADMIN: &str = "http://127.0.0.1:9901";

/// Runs `ringway ctl ARGS...` and returns the process's exit status.
pub fn main(args: &[&str]) -> ExitCode {
    let (options, rest) = match Options::parse(args) {
        Ok(parsed) => parsed,
        Err(Usage(message)) => return usage(&message),
    };
    match rest.as_slice() {
        [] => return usage("give a command"),
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let command = match Command::parse(&rest) {
        Ok(c) => c,
        Err(Usage(message)) => return usage(&message),
    };
    let request = match command.request() {
        Ok(r) => r,
        Err(Usage(message)) => return usage(&message),
    };
    let endpoint = match Endpoint::parse(&options.admin) {
        Ok(e) => e,
        Err(message) => return usage(&message),
    };
    let response = match endpoint.send(
        &request,
        options.token.as_deref(),
        options.cacert.as_deref(),
    ) {
        Ok(r) => r,
        Err(message) => {
            eprintln!(
                "ringway ctl: cannot reach the admin API at {}: {message}",
                options.admin
            );
            return ExitCode::from(1);
        }
    };
    let body: Value = if response.body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&response.body) {
            Ok(v) => v,
            Err(_) => Value::String(String::from_utf8_lossy(&response.body).into_owned()),
        }
    };
    if options.json {
        match &body {
            Value::String(text) => println!("{text}"),
            other => println!(
                "{}",
                serde_json::to_string_pretty(other).unwrap_or_default()
            ),
        }
    }
    if !(200..300).contains(&response.status) {
        print_error(response.status, &body);
        return ExitCode::from(1);
    }
    if !options.json {
        command.print(&body);
    }
    if command.fell_short(&body) {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn usage(message: &str) -> ExitCode {
    eprintln!("ringway ctl: {message}\n{USAGE}");
    ExitCode::from(2)
}

/// A usage error: the message says what is wrong with the command line.
struct Usage(String);

fn bad(message: impl Into<String>) -> Usage {
    Usage(message.into())
}

// ---------------------------------------------------------------------------------------------
// The command line.

struct Options {
    admin: String,
    token: Option<String>,
    cacert: Option<String>,
    json: bool,
}

impl Options {
    /// Takes the global options out of `args` (they may come anywhere) and returns the rest.
    fn parse<'a>(args: &[&'a str]) -> Result<(Options, Vec<&'a str>), Usage> {
        let mut options = Options {
            admin: env("RINGWAY_ADMIN").unwrap_or_else(|| DEFAULT_ADMIN.to_string()),
            token: env("RINGWAY_ADMIN_TOKEN"),
            cacert: env("RINGWAY_ADMIN_CACERT"),
            json: false,
        };
        let mut rest = Vec::new();
        let mut it = args.iter();
        while let Some(&arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v)),
                _ => (arg, None),
            };
            let mut value = |name: &str| -> Result<String, Usage> {
                match inline {
                    Some(v) => Ok(v.to_string()),
                    None => it
                        .next()
                        .map(|v| v.to_string())
                        .ok_or_else(|| bad(format!("{name} needs a value"))),
                }
            };
            match flag {
                "--admin" => options.admin = value("--admin")?,
                "--token" => options.token = Some(value("--token")?),
                "--token-file" => {
                    let file = value("--token-file")?;
                    let text = std::fs::read_to_string(&file)
                        .map_err(|e| bad(format!("--token-file {file}: cannot read it: {e}")))?;
                    let token = text.trim();
                    if token.is_empty() {
                        return Err(bad(format!("--token-file {file}: the file is empty")));
                    }
                    options.token = Some(token.to_string());
                }
                "--cacert" => options.cacert = Some(value("--cacert")?),
                "--json" if inline.is_none() => options.json = true,
                _ => rest.push(arg),
            }
        }
        Ok((options, rest))
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Status,
    Reload,
    ConfigGet,
    ConfigApply {
        file: String,
        dry_run: bool,
    },
    Push {
        file: String,
    },
    Purge {
        key: Option<String>,
        prefix: Option<String>,
    },
    KeysList,
    KeysIssue {
        id: String,
        scope: Value,
        owner: Option<String>,
        display_name: Option<String>,
    },
    KeysRegenerate {
        id: String,
        which: String,
    },
    KeysState {
        id: String,
        verb: &'static str,
    },
    Upstreams,
    Drain {
        backend: String,
        target: String,
        drain: bool,
    },
}

impl Command {
    fn parse(args: &[&str]) -> Result<Command, Usage> {
        Ok(match args {
            ["status"] => Command::Status,
            ["reload"] => Command::Reload,
            ["config", "get"] => Command::ConfigGet,
            ["config", "apply", rest @ ..] => {
                let dry_run = rest.contains(&"--dry-run");
                let files: Vec<&str> = rest.iter().copied().filter(|a| *a != "--dry-run").collect();
                match files.as_slice() {
                    [file] if !file.starts_with("--") => Command::ConfigApply {
                        file: file.to_string(),
                        dry_run,
                    },
                    _ => return Err(bad("usage: ringway ctl config apply FILE [--dry-run]")),
                }
            }
            ["push", file] if !file.starts_with("--") => Command::Push {
                file: file.to_string(),
            },
            ["push", ..] => return Err(bad("usage: ringway ctl push FILE")),
            ["purge", "--key", key] => Command::Purge {
                key: Some(key.to_string()),
                prefix: None,
            },
            ["purge", "--prefix", prefix] => Command::Purge {
                key: None,
                prefix: Some(prefix.to_string()),
            },
            ["purge", ..] => {
                return Err(bad("usage: ringway ctl purge --key KEY | --prefix PREFIX"))
            }
            ["keys", "list"] => Command::KeysList,
            ["keys", "issue", id, rest @ ..] if !id.starts_with("--") => issue(id, rest)?,
            ["keys", "regenerate", id, which @ ("primary" | "secondary")] => {
                Command::KeysRegenerate {
                    id: id.to_string(),
                    which: which.to_string(),
                }
            }
            ["keys", "regenerate", ..] => {
                return Err(bad(
                    "usage: ringway ctl keys regenerate ID primary|secondary",
                ))
            }
            ["keys", verb @ ("suspend" | "activate" | "cancel"), id] => Command::KeysState {
                id: id.to_string(),
                verb: match *verb {
                    "suspend" => "suspend",
                    "activate" => "activate",
                    _ => "cancel",
                },
            },
            ["keys", ..] => return Err(bad(
                "usage: ringway ctl keys list | issue ID ... | regenerate ID primary|secondary \
                     | suspend ID | activate ID | cancel ID",
            )),
            ["upstreams"] => Command::Upstreams,
            [verb @ ("drain" | "undrain"), backend, target] => Command::Drain {
                backend: backend.to_string(),
                target: target.to_string(),
                drain: *verb == "drain",
            },
            [verb @ ("drain" | "undrain"), ..] => {
                return Err(bad(format!("usage: ringway ctl {verb} BACKEND TARGET")))
            }
            _ => return Err(bad(format!("unknown command: {}", args.join(" ")))),
        })
    }

    fn request(&self) -> Result<Request, Usage> {
        let json_body = |v: Value| Some(("application/json", v.to_string().into_bytes()));
        Ok(match self {
            Command::Status => Request::new("GET", "/status".into(), None),
            Command::Reload => Request::new("POST", "/reload".into(), None),
            Command::ConfigGet => Request::new("GET", "/config".into(), None),
            Command::ConfigApply { file, dry_run } => {
                let text = std::fs::read(file)
                    .map_err(|e| bad(format!("config apply: cannot read {file}: {e}")))?;
                let kind = if file.ends_with(".json") {
                    "application/json"
                } else {
                    "application/yaml"
                };
                let path = if *dry_run {
                    "/config?dry_run=true"
                } else {
                    "/config"
                };
                Request::new("PUT", path.into(), Some((kind, text)))
            }
            Command::Push { file } => {
                let text = std::fs::read(file)
                    .map_err(|e| bad(format!("push: cannot read {file}: {e}")))?;
                let kind = if file.ends_with(".json") {
                    "application/json"
                } else {
                    "application/yaml"
                };
                Request::new("PUT", "/config".into(), Some((kind, text)))
            }
            Command::Purge { key, prefix } => {
                let body = match (key, prefix) {
                    (Some(k), _) => json!({ "key": k }),
                    (_, Some(p)) => json!({ "prefix": p }),
                    _ => unreachable!("parse gives one"),
                };
                Request::new("POST", "/cache/purge".into(), json_body(body))
            }
            Command::KeysList => Request::new("GET", "/subscriptions".into(), None),
            Command::KeysIssue {
                id,
                scope,
                owner,
                display_name,
            } => {
                let mut body = json!({ "id": id, "scope": scope });
                if let Some(o) = owner {
                    body["owner"] = json!(o);
                }
                if let Some(d) = display_name {
                    body["display_name"] = json!(d);
                }
                Request::new("POST", "/subscriptions".into(), json_body(body))
            }
            Command::KeysRegenerate { id, which } => Request::new(
                "POST",
                format!("/subscriptions/{}/regenerate", segment(id)),
                json_body(json!({ "key": which })),
            ),
            Command::KeysState { id, verb } => Request::new(
                "POST",
                format!("/subscriptions/{}/{verb}", segment(id)),
                None,
            ),
            Command::Upstreams => Request::new("GET", "/state/upstreams".into(), None),
            Command::Drain {
                backend,
                target,
                drain,
            } => Request::new(
                "POST",
                format!(
                    "/backends/{}/targets/{}/{}",
                    segment(backend),
                    segment(target),
                    if *drain { "drain" } else { "undrain" }
                ),
                None,
            ),
        })
    }

    /// Whether a successful answer still did not do all that was asked: a push that was
    /// applied but not stored for the other nodes.
    fn fell_short(&self, body: &Value) -> bool {
        match self {
            Command::Push { .. } => {
                body.get("cluster").and_then(Value::as_str) != Some("published")
            }
            _ => false,
        }
    }

    /// Prints a successful answer for people.
    fn print(&self, body: &Value) {
        match self {
            Command::Status => print_status(body),
            Command::Reload => println!("reloaded{}", reload_summary(body)),
            Command::ConfigGet => match serde_yaml_ng::to_string(body) {
                Ok(yaml) => print!("{yaml}"),
                Err(_) => println!("{}", pretty(body)),
            },
            Command::ConfigApply { file, dry_run } => {
                if *dry_run {
                    println!("{file}: valid (dry run: nothing applied){}", warnings(body));
                } else {
                    println!("{file}: applied{}", reload_summary(body));
                }
            }
            Command::Push { file } => match body.get("cluster").and_then(Value::as_str) {
                Some("published") => println!(
                    "{file}: applied and pushed as version {} of the cluster's configuration{}",
                    body.get("cluster_version")
                        .and_then(Value::as_u64)
                        .unwrap_or_default(),
                    reload_summary(body)
                ),
                Some(why) => eprintln!(
                    "ringway ctl: {file}: applied on this node only, {why} (it is pushed when \
                     Redis answers, unless another node pushes first)"
                ),
                None => eprintln!(
                    "ringway ctl: {file}: applied on this node, which is not in cluster mode: \
                     nothing was pushed"
                ),
            },
            Command::Purge { key, prefix } => {
                let what = match (key, prefix) {
                    (Some(k), _) => format!("key {k:?}"),
                    (_, p) => format!("prefix {:?}", p.as_deref().unwrap_or_default()),
                };
                let removed = body.get("removed").and_then(Value::as_u64).unwrap_or(0);
                let mut line = format!(
                    "purged {what}: {removed} entr{} removed",
                    if removed == 1 { "y" } else { "ies" }
                );
                if let (Some(done), Some(all)) = (
                    body.get("cores_done").and_then(Value::as_u64),
                    body.get("cores").and_then(Value::as_u64),
                ) {
                    line.push_str(&format!(", {done} of {all} workers done"));
                }
                if let Some(cluster) = body.get("cluster").and_then(Value::as_str) {
                    line.push_str(&format!("; other nodes: {cluster}"));
                }
                println!("{line}");
            }
            Command::KeysList => print_subscriptions(body),
            Command::KeysIssue { id, .. } => {
                println!("subscription {id} issued");
                print_keys(body);
            }
            Command::KeysRegenerate { id, which } => {
                println!("subscription {id}: new {which} key");
                print_keys(body);
            }
            Command::KeysState { id, .. } => println!(
                "subscription {id}: {}",
                body.get("state").and_then(Value::as_str).unwrap_or("done")
            ),
            Command::Upstreams => print_upstreams(body),
            Command::Drain {
                backend,
                target,
                drain,
            } => println!(
                "{backend} {target}: {}{}",
                if *drain { "drained" } else { "undrained" },
                if body.get("changed").and_then(Value::as_bool) == Some(false) {
                    " (it already was)"
                } else {
                    ""
                }
            ),
        }
    }
}

fn issue(id: &str, args: &[&str]) -> Result<Command, Usage> {
    const ISSUE: &str =
        "usage: ringway ctl keys issue ID --product P | --api A | --all-apis [--owner O] \
         [--display-name TEXT]";
    let mut scope = None;
    let mut owner = None;
    let mut display_name = None;
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        let mut value = || it.next().map(|v| v.to_string()).ok_or_else(|| bad(ISSUE));
        let new_scope = match arg {
            "--product" => Some(json!({ "product": value()? })),
            "--api" => Some(json!({ "api": value()? })),
            "--all-apis" => Some(json!("all_apis")),
            "--owner" => {
                owner = Some(value()?);
                None
            }
            "--display-name" => {
                display_name = Some(value()?);
                None
            }
            other => return Err(bad(format!("keys issue: unexpected {other:?}\n{ISSUE}"))),
        };
        if let Some(s) = new_scope {
            if scope.replace(s).is_some() {
                return Err(bad(format!(
                    "keys issue: give one scope: --product, --api or --all-apis\n{ISSUE}"
                )));
            }
        }
    }
    let Some(scope) = scope else {
        return Err(bad(format!(
            "keys issue: give the scope: --product, --api or --all-apis\n{ISSUE}"
        )));
    };
    Ok(Command::KeysIssue {
        id: id.to_string(),
        scope,
        owner,
        display_name,
    })
}

/// A path segment with everything but unreserved characters and `:` percent-encoded (`[::1]`
/// of an IPv6 target becomes `%5B::1%5D`).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(args: &[&str]) -> Result<Command, String> {
        Command::parse(args).map_err(|Usage(m)| m)
    }

    #[test]
    fn parses_commands() {
        assert_eq!(command(&["status"]), Ok(Command::Status));
        assert_eq!(
            command(&["config", "apply", "--dry-run", "x.yaml"]),
            Ok(Command::ConfigApply {
                file: "x.yaml".into(),
                dry_run: true
            })
        );
        assert_eq!(
            command(&["keys", "issue", "bob", "--api", "orders", "--owner", "b@x"]),
            Ok(Command::KeysIssue {
                id: "bob".into(),
                scope: json!({"api": "orders"}),
                owner: Some("b@x".into()),
                display_name: None,
            })
        );
        assert_eq!(
            command(&["keys", "issue", "ops", "--all-apis"]).map(|c| c
                .request()
                .ok()
                .unwrap()
                .path),
            Ok("/subscriptions".to_string())
        );
        assert!(command(&["keys", "issue", "bob"]).is_err());
        assert!(command(&["keys", "issue", "bob", "--api", "a", "--all-apis"]).is_err());
        assert!(command(&["keys", "regenerate", "bob", "tertiary"]).is_err());
        assert!(command(&["purge"]).is_err());
        assert!(command(&["push"]).is_err());
        assert_eq!(
            command(&["push", "x.yaml"]),
            Ok(Command::Push {
                file: "x.yaml".into()
            })
        );
        assert!(command(&["drain", "b"]).is_err());
        assert!(command(&["frobnicate"]).is_err());
        let drain = command(&["drain", "b", "[::1]:8080"]).unwrap();
        let request = drain.request().ok().unwrap();
        assert_eq!(request.path, "/backends/b/targets/%5B::1%5D:8080/drain");
        let purge = command(&["purge", "--prefix", "GET:/x"])
            .unwrap()
            .request()
            .ok()
            .unwrap();
        assert_eq!(purge.body.unwrap().1, br#"{"prefix":"GET:/x"}"#.to_vec());
    }

    #[test]
    fn takes_global_options_anywhere() {
        let (options, rest) = Options::parse(&[
            "keys",
            "--admin=http://h:1",
            "list",
            "--json",
            "--token",
            "t0k3n",
        ])
        .ok()
        .unwrap();
        assert_eq!(rest, ["keys", "list"]);
        assert_eq!(options.admin, "http://h:1");
        assert_eq!(options.token.as_deref(), Some("t0k3n"));
        assert!(options.json);
        assert!(Options::parse(&["status", "--token"]).is_err());
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(segment("[::1]:80"), "%5B::1%5D:80");
    }
}
