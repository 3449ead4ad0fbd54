//! The container's /dev built ahead by the helper as a detached mount tree, with raw system
//! calls only (the helper shares the tool's memory).

use std::os::fd::RawFd;

use super::raw;

/// The device nodes of the host bound into the container's /dev, with their host paths: the
/// same as [`crate::run::rootfs::DEVICES`] (a test holds them equal).
const DEV_NODES: [(&std::ffi::CStr, &std::ffi::CStr); 6] = [
    (c"null", c"/dev/null"),
    (c"zero", c"/dev/zero"),
    (c"full", c"/dev/full"),
    (c"random", c"/dev/random"),
    (c"urandom", c"/dev/urandom"),
    (c"tty", c"/dev/tty"),
];

/// The symlinks of the container's /dev: name and target, as [`crate::run::rootfs::DEV_SYMLINKS`]
/// (a test holds them equal).
const DEV_LINKS: [(&std::ffi::CStr, &std::ffi::CStr); 6] = [
    (c"ptmx", c"pts/ptmx"),
    (c"fd", c"/proc/self/fd"),
    (c"stdin", c"/proc/self/fd/0"),
    (c"stdout", c"/proc/self/fd/1"),
    (c"stderr", c"/proc/self/fd/2"),
    (c"core", c"/proc/kcore"),
];

/// The container's /dev as a detached mount tree, the same tree `rootfs::plan` builds in pid 1
/// when there is none: a tmpfs (`mode=755,size=65536k`, nosuid, nodev, strictatime) with the
/// host's harmless device nodes bound in (nosuid, noexec), a new devpts instance, a tmpfs
/// /dev/shm of `shm` bytes, an mqueue of this process's (the container's) IPC namespace, and
/// the usual symlinks. Nothing of the image is involved: every path is inside the fresh tmpfs.
/// Returns the tree's descriptor, or -1 (the tree closed, so pid 1 builds /dev itself).
pub(super) fn dev_tree(shm: &std::ffi::CStr) -> RawFd {
    use raw::{call, call6};
    const NOSUID: u32 = 0x2;
    const NODEV: u32 = 0x4;
    const NOEXEC: u32 = 0x8;
    const STRICTATIME: u32 = 0x20;
    let dev = new_mount(
        c"tmpfs",
        &[
            (c"source", Some(c"tmpfs")),
            (c"mode", Some(c"755")),
            (c"size", Some(c"65536k")),
        ],
        NOSUID | NODEV | STRICTATIME,
    );
    if dev < 0 {
        return -1;
    }
    let fail = || {
        // SAFETY: closes the tree made above, which nothing else holds.
        unsafe { call(libc::SYS_close, [dev as usize, 0, 0]) };
        -1
    };
    let at = |name: &std::ffi::CStr| [dev as usize, name.as_ptr() as usize];
    for (name, host) in DEV_NODES {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let [d, n] = at(name);
        // SAFETY: a NUL-terminated static name inside the fresh tmpfs.
        let target = unsafe {
            call6(
                libc::SYS_openat,
                [d, n, (flags | libc::O_CLOEXEC) as usize, 0o644, 0, 0],
            )
        };
        if target < 0 {
            return fail();
        }
        let bound = bind_node(host, target as RawFd, NOSUID | NOEXEC);
        // SAFETY: closes the descriptor opened above.
        unsafe { call(libc::SYS_close, [target as usize, 0, 0]) };
        if !bound {
            return fail();
        }
    }
    // Each with the source name pid 1's mount(2) gives it (what mountinfo, mount and df show).
    let devpts = [
        (c"source", Some(c"devpts")),
        (c"newinstance", None),
        (c"ptmxmode", Some(c"0666")),
        (c"mode", Some(c"0620")),
    ];
    let shm = [
        (c"source", Some(c"shm")),
        (c"mode", Some(c"1777")),
        (c"size", Some(shm)),
    ];
    let mqueue = [(c"source", Some(c"mqueue"))];
    let subs: [(&std::ffi::CStr, &std::ffi::CStr, &[Param], u32); 3] = [
        (c"pts", c"devpts", &devpts, NOSUID | NOEXEC),
        (c"shm", c"tmpfs", &shm, NOSUID | NODEV | NOEXEC),
        (c"mqueue", c"mqueue", &mqueue, NOSUID | NODEV | NOEXEC),
    ];
    for (name, fstype, params, attrs) in subs {
        let [d, n] = at(name);
        // SAFETY: a NUL-terminated static name inside the fresh tmpfs.
        if unsafe { call(libc::SYS_mkdirat, [d, n, 0o755]) } < 0 {
            return fail();
        }
        let m = new_mount(fstype, params, attrs);
        if m < 0 || !move_onto(m, dev, name) {
            return fail();
        }
    }
    for (name, target) in DEV_LINKS {
        let [d, n] = at(name);
        // SAFETY: NUL-terminated static strings; the link goes inside the fresh tmpfs.
        if unsafe { call(libc::SYS_symlinkat, [target.as_ptr() as usize, d, n]) } < 0 {
            return fail();
        }
    }
    dev
}

/// One `fsconfig` parameter: a string, or a flag (`None`).
type Param<'a> = (&'a std::ffi::CStr, Option<&'a std::ffi::CStr>);

