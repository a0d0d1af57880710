//! What `/proc` says about a process: resident memory (`VmRSS` of `/proc/PID/status`), CPU
//! time (`utime + stime` of `/proc/PID/stat`) and bytes sent to storage (`write_bytes` of
//! `/proc/PID/io`), for the server (`--pid`) and the bench.

use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

/// `VmRSS` of process `pid` in KiB (`None` = this process).
pub fn rss_kib(pid: Option<u32>) -> Result<u64> {
    let path = proc_path(pid, "status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in {path}"))
}

/// User + system CPU time of `pid` in seconds (`None` = this process).
pub fn cpu_seconds(pid: Option<u32>) -> Result<f64> {
    let path = proc_path(pid, "stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unexpected {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| anyhow!("unexpected {path}"))
    };
    Ok((ticks(14)? + ticks(15)?) / clock_ticks_per_second())
}

/// Bytes process `pid` caused to be sent to storage (`write_bytes` of `/proc/PID/io`): for
/// a database server, its log and data files as the disk sees them. Readable for processes
/// of the same user.
pub fn written_bytes(pid: Option<u32>) -> Result<u64> {
    let path = proc_path(pid, "io");
    let io = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no write_bytes in {path}"))
}

/// How many files this process may open (the soft "Max open files" of `/proc/self/limits`,
/// what `ulimit -n` shows); `u64::MAX` when unlimited.
pub fn open_files_limit() -> Result<u64> {
    let path = "/proc/self/limits";
    let limits = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    parse_open_files_limit(&limits).ok_or_else(|| anyhow!("no \"Max open files\" in {path}"))
}

fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux configuration that matters here.
fn clock_ticks_per_second() -> f64 {
    100.0
}

fn proc_path(pid: Option<u32>, file: &str) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}/{file}"),
        None => format!("/proc/self/{file}"),
    }
}

/// CPU use of the server and of the bench over a measured window.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    /// Server CPU over the window, in % of one core (200 % = both cores of a 2-core box).
    pub server_percent: Option<f64>,
    pub bench_percent: f64,
    /// Server resident memory at the end of the window, MiB.
    pub server_rss_mib: Option<f64>,
    /// What the server sent to storage over the window, MiB (`/proc/PID/io`); for
    /// PostgreSQL this leaves out the database's own processes.
    pub server_written_mib: Option<f64>,
    pub cores: usize,
}

/// Starts measuring CPU use; [`CpuMeter::stop`] reads it.
pub struct CpuMeter {
    pid: Option<u32>,
    at: Instant,
    server: Option<f64>,
    written: Option<u64>,
    bench: f64,
}

impl CpuMeter {
    pub fn start(pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            pid,
            at: Instant::now(),
            server: pid.and_then(|p| cpu_seconds(Some(p)).ok()),
            written: pid.and_then(|p| written_bytes(Some(p)).ok()),
            bench: cpu_seconds(None).unwrap_or(0.0),
        }
    }

    pub fn stop(&self) -> CpuUse {
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        let server = match (self.pid, self.server) {
            (Some(p), Some(before)) => cpu_seconds(Some(p)).ok().map(|now| now - before),
            _ => None,
        };
        let bench = cpu_seconds(None).unwrap_or(0.0) - self.bench;
        CpuUse {
            server_percent: server.map(|s| round1(100.0 * s / wall)),
            bench_percent: round1(100.0 * bench / wall),
            server_rss_mib: self
                .pid
                .and_then(|p| rss_kib(Some(p)).ok())
                .map(|k| round1(k as f64 / 1024.0)),
            server_written_mib: match (self.pid, self.written) {
                (Some(p), Some(before)) => written_bytes(Some(p))
                    .ok()
                    .map(|now| round1(now.saturating_sub(before) as f64 / 1048576.0)),
                _ => None,
            },
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_soft_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             95402                95402                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), Some(u64::MAX));
        assert_eq!(
            parse_open_files_limit("Max processes 1 1 processes\n"),
            None
        );
        assert!(open_files_limit().unwrap() > 0);
    }

    #[test]
    fn reads_this_process() {
        assert!(rss_kib(None).unwrap() > 0);
        assert!(cpu_seconds(None).unwrap() >= 0.0);
        assert!(rss_kib(Some(u32::MAX)).is_err());
        let before = written_bytes(None).unwrap();
        // In the crate directory: a temporary directory may be in memory (tmpfs), never stored.
        let mut file = tempfile::NamedTempFile::new_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        std::io::Write::write_all(&mut file, &[7u8; 1 << 20]).unwrap();
        file.as_file().sync_all().unwrap();
        assert!(written_bytes(None).unwrap() >= before + (1 << 20));
    }
}
