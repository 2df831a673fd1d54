//! A finished sweep's outputs: `report.md`, `report.json`, `chart.svg` and `tuned.yaml`.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value as Json};
use serde_yaml_ng::Value;

use super::run::Measured;
use super::stats::{count, median, number, Objective, Spread, Verdict};

/// One combination of the sweep.
pub struct Combination {
    pub label: String,
    /// (setting, value as written).
    pub values: Vec<(String, String)>,
    /// The input document with this combination's values.
    pub doc: Value,
    /// Why `ringway check` refused its config, if it did.
    pub refused: Option<String>,
}

/// One run: a combination in a round.
pub struct RunRecord {
    /// From 1.
    pub round: usize,
    /// Its place in the round's order, from 1.
    pub position: usize,
    pub combination: usize,
    pub started_s: f64,
    pub result: Result<Measured, String>,
}

impl RunRecord {
    /// The measurement, when the run counts.
    pub fn ok(&self) -> Option<&Measured> {
        match &self.result {
            Ok(m) if m.failure().is_none() => Some(m),
            _ => None,
        }
    }

    pub fn failure(&self) -> Option<String> {
        match &self.result {
            Ok(m) => m.failure(),
            Err(e) => Some(e.clone()),
        }
    }
}

/// The value of the objective in a run.
pub fn objective_value(objective: Objective, m: &Measured) -> Option<f64> {
    match objective {
        Objective::CpuPerRequest => m.cpu_us_per_request,
        Objective::Rps => Some(m.rps),
        Objective::P99 => m.p99_us,
    }
}

/// A combination's numbers over its rounds.
pub struct Summary {
    pub runs: usize,
    pub ok: usize,
    /// The objective over the runs that counted.
    pub spread: Option<Spread>,
    pub rps: Option<f64>,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub cpu: Option<f64>,
}

impl Summary {
    pub fn of(objective: Objective, index: usize, runs: &[RunRecord]) -> Summary {
        let mine: Vec<&RunRecord> = runs.iter().filter(|r| r.combination == index).collect();
        let ok: Vec<&Measured> = mine.iter().filter_map(|r| r.ok()).collect();
        let values: Vec<f64> = ok
            .iter()
            .filter_map(|m| objective_value(objective, m))
            .collect();
        let of = |f: &dyn Fn(&Measured) -> Option<f64>| {
            median(&ok.iter().filter_map(|m| f(m)).collect::<Vec<_>>())
        };
        Summary {
            runs: mine.len(),
            ok: ok.len(),
            spread: if values.len() == ok.len() {
                Spread::of(&values)
            } else {
                None
            },
            rps: of(&|m| Some(m.rps)),
            p50: of(&|m| m.p50_us),
            p99: of(&|m| m.p99_us),
            cpu: of(&|m| m.cpu_us_per_request),
        }
    }

    /// Whether the combination may win: every run counted.
    pub fn eligible(&self) -> bool {
        self.runs > 0 && self.ok == self.runs && self.spread.is_some()
    }
}

/// What the reports say about the sweep itself.
pub struct Context {
    pub command: String,
    pub config: String,
    pub objective: Objective,
    pub rounds: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub rate: Option<String>,
    pub url_path: String,
    pub origin: String,
    pub ringload_args: Vec<String>,
    pub ringway: String,
    pub ringload: String,
    pub host: String,
    pub elapsed_s: f64,
}

pub struct Outputs<'a> {
    pub context: &'a Context,
    pub params: &'a [(String, Vec<String>)],
    pub combinations: &'a [Combination],
    pub summaries: &'a [Summary],
    pub runs: &'a [RunRecord],
    pub verdict: &'a Verdict,
    pub input_text: &'a str,
}