/// A new detached mount of `fstype` with `params` and the `MOUNT_ATTR_*` bits `attrs`
/// (`fsopen`, `fsconfig`, `fsmount`); -1 on failure.
fn new_mount(fstype: &std::ffi::CStr, params: &[Param], attrs: u32) -> RawFd {
    use raw::{call, call6};
    const CLOEXEC: usize = 1; // FSOPEN_CLOEXEC, FSMOUNT_CLOEXEC
    const SET_FLAG: usize = 0;
    const SET_STRING: usize = 1;
    const CMD_CREATE: usize = 6;
    // SAFETY: a NUL-terminated static name.
    let ctx = unsafe { call(libc::SYS_fsopen, [fstype.as_ptr() as usize, CLOEXEC, 0]) };
    if ctx < 0 {
        return -1;
    }
    let c = ctx as usize;
    let mut ok = params.iter().all(|(k, v)| {
        let (cmd, v) = match v {
            Some(v) => (SET_STRING, v.as_ptr() as usize),
            None => (SET_FLAG, 0),
        };
        // SAFETY: NUL-terminated strings (or null for a flag) that outlive the call.
        unsafe { call6(libc::SYS_fsconfig, [c, cmd, k.as_ptr() as usize, v, 0, 0]) >= 0 }
    });
    // SAFETY: no pointers.
    ok = ok && unsafe { call6(libc::SYS_fsconfig, [c, CMD_CREATE, 0, 0, 0, 0]) } >= 0;
    let m = if ok {
        // SAFETY: no pointers; the result is a new descriptor of this process's.
        unsafe { call(libc::SYS_fsmount, [c, CLOEXEC, attrs as usize]) }
    } else {
        -1
    };
    // SAFETY: closes the context made above.
    unsafe { call(libc::SYS_close, [c, 0, 0]) };
    m as RawFd
}

/// Move the detached mount `m` onto `name` in the tree `dir` and close `m`.
fn move_onto(m: RawFd, dir: RawFd, name: &std::ffi::CStr) -> bool {
    use raw::{call, call6};
    const F_EMPTY_PATH: usize = 0x4;
    let args = [
        m as usize,
        c"".as_ptr() as usize,
        dir as usize,
        name.as_ptr() as usize,
        F_EMPTY_PATH,
        0,
    ];
    // SAFETY: NUL-terminated static strings; descriptors of this process's.
    let r = unsafe { call6(libc::SYS_move_mount, args) };
    // SAFETY: closes `m`, which the caller gave up.
    unsafe { call(libc::SYS_close, [m as usize, 0, 0]) };
    r >= 0
}

/// Bind the host's device node `host` onto the file `target` (a descriptor), with the
/// `MOUNT_ATTR_*` bits `attrs` set on the bind.
fn bind_node(host: &std::ffi::CStr, target: RawFd, attrs: u32) -> bool {
    use raw::{call, call6};
    const OPEN_TREE_CLONE: usize = 1;
    const EMPTY_PATH: usize = libc::AT_EMPTY_PATH as usize;
    const F_EMPTY_PATH: usize = 0x4;
    const T_EMPTY_PATH: usize = 0x40;
    let at = libc::AT_FDCWD as usize;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as usize;
    // SAFETY: a NUL-terminated static path; the result is a new descriptor of this process's.
    let t = unsafe { call(libc::SYS_open_tree, [at, host.as_ptr() as usize, flags]) };
    if t < 0 {
        return false;
    }
    #[repr(C)]
    struct MountAttr {
        set: u64,
        clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        set: u64::from(attrs),
        clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"".as_ptr() as usize;
    let t = t as usize;
    let size = std::mem::size_of::<MountAttr>();
    // SAFETY: `attr` is a live mount_attr of the size given; the path is "".
    let set = unsafe {
        call6(
            libc::SYS_mount_setattr,
            [t, empty, EMPTY_PATH, (&raw const attr) as usize, size, 0],
        )
    };
    let moved = set >= 0 && {
        let args = [
            t,
            empty,
            target as usize,
            empty,
            F_EMPTY_PATH | T_EMPTY_PATH,
            0,
        ];
        // SAFETY: descriptors of this process's, empty paths.
        unsafe { call6(libc::SYS_move_mount, args) >= 0 }
    };
    // SAFETY: closes the bind's descriptor (attached, or dissolved if not).
    unsafe { call(libc::SYS_close, [t, 0, 0]) };
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helpers_dev_tree_has_the_same_device_nodes_and_symlinks_as_pid_1s() {
        let names: Vec<String> = DEV_NODES
            .iter()
            .map(|(n, _)| n.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, crate::run::rootfs::DEVICES);
        for (name, host) in DEV_NODES {
            let want = format!("/dev/{}", name.to_string_lossy());
            assert_eq!(host.to_string_lossy(), want);
        }
        let links: Vec<(String, String)> = DEV_LINKS
            .iter()
            .map(|(n, t)| (n.to_string_lossy().into(), t.to_string_lossy().into()))
            .collect();
        let want: Vec<(String, String)> = crate::run::rootfs::DEV_SYMLINKS
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(links, want);
    }
}
