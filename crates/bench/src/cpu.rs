//! CPU time spent during a measurement, by this process (all its threads, and the children it
//! forked and reaped: varnishadm, curl) and by a server's process group (nginx master and
//! worker, varnishd manager and child), read from /proc.

/// Clock ticks per second of the times in /proc (`USER_HZ`, 100 on Linux whatever the
/// kernel's own tick rate).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU times at the start of a measurement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuClock {
    own: f64,
    server: Option<(u32, f64)>,
}

/// CPU seconds spent since [`CpuClock::start`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuUsed {
    /// By this process and the children it reaped.
    pub own: f64,
    /// By the server's process group, when one was named.
    pub server: Option<f64>,
}

impl CpuClock {
    /// Starts counting; `server_group` is the process group of the server involved.
    pub(crate) fn start(server_group: Option<u32>) -> CpuClock {
        CpuClock {
            own: own_seconds(),
            server: server_group.map(|g| (g, group_seconds(g))),
        }
    }

    /// What was spent since the start.
    pub(crate) fn stop(&self) -> CpuUsed {
        CpuUsed {
            own: (own_seconds() - self.own).max(0.0),
            server: self
                .server
                .map(|(g, before)| (group_seconds(g) - before).max(0.0)),
        }
    }
}

/// The fields of a `/proc/<pid>/stat` line after the command name, which may hold spaces:
/// index 0 is field 3 (state), so field `n` is at index `n - 3`.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// Ticks at `index`, as a number.
fn ticks(fields: &[&str], index: usize) -> f64 {
    fields
        .get(index)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0) as f64
}

/// utime + stime + cutime + cstime of this process (fields 14 to 17).
fn own_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    stat_fields(&stat).map_or(0.0, |f| (11..=14).map(|i| ticks(&f, i)).sum::<f64>())
        / TICKS_PER_SECOND
}

/// utime + stime of every process whose process group (field 5) is `group`.
fn group_seconds(group: u32) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let group = group.to_string();
    let mut total = 0.0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(f) = stat_fields(&stat)
            && f.get(2) == Some(&group.as_str())
        {
            total += ticks(&f, 11) + ticks(&f, 12);
        }
    }
    total / TICKS_PER_SECOND
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_after_the_command_name() {
        let line = "123 (a b) S 1 123 123 0 -1 0 0 0 0 0 7 3 2 1 20 0";
        let f = stat_fields(line).unwrap();
        assert_eq!(f[2], "123");
        assert_eq!((11..=14).map(|i| ticks(&f, i)).sum::<f64>(), 13.0);
    }

    #[test]
    fn this_process_is_counted() {
        let clock = CpuClock::start(None);
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(clock.stop().own >= 0.0);
        assert!(clock.stop().server.is_none());
    }
}
