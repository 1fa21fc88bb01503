//! The scheduling priority a standby shim waits at (`SCHED_IDLE`: it runs only on a CPU that
//! has nothing else to do) and the one it returns to when it gets work (`SCHED_OTHER` at the
//! niceness minid had). Both act on the calling thread; a process started from it inherits them.

/// The calling thread's niceness.
pub fn current() -> i32 {
    // SAFETY: getpriority(2) on the calling thread; -1 is also a valid niceness, so errno is
    // cleared first and checked after.
    unsafe {
        *libc::__errno_location() = 0;
        let n = libc::getpriority(libc::PRIO_PROCESS, 0);
        if n == -1 && *libc::__errno_location() != 0 {
            0
        } else {
            n
        }
    }
}

/// `SCHED_IDLE` for the calling thread (best effort).
pub fn idle() {
    let p = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) on the calling thread with a valid parameter.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &p) };
}

/// `SCHED_OTHER` at `nice` for the calling thread; false if the kernel refused (leaving
/// `SCHED_IDLE` needs CAP_SYS_NICE or a permissive RLIMIT_NICE).
pub fn normal(nice: i32) -> bool {
    let p = libc::sched_param { sched_priority: 0 };
    // SAFETY: as above; setpriority(2) on the calling thread.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_OTHER, &p) == 0
            && libc::setpriority(libc::PRIO_PROCESS, 0, nice) == 0
    }
}

/// Whether a thread of this process can go idle and come back (tried on a thread of its own).
pub fn can_idle() -> bool {
    let nice = current();
    std::thread::spawn(move || {
        idle();
        normal(nice)
    })
    .join()
    .unwrap_or(false)
}
