//! Tables of figures (ours beside the references of the same run), as text or JSON.

use serde_json::{Value, json};

use crate::cpu::CpuUsed;

/// One figure: measured (count over seconds) or derived from other rows of the run.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// A stable identifier, for JSON readers and for rows that reuse another row's figure.
    pub id: &'static str,
    /// What was measured, for people.
    pub what: String,
    /// How many operations were timed (`None` for a derived figure).
    pub count: Option<u64>,
    /// How long they took (`None` for a derived figure).
    pub seconds: Option<f64>,
    /// Operations per second.
    pub rate: f64,
    /// Whether this is our figure, the one every row is compared with.
    pub ours: bool,
    /// CPU time spent meanwhile, when measured.
    pub cpu: Option<CpuUsed>,
    /// The latency of each operation, when measured one by one.
    pub latency: Option<Latency>,
}

/// Percentiles of per-operation latencies (seconds), nearest rank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Latency {
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The slowest.
    pub max: f64,
}

impl Latency {
    /// The percentiles of `seconds` (sorted here); `None` when empty.
    pub(crate) fn of(seconds: &mut [f64]) -> Option<Latency> {
        if seconds.is_empty() {
            return None;
        }
        seconds.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            // Nearest rank: the smallest value with at least q of the values at or below it.
            let k = (q * seconds.len() as f64).ceil() as usize;
            seconds[k.clamp(1, seconds.len()) - 1]
        };
        Some(Latency {
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: seconds[seconds.len() - 1],
        })
    }
}

impl Row {
    /// `count` operations in `seconds`.
    pub(crate) fn measured(
        id: &'static str,
        what: impl Into<String>,
        count: u64,
        seconds: f64,
    ) -> Row {
        Row {
            id,
            what: what.into(),
            count: Some(count),
            seconds: Some(seconds),
            rate: count as f64 / seconds.max(1e-12),
            ours: false,
            cpu: None,
            latency: None,
        }
    }

    /// A rate computed from other figures of the run.
    pub(crate) fn derived(id: &'static str, what: impl Into<String>, rate: f64) -> Row {
        Row {
            id,
            what: what.into(),
            count: None,
            seconds: None,
            rate,
            ours: false,
            cpu: None,
            latency: None,
        }
    }

    /// Marks the row as ours.
    pub(crate) fn ours(mut self) -> Row {
        self.ours = true;
        self
    }

    /// Records the CPU time spent meanwhile.
    pub(crate) fn cpu(mut self, used: CpuUsed) -> Row {
        self.cpu = Some(used);
        self
    }

    /// Records the per-operation latencies.
    pub(crate) fn latency(mut self, latency: Latency) -> Row {
        self.latency = Some(latency);
        self
    }

    /// CPU seconds per operation: (here, on the server).
    fn cpu_per_op(&self) -> (Option<f64>, Option<f64>) {
        let (Some(cpu), Some(count)) = (self.cpu, self.count) else {
            return (None, None);
        };
        let n = count.max(1) as f64;
        (Some(cpu.own / n), cpu.server.map(|s| s / n))
    }

    /// Seconds per operation.
    pub(crate) fn seconds_per_op(&self) -> f64 {
        1.0 / self.rate.max(1e-12)
    }
}

/// A figure that is not a rate: bytes, instructions, a ratio.
#[derive(Debug, Clone)]
pub(crate) struct Measure {
    /// A stable identifier, for JSON readers.
    pub id: &'static str,
    /// What was measured, for people.
    pub what: String,
    /// The value, in `unit`.
    pub value: f64,
    /// `bytes`, `Ir`, `×`, `rows/s`...
    pub unit: &'static str,
}

impl Measure {
    /// The value as text: bytes in MB/kB, counts grouped, ratios with 3 digits.
    fn render(&self) -> String {
        match self.unit {
            "bytes" if self.value >= 1e6 => format!("{:.1} MB", self.value / 1e6),
            "bytes" if self.value >= 1e4 => format!("{:.1} kB", self.value / 1e3),
            "bytes" => format!("{:.0} bytes", self.value),
            "×" => format!("{} ×", ratio(self.value)),
            "s" => duration(self.value),
            unit if self.value.abs() >= 100.0 => {
                let sign = if self.value < 0.0 { "-" } else { "" };
                format!("{sign}{} {unit}", grouped(self.value.abs().round() as u64))
            }
            unit => format!("{:.2} {unit}", self.value),
        }
    }
}

/// A verification made on the real servers.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    /// What was checked and what was seen.
    pub what: String,
    /// Whether it held.
    pub ok: bool,
    /// Whether a failure makes the whole run fail (ours, and "the purged URLs are gone" for
    /// every method); otherwise it is information (the seed's regex also bans neighbours).
    pub strict: bool,
}

