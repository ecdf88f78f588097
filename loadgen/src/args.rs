//! A small command-line parser: `--key value`, `--key=value`, `--flag`, and
//! positional arguments. Every option is looked up by name; anything left
//! unread at the end is an error, so a typo never passes silently.

use std::collections::VecDeque;
use std::str::FromStr;
use std::time::Duration;

/// Parsed arguments of one subcommand.
#[derive(Debug, Default)]
pub struct Args {
    options: Vec<(String, Option<String>, bool)>,
    positional: VecDeque<String>,
}

impl Args {
    /// Splits `argv` (without the program and subcommand names).
    ///
    /// A `--name` followed by something that does not start with `--` takes
    /// it as its value; flags must therefore come last or before another
    /// option (`--quick --peers`), or use `--flag=true`.
    pub fn parse(argv: impl IntoIterator<Item = String>) -> Self {
        let mut options = Vec::new();
        let mut positional = VecDeque::new();
        let mut it = argv.into_iter().peekable();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if let Some((k, v)) = name.split_once('=') {
                    options.push((k.to_string(), Some(v.to_string()), false));
                } else {
                    let value = match it.peek() {
                        Some(next) if !next.starts_with("--") => it.next(),
                        _ => None,
                    };
                    options.push((name.to_string(), value, false));
                }
            } else {
                positional.push_back(a);
            }
        }
        Self { options, positional }
    }

    fn take(&mut self, name: &str) -> Option<Option<String>> {
        let mut found = None;
        for (k, v, used) in self.options.iter_mut() {
            if k == name {
                *used = true;
                found = Some(v.clone());
            }
        }
        found
    }

    /// Whether `--name` was given (a flag). `--name=false` counts as absent.
    /// A value that follows a flag is handed back as a positional argument.
    pub fn flag(&mut self, name: &str) -> bool {
        match self.take(name) {
            None => false,
            Some(None) => true,
            Some(Some(v)) if v == "true" || v == "1" => true,
            Some(Some(v)) if v == "false" || v == "0" => false,
            Some(Some(v)) => {
                self.positional.push_back(v);
                true
            }
        }
    }

    /// The string value of `--name`, if given.
    pub fn opt_str(&mut self, name: &str) -> Result<Option<String>, String> {
        match self.take(name) {
            None => Ok(None),
            Some(None) => Err(format!("--{name} needs a value")),
            Some(Some(v)) => Ok(Some(v)),
        }
    }

    /// The value of `--name` parsed as `T`, if given.
    pub fn opt<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.opt_str(name)? {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|e| format!("--{name} {v}: {e}")),
        }
    }

    /// The value of `--name` parsed as `T`, or `default`.
    pub fn get<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        Ok(self.opt(name)?.unwrap_or(default))
    }

    /// A duration in seconds (fractions allowed), if given.
    pub fn opt_secs(&mut self, name: &str) -> Result<Option<Duration>, String> {
        match self.opt::<f64>(name)? {
            None => Ok(None),
            Some(s) if (0.0..=3600.0).contains(&s) => Ok(Some(Duration::from_secs_f64(s))),
            Some(s) => Err(format!("--{name} {s}: want seconds between 0 and 3600")),
        }
    }

    /// A rate such as `100k`, `1.5M` or `2500`, if given.
    pub fn opt_rate(&mut self, name: &str) -> Result<Option<f64>, String> {
        match self.opt_str(name)? {
            None => Ok(None),
            Some(v) => parse_rate(&v).map(Some).map_err(|e| format!("--{name}: {e}")),
        }
    }

    /// The next positional argument.
    pub fn next_positional(&mut self) -> Option<String> {
        self.positional.pop_front()
    }

    /// Fails on any option or positional argument nobody asked for.
    pub fn finish(self) -> Result<(), String> {
        let unused: Vec<String> =
            self.options.iter().filter(|(_, _, used)| !used).map(|(k, _, _)| format!("--{k}")).collect();
        if !unused.is_empty() {
            return Err(format!("unknown option(s): {}", unused.join(" ")));
        }
        if !self.positional.is_empty() {
            return Err(format!("unexpected argument(s): {}", Vec::from(self.positional).join(" ")));
        }
        Ok(())
    }
}

/// Parses a rate: a number with an optional `k` (thousand) or `M` (million) suffix.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix(['k', 'K']) {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix(['m', 'M']) {
        (n, 1e6)
    } else {
        (t, 1.0)
    };
    let v: f64 = num.parse().map_err(|_| format!("`{s}` is not a rate (examples: 2500, 100k, 1.5M)"))?;
    let r = v * mult;
    if !(r.is_finite() && r > 0.0 && r <= 1e8) {
        return Err(format!("rate `{s}` out of range (0, 100M]"));
    }
    Ok(r)
}

/// Parses a comma-separated list of rates.
pub fn parse_rates(s: &str) -> Result<Vec<f64>, String> {
    s.split(',').filter(|p| !p.trim().is_empty()).map(parse_rate).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Args {
        Args::parse(s.split_whitespace().map(str::to_string))
    }

    #[test]
    fn options_flags_and_positionals() {
        let mut a = args("dir1 --rate 100k --quick --size=512 dir2 --peers");
        assert_eq!(a.opt_rate("rate").unwrap(), Some(100_000.0));
        assert!(a.flag("quick"));
        assert!(a.flag("peers"));
        assert!(!a.flag("absent"));
        assert_eq!(a.get::<usize>("size", 64).unwrap(), 512);
        assert_eq!(a.next_positional().as_deref(), Some("dir1"));
        assert_eq!(a.next_positional().as_deref(), Some("dir2"));
        a.finish().unwrap();
    }

    #[test]
    fn unknown_options_are_errors() {
        let mut a = args("--rate 5 --typo 3");
        a.opt_rate("rate").unwrap();
        let e = a.finish().unwrap_err();
        assert!(e.contains("--typo"), "{e}");
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("2500").unwrap(), 2500.0);
        assert_eq!(parse_rate("1.5M").unwrap(), 1_500_000.0);
        assert_eq!(parse_rates("50k,100k, 200k").unwrap(), vec![50e3, 100e3, 200e3]);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-5k").is_err());
    }

    #[test]
    fn missing_value_is_an_error() {
        let mut a = args("--duration");
        assert!(a.opt_secs("duration").is_err());
        let mut a = args("--duration 99999");
        assert!(a.opt_secs("duration").is_err());
    }
}
