//! Validation of a backend's resilience settings: `hash_on`, `circuit_breaker` and
//! `health_check`. Every error names its document path (`backends[0].circuit_breaker.rules[1]
//! .failure_condition.count`); `docs/resilience.md` explains what the settings do.

use std::time::Duration;

use super::model;
use super::validate::{duration, show, Errors, DAY};
use super::{Balance, BreakerRule, HashOn, HealthCheck, TripThreshold};

/// Rules per breaker: each is a window of atomics per target, and a dozen is already a lot.
const MAX_RULES: usize = 16;
/// The largest failure count or minimum request count a rule may name.
const MAX_COUNT: u32 = 1_000_000;
/// Consecutive checks a health threshold may ask for.
const MAX_THRESHOLD: u32 = 100;
const HOUR: Duration = Duration::from_secs(3600);
/// A failure window is counted in ten buckets; below this they would be under a millisecond.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

pub(super) fn hash_on(
    path: &str,
    balance: Balance,
    on: Option<&model::HashOn>,
    errors: &mut Errors,
) -> Option<HashOn> {
    let key = format!("{path}.hash_on");
    match (balance, on) {
        (Balance::ConsistentHash, None) => {
            errors.push(
                format_args!("{path}.balance"),
                "consistent_hash needs hash_on: {header: NAME}, {cookie: NAME} or ip",
            );
            None
        }
        (Balance::ConsistentHash, Some(on)) => match on {
            model::HashOn::Ip => Some(HashOn::Ip),
            model::HashOn::Header(name) => {
                token(&format!("{key}.header"), name, "a header name", errors)
                    .then(|| HashOn::Header(name.to_ascii_lowercase()))
            }
            model::HashOn::Cookie(name) => {
                token(&format!("{key}.cookie"), name, "a cookie name", errors)
                    .then(|| HashOn::Cookie(name.clone()))
            }
        },
        (_, Some(_)) => {
            errors.push(key, "is used only with balance: consistent_hash");
            None
        }
        (_, None) => None,
    }
}

fn token(key: &str, name: &str, what: &str, errors: &mut Errors) -> bool {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        errors.push(
            key,
            format!("{name:?} is not {what} (a token, such as X-User)"),
        );
    }
    ok
}

pub(super) fn circuit_breaker(
    path: &str,
    breaker: Option<&model::CircuitBreaker>,
    errors: &mut Errors,
) -> Vec<BreakerRule> {
    let Some(breaker) = breaker else {
        return Vec::new();
    };
    let path = format!("{path}.circuit_breaker");
    if breaker.rules.is_empty() {
        errors.push(
            format_args!("{path}.rules"),
            "at least one rule is required",
        );
    }
    if breaker.rules.len() > MAX_RULES {
        errors.push(
            format_args!("{path}.rules"),
            format!("at most {MAX_RULES} rules, not {}", breaker.rules.len()),
        );
    }
    let mut out: Vec<BreakerRule> = Vec::new();
    for (i, rule) in breaker.rules.iter().enumerate() {
        let rpath = format!("{path}.rules[{i}]");
        let name = rule.name.clone().unwrap_or_else(|| format!("rule-{i}"));
        if name.is_empty() {
            errors.push(format_args!("{rpath}.name"), "must not be empty");
        } else if let Some(j) = out.iter().position(|r| r.name == name) {
            errors.push(
                format_args!("{rpath}.name"),
                format!("rule name {name:?} is already used by rules[{j}]"),
            );
        }
        let trip_duration = required_duration(
            errors,
            &format!("{rpath}.trip_duration"),
            rule.trip_duration,
            DAY,
            "30s",
        );
        let Some(fc) = &rule.failure_condition else {
            errors.push(
                format_args!("{rpath}.failure_condition"),
                "is required (for example {count: 5, interval: 10s, status_codes: [\"500-599\"]})",
            );
            continue;
        };
        let cpath = format!("{rpath}.failure_condition");
        let threshold = threshold(&cpath, fc, errors);
        let interval = required_duration(
            errors,
            &format!("{cpath}.interval"),
            fc.interval,
            HOUR,
            "10s",
        );
        if interval < MIN_INTERVAL && !interval.is_zero() {
            errors.push(
                format_args!("{cpath}.interval"),
                format!("must be at least 10ms, not {}", show(interval)),
            );
        }
        let statuses = status_list(&format!("{cpath}.status_codes"), &fc.status_codes, errors);
        if fc.status_codes.is_empty() && !fc.connection_errors {
            errors.push(
                &cpath,
                "matches nothing: give status_codes, or connection_errors: true, or both",
            );
        }
        out.push(BreakerRule {
            name,
            threshold,
            interval,
            statuses,
            connection_errors: fc.connection_errors,
            trip_duration,
            accept_retry_after: rule.accept_retry_after,
        });
    }
    out
}

