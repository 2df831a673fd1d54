//! The numbers a sweep reports: each combination's median and spread over its rounds, and the
//! rule that names a winner only when it stands clear of the noise.
//!
//! Nothing here starts a process, so the test file includes this module as it is.

/// What the sweep optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// Proxy CPU microseconds per request: lower is better.
    CpuPerRequest,
    /// Requests a second: higher is better.
    Rps,
    /// 99th percentile latency in microseconds: lower is better.
    P99,
}

impl Objective {
    pub fn parse(text: &str) -> Result<Objective, String> {
        match text {
            "cpu-per-request" | "cpu" => Ok(Objective::CpuPerRequest),
            "rps" => Ok(Objective::Rps),
            "p99" => Ok(Objective::P99),
            _ => Err(format!(
                "--objective {text:?}: expected cpu-per-request, rps or p99"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Objective::CpuPerRequest => "cpu-per-request",
            Objective::Rps => "rps",
            Objective::P99 => "p99",
        }
    }

    /// The quantity and its unit, for headings.
    pub fn title(self) -> &'static str {
        match self {
            Objective::CpuPerRequest => "proxy CPU per request, µs",
            Objective::Rps => "requests per second",
            Objective::P99 => "p99 latency, µs",
        }
    }

    pub fn lower_is_better(self) -> bool {
        !matches!(self, Objective::Rps)
    }

    /// Whether `a` is better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        if self.lower_is_better() {
            a < b
        } else {
            a > b
        }
    }
}

/// The median of `values` (the mean of the middle two for an even count); None when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// One combination's objective over its rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// The median absolute deviation from the median.
    pub mad: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        let median = median(values)?;
        let deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
        Some(Spread {
            n: values.len(),
            median,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mad: median_or_zero(&deviations),
        })
    }

    /// max − min: what the rounds of one combination disagree by.
    pub fn range(&self) -> f64 {
        self.max - self.min
    }
}

fn median_or_zero(values: &[f64]) -> f64 {
    median(values).unwrap_or(0.0)
}

/// A combination as the winner rule sees it: its spread, or None when it may not win (a
/// failed run, a config that does not validate, nothing measured).
#[derive(Debug, Clone)]
pub struct Contender {
    pub label: String,
    pub spread: Option<Spread>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The combination at this index won.
    Winner {
        index: usize,
        reason: String,
    },
    NoWinner {
        reason: String,
    },
}

impl Verdict {
    pub fn winner(&self) -> Option<usize> {
        match self {
            Verdict::Winner { index, .. } => Some(*index),
            Verdict::NoWinner { .. } => None,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Verdict::Winner { reason, .. } | Verdict::NoWinner { reason } => reason,
        }
    }
}

/// The winner rule. The contender with the best median wins only when it beats every other
/// eligible contender's median by more than the noise between the two, taken as the larger of
/// their two ranges (max − min over the rounds). With one round there is no measure of the
/// noise, and so no winner. A combination that failed or was refused cannot win; when it is
/// the only one left standing among several, the one that served wins by default.
pub fn verdict(objective: Objective, contenders: &[Contender], rounds: usize) -> Verdict {
    let eligible: Vec<(usize, &Spread)> = contenders
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.spread.as_ref().map(|s| (i, s)))
        .collect();
    if contenders.len() < 2 {
        return Verdict::NoWinner {
            reason: "a single combination: nothing to compare".into(),
        };
    }
    match eligible.len() {
        0 => {
            return Verdict::NoWinner {
                reason: "no combination completed its runs without errors".into(),
            }
        }
        1 => {
            let (index, _) = eligible[0];
            return Verdict::Winner {
                index,
                reason: format!(
                    "{} is the only combination that served without errors; every other \
                     failed or was refused",
                    contenders[index].label
                ),
            };
        }
        _ => {}
    }
    if rounds < 2 || eligible.iter().any(|(_, s)| s.n < 2) {
        return Verdict::NoWinner {
            reason: "no winner beyond the noise: one round measures no noise (use --rounds 3 \
                     or more)"
                .into(),
        };
    }
    let (best, best_spread) = eligible
        .iter()
        .copied()
        .reduce(|a, b| {
            if objective.better(b.1.median, a.1.median) {
                b
            } else {
                a
            }
        })
        .expect("at least two eligible");
    // Every rival with its margin (how far its median is from the best) and the noise between
    // the two; the closest call (least margin beyond the noise) is the one reported.
    let mut rivals: Vec<(usize, f64, f64)> = eligible
        .iter()
        .filter(|(i, _)| *i != best)
        .map(|&(i, s)| {
            let margin = (s.median - best_spread.median).abs();
            (i, margin, best_spread.range().max(s.range()))
        })
        .collect();
    rivals.sort_by(|a, b| (a.1 - a.2).total_cmp(&(b.1 - b.2)));
    let within = rivals.iter().filter(|(_, m, n)| m <= n).count();
    let (closest, margin, noise) = rivals[0];
    if within > 0 {
        return Verdict::NoWinner {
            reason: format!(
                "no winner beyond the noise: the best median, {} ({}), is within the noise of \
                 {} ({}): they differ by {} where their rounds spread over {}{}",
                contenders[best].label,
                number(best_spread.median),
                contenders[closest].label,
                number(eligible_median(contenders, closest)),
                number(margin),
                number(noise),
                match within {
                    1 => String::new(),
                    2 => " (and so is one other)".to_string(),
                    n => format!(" (and so are {} others)", n - 1),
                }
            ),
        };
    }
    Verdict::Winner {
        index: best,
        reason: format!(
            "{} wins: its median, {}, beats every other by more than the noise; the closest, \
             {} ({}), by {} against a spread of {}",
            contenders[best].label,
            number(best_spread.median),
            contenders[closest].label,
            number(eligible_median(contenders, closest)),
            number(margin),
            number(noise)
        ),
    }
}

fn eligible_median(contenders: &[Contender], i: usize) -> f64 {
    contenders[i].spread.as_ref().map_or(f64::NAN, |s| s.median)
}

/// `1 round`, `3 rounds`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A number as reports print it: three significant digits or more, no long tails.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_string();
    }
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
