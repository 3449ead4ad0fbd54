//! Raw system calls, for a child that shares the tool's memory and so must not touch libc's
//! errno (a thread-local of the tool's thread).

/// Whether this architecture has [`call`]; elsewhere there is no helper.
pub const SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// System call `nr` with three arguments; returns the result or minus the error number.
///
/// # Safety
/// As the system call itself.
pub unsafe fn call(nr: libc::c_long, a: [usize; 3]) -> isize {
    // SAFETY: as the caller vouches.
    unsafe { call6(nr, [a[0], a[1], a[2], 0, 0, 0]) }
}

/// System call `nr` with six arguments; returns the result or minus the error number.
///
/// # Safety
/// As the system call itself.
#[cfg(target_arch = "x86_64")]
pub unsafe fn call6(nr: libc::c_long, a: [usize; 6]) -> isize {
    let r: isize;
    // SAFETY: the x86-64 Linux system call convention; the caller vouches for the call.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => r,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    r
}

/// System call `nr` with six arguments; returns the result or minus the error number.
///
/// # Safety
/// As the system call itself.
#[cfg(target_arch = "aarch64")]
pub unsafe fn call6(nr: libc::c_long, a: [usize; 6]) -> isize {
    let r: isize;
    // SAFETY: the AArch64 Linux system call convention; the caller vouches for the call.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a[0] as isize => r,
            in("x1") a[1],
            in("x2") a[2],
            in("x3") a[3],
            in("x4") a[4],
            in("x5") a[5],
            options(nostack),
        );
    }
    r
}

/// Never called where [`SUPPORTED`] is false.
///
/// # Safety
/// None needed.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub unsafe fn call6(_nr: libc::c_long, _a: [usize; 6]) -> isize {
    -(libc::ENOSYS as isize)
}
