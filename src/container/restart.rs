//! `--restart no|on-failure[:N]|always|unless-stopped`, kept by a detached container's
//! monitor (there is no daemon): when the container exits, the monitor decides from the
//! policy, the exit code and whether a user stopped it ([`Containers::mark_user_stop`],
//! written by `box stop`/`kill` before they signal) whether to run it again, after docker's
//! back-off: 100 ms, doubled after each restart, at most a minute, and back to 100 ms once a
//! run lasted 10 s.
//!
//! With no daemon nothing survives a reboot or a killed monitor, so `always` and
//! `unless-stopped` behave the same: both end for good when the user stops the container.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error(
        "invalid --restart {0:?}: expected no, on-failure[:MAX-RETRIES], always or unless-stopped"
    )]
    Invalid(String),
}

/// A container's restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    #[default]
    No,
    /// Restart after a non-zero exit, at most `max` times (0: no limit).
    OnFailure {
        max: u32,
    },
    Always,
    UnlessStopped,
}

impl std::str::FromStr for Policy {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Policy, PolicyError> {
        let bad = || PolicyError::Invalid(s.to_string());
        match s.split_once(':') {
            None => match s {
                "no" | "" => Ok(Policy::No),
                "on-failure" => Ok(Policy::OnFailure { max: 0 }),
                "always" => Ok(Policy::Always),
                "unless-stopped" => Ok(Policy::UnlessStopped),
                _ => Err(bad()),
            },
            Some(("on-failure", n)) => match n.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(Policy::OnFailure {
                    max: u32::try_from(n).map_err(|_| bad())?,
                }),
                _ => Err(bad()),
            },
            Some(_) => Err(bad()),
        }
    }
}

impl Policy {
    /// Docker's HostConfig.RestartPolicy: the name and the maximum retry count.
    pub fn docker_name(&self) -> (&'static str, u32) {
        match self {
            Policy::No => ("no", 0),
            Policy::OnFailure { max } => ("on-failure", *max),
            Policy::Always => ("always", 0),
            Policy::UnlessStopped => ("unless-stopped", 0),
        }
    }

    /// Whether a container that exited with `code`, restarted `count` times already and not
    /// stopped by a user, runs again.
    pub fn should_restart(&self, code: i32, count: u32, user_stopped: bool) -> bool {
        if user_stopped {
            return false;
        }
        match self {
            Policy::No => false,
            Policy::OnFailure { max } => code != 0 && (*max == 0 || count < *max),
            Policy::Always | Policy::UnlessStopped => true,
        }
    }
}

/// Docker's back-off between restarts.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(60);
/// A run at least this long resets the delay.
const STABLE: Duration = Duration::from_secs(10);

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST }
    }
}

impl Backoff {
    /// The delay before the next start, after a run that lasted `ran`.
    pub fn delay(&mut self, ran: Duration) -> Duration {
        if ran >= STABLE {
            self.next = FIRST;
        }
        let d = self.next;
        self.next = (self.next * 2).min(MAX);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_as_docker_writes_them() {
        assert_eq!("no".parse(), Ok(Policy::No));
        assert_eq!("always".parse(), Ok(Policy::Always));
        assert_eq!("unless-stopped".parse(), Ok(Policy::UnlessStopped));
        assert_eq!("on-failure".parse(), Ok(Policy::OnFailure { max: 0 }));
        assert_eq!("on-failure:3".parse(), Ok(Policy::OnFailure { max: 3 }));
        for bad in ["sometimes", "on-failure:-1", "on-failure:x", "always:2"] {
            assert!(bad.parse::<Policy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_policy_decides_from_the_code_the_count_and_a_user_stop() {
        assert!(!Policy::No.should_restart(1, 0, false));
        let f = Policy::OnFailure { max: 2 };
        assert!(f.should_restart(1, 1, false));
        assert!(!f.should_restart(1, 2, false));
        assert!(!f.should_restart(0, 0, false));
        assert!(Policy::OnFailure { max: 0 }.should_restart(3, 1000, false));
        assert!(Policy::Always.should_restart(0, 5, false));
        assert!(!Policy::Always.should_restart(0, 5, true));
        assert!(!Policy::UnlessStopped.should_restart(1, 0, true));
    }

    #[test]
    fn backoff_doubles_from_100ms_caps_at_a_minute_and_resets_after_10s() {
        let mut b = Backoff::default();
        let short = Duration::from_millis(5);
        let ms: Vec<u128> = (0..4).map(|_| b.delay(short).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800]);
        for _ in 0..20 {
            b.delay(short);
        }
        assert_eq!(b.delay(short), MAX);
        assert_eq!(b.delay(Duration::from_secs(11)), FIRST);
        assert_eq!(b.delay(short), Duration::from_millis(200));
    }
}
