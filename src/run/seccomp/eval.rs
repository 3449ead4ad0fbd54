//! A classic-BPF evaluator, as the kernel runs seccomp filters: what a compiled [`Filter`]
//! decides for a call, without installing it.

/// The part of `struct seccomp_data` filters look at (the instruction pointer never matters).
#[derive(Debug, Clone, Copy)]
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub args: [u64; 6],
}

impl Data {
    fn word(&self, off: u32) -> u32 {
        match off {
            0 => self.nr,
            4 => self.arch,
            8 | 12 => 0,
            o if (16..64).contains(&o) && o % 4 == 0 => {
                let a = self.args[((o - 16) / 8) as usize];
                if (o - 16) % 8 == 0 {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            _ => 0,
        }
    }
}

/// Run one program on `d` (the instructions seccompiler and [`add_checks`] emit).
fn run_one(prog: &[libc::sock_filter], d: &Data) -> u32 {
    let (mut pc, mut acc) = (0usize, 0u32);
    while let Some(i) = prog.get(pc) {
        let code = u32::from(i.code);
        pc += 1;
        match code & 0x07 {
            libc::BPF_LD => acc = d.word(i.k),
            libc::BPF_ALU if code & 0xf0 == libc::BPF_AND => acc &= i.k,
            libc::BPF_JMP => {
                let taken = match code & 0xf0 {
                    libc::BPF_JA => {
                        pc += i.k as usize;
                        continue;
                    }
                    libc::BPF_JEQ => acc == i.k,
                    libc::BPF_JGT => acc > i.k,
                    libc::BPF_JGE => acc >= i.k,
                    libc::BPF_JSET => acc & i.k != 0,
                    _ => return libc::SECCOMP_RET_KILL_PROCESS,
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            libc::BPF_RET => return i.k,
            _ => return libc::SECCOMP_RET_KILL_PROCESS,
        }
    }
    libc::SECCOMP_RET_KILL_PROCESS
}

/// What the kernel decides for `d` with `installed` (oldest first): seccomp_run_filters runs
/// them newest first and keeps a result only when its action is strictly more restrictive.
pub fn verdict(installed: &[Vec<libc::sock_filter>], d: &Data) -> u32 {
    let action_only = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
    let mut ret = libc::SECCOMP_RET_ALLOW;
    for p in installed.iter().rev() {
        let cur = run_one(p, d);
        if action_only(cur) < action_only(ret) {
            ret = cur;
        }
    }
    ret
}
