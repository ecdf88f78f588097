//! HdrHistogram's file formats: the percentile distribution (`.hgrm`,
//! written and parsed back, so `compare` also reads wrk2's and Java's) and
//! the V2 interval log (`.hlog`).
//!
//! They live apart from the run summary because they are the interchange
//! formats other tools read; nothing here knows what a run is.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use crate::engine::Interval;

/// Nanoseconds per output unit (microseconds).
pub const NS_PER_US: f64 = 1000.0;

/// Writes `h` in HdrHistogram's percentile-distribution format (the output
/// of Java's `outputPercentileDistribution(out, 5, scale)`), values divided
/// by `scale`.
pub fn hgrm(h: &Histogram<u64>, scale: f64) -> String {
    let d = h.sigfig() as usize;
    let mut s = String::new();
    let _ = write!(s, "{:>12} {:>14} {:>10} {:>14}\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / scale;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(s, "{value:12.d$} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(s, "{value:12.d$} {q:2.12} {total:10}");
            }
        }
    }
    let sub_buckets = (2 * 10u64.pow(h.sigfig() as u32)).next_power_of_two();
    let _ = writeln!(s, "#[Mean    = {:12.d$}, StdDeviation   = {:12.d$}]", h.mean() / scale, h.stdev() / scale);
    let _ = writeln!(s, "#[Max     = {:12.d$}, Total count    = {:12}]", h.max() as f64 / scale, h.len());
    let _ = writeln!(s, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), sub_buckets);
    s
}

/// One line of a parsed `.hgrm`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HgrmPoint {
    /// Value (in the file's unit).
    pub value: f64,
    /// Percentile as a fraction (0..=1).
    pub quantile: f64,
    /// Count at or below this value.
    pub total_count: u64,
}

/// A parsed `.hgrm`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hgrm {
    /// Points in file order.
    pub points: Vec<HgrmPoint>,
    /// From the footer.
    pub max: f64,
    /// From the footer.
    pub total_count: u64,
    /// From the footer.
    pub mean: f64,
}

impl Hgrm {
    /// Parses the percentile-distribution format (ours, wrk2's, Java's).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut points = Vec::new();
        let (mut max, mut total_count, mut mean) = (None, None, None);
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with("Value") {
                continue;
            }
            if let Some(rest) = l.strip_prefix("#[") {
                let rest = rest.trim_end_matches(']');
                for part in rest.split(',') {
                    let Some((k, v)) = part.split_once('=') else { continue };
                    let v = v.trim();
                    match k.trim() {
                        "Max" => max = v.parse::<f64>().ok(),
                        "Total count" => total_count = v.parse::<u64>().ok(),
                        "Mean" => mean = v.parse::<f64>().ok(),
                        _ => {}
                    }
                }
                continue;
            }
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 3 {
                return Err(format!("bad hgrm line `{line}`"));
            }
            let p = |i: usize| f[i].parse::<f64>().map_err(|_| format!("bad number in `{line}`"));
            points.push(HgrmPoint {
                value: p(0)?,
                quantile: p(1)?,
                total_count: f[2].parse().map_err(|_| format!("bad count in `{line}`"))?,
            });
        }
        let last = points.last().copied();
        Ok(Self {
            max: max.or(last.map(|p| p.value)).ok_or("empty hgrm")?,
            total_count: total_count.or(last.map(|p| p.total_count)).unwrap_or(0),
            mean: mean.unwrap_or(f64::NAN),
            points,
        })
    }

    /// The smallest value whose percentile reaches `q` (the file's resolution).
    pub fn value_at(&self, q: f64) -> f64 {
        if q >= 1.0 {
            return self.max;
        }
        self.points.iter().find(|p| p.quantile >= q).map(|p| p.value).unwrap_or(self.max)
    }
}

