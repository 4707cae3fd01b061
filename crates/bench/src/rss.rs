//! Resident memory of this process, read from `/proc/self/status` as the peers do
//! (`common.rss_kib`, `common.reset_peak_rss`).

use std::fs;

/// `(VmRSS, VmHWM)` in KiB, or `None` where `/proc` is not available.
pub fn rss_kib() -> Option<(u64, u64)> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the peak (VmHWM) to the current RSS (`echo 5 > /proc/self/clear_refs`).
/// True if it worked.
pub fn reset_peak() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The CPUs this process may run on (`Cpus_allowed_list`, e.g. `0-1` or `0`).
pub fn affinity() -> Vec<usize> {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    let Some(list) = status
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list:"))
        .and_then(|l| l.split_whitespace().nth(1))
    else {
        return Vec::new();
    };
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    cpus.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = part.parse() {
                    cpus.push(a);
                }
            }
        }
    }
    cpus
}
