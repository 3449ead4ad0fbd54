//! Whether this kernel can run another architecture's programs: a foreign-platform RUN step
//! (or `boxrun --platform`) execs the image's ELF binaries, which the kernel hands to an
//! emulator only if a binfmt_misc entry matches their header (QEMU user emulation, registered
//! by the qemu-user-static package). [`check`] looks for such an entry before any work, so a
//! build fails up front with what to install instead of with `exec format error` mid-way.
//!
//! The entries are read from `/proc/sys/fs/binfmt_misc/*` (one file each: `enabled`,
//! `interpreter`, `flags`, `offset`, `magic`, `mask`) and matched against the ELF header a
//! static executable of the architecture has. An entry also needs the F ("fix binary") flag:
//! without it the kernel opens the interpreter by path at exec time, inside the container's
//! root, where it does not exist.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::image::Platform;

/// Where binfmt_misc is mounted.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Test-only: read the entries from this directory instead of [`BINFMT_DIR`], so a test can
/// show a missing entry without disabling the real one that parallel tests use.
pub const TEST_DIR_ENV: &str = "BOX_TEST_BINFMT_DIR";

/// A platform whose programs this kernel cannot run, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot run {platform} programs on this {host} host: {why}.\n  \
     Install QEMU user emulation (Debian, Ubuntu and Fedora: the qemu-user-static package) and \
     register its binfmt_misc entries as root: scripts/host-setup.sh from boxkit's source \
     tree, or `systemctl restart systemd-binfmt`"
)]
pub struct Missing {
    /// The platform asked for, e.g. `linux/arm64`.
    pub platform: String,
    /// The host's platform.
    pub host: String,
    pub why: Why,
}

/// Why no entry serves the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// binfmt_misc is not mounted (no `register` file in the directory).
    NotMounted(PathBuf),
    /// binfmt_misc as a whole is switched off (`status` says disabled).
    AllDisabled(PathBuf),
    /// No entry matches the architecture's ELF header.
    NoEntry { dir: PathBuf, qemu: String },
    /// Matching entries exist, but none is enabled.
    Disabled(PathBuf),
    /// A matching entry lacks the F flag, so its interpreter is not found inside a container.
    NoFixBinary { entry: PathBuf, interpreter: String },
    /// boxkit does not know the architecture's ELF header.
    UnknownArch(String),
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::NotMounted(d) => write!(
                f,
                "binfmt_misc is not mounted at {} (as root: mount -t binfmt_misc binfmt_misc {0})",
                d.display()
            ),
            Why::AllDisabled(d) => write!(
                f,
                "binfmt_misc is disabled ({}/status; as root: echo 1 > {0}/status)",
                d.display()
            ),
            Why::NoEntry { dir, qemu } => write!(
                f,
                "no binfmt_misc entry in {} runs its binaries (an entry like {qemu})",
                dir.display()
            ),
            Why::Disabled(e) => write!(
                f,
                "its binfmt_misc entry {} is disabled (as root: echo 1 > {0})",
                e.display()
            ),
            Why::NoFixBinary { entry, interpreter } => write!(
                f,
                "its binfmt_misc entry {} has no F (fix binary) flag, so its interpreter \
                 {interpreter} cannot be found inside a container; register it again with F",
                entry.display()
            ),
            Why::UnknownArch(a) => write!(f, "boxkit does not know the binaries of {a:?}"),
        }
    }
}

/// Whether the host can run `platform`'s programs: natively, or through an enabled binfmt_misc
/// entry with the F flag. Reads [`BINFMT_DIR`] (or `$BOX_TEST_BINFMT_DIR`).
pub fn check(platform: &Platform) -> Result<(), Missing> {
    let dir = std::env::var_os(TEST_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BINFMT_DIR));
    check_in(&dir, platform)
}