/// Writes the interval log (Java `HistogramLogWriter` layout, V2 compressed
/// base64 histograms, values in ns, `Interval_Max` in us).
pub fn interval_log(intervals: &[Interval], start: SystemTime, comment: &str) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    {
        let mut b = IntervalLogWriterBuilder::new();
        for line in comment.lines() {
            b.add_comment(line);
        }
        b.add_comment("Histogram values are in nanoseconds; Interval_Max is in microseconds.");
        b.with_start_time(start).with_base_time(start).with_max_value_divisor(NS_PER_US);
        let _w = b.begin_log_with(&mut buf, &mut ser).map_err(|e| e.to_string())?;
    }
    buf.extend_from_slice(
        b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
    );
    {
        let mut w = IntervalLogWriterBuilder::new()
            .with_max_value_divisor(NS_PER_US)
            .begin_log_with(&mut buf, &mut ser)
            .map_err(|e| e.to_string())?;
        for iv in intervals {
            w.write_histogram(&iv.hist, iv.start, iv.length, None).map_err(|e| format!("{e:?}"))?;
        }
    }
    // The builder repeats the divisor comment when it starts the second writer; keep one.
    let text = String::from_utf8(buf).map_err(|e| e.to_string())?;
    let mut seen = false;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("#[MaxValueDivisor") {
            if seen {
                continue;
            }
            seen = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// Reads an interval log back: every interval histogram.
pub fn read_interval_log(bytes: &[u8]) -> Result<Vec<(Duration, Histogram<u64>)>, String> {
    let mut out = Vec::new();
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        match entry.map_err(|e| format!("{e:?}"))? {
            LogEntry::Interval(ih) => {
                let raw = base64_decode(ih.encoded_histogram())?;
                let h: Histogram<u64> = de.deserialize(&mut &raw[..]).map_err(|e| format!("{e:?}"))?;
                out.push((ih.start_timestamp(), h));
            }
            LogEntry::StartTime(_) | LogEntry::BaseTime(_) => {}
        }
    }
    Ok(out)
}

fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let val = |c: u8| -> Result<u32, String> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("bad base64 byte {c}")),
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let take = chunk.len().saturating_sub(1);
        for i in 0..take {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for i in 1..=10_000u64 {
            h.record(i * 1000).unwrap(); // 1 us .. 10 ms
        }
        h.record(50_000_000).unwrap();
        h
    }

    #[test]
    fn hgrm_round_trips_percentiles_and_counts() {
        let h = sample();
        let text = hgrm(&h, NS_PER_US);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"), "{text}");
        assert!(text.contains("#[Buckets = "));
        assert!(text.contains("SubBuckets     =         2048]"));
        let p = Hgrm::parse(&text).unwrap();
        assert_eq!(p.total_count, h.len());
        assert_eq!(p.points.last().unwrap().total_count, h.len());
        assert!((p.max - h.max() as f64 / 1000.0).abs() < 0.01);
        for q in [0.5, 0.9, 0.99] {
            let want = h.value_at_quantile(q) as f64 / 1000.0;
            let got = p.value_at(q);
            assert!((got - want).abs() <= want * 0.002 + 0.001, "q {q}: {got} vs {want}");
        }
        // Percentiles and counts never go down.
        assert!(p.points.windows(2).all(|w| w[0].quantile <= w[1].quantile && w[0].total_count <= w[1].total_count));
    }

    #[test]
    fn interval_log_round_trips() {
        let h = sample();
        let ivs = vec![
            Interval { start: Duration::ZERO, length: Duration::from_secs(1), hist: h.clone() },
            Interval { start: Duration::from_secs(1), length: Duration::from_millis(500), hist: h.clone() },
        ];
        let log = interval_log(&ivs, SystemTime::now(), "test run").unwrap();
        let text = String::from_utf8(log.clone()).unwrap();
        assert!(text.contains("\"StartTimestamp\",\"Interval_Length\""), "{text}");
        assert_eq!(text.matches("#[MaxValueDivisor").count(), 1, "{text}");
        let back = read_interval_log(&log).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].0, Duration::from_secs(1));
        assert_eq!(back[0].1, h);
    }
}
