//! Durations (`250ms`, `10s`, `5m`, `1h`), byte sizes (`16384`, `64KiB`, `1GB`), `workers`
//! (`auto` or a count) and CPU lists (`"0-3,5"`), parsed from their YAML spellings.
//!
//! The serde wrappers fail during deserialization, so their errors carry the line, column and
//! document path that serde_yaml_ng attaches.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Parses `250ms`, `10s`, `5m` or `1h`. A bare number is refused: `10` is ambiguous.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration {text:?}: expected a whole number with a unit, like 250ms, 10s, 5m or 1h")
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let (number, unit) = text.split_at(digits);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let millis_per_unit: u64 = match unit.trim_start() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Parses a byte count: `16384`, `64KiB`, `10MiB`, `1GiB`, `10KB` (powers of 1000), `512B`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid size {text:?}: expected bytes as a whole number, optionally with a unit (B, KiB, MiB, GiB, KB, MB, GB)")
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let (number, unit) = text.split_at(digits);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let multiplier: u64 = match unit.trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(multiplier)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parses a CPU list such as `0-3,5`: single numbers and inclusive ranges, comma separated,
/// in the order written. Duplicates and CPUs past 1023 (the kernel's `CPU_SETSIZE`) are refused.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    const MAX_CPU: usize = 1023;
    let number = |s: &str| -> Result<usize, String> {
        let s = s.trim();
        match s.parse::<usize>() {
            Ok(n) if n <= MAX_CPU => Ok(n),
            Ok(n) => Err(format!("CPU {n} is out of range (0..={MAX_CPU})")),
            Err(_) => Err(format!(
                "invalid CPU list {text:?}: {s:?} is not a CPU number (write e.g. \"0-3,5\")"
            )),
        }
    };
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let n = number(part)?;
                (n, n)
            }
        };
        if first > last {
            return Err(format!(
                "invalid CPU list {text:?}: range {first}-{last} is backwards"
            ));
        }
        for cpu in first..=last {
            if cpus.contains(&cpu) {
                return Err(format!(
                    "invalid CPU list {text:?}: CPU {cpu} is listed twice"
                ));
            }
            cpus.push(cpu);
        }
    }
    Ok(cpus)
}

/// A duration in the configuration, deserialized from a string such as `10s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration with a unit, like 250ms, 10s, 5m or 1h")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a duration needs a unit, like {v}s or {v}ms"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a duration needs a unit, like 10s or 250ms"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte size in the configuration: an integer or a string with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes, like 16384 or 64KiB")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
            }
        }
        d.deserialize_any(V)
    }
}

/// `workers`: `auto` (None) or a count of at least 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Workers(pub Option<usize>);

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Workers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`auto` or a number of workers (at least 1)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Workers, E> {
                if v == "auto" {
                    Ok(Workers(None))
                } else {
                    Err(E::custom(format!(
                        "invalid workers {v:?}: expected `auto` or a number of workers (at least 1)"
                    )))
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Workers, E> {
                if v == 0 {
                    return Err(E::custom(
                        "workers must be at least 1 (or `auto` for one per CPU)",
                    ));
                }
                usize::try_from(v)
                    .map(|n| Workers(Some(n)))
                    .map_err(|_| E::custom(format!("workers {v} is too large")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Workers, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(
                        "workers must be at least 1 (or `auto` for one per CPU)",
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A CPU list: a string such as `"0-3,5"`, or a single CPU number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl<'de> Deserialize<'de> for CpuList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = CpuList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a CPU list such as \"0-3,5\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CpuList, E> {
                parse_cpu_list(v).map(CpuList).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CpuList, E> {
                parse_cpu_list(&v.to_string())
                    .map(CpuList)
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A scalar read as text: header values, query values and the like may be written unquoted
/// (`value: 2`, `x-debug: true`) and still mean the string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                // YAML already turned `1.0` into a float; its spelling is lost, so ask for quotes.
                Err(E::custom(format!(
                    "write this number in quotes (\"{v}\"): an unquoted decimal is read as a float and its spelling lost"
                )))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A YAML mapping of text to text, kept in the order written (header edits apply in order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextMap(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for TextMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TextMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names to values")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<TextMap, A::Error> {
                let mut pairs = Vec::new();
                while let Some((Text(k), Text(v))) = map.next_entry()? {
                    pairs.push((k, v));
                }
                Ok(TextMap(pairs))
            }
            fn visit_unit<E: de::Error>(self) -> Result<TextMap, E> {
                Ok(TextMap::default())
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["10", "", "s", "1.5s", "-1s", "10 sec", "10S", "1d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("10").unwrap_err(),
            "invalid duration \"10\": expected a whole number with a unit, like 250ms, 10s, 5m or 1h"
        );
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16384"), Ok(16384));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("2KB"), Ok(2000));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("64 KiB"), Ok(65536));
        for bad in ["", "KiB", "1kib", "1.5MiB", "-1", "1TiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("99999999999GiB").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3"), Ok(vec![0, 1, 2, 3]));
        assert_eq!(parse_cpu_list("1"), Ok(vec![1]));
        assert_eq!(parse_cpu_list("0,2,4-5"), Ok(vec![0, 2, 4, 5]));
        assert_eq!(parse_cpu_list("5, 1"), Ok(vec![5, 1]));
        assert_eq!(
            parse_cpu_list("3-1").unwrap_err(),
            "invalid CPU list \"3-1\": range 3-1 is backwards"
        );
        assert_eq!(
            parse_cpu_list("0-2,1").unwrap_err(),
            "invalid CPU list \"0-2,1\": CPU 1 is listed twice"
        );
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("1024").is_err());
    }

    #[test]
    fn wrappers_from_yaml() {
        let d: Dur = serde_yaml_ng::from_str("10s").unwrap();
        assert_eq!(d.0, Duration::from_secs(10));
        assert!(serde_yaml_ng::from_str::<Dur>("10").is_err());
        let s: Size = serde_yaml_ng::from_str("4096").unwrap();
        assert_eq!(s.0, 4096);
        let s: Size = serde_yaml_ng::from_str("4KiB").unwrap();
        assert_eq!(s.0, 4096);
        let w: Workers = serde_yaml_ng::from_str("auto").unwrap();
        assert_eq!(w.0, None);
        let w: Workers = serde_yaml_ng::from_str("4").unwrap();
        assert_eq!(w.0, Some(4));
        assert!(serde_yaml_ng::from_str::<Workers>("0").is_err());
        assert!(serde_yaml_ng::from_str::<Workers>("many").is_err());
        let c: CpuList = serde_yaml_ng::from_str("2").unwrap();
        assert_eq!(c.0, vec![2]);
        let c: CpuList = serde_yaml_ng::from_str("0-1,3").unwrap();
        assert_eq!(c.0, vec![0, 1, 3]);
        let t: Text = serde_yaml_ng::from_str("2").unwrap();
        assert_eq!(t.0, "2");
        let t: Text = serde_yaml_ng::from_str("'1.0'").unwrap();
        assert_eq!(t.0, "1.0");
        assert!(serde_yaml_ng::from_str::<Text>("1.0").is_err());
        let m: TextMap = serde_yaml_ng::from_str("{b: 1, a: x}").unwrap();
        assert_eq!(
            m.0,
            vec![("b".into(), "1".into()), ("a".into(), "x".into())]
        );
    }
}