/// One scenario's figures.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// Short name: `varnish`, `nginx-http`, `nginx-files`, `save-path`.
    pub key: &'static str,
    /// The heading.
    pub title: String,
    /// What one operation is (`URL`, `call`, `insert`).
    pub unit: &'static str,
    /// The figures, ours first.
    pub rows: Vec<Row>,
    /// Facts worth knowing to read the figures.
    pub notes: Vec<String>,
    /// What was verified on the servers.
    pub checks: Vec<Check>,
    /// Figures that are not rates, printed under the rows.
    pub measures: Vec<Measure>,
}

impl Table {
    pub(crate) fn new(key: &'static str, title: impl Into<String>, unit: &'static str) -> Table {
        Table {
            key,
            title: title.into(),
            unit,
            rows: Vec::new(),
            notes: Vec::new(),
            checks: Vec::new(),
            measures: Vec::new(),
        }
    }

    /// Records a figure that is not a rate.
    pub(crate) fn measure(
        &mut self,
        id: &'static str,
        what: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) {
        self.measures.push(Measure {
            id,
            what: what.into(),
            value,
            unit,
        });
    }

    /// Records a check.
    pub(crate) fn check(&mut self, ok: bool, strict: bool, what: impl Into<String>) {
        self.checks.push(Check {
            what: what.into(),
            ok,
            strict,
        });
    }