fn threshold(cpath: &str, fc: &model::FailureCondition, errors: &mut Errors) -> TripThreshold {
    let in_range = |key: &str, n: u32, lo: u32, hi: u32, errors: &mut Errors| {
        if !(lo..=hi).contains(&n) {
            errors.push(
                format_args!("{cpath}.{key}"),
                format!("must be from {lo} to {hi}, not {n}"),
            );
        }
    };
    match (fc.count, fc.percentage) {
        (Some(_), Some(_)) => {
            errors.push(
                cpath,
                "has both count and percentage; a rule trips on one of them",
            );
            TripThreshold::Count(1)
        }
        (None, None) => {
            errors.push(
                cpath,
                "needs count (failures in the interval) or percentage (of requests in the interval)",
            );
            TripThreshold::Count(1)
        }
        (Some(count), None) => {
            in_range("count", count, 1, MAX_COUNT, errors);
            if fc.min_requests.is_some() {
                errors.push(
                    format_args!("{cpath}.min_requests"),
                    "is used only with percentage",
                );
            }
            TripThreshold::Count(count)
        }
        (None, Some(percent)) => {
            in_range("percentage", percent, 1, 100, errors);
            let min_requests = fc.min_requests.unwrap_or(10);
            in_range("min_requests", min_requests, 1, MAX_COUNT, errors);
            TripThreshold::Percentage {
                percent,
                min_requests,
            }
        }
    }
}

/// A duration the configuration must give: an error naming an `example` when absent.
fn required_duration(
    errors: &mut Errors,
    key: &str,
    value: Option<super::units::Dur>,
    max: Duration,
    example: &str,
) -> Duration {
    if value.is_none() {
        errors.push(key, format!("is required (for example {example})"));
    }
    duration(errors, key, value, Duration::ZERO, max)
}

pub(super) fn health_check(
    path: &str,
    check: Option<&model::HealthCheck>,
    errors: &mut Errors,
) -> Option<HealthCheck> {
    let check = check?;
    let path = format!("{path}.health_check");
    let request_path = match &check.path {
        None => {
            errors.push(
                format_args!("{path}.path"),
                "is required (for example /healthz)",
            );
            String::new()
        }
        Some(p) => {
            let ok =
                p.starts_with('/') && p.len() <= 1024 && p.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                errors.push(
                    format_args!("{path}.path"),
                    format!(
                        "{p:?} is not a request path (it starts with /, has no spaces or \
                         control characters, and is at most 1024 bytes)"
                    ),
                );
            }
            p.clone()
        }
    };
    let threshold = |key: &str, value: Option<u32>, default: u32, errors: &mut Errors| {
        let n = value.unwrap_or(default);
        if !(1..=MAX_THRESHOLD).contains(&n) {
            errors.push(
                format_args!("{path}.{key}"),
                format!("must be from 1 to {MAX_THRESHOLD}, not {n}"),
            );
        }
        n
    };
    let healthy_threshold = threshold("healthy_threshold", check.healthy_threshold, 2, errors);
    let unhealthy_threshold =
        threshold("unhealthy_threshold", check.unhealthy_threshold, 3, errors);
    let expected_statuses = match &check.expected_statuses {
        None => vec![(200, 399)],
        Some(list) if list.is_empty() => {
            errors.push(
                format_args!("{path}.expected_statuses"),
                "at least one status or range is required (the default is \"200-399\")",
            );
            Vec::new()
        }
        Some(list) => status_list(&format!("{path}.expected_statuses"), list, errors),
    };
    Some(HealthCheck {
        path: request_path,
        interval: duration(
            errors,
            &format!("{path}.interval"),
            check.interval,
            Duration::from_secs(5),
            HOUR,
        ),
        timeout: duration(
            errors,
            &format!("{path}.timeout"),
            check.timeout,
            Duration::from_secs(2),
            HOUR,
        ),
        healthy_threshold,
        unhealthy_threshold,
        expected_statuses,
    })
}

fn status_list(key: &str, list: &[model::StatusCodes], errors: &mut Errors) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for (i, spec) in list.iter().enumerate() {
        match status_range(spec) {
            Ok(range) => out.push(range),
            Err(e) => errors.push(format_args!("{key}[{i}]"), e),
        }
    }
    out
}

