//! CPU time spent during a measurement, by this process (all its threads, and the children it
//! forked and reaped: varnishadm, curl) and by a server's process group (nginx master and
//! worker, varnishd manager and child) or process tree (PostgreSQL's postmaster and its
//! backends, which each lead a session of their own; MariaDB's one process), read from /proc.

/// Clock ticks per second of the times in /proc (`USER_HZ`, 100 on Linux whatever the
/// kernel's own tick rate).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU times at the start of a measurement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuClock {
    own: f64,
    server: Option<(Server, f64)>,
}

/// The processes of a server.
#[derive(Debug, Clone, Copy)]
enum Server {
    /// Every process of this process group.
    Group(u32),
    /// This process (its threads, and its children it reaped) and its children alive.
    Tree(u32),
}

impl Server {
    fn seconds(self) -> f64 {
        match self {
            Server::Group(g) => group_seconds(g),
            Server::Tree(pid) => tree_seconds(pid),
        }
    }
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
            server: server_group.map(|g| (Server::Group(g), group_seconds(g))),
        }
    }

    /// Starts counting; `server` is the pid of the server's first process (PostgreSQL's
    /// postmaster, `mariadbd`): it, its live children and the children it reaped meanwhile.
    pub(crate) fn start_tree(server: Option<u32>) -> CpuClock {
        CpuClock {
            own: own_seconds(),
            server: server.map(|pid| (Server::Tree(pid), tree_seconds(pid))),
        }
    }

    /// What was spent since the start.
    pub(crate) fn stop(&self) -> CpuUsed {
        CpuUsed {
            own: (own_seconds() - self.own).max(0.0),
            server: self
                .server
                .map(|(server, before)| (server.seconds() - before).max(0.0)),
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

/// The command name (field 2) and the other fields of every process.
fn processes() -> Vec<(u32, String, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let comm = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map_or(String::new(), |(comm, _)| comm.to_owned());
        if let Some(f) = stat_fields(&stat) {
            all.push((pid, comm, f.into_iter().map(str::to_owned).collect()));
        }
    }
    all
}

/// utime + stime of every process whose process group (field 5) is `group`.
fn group_seconds(group: u32) -> f64 {
    let group = group.to_string();
    let total: f64 = processes()
        .iter()
        .filter(|(_, _, f)| f.get(2) == Some(&group))
        .map(|(_, _, f)| field_ticks(f, 11) + field_ticks(f, 12))
        .sum();
    total / TICKS_PER_SECOND
}

/// utime + stime + cutime + cstime of `pid`, plus utime + stime of its children alive
/// (parent, field 4, is `pid`).
fn tree_seconds(pid: u32) -> f64 {
    let parent = pid.to_string();
    let total: f64 = processes()
        .iter()
        .map(|(p, _, f)| {
            if *p == pid {
                (11..=14).map(|i| field_ticks(f, i)).sum()
            } else if f.get(1) == Some(&parent) {
                field_ticks(f, 11) + field_ticks(f, 12)
            } else {
                0.0
            }
        })
        .sum();
    total / TICKS_PER_SECOND
}

/// The pid of the first process of a server: a process named one of `names` whose parent
/// is not (PostgreSQL's postmaster, not one of its backends), if one runs on this machine.
pub(crate) fn server_pid(names: &[&str]) -> Option<u32> {
    let all = processes();
    let named = |pid: &str| {
        all.iter()
            .any(|(p, comm, _)| p.to_string() == pid && names.contains(&comm.as_str()))
    };
    all.iter()
        .filter(|(_, comm, f)| {
            names.contains(&comm.as_str()) && !f.get(1).is_some_and(|parent| named(parent))
        })
        .map(|(pid, _, _)| *pid)
        .min()
}

/// Ticks at `index` of owned fields, as a number.
fn field_ticks(fields: &[String], index: usize) -> f64 {
    fields
        .get(index)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0) as f64
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