/// [`check`] with the entries read from `dir`.
pub fn check_in(dir: &Path, platform: &Platform) -> Result<(), Missing> {
    let host = Platform::host();
    if native(&host, platform) {
        return Ok(());
    }
    let missing = |why| Missing {
        platform: platform.to_string(),
        host: format!("{}/{}", host.os, host.arch),
        why,
    };
    let Some(elf) = Elf::of(&platform.arch) else {
        return Err(missing(Why::UnknownArch(platform.arch.clone())));
    };
    if !dir.join("register").exists() {
        return Err(missing(Why::NotMounted(dir.to_path_buf())));
    }
    if read(&dir.join("status")).is_some_and(|s| s.trim() == "disabled") {
        return Err(missing(Why::AllDisabled(dir.to_path_buf())));
    }
    let mut found: Option<Why> = None;
    let entries = std::fs::read_dir(dir).map_err(|_| missing(Why::NotMounted(dir.into())))?;
    for ent in entries.flatten() {
        let name = ent.file_name();
        if name == "register" || name == "status" {
            continue;
        }
        let Some(e) = read(&ent.path()).and_then(|t| Entry::parse(&t)) else {
            continue;
        };
        if !elf.headers().iter().any(|h| e.matches(h)) {
            continue;
        }
        match (e.enabled, e.flags.contains('F')) {
            (true, true) => return Ok(()),
            (true, false) => {
                found = Some(Why::NoFixBinary {
                    entry: ent.path(),
                    interpreter: e.interpreter,
                })
            }
            (false, _) if found.is_none() => found = Some(Why::Disabled(ent.path())),
            _ => {}
        }
    }
    Err(missing(found.unwrap_or(Why::NoEntry {
        dir: dir.to_path_buf(),
        qemu: format!("qemu-{}", elf.qemu),
    })))
}

