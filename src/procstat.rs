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

/// Field `n` (1-based, as in proc(5)) of a `/proc/<pid>/stat` line, from field 3 on. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn stat_field(stat: &str, n: usize) -> Option<u64> {
    let after = stat.rsplit_once(')')?.1;
    after
        .split_whitespace()
        .nth(n.checked_sub(3)?)?
        .parse()
        .ok()
}

/// The process group of `pid` (field 5 of its stat line); `None` when it is gone.
pub fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    u32::try_from(stat_field(&stat, 5)?).ok()
}

/// Reads `pid` (`None`: this process). `None` when the process is gone or `/proc` is missing.
pub fn usage(pid: Option<u32>) -> Option<Usage> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    let ticks = stat_field(&stat, 14)? + stat_field(&stat, 15)?;
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

    #[test]
    fn fields_count_from_after_the_command_name() {
        let stat = "42 (a) b (c)) S 1 77 77 0 -1 4194560 0 0 0 0 12 34";
        assert_eq!(stat_field(stat, 3), None, "S is not a number");
        assert_eq!(stat_field(stat, 5), Some(77));
        assert_eq!(stat_field(stat, 14), Some(12));
        assert_eq!(stat_field(stat, 15), Some(34));
        assert_eq!(stat_field(stat, 2), None);
        assert_eq!(
            process_group(std::process::id()),
            stat_field(&std::fs::read_to_string("/proc/self/stat").unwrap(), 5).map(|g| g as u32)
        );
    }
}
