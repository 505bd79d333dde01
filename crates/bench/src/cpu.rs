//! CPU time spent during a measurement, by this process (all its threads, and the children it
//! forked and reaped: varnishadm, curl) and by a server's process group (nginx master and
//! worker, varnishd manager and child) or process tree (PostgreSQL's postmaster and its
//! backends, which each lead a session of their own; MariaDB's one process), read from /proc.
//!
//! This process's time comes from `getrusage` (itself and its reaped children: microseconds),
//! a server group's from each live thread's `schedstat` (nanoseconds of run time). The
//! `stat` fields read before were whole clock ticks (10 ms): over a turn of 2,000 purges,
//! where the client spends some 40 ms, one tick of truncation at each end was a quarter of
//! the figure. A process whose threads cannot be listed falls back to its ticks.

/// Clock ticks per second of the times in /proc (`USER_HZ`, 100 on Linux whatever the
/// kernel's own tick rate).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU times at the start of a measurement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuClock {
    own: f64,
    own_switches: u64,
    server: Option<(Server, f64)>,
    /// A process group's scheduling counts, when the server is one.
    group: Option<Scheduling>,
}

/// What the scheduler counted for a process group's live threads (`schedstat`'s second and
/// third fields).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Scheduling {
    /// Seconds its threads were runnable but waited for a CPU.
    pub waited: f64,
    /// Times one of its threads was put on a CPU.
    pub runs: u64,
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
    /// Context switches of this process and the children it reaped (voluntary and not).
    pub own_switches: u64,
    /// The server's scheduling, when it is a process group.
    pub server_scheduling: Option<Scheduling>,
}

impl CpuClock {
    /// Starts counting; `server_group` is the process group of the server involved.
    pub(crate) fn start(server_group: Option<u32>) -> CpuClock {
        CpuClock {
            own: own_seconds(),
            own_switches: own_switches(),
            server: server_group.map(|g| (Server::Group(g), group_seconds(g))),
            group: server_group.map(group_scheduling),
        }
    }

    /// Starts counting; `server` is the pid of the server's first process (PostgreSQL's
    /// postmaster, `mariadbd`): it, its live children and the children it reaped meanwhile.
    pub(crate) fn start_tree(server: Option<u32>) -> CpuClock {
        CpuClock {
            own: own_seconds(),
            own_switches: own_switches(),
            server: server.map(|pid| (Server::Tree(pid), tree_seconds(pid))),
            group: None,
        }
    }

    /// What was spent since the start.
    pub(crate) fn stop(&self) -> CpuUsed {
        CpuUsed {
            own: (own_seconds() - self.own).max(0.0),
            server: self
                .server
                .map(|(server, before)| (server.seconds() - before).max(0.0)),
            own_switches: own_switches().saturating_sub(self.own_switches),
            server_scheduling: match (self.server, self.group) {
                (Some((Server::Group(g), _)), Some(before)) => {
                    let now = group_scheduling(g);
                    Some(Scheduling {
                        waited: (now.waited - before.waited).max(0.0),
                        runs: now.runs.saturating_sub(before.runs),
                    })
                }
                _ => None,
            },
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

/// User and system time of this process (every thread, those ended too) and of the children
/// it reaped, from `getrusage`; the ticks of `/proc/self/stat` (fields 14 to 17) if that
/// fails.
fn own_seconds() -> f64 {
    match (
        rusage_seconds(libc::RUSAGE_SELF),
        rusage_seconds(libc::RUSAGE_CHILDREN),
    ) {
        (Some(own), Some(children)) => own + children,
        _ => {
            let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
            stat_fields(&stat).map_or(0.0, |f| (11..=14).map(|i| ticks(&f, i)).sum::<f64>())
                / TICKS_PER_SECOND
        }
    }
}

/// `ru_utime + ru_stime` of `who`, in seconds.
fn rusage_seconds(who: libc::c_int) -> Option<f64> {
    let usage = rusage(who)?;
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

/// Context switches of this process and the children it reaped, voluntary or not (0 if
/// `getrusage` fails).
fn own_switches() -> u64 {
    [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN]
        .into_iter()
        .filter_map(rusage)
        .map(|u| (u.ru_nvcsw.max(0) + u.ru_nivcsw.max(0)) as u64)
        .sum()
}

/// `getrusage(who)`.
fn rusage(who: libc::c_int) -> Option<libc::rusage> {
    // SAFETY: `getrusage` writes a whole `rusage` into the zeroed one it is given and reads
    // nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    (unsafe { libc::getrusage(who, &mut usage) } == 0).then_some(usage)
}

/// Run time of `pid`'s live threads, summed from `/proc/<pid>/task/<tid>/schedstat` (its
/// first field: nanoseconds on a CPU); `None` if its threads cannot be listed.
fn threads_seconds(pid: u32) -> Option<f64> {
    threads_schedstat(pid).map(|[run, _, _]| run as f64 / 1e9)
}

/// The sums over `pid`'s live threads of the three fields of `schedstat`: nanoseconds on a
/// CPU, nanoseconds runnable waiting for one, times put on one.
fn threads_schedstat(pid: u32) -> Option<[u64; 3]> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut sums = [0u64; 3];
    for task in tasks.flatten() {
        // A thread that ended since the listing has no time left to count.
        if let Ok(line) = std::fs::read_to_string(task.path().join("schedstat")) {
            for (sum, field) in sums.iter_mut().zip(line.split_whitespace()) {
                *sum += field.parse::<u64>().unwrap_or(0);
            }
        }
    }
    Some(sums)
}

/// The scheduling counts of every live thread of process group `group`.
fn group_scheduling(group: u32) -> Scheduling {
    let group = group.to_string();
    processes()
        .iter()
        .filter(|(_, _, f)| f.get(2) == Some(&group))
        .filter_map(|(pid, _, _)| threads_schedstat(*pid))
        .fold(Scheduling::default(), |acc, [_, waited, runs]| Scheduling {
            waited: acc.waited + waited as f64 / 1e9,
            runs: acc.runs + runs,
        })
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

/// Run time of every process whose process group (field 5) is `group`: its live threads'
/// (see [`threads_seconds`]), else its utime + stime in ticks.
fn group_seconds(group: u32) -> f64 {
    let group = group.to_string();
    processes()
        .iter()
        .filter(|(_, _, f)| f.get(2) == Some(&group))
        .map(|(pid, _, f)| {
            threads_seconds(*pid)
                .unwrap_or_else(|| (field_ticks(f, 11) + field_ticks(f, 12)) / TICKS_PER_SECOND)
        })
        .sum()
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
    fn a_process_group_is_counted_to_the_microsecond() {
        use std::os::unix::process::CommandExt;
        // A busy shell in a process group of its own (its pid is the group's id).
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .process_group(0)
            .spawn()
            .unwrap();
        let group = busy.id();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let before = group_seconds(group);
        std::thread::sleep(std::time::Duration::from_millis(30));
        let spent = group_seconds(group) - before;
        busy.kill().unwrap();
        busy.wait().unwrap();
        assert!(spent > 0.0 && spent < 1.0, "{spent}");
        // Whole ticks would make it a multiple of 10 ms.
        let ticks = spent * TICKS_PER_SECOND;
        assert!(
            (ticks - ticks.round()).abs() > 1e-6,
            "{spent} s: whole ticks"
        );
    }

    #[test]
    fn this_process_is_counted() {
        let clock = CpuClock::start(None);
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        // Tens of milliseconds of work: a reading in whole ticks would often say 0.
        assert!(clock.stop().own > 0.0);
        assert!(clock.stop().server.is_none());
    }
}