/// Architectures the host runs without help: its own, and 32-bit x86 on x86-64.
fn native(host: &Platform, p: &Platform) -> bool {
    p.os == host.os && (p.arch == host.arch || (host.arch == "amd64" && p.arch == "386"))
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// The ELF header fields that tell one architecture's executables from another's.
struct Elf {
    class64: bool,
    big_endian: bool,
    machine: u16,
    /// QEMU's name for it, for the message.
    qemu: &'static str,
}

impl Elf {
    fn of(arch: &str) -> Option<Elf> {
        let (class64, big_endian, machine, qemu) = match arch {
            "amd64" => (true, false, 0x3e, "x86_64"),
            "386" => (false, false, 0x03, "i386"),
            "arm64" => (true, false, 0xb7, "aarch64"),
            "arm" => (false, false, 0x28, "arm"),
            "ppc64le" => (true, false, 0x15, "ppc64le"),
            "s390x" => (true, true, 0x16, "s390x"),
            "riscv64" => (true, false, 0xf3, "riscv64"),
            "mips64le" => (true, false, 0x08, "mips64el"),
            "loong64" => (true, false, 0x102, "loongarch64"),
            _ => return None,
        };
        Some(Elf {
            class64,
            big_endian,
            machine,
            qemu,
        })
    }

    /// The first 20 bytes of an executable (ET_EXEC) and of a PIE (ET_DYN).
    fn headers(&self) -> [[u8; 20]; 2] {
        [2u16, 3].map(|e_type| {
            let mut h = [0u8; 20];
            h[..4].copy_from_slice(b"\x7fELF");
            h[4] = if self.class64 { 2 } else { 1 };
            h[5] = if self.big_endian { 2 } else { 1 };
            h[6] = 1;
            let (t, m) = if self.big_endian {
                (e_type.to_be_bytes(), self.machine.to_be_bytes())
            } else {
                (e_type.to_le_bytes(), self.machine.to_le_bytes())
            };
            h[16..18].copy_from_slice(&t);
            h[18..20].copy_from_slice(&m);
            h
        })
    }
}

/// One binfmt_misc entry file, as the kernel shows it.
#[derive(Debug)]
struct Entry {
    enabled: bool,
    interpreter: String,
    flags: String,
    offset: usize,
    magic: Vec<u8>,
    mask: Option<Vec<u8>>,
}

impl Entry {
    /// None for an extension entry (matched by file name, never an ELF header) or garbage.
    fn parse(text: &str) -> Option<Entry> {
        let mut lines = text.lines();
        let enabled = lines.next()? == "enabled";
        let mut e = Entry {
            enabled,
            interpreter: String::new(),
            flags: String::new(),
            offset: 0,
            magic: vec![],
            mask: None,
        };
        for l in lines {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            match k {
                "interpreter" => e.interpreter = v.to_string(),
                "flags:" => e.flags = v.to_string(),
                "offset" => e.offset = v.parse().ok()?,
                "magic" => e.magic = hex::decode(v).ok()?,
                "mask" => e.mask = Some(hex::decode(v).ok()?),
                _ => {}
            }
        }
        (!e.magic.is_empty()).then_some(e)
    }

    /// The kernel's test: every byte of the header at `offset`, masked, equals the magic.
    fn matches(&self, header: &[u8]) -> bool {
        let Some(data) = header.get(self.offset..self.offset + self.magic.len()) else {
            return false;
        };
        data.iter().zip(&self.magic).enumerate().all(|(i, (d, m))| {
            let mask = self
                .mask
                .as_ref()
                .and_then(|k| k.get(i))
                .copied()
                .unwrap_or(0xff);
            (d ^ m) & mask == 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n\
        flags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn dir_with(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("register"), "").unwrap();
        std::fs::write(d.path().join("status"), "enabled\n").unwrap();
        for (name, text) in entries {
            std::fs::write(d.path().join(name), text).unwrap();
        }
        d
    }

    fn arm64() -> Platform {
        Platform::parse("linux/arm64").unwrap()
    }

    #[test]
    fn the_host_platform_needs_no_entry() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(check_in(d.path(), &Platform::host()), Ok(()));
    }

    #[test]
    fn qemus_aarch64_entry_serves_arm64_and_not_riscv64() {
        if Platform::host().arch == "arm64" {
            return;
        }
        let d = dir_with(&[("qemu-aarch64", AARCH64)]);
        assert_eq!(check_in(d.path(), &arm64()), Ok(()));
        let err = check_in(d.path(), &Platform::parse("linux/riscv64").unwrap()).unwrap_err();
        assert!(matches!(err.why, Why::NoEntry { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("linux/riscv64") && text.contains("qemu-riscv64"),
            "{text}"
        );
        assert!(
            text.contains("qemu-user-static") && text.contains("host-setup.sh"),
            "{text}"
        );
    }

    #[test]
    fn a_disabled_entry_an_entry_without_f_and_no_mount_are_told_apart() {
        if Platform::host().arch == "arm64" {
            return;
        }
        let off = AARCH64.replacen("enabled", "disabled", 1);
        let d = dir_with(&[("qemu-aarch64", &off)]);
        assert!(matches!(
            check_in(d.path(), &arm64()).unwrap_err().why,
            Why::Disabled(_)
        ));
        let no_f = AARCH64.replace("flags: POF", "flags: PO");
        let d = dir_with(&[("qemu-aarch64", &no_f)]);
        let why = check_in(d.path(), &arm64()).unwrap_err().why;
        assert!(matches!(why, Why::NoFixBinary { .. }), "{why}");
        let empty = tempfile::tempdir().unwrap();
        let why = check_in(empty.path(), &arm64()).unwrap_err().why;
        assert!(matches!(why, Why::NotMounted(_)), "{why}");
        let d = dir_with(&[("qemu-aarch64", AARCH64)]);
        std::fs::write(d.path().join("status"), "disabled\n").unwrap();
        let why = check_in(d.path(), &arm64()).unwrap_err().why;
        assert!(matches!(why, Why::AllDisabled(_)), "{why}");
    }

    #[test]
    fn extension_entries_and_other_magics_do_not_count() {
        if Platform::host().arch == "arm64" {
            return;
        }
        let ext = "enabled\ninterpreter /usr/bin/python3\nflags: \nextension .py\n";
        let arm = AARCH64.replace("b700", "2800").replace("0201", "0101");
        let d = dir_with(&[("python", ext), ("qemu-arm", &arm)]);
        let why = check_in(d.path(), &arm64()).unwrap_err().why;
        assert!(matches!(why, Why::NoEntry { .. }), "{why}");
        assert_eq!(
            check_in(d.path(), &Platform::parse("linux/arm/v7").unwrap()),
            Ok(())
        );
    }
}
