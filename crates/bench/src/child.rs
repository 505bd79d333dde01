//! Measurements run in a child process: the bench re-runs itself with the hidden option
//! `--child TASK:key=value,...`, so that a measurement has a process of its own (peak RSS
//! from a fresh `VmHWM`, instruction counts under valgrind, one outbox worker per process).
//! A child prints one JSON line on stdout (`CPH-CHILD {...}`) and exits 0, or prints its
//! error on stderr and exits 2.

use std::collections::BTreeMap;
use std::process::{Command, ExitCode, Output, Stdio};

use serde_json::Value;

use crate::{Context, Result};

/// The prefix of a child's result line.
const RESULT: &str = "CPH-CHILD ";

/// A child task and its parameters: `memory:count=1000000,capacity=0`.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// The task's name.
    pub task: String,
    /// Its parameters.
    pub params: BTreeMap<String, String>,
}

impl Spec {
    /// Parses `task:key=value,key=value`.
    pub(crate) fn parse(spec: &str) -> Result<Spec> {
        let (task, rest) = spec.split_once(':').unwrap_or((spec, ""));
        let mut params = BTreeMap::new();
        for pair in rest.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("--child: `{pair}` is not key=value"))?;
            params.insert(k.to_owned(), v.to_owned());
        }
        Ok(Spec {
            task: task.to_owned(),
            params,
        })
    }

    /// The `--child` value.
    pub(crate) fn render(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}:{}", self.task, params.join(","))
    }

    /// A number parameter.
    pub(crate) fn number(&self, key: &str) -> Result<usize> {
        self.params
            .get(key)
            .ok_or_else(|| format!("--child {}: no `{key}`", self.task))?
            .parse()
            .with_context(|| format!("--child {}: `{key}`", self.task))
    }

    /// A text parameter.
    pub(crate) fn text(&self, key: &str) -> Result<&str> {
        self.params
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("--child {}: no `{key}`", self.task).into())
    }
}

/// A spec from its task and pairs.
pub(crate) fn spec(task: &str, params: &[(&str, String)]) -> Spec {
    Spec {
        task: task.to_owned(),
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }
}

/// Runs the child task named by `--child` (in the child process).
pub(crate) fn main(spec: &str) -> ExitCode {
    let outcome = Spec::parse(spec).and_then(|spec| match spec.task.as_str() {
        "memory" => crate::memory_bench::child(&spec),
        "saves" => crate::instructions::child(&spec),
        "purges" => crate::purge_instructions::child(&spec),
        "outbox" => crate::outbox_bench::child(&spec),
        other => Err(format!("--child: unknown task `{other}`").into()),
    });
    match outcome {
        Ok(value) => {
            println!("{RESULT}{value}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cache-purge-bench --child: {e}");
            ExitCode::from(2)
        }
    }
}

/// This executable, to run a child with.
pub(crate) fn exe() -> Result<std::path::PathBuf> {
    std::env::current_exe().context("finding this executable (to run a child)")
}

/// A command running `spec` in a child (of this executable), optionally under `wrapper`
/// (`valgrind --tool=callgrind ...`).
pub(crate) fn command(spec: &Spec, wrapper: &[String]) -> Result<Command> {
    let exe = exe()?;
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.arg("--child").arg(spec.render());
    cmd.stdin(Stdio::null());
    Ok(cmd)
}

/// Runs `spec` in a child to its end and returns its result.
pub(crate) fn run(spec: &Spec, wrapper: &[String]) -> Result<Value> {
    let out = command(spec, wrapper)?
        .output()
        .with_context(|| format!("running the child {}", spec.render()))?;
    result_of(spec, &out)
}

/// The result line of a finished child.
pub(crate) fn result_of(spec: &Spec, out: &Output) -> Result<Value> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT))
        .ok_or_else(|| {
            format!(
                "the child {} failed ({}): {}",
                spec.render(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
    serde_json::from_str(line).context("the child's result")
}

/// `VmRSS` and `VmHWM` of this process, in bytes.
pub(crate) fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip() {
        let s = Spec::parse("memory:count=10,policy=spill").unwrap();
        assert_eq!(s.task, "memory");
        assert_eq!(s.number("count").unwrap(), 10);
        assert_eq!(s.text("policy").unwrap(), "spill");
        assert_eq!(Spec::parse(&s.render()).unwrap().params, s.params);
        assert!(rss().0 > 0);
    }
}
