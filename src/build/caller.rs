//! Files the build writes for the user (`-o type=local`, `-o type=tar,dest=`,
//! `--metadata-file`) belong to the user who called boxbuild, as BuildKit's client writes
//! them, whatever the build runs as.
//!
//! The build runs as root of the tool's user namespace. Rootless, that is the caller already.
//! As root it is not: namespace uid 0 is the first id of root's subordinate range, and host
//! root is namespace uid 65536 (see [`crate::run::idmap`]). So these writes are made on a
//! thread whose filesystem ids (`setfsuid`/`setfsgid`, which Linux keeps per thread) are the
//! caller's as seen from the namespace: what it creates is the caller's, and the kernel
//! checks every write against the caller's own permissions (a non-zero fsuid drops the
//! thread's file capabilities), as if the caller had written it.
//!
//! The caller's ids in the namespace are read from the host agent, this process's parent
//! (it stayed outside with the caller's credentials): `/proc/PPID/status` shows them
//! translated into the reader's namespace.

use crate::run::{ToolContext, ToolUserns};

/// The ids files written for the user get, and whether this process must switch to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    switch: bool,
}

impl Caller {
    /// The caller of this build, as seen from where `tool` left the process.
    pub fn of(tool: &ToolContext) -> Caller {
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        let ids = match tool.userns() {
            ToolUserns::Remapped(_) => agent_ids().unwrap_or(me),
            // Not remapped: the process's own ids are the caller's.
            ToolUserns::HostIds | ToolUserns::NotEntered { .. } => me,
        };
        Caller {
            uid: ids.0,
            gid: ids.1,
            switch: ids != me,
        }
    }

    /// This process itself: nothing is switched.
    pub fn this_process() -> Caller {
        Caller {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            switch: false,
        }
    }

    /// Run `f` with the caller's filesystem ids, on a thread of its own (so no other work of
    /// this process ever runs with them, or with the capabilities they drop).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        if !self.switch {
            return f();
        }
        let (uid, gid) = (self.uid, self.gid);
        std::thread::scope(|s| {
            s.spawn(move || {
                // Group first: the order set*id calls use. Both only fail for an id the
                // namespace does not map, which agent_ids never returns.
                nix::unistd::setfsgid(gid.into());
                nix::unistd::setfsuid(uid.into());
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Caller {
    /// Connect to the Unix socket `path` as the caller: the socket file's permissions are
    /// checked against the caller, and the peer (an SSH agent checking `SO_PEERCRED`) sees the
    /// caller's uid. When this process is not the caller, the connection is made on a thread
    /// of its own whose real, effective and saved ids are switched to the caller's; Linux keeps
    /// credentials per thread, and that thread (which thereby loses every capability) ends
    /// right after.
    pub fn connect(
        &self,
        path: &std::path::Path,
    ) -> std::io::Result<std::os::unix::net::UnixStream> {
        if !self.switch {
            return std::os::unix::net::UnixStream::connect(path);
        }
        let (uid, gid) = (self.uid, self.gid);
        std::thread::scope(|s| {
            s.spawn(move || {
                // The raw system calls, not libc's setresuid(), which changes every thread of
                // the process (glibc broadcasts set*id calls to keep POSIX semantics).
                // SAFETY: plain system calls with integer arguments and no memory access;
                // they affect only the calling thread, which does nothing else afterwards but
                // connect and exit.
                let rc = unsafe {
                    if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
                        -1
                    } else {
                        libc::syscall(libc::SYS_setresuid, uid, uid, uid)
                    }
                };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                std::os::unix::net::UnixStream::connect(path)
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

/// The effective uid and gid of the parent (the host agent), translated into this namespace;
/// None when the parent is not the agent any more or its ids are not mapped here.
fn agent_ids() -> Option<(u32, u32)> {
    let ppid = nix::unistd::getppid().as_raw();
    if ppid <= 1 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{ppid}/status")).ok()?;
    let ids = parse_status(&status)?;
    let overflow = |f: &str| {
        std::fs::read_to_string(f)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(65534)
    };
    // An id the namespace does not map shows as the overflow id: no owner to give.
    if ids.0 == overflow("/proc/sys/kernel/overflowuid")
        || ids.1 == overflow("/proc/sys/kernel/overflowgid")
    {
        return None;
    }
    Some(ids)
}

/// The effective ids (second field) of `Uid:` and `Gid:` in a `/proc/PID/status`.
fn parse_status(status: &str) -> Option<(u32, u32)> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok())
    };
    Some((field("Uid:")?, field("Gid:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_gives_the_effective_ids() {
        let s = "Name:\tboxbuild\nUid:\t1000\t1001\t1002\t1003\nGid:\t50\t51\t52\t53\n";
        assert_eq!(parse_status(s), Some((1001, 51)));
        assert_eq!(parse_status("Uid:\t1\t2\n"), None);
    }

    #[test]
    fn a_process_that_did_not_enter_writes_as_itself() {
        let c = Caller::of(&ToolContext::not_entered("test"));
        assert!(!c.switch);
        assert_eq!(c.run(|| 7), 7);
    }
}
