//! The system calls that portables-generator's tests (`tests/hostile.rs`) and bench
//! (`benches/read_images.rs`) make and that std has no safe form of, each behind a safe
//! function. The main package forbids unsafe code, so they live here.
//!
//! Linux with glibc only (`mallopt`, `malloc_trim`, `ptrace`), as the tests are.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::ptr;

/// What `wait4` reports about a child that changed state.
#[derive(Clone, Copy, Debug)]
pub struct Waited {
    /// The status as `wait4` stores it: an exit, a kill, or a ptrace stop
    /// (`ExitStatusExt::stopped_signal`, with the ptrace event in the bits above 16).
    pub status: ExitStatus,
    /// The child's `ru_maxrss`, in KiB. After a `fork` it includes the pages the parent had
    /// then (exec records the old address space's high-water mark): an upper bound.
    pub maxrss_kib: i64,
}

/// Tunes glibc's allocator of this process so that a child forked from it starts with few
/// resident pages: big buffers (images read by the hostile tests' `flip` verb, ...) are
/// mmapped and unmapped when freed, and few arenas are kept. Call it before any thread exists.
pub fn tune_allocator() {
    // SAFETY: mallopt only tunes the allocator; the caller calls it before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Gives freed heap pages back to the system (`malloc_trim(0)`): a forked child starts with
/// this process's pages.
pub fn trim_heap() {
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe { libc::malloc_trim(0) };
}

/// Makes the child `cmd` starts limit its address space to `address_space_limit` bytes
/// (`RLIMIT_AS`, soft and hard) and ask to be traced by this process (`PTRACE_TRACEME`), so
/// that it stops with `SIGTRAP` after its exec. Spawning fails if the limit cannot be set;
/// where ptrace is not permitted, the child runs untraced.
///
/// Having a `pre_exec` hook at all makes std `fork()` instead of using vfork, so that the
/// child's `ru_maxrss` does not count the parent's peak, only the pages it had at the fork.
pub fn limit_and_trace(cmd: &mut Command, address_space_limit: libc::rlim_t) {
    let hook = move || {
        let limit = libc::rlimit {
            rlim_cur: address_space_limit,
            rlim_max: address_space_limit,
        };
        // SAFETY: limit is a valid rlimit that outlives the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_AS, &raw const limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Traced, the child stops at exit with its memory still there (for VmHWM, with
        // `ptrace_set_exit_options`). Where ptrace is not allowed, this fails and the
        // child runs untraced.
        let unused_pid: libc::pid_t = 0;
        // SAFETY: PTRACE_TRACEME reads none of its other arguments.
        unsafe {
            libc::ptrace(
                libc::PTRACE_TRACEME,
                unused_pid,
                ptr::null_mut::<libc::c_void>(),
                ptr::null_mut::<libc::c_void>(),
            )
        };
        Ok(())
    };
    // SAFETY: between fork and exec the hook only calls setrlimit and ptrace, which are
    // async-signal-safe, and allocates nothing (io::Error::last_os_error does not).
    unsafe { cmd.pre_exec(hook) };
}

/// `wait4(child, WNOHANG)`: `None` while `child` has not changed state. The child's exit is
/// reaped here, behind std's back: its `Child` must not be waited for afterwards.
pub fn try_wait4(child: &Child) -> io::Result<Option<Waited>> {
    wait4(child, libc::WNOHANG)
}

/// `wait4(child, 0)`: waits until `child` changes state (exits, or stops if it is traced). The
/// child's exit is reaped here, behind std's back: its `Child` must not be waited for
/// afterwards. An interrupting signal is returned as an error of kind `Interrupted`.
pub fn wait4_blocking(child: &Child) -> io::Result<Waited> {
    wait4(child, 0)?.ok_or_else(|| io::Error::other("wait4 without WNOHANG returned 0"))
}

fn wait4(child: &Child, options: libc::c_int) -> io::Result<Option<Waited>> {
    let pid = pid(child)?;
    let mut status = 0;
    // SAFETY: rusage is plain data, valid when zeroed.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: status and usage are valid for writes for the duration of the call.
    let r = unsafe { libc::wait4(pid, &raw mut status, options, &raw mut usage) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if r == 0 {
        return Ok(None);
    }
    Ok(Some(Waited {
        status: ExitStatus::from_raw(status),
        maxrss_kib: maxrss_kib(&usage),
    }))
}

// c_long is i64 on 64-bit targets, where the conversion does nothing.
#[allow(clippy::useless_conversion)]
fn maxrss_kib(usage: &libc::rusage) -> i64 {
    i64::from(usage.ru_maxrss)
}

/// Sets the options of `child`, a tracee stopped after its exec, to `PTRACE_O_TRACEEXIT`
/// (it stops once more at exit, its memory still mapped) and `PTRACE_O_EXITKILL` (it is
/// killed if this process exits).
pub fn ptrace_set_exit_options(child: &Child) -> io::Result<()> {
    let options = libc::PTRACE_O_TRACEEXIT | libc::PTRACE_O_EXITKILL;
    ptrace(libc::PTRACE_SETOPTIONS, child, libc::c_long::from(options))
}

/// Resumes `child`, a stopped tracee, delivering `signal` to it (0: none).
pub fn ptrace_cont(child: &Child, signal: libc::c_int) -> io::Result<()> {
    ptrace(libc::PTRACE_CONT, child, libc::c_long::from(signal))
}

/// `ptrace(request, child, NULL, data)` for a request that only reads `data` as a number.
fn ptrace(request: libc::c_uint, child: &Child, data: libc::c_long) -> io::Result<()> {
    let pid = pid(child)?;
    // SAFETY: the requests passed here (PTRACE_SETOPTIONS, PTRACE_CONT) act on the tracee
    // only and read no memory of this process: addr is ignored, data is a number.
    let r = unsafe { libc::ptrace(request, pid, ptr::null_mut::<libc::c_void>(), data) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn pid(child: &Child) -> io::Result<libc::pid_t> {
    libc::pid_t::try_from(child.id()).map_err(io::Error::other)
}