impl Outputs<'_> {
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let write = |name: &str, text: String| {
            std::fs::write(dir.join(name), text)
                .map_err(|e| format!("{}: {e}", dir.join(name).display()))
        };
        write("report.md", self.markdown())?;
        write(
            "report.json",
            serde_json::to_string_pretty(&self.json()).expect("JSON") + "\n",
        )?;
        write("chart.svg", self.svg())?;
        write("tuned.yaml", self.tuned()?)?;
        Ok(())
    }

    fn setup_line(&self) -> String {
        let c = self.context;
        let mode = match &c.rate {
            Some(r) => format!("open loop at {r} req/s"),
            None => "closed loop".to_string(),
        };
        format!(
            "{} × {}; each run {} s measured after {} s of warm-up, {mode}, `GET {}`",
            count(c.rounds, "round"),
            count(self.combinations.len(), "combination"),
            number_plain(c.duration_s),
            number_plain(c.warmup_s),
            c.url_path
        )
    }

    pub fn markdown(&self) -> String {
        let c = self.context;
        let o = c.objective;
        let mut out = String::new();
        let _ = writeln!(out, "# ringway-tune sweep\n\n```\n{}\n```\n", c.command);
        let _ = writeln!(
            out,
            "- objective: {} ({} is better)",
            o.title(),
            if o.lower_is_better() {
                "lower"
            } else {
                "higher"
            }
        );
        let _ = writeln!(out, "- {}", self.setup_line());
        if !c.ringload_args.is_empty() {
            let _ = writeln!(out, "- ringload arguments: `{}`", c.ringload_args.join(" "));
        }
        let _ = writeln!(out, "- origin: {}", c.origin);
        let _ = writeln!(out, "- host: {}", c.host);
        if let Some(r) = self.cpu_resolution() {
            let _ = writeln!(out, "- {r}");
        }
        let _ = writeln!(out, "- took {}\n", clock(c.elapsed_s));
        let _ = writeln!(out, "**{}**\n", self.verdict.reason());
        let _ = writeln!(
            out,
            "| combination | runs ok | objective median | min–max | MAD | req/s | p50 µs | p99 µs | CPU µs/req |"
        );
        let _ = writeln!(
            out,
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        let opt = |v: Option<f64>| v.map_or("–".to_string(), number);
        for (i, (comb, s)) in self.combinations.iter().zip(self.summaries).enumerate() {
            let name = if self.verdict.winner() == Some(i) {
                format!("**{}** (winner)", comb.label)
            } else if comb.refused.is_some() {
                format!("{} (refused)", comb.label)
            } else {
                comb.label.clone()
            };
            let (median, range, mad) = match &s.spread {
                Some(sp) => (
                    number(sp.median),
                    format!("{}–{}", number(sp.min), number(sp.max)),
                    number(sp.mad),
                ),
                None => ("–".into(), "–".into(), "–".into()),
            };
            let _ = writeln!(
                out,
                "| {name} | {}/{} | {median} | {range} | {mad} | {} | {} | {} | {} |",
                s.ok,
                s.runs,
                opt(s.rps),
                opt(s.p50),
                opt(s.p99),
                opt(s.cpu)
            );
        }
        let refused: Vec<&Combination> = self
            .combinations
            .iter()
            .filter(|c| c.refused.is_some())
            .collect();
        if !refused.is_empty() {
            let _ = writeln!(out, "\nRefused by `ringway check` (not measured):\n");
            for comb in refused {
                let _ = writeln!(
                    out,
                    "- {}: {}",
                    comb.label,
                    comb.refused.as_deref().unwrap_or("").replace('\n', "; ")
                );
            }
        }
        let failed: Vec<&RunRecord> = self.runs.iter().filter(|r| r.failure().is_some()).collect();
        if !failed.is_empty() {
            let _ = writeln!(out, "\nFailed runs (their combination cannot win):\n");
            for r in failed {
                let _ = writeln!(
                    out,
                    "- round {}, {}: {}",
                    r.round,
                    self.combinations[r.combination].label,
                    r.failure().unwrap_or_default()
                );
            }
        }
        out
    }

    pub fn json(&self) -> Json {
        let c = self.context;
        let combinations: Vec<Json> = self
            .combinations
            .iter()
            .zip(self.summaries)
            .enumerate()
            .map(|(i, (comb, s))| {
                let values: serde_json::Map<String, Json> = comb
                    .values
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                json!({
                    "index": i,
                    "label": comb.label,
                    "values": values,
                    "refused": comb.refused,
                    "runs": s.runs,
                    "runs_ok": s.ok,
                    "eligible": s.eligible(),
                    "objective": s.spread.as_ref().map(|sp| json!({
                        "median": sp.median,
                        "min": sp.min,
                        "max": sp.max,
                        "mad": sp.mad,
                        "n": sp.n,
                    })),
                    "median_rps": s.rps,
                    "median_p50_us": s.p50,
                    "median_p99_us": s.p99,
                    "median_cpu_us_per_request": s.cpu,
                })
            })
            .collect();
        let runs: Vec<Json> = self
            .runs
            .iter()
            .map(|r| {
                let base = json!({
                    "round": r.round,
                    "position": r.position,
                    "combination": r.combination,
                    "label": self.combinations[r.combination].label,
                    "started_s": r.started_s,
                    "ok": r.ok().is_some(),
                    "failure": r.failure(),
                });
                let mut base = base.as_object().expect("object").clone();
                if let Ok(m) = &r.result {
                    base.insert("requests".into(), json!(m.requests));
                    base.insert("errors".into(), json!(m.errors));
                    base.insert("non_2xx".into(), json!(m.non_2xx));
                    base.insert("rps".into(), json!(m.rps));
                    base.insert("p50_us".into(), json!(m.p50_us));
                    base.insert("p99_us".into(), json!(m.p99_us));
                    base.insert("cpu_us".into(), json!(m.cpu_us));
                    base.insert("cpu_window_s".into(), json!(m.cpu_window_s));
                    base.insert("cpu_us_per_request".into(), json!(m.cpu_us_per_request));
                    base.insert("objective".into(), json!(objective_value(c.objective, m)));
                    base.insert("ringload".into(), m.load.clone());
                }
                Json::Object(base)
            })
            .collect();
        let params: Vec<Json> = self
            .params
            .iter()
            .map(|(name, values)| json!({"name": name, "values": values}))
            .collect();
        json!({
            "command": c.command,
            "config": c.config,
            "objective": c.objective.name(),
            "lower_is_better": c.objective.lower_is_better(),
            "rounds": c.rounds,
            "duration_s": c.duration_s,
            "warmup_s": c.warmup_s,
            "rate": c.rate,
            "path": c.url_path,
            "origin": c.origin,
            "ringload_args": c.ringload_args,
            "ringway": c.ringway,
            "ringload": c.ringload,
            "host": c.host,
            "elapsed_s": c.elapsed_s,
            "params": params,
            "combinations": combinations,
            "winner": self.verdict.winner(),
            "verdict": self.verdict.reason(),
            "runs": runs,
        })
    }

    /// The verdict in a few words.
    fn headline(&self) -> String {
        match self.verdict {
            Verdict::Winner { index, .. } => {
                format!("winner: {}", self.combinations[*index].label)
            }
            Verdict::NoWinner { reason } => reason
                .split_once(':')
                .map_or(reason.as_str(), |(head, _)| head)
                .to_string(),
        }
    }

    /// How coarse the CPU figures are: /proc counts CPU time in clock ticks.
    fn cpu_resolution(&self) -> Option<String> {
        let requests: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| r.ok().map(|m| m.requests as f64))
            .collect();
        let requests = median(&requests)?;
        let tick_us = 1e6 / super::run::clock_ticks();
        Some(format!(
            "CPU time is counted in clock ticks of {} ms: over the median run's {} requests \
             one tick is {} µs per request (longer runs or higher rates resolve finer)",
            number_plain(tick_us / 1000.0),
            requests as u64,
            number(tick_us / requests)
        ))
    }

    /// A horizontal bar chart: each combination's median, with a whisker from its min to its max.
    pub fn svg(&self) -> String {
        let o = self.context.objective;
        let rows: Vec<(String, Option<&Spread>, &str)> = self
            .combinations
            .iter()
            .zip(self.summaries)
            .map(|(comb, s)| {
                let note = if comb.refused.is_some() {
                    "refused"
                } else if s.spread.is_none() {
                    "failed"
                } else if !s.eligible() {
                    "some runs failed"
                } else {
                    ""
                };
                (comb.label.clone(), s.spread.as_ref(), note)
            })
            .collect();
        let longest = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
        let left = (longest as f64 * 7.4 + 24.0).clamp(120.0, 560.0);
        let plot = 440.0;
        let right = 150.0;
        let width = left + plot + right;
        let top = 58.0;
        let row_h = 30.0;
        let height = top + row_h * rows.len() as f64 + 48.0;
        let top_value = rows
            .iter()
            .filter_map(|r| r.1.map(|s| s.max))
            .fold(0.0_f64, f64::max);
        let (step, axis_max) = axis(top_value);
        let x = |v: f64| left + plot * (v / axis_max).clamp(0.0, 1.0);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="22" font-size="15" font-weight="bold">{}</text>"#,
            12.0,
            xml(&format!(
                "ringway-tune sweep: {} ({} is better)",
                o.title(),
                if o.lower_is_better() {
                    "lower"
                } else {
                    "higher"
                }
            ))
        );
        let _ = writeln!(
            s,
            "<text x=\"12\" y=\"40\" fill=\"#555\">{}</text>",
            xml(&format!(
                "bar: median of {}; whisker: min–max; {}",
                count(self.context.rounds, "round"),
                self.headline()
            ))
        );
        // Grid and axis.
        let bottom = top + row_h * rows.len() as f64;
        let mut tick = 0.0;
        while tick <= axis_max * 1.0001 {
            let tx = x(tick);
            let _ = writeln!(
                s,
                "<line x1=\"{tx:.1}\" y1=\"{top:.1}\" x2=\"{tx:.1}\" y2=\"{bottom:.1}\" stroke=\"#ddd\"/>"
            );
            let _ = writeln!(
                s,
                "<text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
                bottom + 16.0,
                xml(&number_plain(tick))
            );
            tick += step;
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
            left + plot / 2.0,
            bottom + 36.0,
            xml(o.title())
        );
        for (i, (label, spread, note)) in rows.iter().enumerate() {
            let y = top + row_h * i as f64;
            let mid = y + row_h / 2.0;
            let winner = self.verdict.winner() == Some(i);
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\"{}>{}</text>",
                left - 8.0,
                mid + 4.0,
                if winner { " font-weight=\"bold\"" } else { "" },
                xml(label)
            );
            let Some(sp) = spread else {
                let _ = writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#a33\">{}</text>",
                    left + 6.0,
                    mid + 4.0,
                    xml(note)
                );
                continue;
            };
            let fill = if winner {
                "#2e7d32"
            } else if note.is_empty() {
                "#5b8bd0"
            } else {
                "#c9a0a0"
            };
            let _ = writeln!(
                s,
                "<rect x=\"{left:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\"><title>{}</title></rect>",
                y + 7.0,
                (x(sp.median) - left).max(0.5),
                row_h - 14.0,
                xml(&format!(
                    "{label}: median {}, min {}, max {}, MAD {}",
                    number(sp.median),
                    number(sp.min),
                    number(sp.max),
                    number(sp.mad)
                ))
            );
            let (x0, x1) = (x(sp.min), x(sp.max));
            let _ = writeln!(
                s,
                "<line x1=\"{x0:.1}\" y1=\"{mid:.1}\" x2=\"{x1:.1}\" y2=\"{mid:.1}\" stroke=\"#222\" stroke-width=\"1.5\"/>"
            );
            for cap in [x0, x1] {
                let _ = writeln!(
                    s,
                    "<line x1=\"{cap:.1}\" y1=\"{:.1}\" x2=\"{cap:.1}\" y2=\"{:.1}\" stroke=\"#222\" stroke-width=\"1.5\"/>",
                    mid - 6.0,
                    mid + 6.0
                );
            }
            let text = if note.is_empty() {
                number(sp.median)
            } else {
                format!("{} ({note})", number(sp.median))
            };
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                x1.max(x(sp.median)) + 8.0,
                mid + 4.0,
                xml(&text)
            );
        }
        let _ = writeln!(
            s,
            "<line x1=\"{left:.1}\" y1=\"{top:.1}\" x2=\"{left:.1}\" y2=\"{bottom:.1}\" stroke=\"#333\"/>"
        );
        s.push_str("</svg>\n");
        s
    }

    /// The input config with the winner's values, or the input unchanged with a comment.
    pub fn tuned(&self) -> Result<String, String> {
        let c = self.context;
        match self.verdict.winner() {
            Some(i) => {
                let comb = &self.combinations[i];
                let body = serde_yaml_ng::to_string(&comb.doc)
                    .map_err(|e| format!("cannot write tuned.yaml: {e}"))?;
                let mut out = String::new();
                let _ = writeln!(
                    out,
                    "# {}, tuned by ringway-tune sweep: {}",
                    c.config, comb.label
                );
                for line in wrap(self.verdict.reason(), 96) {
                    let _ = writeln!(out, "# {line}");
                }
                let _ = writeln!(
                    out,
                    "# (objective {}; the input's comments and layout are not kept)",
                    c.objective.name()
                );
                out.push_str(&body);
                Ok(out)
            }
            None => {
                let mut out = String::new();
                let _ = writeln!(
                    out,
                    "# ringway-tune sweep (objective {}): the input unchanged.",
                    c.objective.name()
                );
                for line in wrap(self.verdict.reason(), 96) {
                    let _ = writeln!(out, "# {line}");
                }
                out.push_str(self.input_text);
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                Ok(out)
            }
        }
    }
}

/// A tick step (1, 2 or 5 × 10^k) for about five ticks, and the axis end (a whole step count).
fn axis(max: f64) -> (f64, f64) {
    if !(max.is_finite() && max > 0.0) {
        return (1.0, 1.0);
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let end = (max / step).ceil() * step;
    (step, if end < max * 1.02 { end + step } else { end })
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number without trailing zeros, for axis ticks and settings.
fn number_plain(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// `1h02m03s`, `2m05s`, `42s`.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s % 3600 / 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