    /// The row with this id.
    pub(crate) fn row(&self, id: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.id == id)
    }

    fn ours_rate(&self) -> Option<f64> {
        self.rows.iter().find(|r| r.ours).map(|r| r.rate)
    }

    /// Whether every strict check held.
    pub(crate) fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok || !c.strict)
    }

    /// The table as text.
    pub(crate) fn render(&self) -> String {
        let ours = self.ours_rate();
        let header = [
            "what".to_owned(),
            "count".to_owned(),
            "seconds".to_owned(),
            format!("{}s/s", self.unit),
            format!("per {}", self.unit),
            "CPU here".to_owned(),
            "CPU server".to_owned(),
            "ours ÷ this".to_owned(),
            "p50".to_owned(),
            "p90".to_owned(),
            "p99".to_owned(),
            "max".to_owned(),
        ];
        let mut cells: Vec<[String; COLUMNS]> = vec![header];
        for r in &self.rows {
            let ratio = match ours {
                Some(_) if r.ours => "1 (ours)".to_owned(),
                Some(o) => ratio(o / r.rate.max(1e-12)),
                None => "-".to_owned(),
            };
            cells.push([
                if r.ours {
                    format!("ours: {}", r.what)
                } else {
                    r.what.clone()
                },
                r.count.map_or("-".to_owned(), grouped),
                r.seconds.map_or("-".to_owned(), |s| format!("{s:.3}")),
                rate(r.rate),
                duration(r.seconds_per_op()),
                r.cpu_per_op().0.map_or("-".to_owned(), duration),
                r.cpu_per_op().1.map_or("-".to_owned(), duration),
                ratio,
                r.latency.map_or("-".to_owned(), |l| duration(l.p50)),
                r.latency.map_or("-".to_owned(), |l| duration(l.p90)),
                r.latency.map_or("-".to_owned(), |l| duration(l.p99)),
                r.latency.map_or("-".to_owned(), |l| duration(l.max)),
            ]);
        }
        let with_cpu = self.rows.iter().any(|r| r.cpu.is_some());
        if !with_cpu {
            // Columns 5 and 6 (CPU) say nothing here.
            for row in &mut cells {
                row[5].clear();
                row[6].clear();
            }
        }
        if ours.is_none() {
            // No row is ours: nothing to compare with.
            for row in &mut cells {
                row[7].clear();
            }
        }
        if !self.rows.iter().any(|r| r.latency.is_some()) {
            // Columns 8 to 11 (latency) neither.
            for row in &mut cells {
                for cell in &mut row[8..] {
                    cell.clear();
                }
            }
        }
        let mut widths = [0usize; COLUMNS];
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = format!("\n== {} ==\n", self.title);
        if self.rows.is_empty() {
            cells.clear();
        }
        for (i, row) in cells.iter().enumerate() {
            let mut line = String::new();
            for (j, (c, w)) in row.iter().zip(widths).enumerate() {
                if w == 0 {
                    continue;
                }
                let pad = w - c.chars().count();
                if j == 0 {
                    line.push_str(c);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str("  ");
                    line.push_str(&" ".repeat(pad));
                    line.push_str(c);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
            if i == 0 {
                let shown = widths.iter().filter(|w| **w > 0).count();
                let total: usize = widths.iter().sum::<usize>() + 2 * (shown - 1);
                out.push_str(&"-".repeat(total));
                out.push('\n');
            }
        }
        let width = self
            .measures
            .iter()
            .map(|m| m.what.chars().count())
            .max()
            .unwrap_or(0);
        for m in &self.measures {
            let pad = width - m.what.chars().count();
            out.push_str(&format!(
                "  {}{}  {}\n",
                m.what,
                " ".repeat(pad),
                m.render()
            ));
        }
        if with_cpu {
            out.push_str(&format!(
            "  (CPU here / server: CPU time per {} of this process with the children it forked, \
             and of the server's processes; getrusage here, each server thread's schedstat from /proc \
             (a server's reaped children in 10 ms ticks))\n",
            self.unit
        ));
        }
        for n in &self.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        for c in &self.checks {
            let mark = match (c.ok, c.strict) {
                (true, _) => "ok  ",
                (false, true) => "FAIL",
                (false, false) => "info",
            };
            out.push_str(&format!("  check [{mark}] {}\n", c.what));
        }
        out
    }

    /// The table as JSON.
    pub(crate) fn to_json(&self) -> Value {
        let ours = self.ours_rate();
        json!({
            "key": self.key,
            "title": self.title,
            "unit": self.unit,
            "rows": self.rows.iter().map(|r| json!({
                "id": r.id,
                "what": r.what,
                "ours": r.ours,
                "count": r.count,
                "seconds": r.seconds,
                "rate_per_second": r.rate,
                "seconds_per_op": r.seconds_per_op(),
                "cpu_seconds_here": r.cpu.map(|c| c.own),
                "cpu_seconds_server": r.cpu.and_then(|c| c.server),
                "ours_over_this": ours.map(|o| o / r.rate.max(1e-12)),
                "latency_seconds": r.latency.map(|l| json!({
                    "p50": l.p50, "p90": l.p90, "p99": l.p99, "max": l.max,
                })),
            })).collect::<Vec<_>>(),
            "measures": self.measures.iter().map(|m| json!({
                "id": m.id, "what": m.what, "value": m.value, "unit": m.unit,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
            "checks": self.checks.iter().map(|c| json!({
                "what": c.what, "ok": c.ok, "strict": c.strict,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The columns of a rendered table.
const COLUMNS: usize = 12;

/// `12345678` as `12,345,678`.
pub(crate) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A rate: grouped digits from 100 up, one decimal below.
fn rate(r: f64) -> String {
    if r >= 100.0 {
        grouped(r.round() as u64)
    } else {
        format!("{r:.1}")
    }
}

/// A ratio with three significant digits or so.
fn ratio(x: f64) -> String {
    if x >= 1000.0 {
        grouped(x.round() as u64)
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A duration in the unit that suits it.
pub(crate) fn duration(seconds: f64) -> String {
    // Thresholds on the rounded figure, so that 0.99999 µs reads `1.0 µs`, not `1000 ns`.
    if seconds * 1e9 < 999.5 {
        format!("{:.0} ns", seconds * 1e9)
    } else if seconds * 1e6 < 999.95 {
        format!("{:.1} µs", seconds * 1e6)
    } else if seconds * 1e3 < 999.995 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(12_345_678), "12,345,678");
        assert_eq!(rate(12.34), "12.3");
        assert_eq!(rate(1234.4), "1,234");
        assert_eq!(duration(0.000_000_25), "250 ns");
        assert_eq!(duration(0.000_25), "250.0 µs");
        assert_eq!(duration(0.25), "250.00 ms");
        assert_eq!(duration(0.01 / 10_000.0), "1.0 µs");
        assert_eq!(ratio(25.31), "25.3");
        assert_eq!(ratio(0.97), "0.97");
    }

    #[test]
    fn rows_compare_with_ours() {
        let mut t = Table::new("t", "T", "URL");
        t.rows.push(Row::measured("a", "batched", 1000, 0.1).ours());
        t.rows.push(Row::measured("b", "one by one", 100, 1.0));
        let text = t.render();
        assert!(text.contains("ours: batched"), "{text}");
        assert!(text.contains("100"), "{text}");
        let json = t.to_json();
        assert_eq!(json["rows"][1]["ours_over_this"], 100.0);
        assert!(!text.contains("p99"), "{text}");
    }

    #[test]
    fn latencies_are_nearest_rank_percentiles() {
        let mut values: Vec<f64> = (1..=100).rev().map(|i| i as f64 / 1000.0).collect();
        let l = Latency::of(&mut values).unwrap();
        assert_eq!((l.p50, l.p90, l.p99, l.max), (0.050, 0.090, 0.099, 0.100));
        assert_eq!(Latency::of(&mut []), None);
        let mut t = Table::new("t", "T", "save");
        t.rows
            .push(Row::measured("a", "fleet", 100, 0.1).latency(l));
        let text = t.render();
        assert!(text.contains("p99") && text.contains("99.00 ms"), "{text}");
    }
}