/// `429`, `"429"`, `"500-599"` or `"5xx"` as an inclusive range of final statuses.
fn status_range(spec: &model::StatusCodes) -> Result<(u16, u16), String> {
    let status = |n: u32| -> Result<u16, String> {
        match u16::try_from(n) {
            Ok(s) if (100..=599).contains(&s) => Ok(s),
            _ => Err(format!("{n} is not a status code (100..=599)")),
        }
    };
    let text = match spec {
        model::StatusCodes::Code(n) => return status(*n).map(|s| (s, s)),
        model::StatusCodes::Text(t) => t.trim(),
    };
    let bad = || format!("{text:?} is not a status or a range (write 429, \"500-599\" or \"5xx\")");
    let number = |s: &str| s.trim().parse::<u32>().map_err(|_| bad());
    if let Some(class) = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX")) {
        let digit = number(class)?;
        if !(1..=5).contains(&digit) || class.len() != 1 {
            return Err(bad());
        }
        let first = digit as u16 * 100;
        return Ok((first, first + 99));
    }
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (status(number(a)?)?, status(number(b)?)?);
            if a > b {
                return Err(format!("{text:?}: the range runs backwards ({a} > {b})"));
            }
            Ok((a, b))
        }
        None => status(number(text)?).map(|s| (s, s)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{load_str, Balance, Config, HashOn, TripThreshold};
    use std::time::Duration;

    fn load(backend: &str) -> Result<Config, Vec<String>> {
        let text = format!(
            "listeners: [{{address: 127.0.0.1:8080}}]\nbackends:\n  - name: orders\n    \
             targets: [{{url: http://127.0.0.1:9000}}, {{url: http://127.0.0.1:9001}}]\n{backend}"
        );
        load_str(&text, "test.yaml", &|_| None).map_err(|e| e.errors)
    }

    fn errors(backend: &str) -> Vec<String> {
        match load(backend) {
            Ok(_) => panic!("expected errors for {backend}"),
            Err(e) => e,
        }
    }

    #[test]
    fn full_resilience_settings_load() {
        let c = load(
            "    balance: consistent_hash\n    hash_on: {header: X-User}\n    \
             circuit_breaker:\n      rules:\n        - name: server-errors\n          \
             failure_condition: {count: 5, interval: 10s, status_codes: [\"500-599\", 429], connection_errors: true}\n          \
             trip_duration: 30s\n          accept_retry_after: true\n        \
             - failure_condition: {percentage: 50, interval: 1m, status_codes: [5xx]}\n          \
             trip_duration: 1m\n    \
             health_check: {path: /healthz, interval: 100ms, timeout: 50ms, unhealthy_threshold: 1}\n",
        )
        .unwrap();
        let b = &c.backends[0];
        assert_eq!(b.balance, Balance::ConsistentHash);
        assert_eq!(b.hash_on, Some(HashOn::Header("x-user".into())));
        let [first, second] = &b.circuit_breaker[..] else {
            panic!("{:?}", b.circuit_breaker)
        };
        assert_eq!(first.name, "server-errors");
        assert_eq!(first.threshold, TripThreshold::Count(5));
        assert_eq!(first.statuses, vec![(500, 599), (429, 429)]);
        assert!(first.connection_errors && first.accept_retry_after);
        assert_eq!(first.trip_duration, Duration::from_secs(30));
        assert_eq!(second.name, "rule-1");
        assert_eq!(
            second.threshold,
            TripThreshold::Percentage {
                percent: 50,
                min_requests: 10
            }
        );
        assert_eq!(second.statuses, vec![(500, 599)]);
        let h = b.health_check.as_ref().unwrap();
        assert_eq!(h.path, "/healthz");
        assert_eq!(h.interval, Duration::from_millis(100));
        assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (2, 1));
        assert_eq!(h.expected_statuses, vec![(200, 399)]);
    }

    #[test]
    fn resilience_doc_examples_load() {
        let doc = include_str!("../../../docs/resilience.md");
        let blocks: Vec<&str> = doc
            .split("```yaml\n")
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap())
            .collect();
        assert_eq!(blocks.len(), 5);
        for block in blocks {
            let text = format!("listeners: [{{address: 127.0.0.1:8080}}]\n{block}");
            load_str(&text, "resilience.md", &|_| None).unwrap_or_else(|e| panic!("{e}\n{block}"));
        }
    }

    #[test]
    fn hash_on_forms() {
        let on = |y: &str| {
            load(&format!("    balance: consistent_hash\n    hash_on: {y}\n"))
                .unwrap()
                .backends[0]
                .hash_on
                .clone()
        };
        assert_eq!(on("ip"), Some(HashOn::Ip));
        assert_eq!(
            on("{cookie: Session}"),
            Some(HashOn::Cookie("Session".into()))
        );
        assert_eq!(
            errors("    balance: consistent_hash\n"),
            vec!["test.yaml: backends[0].balance: consistent_hash needs hash_on: {header: NAME}, {cookie: NAME} or ip"]
        );
        for (bad, message) in [
            (
                "foo",
                "invalid value: string \"foo\", expected {header: NAME}, {cookie: NAME} or ip",
            ),
            (
                "{query: q}",
                "unknown field `query`, expected `header` or `cookie`",
            ),
            (
                "{header: a, cookie: b}",
                "give one of header or cookie, not both",
            ),
        ] {
            let e = errors(&format!(
                "    balance: consistent_hash\n    hash_on: {bad}\n"
            ));
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(
                e[0].contains("backends[0].hash_on") && e[0].ends_with(message),
                "{bad}: {e:?}"
            );
        }
        assert_eq!(
            errors("    hash_on: ip\n"),
            vec!["test.yaml: backends[0].hash_on: is used only with balance: consistent_hash"]
        );
        assert_eq!(
            errors("    balance: consistent_hash\n    hash_on: {header: \"a b\"}\n"),
            vec!["test.yaml: backends[0].hash_on.header: \"a b\" is not a header name (a token, such as X-User)"]
        );
    }

    #[test]
    fn breaker_errors_name_their_paths() {
        let rule = |r: &str| {
            errors(&format!(
                "    circuit_breaker:\n      rules:\n        - {r}\n"
            ))
        };
        assert_eq!(
            rule("{failure_condition: {count: 0, interval: 10s, connection_errors: true}, trip_duration: 25h}"),
            vec![
                "test.yaml: backends[0].circuit_breaker.rules[0].trip_duration: must be at most 24h, not 25h",
                "test.yaml: backends[0].circuit_breaker.rules[0].failure_condition.count: must be from 1 to 1000000, not 0",
            ]
        );
        assert_eq!(
            rule("{failure_condition: {count: 1, percentage: 5, interval: 10s, connection_errors: true}, trip_duration: 1s}"),
            vec!["test.yaml: backends[0].circuit_breaker.rules[0].failure_condition: has both count and percentage; a rule trips on one of them"]
        );
        assert_eq!(
            rule("{failure_condition: {count: 1, status_codes: [\"600-700\", \"4xx\", \"503-500\"]}, trip_duration: 1s}"),
            vec![
                "test.yaml: backends[0].circuit_breaker.rules[0].failure_condition.interval: is required (for example 10s)",
                "test.yaml: backends[0].circuit_breaker.rules[0].failure_condition.status_codes[0]: 600 is not a status code (100..=599)",
                "test.yaml: backends[0].circuit_breaker.rules[0].failure_condition.status_codes[2]: \"503-500\": the range runs backwards (503 > 500)",
            ]
        );
        assert_eq!(
            rule("{failure_condition: {percentage: 101, interval: 10s}}"),
            vec![
                "test.yaml: backends[0].circuit_breaker.rules[0].trip_duration: is required (for example 30s)",
                "test.yaml: backends[0].circuit_breaker.rules[0].failure_condition.percentage: must be from 1 to 100, not 101",
                "test.yaml: backends[0].circuit_breaker.rules[0].failure_condition: matches nothing: give status_codes, or connection_errors: true, or both",
            ]
        );
        assert_eq!(
            errors("    circuit_breaker: {rules: []}\n"),
            vec!["test.yaml: backends[0].circuit_breaker.rules: at least one rule is required"]
        );
    }

    #[test]
    fn health_check_errors_name_their_paths() {
        assert_eq!(
            errors("    health_check: {path: healthz, interval: 2h, healthy_threshold: 0, expected_statuses: []}\n"),
            vec![
                "test.yaml: backends[0].health_check.path: \"healthz\" is not a request path (it starts with /, has no spaces or control characters, and is at most 1024 bytes)",
                "test.yaml: backends[0].health_check.healthy_threshold: must be from 1 to 100, not 0",
                "test.yaml: backends[0].health_check.expected_statuses: at least one status or range is required (the default is \"200-399\")",
                "test.yaml: backends[0].health_check.interval: must be at most 1h, not 2h",
            ]
        );
        assert_eq!(
            errors("    health_check: {interval: 1s}\n"),
            vec!["test.yaml: backends[0].health_check.path: is required (for example /healthz)"]
        );
    }
}
