//! `ringway import openapi FILE [--backend URL] [--name NAME] [--path PATH]` and
//! `ringway import gateway-api FILE|DIR... [--service-host TEMPLATE] [--namespace NS]`: print
//! the configuration a document or a set of manifests amounts to, for editing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub const USAGE: &str = "\
usage:
  ringway import openapi FILE [--backend URL] [--name NAME] [--path PATH]
      print an API (and its backend) with one operation per path and method of the OpenAPI
      3.0/3.1 document FILE (YAML or JSON); the backend is URL, else the document's first server
  ringway import gateway-api FILE|DIR... [--service-host TEMPLATE] [--namespace NS]
      print the listeners, backends and routes of Kubernetes Gateway API manifests (Gateway,
      HTTPRoute); every field that cannot be expressed is listed as a comment and on stderr.
      TEMPLATE makes a Service's host from {name} and {namespace}
      (default {name}.{namespace}.svc.cluster.local)";

pub fn main(args: &[&str]) -> ExitCode {
    match args {
        ["openapi", rest @ ..] => openapi(rest),
        ["gateway-api", rest @ ..] => gateway_api(rest),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Positional arguments, and the `--flag VALUE` options given.
type Parsed<'a> = (Vec<&'a str>, Vec<(String, &'a str)>);

/// Splits `--flag VALUE` options (those named in `flags`) from positional arguments.
fn options<'a>(args: &[&'a str], flags: &[&str]) -> Result<Parsed<'a>, String> {
    let mut positional = Vec::new();
    let mut found = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if let Some(name) = a.strip_prefix("--") {
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (name, None),
            };
            if !flags.contains(&name) {
                return Err(format!("unknown option --{name}"));
            }
            let value = match value {
                Some(v) => v,
                None => {
                    i += 1;
                    *args
                        .get(i)
                        .ok_or_else(|| format!("--{name} needs a value"))?
                }
            };
            found.push((name.to_string(), value));
        } else {
            positional.push(a);
        }
        i += 1;
    }
    Ok((positional, found))
}

fn option<'a>(found: &[(String, &'a str)], name: &str) -> Option<&'a str> {
    found.iter().rev().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// A name for an API from a file name: letters, digits and '-'.
fn name_from(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "api".into());
    let stem = stem
        .strip_suffix("-openapi")
        .or_else(|| stem.strip_suffix(".openapi"))
        .unwrap_or(&stem);
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "api".into()
    } else {
        name
    }
}

fn openapi(args: &[&str]) -> ExitCode {
    let (files, found) = match options(args, &["backend", "name", "path"]) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("ringway import openapi: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let [file] = files.as_slice() else {
        eprintln!("ringway import openapi: give one document\n{USAGE}");
        return ExitCode::from(2);
    };
    let path = Path::new(file);
    let doc = match super::openapi::load(path) {
        Ok(d) => d,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "ringway import openapi: {file}: {} error(s); nothing printed",
                errors.len()
            );
            return ExitCode::from(1);
        }
    };
    let name = option(&found, "name").map_or_else(|| name_from(path), str::to_string);
    let api_path = option(&found, "path").map_or_else(|| format!("/{name}"), str::to_string);
    if let Some(b) = option(&found, "backend") {
        if !(b.starts_with("http://") || b.starts_with("https://")) {
            eprintln!("ringway import openapi: --backend {b:?} is not an http:// or https:// URL");
            return ExitCode::from(2);
        }
    }
    print!(
        "{}",
        doc.to_config_yaml(&name, &api_path, option(&found, "backend"))
    );
    ExitCode::SUCCESS
}

fn gateway_api(args: &[&str]) -> ExitCode {
    let (files, found) = match options(args, &["service-host", "namespace"]) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("ringway import gateway-api: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if files.is_empty() {
        eprintln!(
            "ringway import gateway-api: give at least one manifest file or directory\n{USAGE}"
        );
        return ExitCode::from(2);
    }
    let mut options = super::gateway_api::Options::default();
    if let Some(h) = option(&found, "service-host") {
        options.service_host = h.to_string();
    }
    if let Some(n) = option(&found, "namespace") {
        options.default_namespace = n.to_string();
    }
    let paths: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    let converted = super::gateway_api::read_paths(&paths)
        .and_then(|texts| super::gateway_api::convert(&texts, &options));
    match converted {
        Ok(c) => {
            for note in &c.notes {
                eprintln!("note: {note}");
            }
            print!("{}", c.to_yaml());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "ringway import gateway-api: {} error(s); nothing printed",
                errors.len()
            );
            ExitCode::from(1)
        }
    }
}
