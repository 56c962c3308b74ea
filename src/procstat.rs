//! What a process costs, read from `/proc` (Linux): CPU time, resident memory, threads and open
//! files. Benchmarks and the soak test measure the process under test with it.

use std::time::Duration;

/// One reading of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// User + system CPU time so far.
    pub cpu: Duration,
    pub rss_kib: u64,
    pub threads: u64,
    pub open_files: u64,
}

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ; 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

/// Reads `pid` (`None`: this process). `None` when the process is gone or `/proc` is missing.
pub fn usage(pid: Option<u32>) -> Option<Usage> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it start at field 3.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let ticks = field(14)? + field(15)?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let status_value = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    let open_files = std::fs::read_dir(format!("{dir}/fd")).map_or(0, |d| d.count() as u64);
    Some(Usage {
        cpu: Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND),
        rss_kib: status_value("VmRSS:").unwrap_or(0),
        threads: status_value("Threads:").unwrap_or(0),
        open_files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let usage = usage(None).expect("/proc/self");
        assert!(usage.rss_kib > 0);
        assert!(usage.threads >= 1);
        assert!(usage.open_files >= 3);
        assert!(super::usage(Some(u32::MAX)).is_none());
    }
}
