//! The notify filter and argument decoding, without a kernel.

use super::*;

#[test]
fn the_filter_notifies_exactly_the_native_chown_calls() {
    let p = program();
    let run = |arch: u32, nr: u32| -> u32 {
        // A tiny interpreter for the instructions the program uses.
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            match u32::from(i.code) {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    acc = if i.k == 4 { arch } else { nr };
                    pc += 1;
                }
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                    pc += 1 + usize::from(if acc == i.k { i.jt } else { i.jf });
                }
                _ => return i.k,
            }
        }
    };
    for (nr, _) in CALLS {
        assert_eq!(run(ARCH, nr), libc::SECCOMP_RET_USER_NOTIF, "{nr}");
        assert_eq!(run(0x4000_0003, nr), libc::SECCOMP_RET_ALLOW, "{nr}");
    }
    for nr in [0, 1, 59, 90, 91, 95, 259, 261] {
        assert_eq!(run(ARCH, nr), libc::SECCOMP_RET_ALLOW, "{nr}");
    }
}

#[test]
fn arguments_decode_with_minus_one_as_keep() {
    let m1 = u64::from(u32::MAX);
    let a = decode(Call::Chown, &[0x1000, 1234, m1, 0, 0, 0]).unwrap();
    assert_eq!(
        (a.uid, a.gid, a.follow, a.at),
        (Some(1234), None, true, None)
    );
    let a = decode(Call::Lchown, &[0x1000, 1, 2, 0, 0, 0]).unwrap();
    assert!(!a.follow);
    let at = libc::AT_FDCWD as u32 as u64;
    let a = decode(
        Call::Fchownat,
        &[at, 0x1000, 5, 6, libc::AT_SYMLINK_NOFOLLOW as u64, 0],
    )
    .unwrap();
    assert_eq!((a.at, a.follow), (None, false));
    assert!(decode(Call::Fchownat, &[3, 0x1000, 5, 6, 0x8000, 0]).is_err());
}
