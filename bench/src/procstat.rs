//! What the kernel says a process used: CPU time (utime + stime, all threads) from
//! `/proc/<pid>/stat` and resident memory (VmRSS) from `/proc/<pid>/status`.

use std::sync::OnceLock;

use crate::Result;

#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// User-mode CPU seconds.
    pub user_s: f64,
    /// Kernel-mode CPU seconds.
    pub sys_s: f64,
    /// Resident set, KiB.
    pub rss_kib: u64,
}

impl Sample {
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }

    /// CPU used between `earlier` and `self` (RSS is `self`'s).
    pub fn since(&self, earlier: &Sample) -> Sample {
        Sample {
            user_s: self.user_s - earlier.user_s,
            sys_s: self.sys_s - earlier.sys_s,
            rss_kib: self.rss_kib,
        }
    }

    pub fn add(&self, other: &Sample) -> Sample {
        Sample {
            user_s: self.user_s + other.user_s,
            sys_s: self.sys_s + other.sys_s,
            rss_kib: self.rss_kib + other.rss_kib,
        }
    }
}

fn ticks_per_s() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        // SAFETY: sysconf has no preconditions; it only reads a system constant.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            t as f64
        } else {
            100.0
        }
    })
}

/// Reads one process ("self" or a pid).
pub fn sample(pid: &str) -> Result<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // The command name (field 2) may contain spaces: fields are counted after its ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = fields
        .get(11)
        .and_then(|v| v.parse().ok())
        .ok_or("no utime")?;
    let stime: f64 = fields
        .get(12)
        .and_then(|v| v.parse().ok())
        .ok_or("no stime")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let tck = ticks_per_s();
    Ok(Sample {
        user_s: utime / tck,
        sys_s: stime / tck,
        rss_kib,
    })
}

/// The sum over several processes.
pub fn sample_all(pids: &[String]) -> Result<Sample> {
    let mut total = Sample::default();
    for pid in pids {
        total = total.add(&sample(pid)?);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_self() {
        let s = super::sample("self").expect("own /proc entry");
        assert!(s.rss_kib > 0);
        assert!(s.cpu_s() >= 0.0);
    }
}
